"""Fleet-wide cache hit counts: each process's results flushed to Redis, read back per service.

Each SDK counts its cache results per service (hit, miss, stale, coalesced, bypass) in
its call counters. :class:`CacheStatsFlusher` sends the change since its last flush
with one ``cache_stats_add`` call per service that had traffic, from one timer per SDK
(every ``DEFAULT_FLUSH_INTERVAL`` seconds, and once at close). The script adds them
into per-minute buckets of one hash per service::

    <prefix>:v1:{<service>}:cache:stats   ring of 60 minute slots (see the script header)

The hash expires ``STATS_TTL_MS`` after its last write. When Redis is unavailable the
deltas stay pending (they are the difference of two cumulative counters, so they
take no more room however long the outage) and go out with a later flush; nothing
reaches a caller, and a close waits for at most one store operation timeout.

:class:`CacheStatsReader` sums the last ``window_minutes`` (at most 60) per service. A
hash with a foreign type or a non-integer value reads as no data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._exceptions import StoreError
from msfw_redis._store.errors import is_outage
from msfw_redis._store.replies import reply_int

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from msfw_redis._store.store import Store

__all__ = [
    "CACHE_RESULTS",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_WINDOW_MINUTES",
    "RING_MINUTES",
    "STATS_TTL_MS",
    "CacheStatsFlusher",
    "CacheStatsReader",
    "FleetCacheCounts",
]

logger = logging.getLogger("msfw_redis.cache")

#: The results counted, in the script's ARGV order.
CACHE_RESULTS = ("hit", "miss", "stale", "coalesced", "bypass")
#: Seconds between flushes of one SDK's deltas.
DEFAULT_FLUSH_INTERVAL = 5.0
#: Minutes the reader sums by default.
DEFAULT_WINDOW_MINUTES = 15
#: Minute slots in the ring (the longest window that can be read).
RING_MINUTES = 60
#: Expiry of a stats hash after its last write (ms): the ring's hour.
STATS_TTL_MS = RING_MINUTES * 60 * 1000


def stats_key(store: Store, service: str) -> str:
    """The Redis key of ``service``'s stats hash."""
    return store.keys.key(service, "cache", "stats")


@dataclass(frozen=True, slots=True)
class FleetCacheCounts:
    """One service's fleet-wide cache results over the last ``window_minutes``."""

    service: str
    window_minutes: int
    hit: int
    miss: int
    stale: int
    coalesced: int
    bypass: int

    @property
    def total(self) -> int:
        """Every cache lookup counted."""
        return self.hit + self.miss + self.stale + self.coalesced + self.bypass

    @property
    def hit_ratio(self) -> float | None:
        """Lookups answered without their own origin call (hit, stale, coalesced) over
        all lookups, 0 to 1; ``None`` when there were none."""
        total = self.total
        return None if total == 0 else (self.hit + self.stale + self.coalesced) / total

    def counts(self) -> dict[str, int]:
        """``{result: count}`` in :data:`CACHE_RESULTS` order."""
        return {name: getattr(self, name) for name in CACHE_RESULTS}


class CacheStatsFlusher:
    """Flushes one SDK's per-service cache result deltas to Redis on one timer.

    Args:
        store: the store whose ``cache_stats_add`` script is run.
        counts: returns the cumulative ``{service: {result: count}}`` so far.
        interval: seconds between flushes.
        now_ms: pins the script's time in tests (``0``/``None``: server ``TIME``).
    """

    def __init__(
        self,
        store: Store,
        counts: Callable[[], Mapping[str, Mapping[str, int]]],
        *,
        interval: float = DEFAULT_FLUSH_INTERVAL,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._store = store
        self._counts = counts
        self._interval = interval
        self._now_ms = now_ms
        self._sent: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._in_flight: asyncio.Future[int] | None = None
        self._failed = False  # the last flush stopped at a store error

    def start(self) -> None:
        """Start the timer on the running loop (once per loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="msfw-cache-stats")

    def rebind(self) -> None:
        """Forget the timer and lock of a previous (closed) loop; pending deltas stay."""
        self._task = None
        self._lock = None
        self._in_flight = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            # Shielded: a close that cancels this task while a flush is in flight must
            # not cut it between Redis applying the deltas and their being marked sent
            # (the closing flush would send them again). The flush runs on, holding the
            # lock, and the closing flush waits for it.
            self._in_flight = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._in_flight)

    async def flush(self) -> int:
        """Send every pending delta now; the number of services sent.

        Stops at the first store error (Redis is then likely down, so one failure
        bounds the time spent) and keeps what is unsent for the next flush.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            sent = 0
            for service, now in list(self._counts().items()):
                before = self._sent.get(service, {})
                current = {name: int(now.get(name, 0)) for name in CACHE_RESULTS}
                deltas = [max(0, current[n] - before.get(n, 0)) for n in CACHE_RESULTS]
                if not any(deltas):
                    continue
                try:
                    reply_int(
                        await self._store.run(
                            "cache_stats_add",
                            [stats_key(self._store, service)],
                            [self._now_ms() if self._now_ms else 0, STATS_TTL_MS, *deltas],
                        )
                    )
                except StoreError as exc:
                    logger.debug("cache stats flush deferred (%s): %s", service, exc)
                    self._failed = True
                    break
                self._sent[service] = current
                sent += 1
            else:
                self._failed = False
            return sent

    async def aclose(self) -> None:
        """Stop the timer and flush once (at most one operation timeout when Redis is down)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.done():
            # The timer's flush runs on (shielded); its end decides the closing flush.
            with contextlib.suppress(StoreError):
                await in_flight
            if self._failed:
                return  # Redis did not answer it: one operation timeout is the bound
        with contextlib.suppress(StoreError):
            await self.flush()


class CacheStatsReader:
    """Reads fleet-wide cache counts per service from the stats hashes."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def read(
        self, services: Iterable[str], *, window_minutes: int = DEFAULT_WINDOW_MINUTES
    ) -> list[FleetCacheCounts]:
        """The counts of each service that has data in the last ``window_minutes``.

        A store outage raises :class:`~msfw_redis.StoreError`; a corrupt hash (a
        foreign type, a non-integer value) is left out.
        """
        if not 1 <= window_minutes <= RING_MINUTES:
            raise ValueError(f"window_minutes must be 1 to {RING_MINUTES}, got {window_minutes}")
        now_minute = int(self._store.clock.now_ms() // 60000)
        found = []
        for service in services:
            try:
                raw = await self._store.hgetall(stats_key(self._store, service))
            except StoreError as exc:
                if is_outage(exc):
                    raise
                logger.debug("cache stats of %s unreadable: %s", service, exc)
                continue
            counts = _sum_window(raw, now_minute, window_minutes)
            if counts is not None:
                found.append(FleetCacheCounts(service, window_minutes, **counts))
        return found


def _sum_window(raw: Mapping[bytes, bytes], now_minute: int, window: int) -> dict[str, int] | None:
    fields = {
        (k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v
        for k, v in raw.items()
    }
    totals = dict.fromkeys(CACHE_RESULTS, 0)
    seen = False
    try:
        for minute in range(now_minute - window + 1, now_minute + 1):
            slot = minute % RING_MINUTES
            held = fields.get(f"m{slot}")
            if held is None or int(held) != minute:
                continue
            for name in CACHE_RESULTS:
                value = int(fields.get(f"{slot}:{name}", b"0"))
                if value < 0:
                    return None
                totals[name] += value
                seen = seen or value > 0
    except ValueError:
        return None  # a corrupt count: no data rather than a wrong ratio
    return totals if seen else None
