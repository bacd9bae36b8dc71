"""The Retry-After gate: one replica's 429 closes that endpoint for every replica.

When any replica receives ``429``, or ``503`` with a ``Retry-After`` header, it writes
a per-endpoint "not before" instant (server time, capped by ``retry_after_max``) with
``limits_retryafter_close``, which publishes it. Every replica keeps a mirror of each
service's gate: loaded once when the service is first checked (after subscribing, so
no close is missed), then kept by the events. Checking is local: no round trip. A 429
without ``Retry-After`` closes nothing: a window is never invented.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from msfw_redis._exceptions import RateLimitedError, StoreError
from msfw_redis._limits.budget import parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Mapping

    from msfw_redis._limits.store import LimitsStore
    from msfw_redis._store.events import EventBus

__all__ = ["GATE_LIMIT", "RetryAfterGate"]

logger = logging.getLogger("msfw_redis.limits")

#: The ``limit`` of the RateLimitedError a closed gate raises.
GATE_LIMIT = "retry-after"


class RetryAfterGate:
    """Per-endpoint Retry-After windows shared by the fleet, checked from a local mirror."""

    def __init__(self, store: LimitsStore, bus: EventBus, *, retry_after_max: float) -> None:
        self._store = store
        self._bus = bus
        self.retry_after_max = retry_after_max
        self._mirror: dict[str, dict[str, int]] = {}
        self.closes = 0
        self.refused = 0

    async def _ensure(self, service: str) -> dict[str, int]:
        found = self._mirror.get(service)
        if found is not None:
            return found
        mirror: dict[str, int] = {}
        self._mirror[service] = mirror
        channel = self._store.keys.limits_channel(service)

        def on_event(payload: bytes) -> None:
            parts = payload.split(b"|", 3)
            if parts[0] != b"gate" or len(parts) != 4:
                return
            try:
                not_before = int(parts[1])
            except ValueError:
                return
            endpoint = parts[3].decode("utf-8", "replace")
            mirror[endpoint] = max(not_before, mirror.get(endpoint, 0))

        async def resync() -> None:
            await self._load(service, mirror)

        await self._bus.subscribe(channel, on_event, on_resync=resync)
        await self._load(service, mirror)
        return mirror

    async def _load(self, service: str, mirror: dict[str, int]) -> None:
        try:
            stored = await self._store.gate_read(service)
        except StoreError as exc:
            logger.debug("retry-after gate of %s not read: %r", service, exc)
            return
        for endpoint, not_before in stored.items():
            mirror[endpoint] = max(not_before, mirror.get(endpoint, 0))

    async def check(self, service: str, endpoint: str) -> None:
        """Raise :class:`RateLimitedError` if ``endpoint`` of ``service`` is closed now."""
        if not self.check_now(service, endpoint):
            self._refuse(service, endpoint, await self.remaining(service, endpoint))

    def check_now(self, service: str, endpoint: str) -> bool:
        """:meth:`check` without awaiting, from the mirror: False when the mirror of
        ``service`` is not loaded yet (then await :meth:`check`). The hot path."""
        mirror = self._mirror.get(service)
        if mirror is None:
            return False
        if mirror:
            not_before = mirror.get(endpoint)
            if not_before is not None:
                left = (not_before - self._store.server_now_ms()) / 1000.0
                if left > 0:
                    self._refuse(service, endpoint, left)
                mirror.pop(endpoint, None)
        return True

    def _refuse(self, service: str, endpoint: str, remaining: float) -> None:
        if remaining > 0:
            self.refused += 1
            raise RateLimitedError(
                f"{service} {endpoint} answered Retry-After; closed for the fleet for another "
                f"{remaining:.3f}s",
                retry_after=remaining,
                limit=GATE_LIMIT,
                service_name=service,
                endpoint=endpoint,
            )

    async def remaining(self, service: str, endpoint: str) -> float:
        """Seconds until ``endpoint`` opens again (0.0 when open)."""
        mirror = await self._ensure(service)
        not_before = mirror.get(endpoint)
        if not_before is None:
            return 0.0
        left = (not_before - self._store.server_now_ms()) / 1000.0
        if left <= 0:
            mirror.pop(endpoint, None)
            return 0.0
        return left

    async def observe(
        self, service: str, endpoint: str, status: int, headers: Mapping[str, str]
    ) -> float | None:
        """Close the endpoint if ``status``/``headers`` say so.

        Returns the seconds the endpoint is now closed for (server time), or ``None``
        when nothing was closed.
        """
        if status not in (429, 503):
            return None
        seconds = parse_retry_after(
            _header(headers, "retry-after"),
            date=_header(headers, "date"),
            now=self._store.server_now_ms() / 1000.0,
        )
        if seconds is None:
            return None
        mirror = await self._ensure(service)
        window = min(seconds, self.retry_after_max)
        try:
            not_before, now_ms = await self._store.gate_close(
                service, endpoint, round(window * 1000), round(self.retry_after_max * 1000)
            )
        except StoreError as exc:
            logger.debug("retry-after gate of %s %s not written: %r", service, endpoint, exc)
            return None
        self.closes += 1
        mirror[endpoint] = max(not_before, mirror.get(endpoint, 0))
        # The window as the script set it on server time (an earlier, longer close wins).
        return (not_before - now_ms) / 1000.0

    def open_windows(self, service: str) -> dict[str, float]:
        """Endpoints of ``service`` closed now, with seconds left (mirror only, for status)."""
        now = self._store.server_now_ms()
        return {
            ep: (nb - now) / 1000.0 for ep, nb in self._mirror.get(service, {}).items() if nb > now
        }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None
