"""A breaker's time away from the shared state, and how it comes back.

A breaker leaves the shared state when a write fails for any reason: Redis down or
slow, READONLY (a replica or a demoted primary), NOPERM (an ACL without ``HSET``), OOM.
It then keeps counting on its :class:`~msfw_redis._breaker.machine.LocalBreaker`, which
opens at the same threshold. A read that succeeds proves nothing about writes, so the
breaker rejoins only through a **write** that succeeds: one ``breaker_record`` carrying
the outcomes it counted locally, as a batched report does.

:class:`LocalEpisode` is that bookkeeping: the shared generation the outcomes belong to,
what to carry, and when the next rejoin write is due (a permission error backs off for
long, since only an operator can fix it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["LocalEpisode"]

#: First and longest wait between rejoin writes after an outage or a refusal (s).
_REJOIN_BACKOFF_INITIAL = 0.5
_REJOIN_BACKOFF_MAX = 5.0


@dataclass(slots=True)
class LocalEpisode:
    """Outcomes recorded locally since the breaker left the shared state.

    Attributes:
        gen: the shared generation when the breaker left; carried outcomes are
            recorded against it, so the script ignores them (except in the lifetime
            totals) if the fleet's breaker moved on meanwhile.
        successes: every success counted locally.
        failures: every failure counted locally.
        trailing_failures: failures since the last local success; in consecutive mode
            this is what the shared count must hold after successes are applied first.
        retry_at: monotonic time of the next rejoin write.
        backoff: the current wait between rejoin writes.
        floor: a minimum wait imposed by the last refusal (e.g. 60 s for NOPERM).
    """

    gen: int
    successes: int = 0
    failures: int = 0
    trailing_failures: int = 0
    retry_at: float = 0.0
    backoff: float = _REJOIN_BACKOFF_INITIAL
    floor: float = 0.0

    def note(self, successes: int, failures: int) -> None:
        """Count outcomes recorded locally (successes before failures, as the script does)."""
        self.successes += successes
        self.failures += failures
        if successes:
            self.trailing_failures = 0
        self.trailing_failures += failures

    def carry(self, *, rate_mode: bool) -> tuple[int, int]:
        """The ``(successes, failures)`` one rejoin write records.

        In rate mode every outcome counts in the window. In consecutive mode the
        failures before the last success were already cancelled by it, so only the
        trailing run is sent (the lifetime totals then miss the earlier ones).
        """
        return self.successes, self.failures if rate_mode else self.trailing_failures

    def due(self, now: float | None = None) -> bool:
        """True when a rejoin write may be tried now."""
        return (time.monotonic() if now is None else now) >= self.retry_at

    def defer(self, *, floor: float = 0.0, now: float | None = None) -> float:
        """A rejoin write failed: wait longer before the next one; returns the wait."""
        now = time.monotonic() if now is None else now
        self.floor = max(self.floor, floor)
        wait = max(self.backoff, self.floor)
        self.retry_at = now + wait
        self.backoff = min(self.backoff * 2.0, _REJOIN_BACKOFF_MAX)
        return wait
