"""The fleet-wide rate limiter: one GCRA decision per call, on Redis server time.

A refusal carries ``retry_after`` computed by the script from ``TIME``, so it is right
on every replica whatever its clock says. With ``max_wait`` a refused caller sleeps
until exactly that instant and asks again (once per slot it was promised, never a
poll); if another replica took the slot meanwhile, it gets a new ``retry_after``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from msfw_redis._exceptions import RateLimitedError, StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._config import StoreFailurePolicy
    from msfw_redis._limits.config import RateLimitConfig
    from msfw_redis._limits.store import LimitsStore, RateReply

__all__ = ["FleetRateLimiter", "RateStats"]


class RateStats:
    """In-process counters of one rate limit."""

    __slots__ = ("admitted", "refused", "slept", "unguarded")

    def __init__(self) -> None:
        self.admitted = 0
        self.refused = 0
        self.slept = 0
        self.unguarded = 0


class FleetRateLimiter:
    """``config.rate`` calls per ``config.per`` seconds for key ``name``, fleet-wide."""

    def __init__(
        self,
        store: LimitsStore,
        tag: str,
        name: str,
        config: RateLimitConfig,
        *,
        failure_policy: StoreFailurePolicy = "fail_open",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        service_name: str | None = None,
    ) -> None:
        self._store = store
        self.tag = tag
        self.name = name
        self.config = config
        self._params = config.params
        self._policy = failure_policy
        self._sleep = sleep
        self.service_name = service_name
        self.stats = RateStats()
        self.last: RateReply | None = None

    async def decide(self, cost: int = 1) -> RateReply:
        """One decision, no waiting: the script's reply (admitted or not)."""
        reply = await self._store.rate_acquire(
            self.tag, self.name, self._params.emission_us, self._params.burst, cost
        )
        self.last = reply
        return reply

    async def acquire(self, cost: int = 1, *, max_wait: float | None = None) -> None:
        """Admit a call of ``cost``, sleeping up to ``max_wait`` for its slot, else raise.

        Raises :class:`RateLimitedError` with ``retry_after`` (seconds, server time).
        """
        wait = self.config.max_wait if max_wait is None else max_wait
        deadline = time.monotonic() + wait
        while True:
            try:
                reply = await self.decide(cost)
            except StoreError:
                if self._policy == "fail_closed":
                    raise
                self.stats.unguarded += 1
                return
            if reply.admitted:
                self.stats.admitted += 1
                return
            retry_after = reply.retry_after_us / 1_000_000
            if time.monotonic() + retry_after > deadline:
                self.stats.refused += 1
                raise RateLimitedError(
                    f"rate limit {self.name!r} ({self.config.rate:g} per {self.config.per:g}s) "
                    f"refused the call; retry after {retry_after:.3f}s",
                    retry_after=retry_after,
                    limit=self.name,
                    service_name=self.service_name,
                )
            self.stats.slept += 1
            await self._sleep(retry_after)
