"""Scale: 1, 100 and 10,000 breakers in one process, and what each costs in Redis.

Breakers are endpoint-scoped on one service (the case where their number multiplies):

* **hot path**: µs per acquire + success on a CLOSED breaker, cycling over all N (after
  one untimed pass, so the mirrors are fresh and the flusher's timer is armed);
* **first use**: ms until a new breaker's first call proceeds, and the Redis commands
  that first use sends before it proceeds (from ``INFO commandstats``, so background
  work such as the fleet index counts only if it ran before the call went on);
* **first-use round trips**: sequential Redis round trips a new breaker's first
  ``acquire()`` waits for (store scripts and bus subscriptions counted as they start;
  one started while another is in flight shares its round trip);
* **in-process bytes per breaker**: ``tracemalloc`` growth over making and using N,
  after ``WARM`` breakers paid the one-time costs (subscription, pool, flusher);
* **Redis bytes**: ``MEMORY USAGE`` summed over this run's keys (SCAN from Python, never
  in a script) per breaker, per cache entry and per registered instance.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from array import array
from typing import Any

import redis.asyncio as aioredis

from benchmarks._common import Context, Result, command_counts, command_delta
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cache.cache import CachePolicy, ResponseCache
from msfw_redis._cache.entry import TypeAdapterCodec
from msfw_redis._config import CircuitBreakerConfig
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

SERVICE = "scale-svc"


class _RoundTrips:
    """Counts sequential round trips through ``store.run`` and ``bus.subscribe``."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.in_flight = 0
        self.trips = 0
        self.counting = False
        for obj, attr in ((store, "run"), (bus, "subscribe")):
            setattr(obj, attr, self._counted(getattr(obj, attr)))

    def _counted(self, inner: Any) -> Any:
        async def counted(*args: Any, **kw: Any) -> Any:
            if not self.counting:
                return await inner(*args, **kw)
            if self.in_flight == 0:
                self.trips += 1
            self.in_flight += 1
            try:
                return await inner(*args, **kw)
            finally:
                self.in_flight -= 1

        return counted


LEVELS = (1, 100, 10_000)
#: Breakers made and used before measuring, so one-time costs are not counted per breaker.
WARM = 50


async def _settle(hub: BreakerHub, config: CircuitBreakerConfig) -> None:
    """Let the batched successes go out and background work finish."""
    await asyncio.sleep(config.success_flush_interval * 2)
    await hub.drain()


#: Single-breaker increments whose median is the 1-breaker row's in-process bytes.
SINGLES = 15


async def _one_more(hub: BreakerHub, config: CircuitBreakerConfig, name: str) -> int:
    """tracemalloc growth over making and using one more breaker."""
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    await (await hub.get(SERVICE, name, config).acquire()).success()
    await _settle(hub, config)  # its batched success sent: no flush state left in flight
    gc.collect()
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return grown - base


