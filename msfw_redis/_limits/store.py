"""Redis access for fleet-wide limits: the ``limits_*`` scripts, with typed replies.

Nothing else in ``msfw_redis._limits`` talks to the store; the other modules hold the
maths and the in-process coordination (waiters, batching, mirrors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._store.replies import reply_int, reply_list

if TYPE_CHECKING:
    from msfw_redis._store.keys import KeySchema
    from msfw_redis._store.store import Store

__all__ = ["Acquired", "BudgetReply", "LimitsStore", "RateReply"]


@dataclass(frozen=True, slots=True)
class Acquired:
    """Reply of ``limits_bulkhead_acquire``."""

    granted: bool
    in_flight: int
    now_ms: int
    earliest_expiry_ms: int


@dataclass(frozen=True, slots=True)
class RateReply:
    """Reply of ``limits_ratelimit_acquire`` (times in microseconds of server time)."""

    admitted: bool
    retry_after_us: int
    remaining: int
    reset_after_us: int
    now_us: int


@dataclass(frozen=True, slots=True)
class BudgetReply:
    """Reply of ``limits_retrybudget_spend``."""

    granted: int
    requests: int
    retries: int
    allowed: int
    now_ms: int


class LimitsStore:
    """Calls the ``limits_*`` scripts on one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        """The state store the scripts run on (benchmarks count its script calls)."""
        return self._store

    @property
    def keys(self) -> KeySchema:
        """The key schema of the underlying store."""
        return self._store.keys

    async def bulkhead_acquire(
        self, service: str, instance: str | None, token: str, limit: int, lease_ms: int,
        *, now_ms: int = 0,
    ) -> Acquired:  # fmt: skip
        """Take (or renew) the permit ``token``, if the fleet holds fewer than ``limit``."""
        keys = [self.keys.bulkhead_permits(service, instance)]
        args = [self.keys.limits_channel(service), token, limit, lease_ms, now_ms]
        r = reply_list(await self._store.run("limits_bulkhead_acquire", keys, args))
        return Acquired(reply_int(r[0]) == 1, reply_int(r[1]), reply_int(r[2]), reply_int(r[3]))

    async def bulkhead_release(
        self, service: str, instance: str | None, tokens: list[str], *, now_ms: int = 0
    ) -> int:
        """Release ``tokens``; returns how many were still held."""
        keys = [self.keys.bulkhead_permits(service, instance)]
        args: list[object] = [self.keys.limits_channel(service), now_ms, *tokens]
        r = reply_list(await self._store.run("limits_bulkhead_release", keys, args))
        return reply_int(r[0])

    async def bulkhead_renew(
        self, service: str, instance: str | None, tokens: list[str], lease_ms: int,
        *, now_ms: int = 0,
    ) -> int:  # fmt: skip
        """Extend the leases of ``tokens`` still held; returns how many were."""
        keys = [self.keys.bulkhead_permits(service, instance)]
        args: list[object] = [lease_ms, now_ms, *tokens]
        r = reply_list(await self._store.run("limits_bulkhead_renew", keys, args))
        return reply_int(r[0])

    async def bulkhead_in_flight(self, service: str, instance: str | None = None) -> int:
        """Permits currently held or not yet reaped (a read, for status)."""
        return len(await self._store.zmembers(self.keys.bulkhead_permits(service, instance)))

    async def rate_acquire(
        self, tag: str, name: str, emission_us: int, burst: int, cost: int = 1,
        *, now_us: int = 0,
    ) -> RateReply:  # fmt: skip
        """One GCRA decision for limit ``name`` under hash tag ``tag``."""
        keys = [self.keys.rate_limit(tag, name)]
        r = reply_list(
            await self._store.run(
                "limits_ratelimit_acquire", keys, [emission_us, burst, cost, now_us]
            )
        )
        return RateReply(
            reply_int(r[0]) == 1, reply_int(r[1]), reply_int(r[2]), reply_int(r[3]),
            reply_int(r[4]),
        )  # fmt: skip

    async def gate_close(
        self, service: str, endpoint: str, retry_after_ms: int, cap_ms: int, *, now_ms: int = 0
    ) -> tuple[int, int]:
        """Close ``endpoint`` until now + min(retry_after, cap); returns (not_before, now)."""
        keys = [self.keys.retry_after_gate(service)]
        args = [self.keys.limits_channel(service), endpoint, retry_after_ms, cap_ms, now_ms]
        r = reply_list(await self._store.run("limits_retryafter_close", keys, args))
        return reply_int(r[0]), reply_int(r[1])

    async def gate_read(self, service: str) -> dict[str, int]:
        """The gate's endpoint -> not-before (server ms); a corrupt field is skipped."""
        raw = await self._store.hgetall(self.keys.retry_after_gate(service))
        out: dict[str, int] = {}
        for field, value in raw.items():
            try:
                out[field.decode("utf-8", "replace")] = int(value)
            except ValueError:
                continue
        return out

    async def budget_spend(
        self, service: str, requests: int, retries: int, ratio_ppm: int, min_milli: int,
        window_s: int, *, now_ms: int = 0,
    ) -> BudgetReply:  # fmt: skip
        """Add ``requests`` and ask for ``retries`` from the service's retry budget."""
        keys = [self.keys.retry_budget(service)]
        args = [requests, retries, ratio_ppm, min_milli, window_s, now_ms]
        r = reply_list(await self._store.run("limits_retrybudget_spend", keys, args))
        return BudgetReply(*(reply_int(v) for v in r[:5]))

    def server_now_ms(self) -> int:
        """Estimated server time now (measured offset; no round trip)."""
        return self._store.clock.now_ms()
