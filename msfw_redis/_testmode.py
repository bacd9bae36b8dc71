"""Test mode: :func:`msfw_redis.testing.set_testing` turns waits off for users' own tests.

While on, retry back-off and ``Retry-After`` waits are 0 s and health probe rounds run
at most every :data:`TESTING_HEALTH_INTERVAL` seconds, as stamina's ``set_testing``
does for its back-off. Only process-local behaviour changes; nothing in Redis does.
"""

from __future__ import annotations

__all__ = ["TESTING_HEALTH_INTERVAL", "health_interval", "is_testing", "set_testing"]

#: Seconds between health rounds while test mode is on.
TESTING_HEALTH_INTERVAL = 0.1

_testing = False


def set_testing(on: bool) -> None:
    """Turn test mode on (``True``) or off (``False``, the default)."""
    global _testing
    _testing = bool(on)


def is_testing() -> bool:
    """Whether test mode is on."""
    return _testing


def health_interval(interval: float) -> float:
    """``interval`` seconds, shortened to the test-mode interval while test mode is on."""
    return min(interval, TESTING_HEALTH_INTERVAL) if _testing else interval