async def _redis_bytes(url: str, prefix: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        total = 0
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            total += int(await client.memory_usage(key, samples=0) or 0)
        return total
    finally:
        await client.aclose()


async def _breakers(ctx: Context, n: int) -> dict[str, Any]:
    prefix = f"sc{time.monotonic_ns()}"
    store = Store.from_url(ctx.redis_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    bus.start()
    hub = BreakerHub(store, bus)
    config = CircuitBreakerConfig()
    trips = _RoundTrips(store, bus)
    try:
        # The very first breaker of a new service (subscription and services index).
        trips.counting = True
        await (await hub.get(f"{SERVICE}-new", None, config).acquire()).success()
        trips.counting = False
        service_trips = trips.trips
        # The subscription, the pool's connections, the flusher's timer and every other
        # one-time cost are paid here, on breakers of their own, before measuring: the
        # figure per breaker is what one more breaker costs.
        warm = [hub.get(SERVICE, f"warm/{i}", config) for i in range(WARM)]
        for breaker in warm:
            await (await breaker.acquire()).success()
        await _settle(hub, config)
        # The benchmark's own bookkeeping is allocated before tracemalloc starts (the
        # names, a preallocated array of timings) or dropped before it stops (the INFO
        # snapshot of a probed breaker), so the growth is the breakers' alone: at N = 1
        # a left-over INFO dict had counted 5-6 KB to the one breaker.
        names = [f"/e/{i}" for i in range(n)]
        first_ms = array("d", bytes(8 * n))
        probe_at = {0, n // 2, n - 1}
        probe_cmds: list[int] = []
        max_trips = 0
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        for i, name in enumerate(names):
            before = command_counts(ctx.redis_url) if i in probe_at else None
            trips.trips, trips.counting = 0, True
            t = time.perf_counter()
            permit = await hub.get(SERVICE, name, config).acquire()
            first_ms[i] = (time.perf_counter() - t) * 1e3
            trips.counting = False
            max_trips = max(max_trips, trips.trips)
            if before is not None:
                probe_cmds.append(command_delta(before, command_counts(ctx.redis_url)))
                before = None
            await permit.success()
            if i % 500 == 0:
                ctx.progress(f"[scale] {n:,} breakers: first use {i:,}")
        await hub.drain()
        gc.collect()
        grown, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        py_bytes = (grown - base) / n
        if n == 1:
            # One breaker is too small a sample (a pool connection or a table resize that
            # happens to land in it is counted whole): the median of single increments.
            py_bytes = statistics.median(
                [await _one_more(hub, config, f"/single/{j}") for j in range(SINGLES)]
            )
        calls = max(2_000, n)
        breakers = [hub.get(SERVICE, name, config) for name in names]
        # One untimed pass first (background re-reads of mirrors that went stale under
        # tracemalloc, and the flushes). At 10,000 that pass and its re-reads can take
        # longer than max_staleness, so some calls of the timed pass still start one.
        for breaker in breakers:
            await (await breaker.acquire()).success()
        await _settle(hub, config)
        t = time.perf_counter()
        for i in range(calls):
            await (await breakers[i % n].acquire()).success()
        hot_us = (time.perf_counter() - t) / calls * 1e6
        await hub.flush()
        await hub.drain()
        redis_bytes = await _redis_bytes(ctx.redis_url, prefix)
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()
    return {
        "hot_us": hot_us,
        "first_ms": statistics.median(first_ms),
        "first_cmds": max(probe_cmds),
        "first_trips": max_trips,
        "service_trips": service_trips,
        "py_bytes": py_bytes,
        "redis_bytes": redis_bytes / (n + WARM + 1),  # + the warm and new-service ones
    }


async def _cache_entry_bytes(ctx: Context, n: int) -> float:
    prefix = f"sce{time.monotonic_ns()}"
    store = Store.from_url(ctx.redis_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    cache = ResponseCache(store, bus)
    codec = TypeAdapterCodec(dict)
    policy = CachePolicy(ttl=300.0)
    try:
        empty = await _redis_bytes(ctx.redis_url, prefix)
        for i in range(n):
            key = cache.request_key(service=SERVICE, method="GET", path=f"/items/{i}")
            assert key is not None

            async def origin(i: int = i) -> dict[str, Any]:
                return {"id": i, "name": f"item {i}", "tags": ["a", "b"]}

            await cache.get_or_fetch(key, origin, codec=codec, policy=policy)
        await cache.drain()
        return (await _redis_bytes(ctx.redis_url, prefix) - empty) / n
    finally:
        await cache.aclose()
        await bus.aclose()
        await store.aclose()


async def _instance_bytes(ctx: Context, n: int) -> float:
    prefix = f"sci{time.monotonic_ns()}"
    store = Store.from_url(ctx.redis_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    registry = ServiceRegistry(store, None, default_ttl=60.0)
    try:
        for i in range(n):
            await registry.register(
                SERVICE, host=f"10.0.{i // 250}.{i % 250 + 1}", port=8000, start_heartbeats=False
            )
        return await _redis_bytes(ctx.redis_url, prefix) / n
    finally:
        await registry.aclose()
        await store.aclose()


async def run(ctx: Context) -> Result:
    result = Result(
        "scale",
        "Scale: N endpoint breakers of one service in one process (real server)",
        [
            "breakers",
            "hot path µs/call",
            "first use ms (median)",
            "first use commands",
            "first use round trips",
            "new service round trips",
            "in-process bytes/breaker",
            "Redis bytes/breaker",
        ],
    )
    for n in LEVELS:
        row = await _breakers(ctx, n)
        result.add(
            **{
                "breakers": n,
                "hot path µs/call": round(row["hot_us"], 1),
                "first use ms (median)": round(row["first_ms"], 2),
                "first use commands": row["first_cmds"],
                "first use round trips": row["first_trips"],
                "new service round trips": row["service_trips"],
                "in-process bytes/breaker": round(row["py_bytes"]),
                "Redis bytes/breaker": round(row["redis_bytes"]),
            }
        )
    entries = ctx.scale(1_000, 200)
    instances = ctx.scale(200, 50)
    entry = await _cache_entry_bytes(ctx, entries)
    instance = await _instance_bytes(ctx, instances)
    result.notes.append(
        f"Redis bytes per cache entry (small JSON body, {entries:,} entries): {entry:,.0f}"
    )
    result.notes.append(
        f"Redis bytes per registered instance ({instances} instances): {instance:,.0f}"
    )
    result.notes.append(
        "first use commands: commands the server saw between a new breaker's acquire() "
        "starting and returning (max over the first, middle and last breaker; they include "
        "the commands inside scripts); first use round trips: max over all N new endpoint "
        "breakers; new service round trips: the first breaker of a new service; first use "
        "ms runs under tracemalloc, which slows it several times; in-process bytes: growth "
        "per breaker after 50 warm breakers paid the one-time costs (for 1 breaker: the median "
        f"of {SINGLES} single increments)"
    )
    await asyncio.sleep(0)
    return result
