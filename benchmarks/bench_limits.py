"""Fleet-wide limits side by side with the peers that share a limit through Redis.

* Rate limiting at 4 processes x 25 tasks hammering one key at 100/s (burst 10):
  decisions per second, Redis commands per decision, and accuracy (the most admitted in
  any 1 s window, and admitted over the run, against what the rate allows). Peers:
  ``limits`` (moving window, sliding window counter; redis-py storage) and
  pyrate-limiter's ``RedisBucket``.
* Clock skew: the same run with one of two processes' clocks 1 s ahead
  (``time.time`` patched in that process). Our decision reads Redis ``TIME`` only.
* Bulkhead: sequential acquire + release cost against a bare EVALSHA and against
  ``redis-rate-limiters``' semaphore (a Redis list popped with BLPOP); then a holder
  of every permit is SIGKILLed and we measure how long until a permit can be had again.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import multiprocessing as mp
import os
import signal
import time
import uuid
from typing import Any

from benchmarks._common import Context, Result, command_counts, command_delta, stats
from benchmarks._peers import NOT_INSTALLED
from msfw_redis._limits.gcra import GcraParams
from msfw_redis._limits.store import LimitsStore
from msfw_redis._store.store import Store
from msfw_redis.testing import run_in_processes

RATE = 100
BURST = 10
#: The peer package each kind needs (from the bench extra); a missing one is reported, not run.
_PEER_MODULES = {
    "limits moving window": "limits",
    "limits sliding counter": "limits",
    "pyrate RedisBucket": "pyrate_limiter",
}
KINDS = ("msfw-redis GCRA", "limits moving window", "limits sliding counter", "pyrate RedisBucket")


async def _decider(kind: str, url: str, key: str) -> tuple[Any, Any]:
    """An async ``decide() -> bool`` for ``kind`` and a closer."""
    if kind == "msfw-redis GCRA":
        store = Store.from_url(url, key_prefix=key, op_timeout=5.0)
        await store.start()
        lim = LimitsStore(store)
        p = GcraParams.of(RATE, 1.0, BURST)

        async def ours() -> bool:
            return (await lim.rate_acquire("bench", "rl", p.emission_us, p.burst)).admitted

        return ours, store.aclose
    if kind.startswith("limits"):
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

        storage = RedisStorage(f"async+{url}", implementation="redispy", key_prefix=key)
        cls = MovingWindowRateLimiter if "moving" in kind else SlidingWindowCounterRateLimiter
        limiter = cls(storage)
        item = RateLimitItemPerSecond(RATE)

        async def peer_limits() -> bool:
            return bool(await limiter.hit(item, "bench"))

        async def close() -> None:
            return None

        return peer_limits, close
    import redis.asyncio as aioredis
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    client = aioredis.Redis.from_url(url)
    bucket = await RedisBucket.init([Rate(RATE, Duration.SECOND)], client, f"{key}:pyrate")
    limiter = Limiter(bucket)

    async def pyrate() -> bool:
        return bool(await limiter.try_acquire_async("bench", blocking=False))

    return pyrate, client.aclose


async def rate_worker(
    kind: str, url: str, key: str, tasks: int, duration: float, skew: float, barrier: Any
) -> tuple[int, list[float]]:
    """Hammer one limit; returns (decisions, monotonic times of admissions)."""
    if skew:
        real = time.time
        time.time = lambda: real() + skew  # type: ignore[assignment]
    decide, close = await _decider(kind, url, key)
    decisions = 0
    admitted: list[float] = []
    await asyncio.to_thread(barrier.wait)
    deadline = time.monotonic() + duration

    async def loop() -> None:
        nonlocal decisions
        while time.monotonic() < deadline:
            ok = await decide()
            decisions += 1
            if ok:
                admitted.append(time.monotonic())

    await asyncio.gather(*(loop() for _ in range(tasks)))
    await close()
    return decisions, admitted


def _max_in_window(stamps: list[float], window: float) -> int:
    best, j = 0, 0
    for i, start in enumerate(stamps):
        while j < len(stamps) and stamps[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def _rate_run(
    ctx: Context, kind: str, procs: int, tasks: int, duration: float, skews: list[float]
) -> dict[str, Any]:
    key = f"b{uuid.uuid4().hex[:8]}"
    barrier = mp.get_context("spawn").Barrier(procs)
    before = command_counts(ctx.redis_url)
    results = run_in_processes(
        rate_worker,
        [(kind, ctx.redis_url, key, tasks, duration, skews[i], barrier) for i in range(procs)],
        timeout=300,
    )
    after = command_counts(ctx.redis_url)
    decisions = sum(d for d, _ in results)
    stamps = sorted(t for _, s in results for t in s)
    elapsed = (stamps[-1] - stamps[0]) if len(stamps) > 1 else duration
    allowed = RATE * elapsed + BURST
    return {
        "decisions/s": decisions / duration,
        "commands/decision": command_delta(before, after) / max(1, decisions),
        "max in 1 s": _max_in_window(stamps, 1.0),
        "allowed in 1 s": RATE + BURST,
        "admitted": len(stamps),
        "allowed": round(allowed),
        "admitted/allowed": len(stamps) / allowed,
    }


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def _pair_cost_us(url: str, n: int) -> dict[str, float | str]:
    import redis.asyncio as aioredis

    store = Store.from_url(url, key_prefix=f"b{uuid.uuid4().hex[:8]}", op_timeout=5.0)
    await store.start()
    lim = LimitsStore(store)
    out: dict[str, float | str] = {}
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await store.run("clock_now", [], [])
        samples.append(time.perf_counter() - t)
    out["bare EVALSHA (clock_now)"] = stats(samples)["median"] * 1e6
    samples = []
    for i in range(n):
        t = time.perf_counter()
        await lim.bulkhead_acquire("bench", None, f"t{i}", 10, 30_000)
        await lim.bulkhead_release("bench", None, [f"t{i}"])
        samples.append(time.perf_counter() - t)
    out["msfw-redis bulkhead acquire + release"] = stats(samples)["median"] * 1e6
    await store.aclose()
    if not _installed("limiters"):
        out["redis-rate-limiters semaphore enter + exit"] = NOT_INSTALLED
        return out
    from limiters import AsyncSemaphore

    client = aioredis.Redis.from_url(url)
    sem = AsyncSemaphore(
        name=f"b{uuid.uuid4().hex[:8]}", capacity=10, max_sleep=1.0, expiry=30, connection=client
    )
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        async with sem:
            pass
        samples.append(time.perf_counter() - t)
    out["redis-rate-limiters semaphore enter + exit"] = stats(samples)["median"] * 1e6
    await client.aclose()
    return out


def _hold_forever(kind: str, url: str, key: str, capacity: int, ready: Any) -> None:
    async def main() -> None:
        if kind == "ours":
            store = Store.from_url(url, key_prefix=key, op_timeout=5.0)
            await store.start()
            lim = LimitsStore(store)
            for i in range(capacity):
                await lim.bulkhead_acquire("bench", None, f"h{i}", capacity, 2_000)
        else:
            import redis.asyncio as aioredis
            from limiters import AsyncSemaphore

            client = aioredis.Redis.from_url(url)
            for _ in range(capacity):
                sem = AsyncSemaphore(
                    name=key, capacity=capacity, max_sleep=1.0, expiry=30, connection=client
                )
                await sem.__aenter__()
        ready.set()
        await asyncio.sleep(3600)

    asyncio.run(main())


async def _after_sigkill(kind: str, url: str, capacity: int, give_up: float) -> str:
    key = f"b{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_forever, args=(kind, url, key, capacity, ready))
    proc.start()
    await asyncio.to_thread(ready.wait, 60)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    killed = time.monotonic()
    if kind == "ours":
        store = Store.from_url(url, key_prefix=key, op_timeout=5.0)
        await store.start()
        lim = LimitsStore(store)
        try:
            while time.monotonic() - killed < give_up:
                r = await lim.bulkhead_acquire("bench", None, "probe", capacity, 2_000)
                if r.granted:
                    return f"free again after {time.monotonic() - killed:.2f} s (lease 2 s)"
                await asyncio.sleep(max(0.001, (r.earliest_expiry_ms - r.now_ms) / 1000))
        finally:
            await store.aclose()
        return f"not free after {give_up:.0f} s"
    import redis.asyncio as aioredis
    from limiters import AsyncSemaphore, MaxSleepExceededError

    client = aioredis.Redis.from_url(url)
    try:
        while time.monotonic() - killed < give_up:
            sem = AsyncSemaphore(
                name=key, capacity=capacity, max_sleep=1.0, expiry=30, connection=client
            )
            try:
                await sem.__aenter__()
            except MaxSleepExceededError:
                continue
            # BLPOP returned: with max_sleep elapsed nothing was popped, see above.
            return f"free again after {time.monotonic() - killed:.2f} s"
    finally:
        await client.aclose()
    return f"all {capacity} permits still lost after {give_up:.0f} s (expiry refreshes on use)"


def _count_scripts(sdk: Any) -> collections.Counter[str]:
    """Count the SDK store's script calls (EVALSHAs) by script name, from now on."""
    store = sdk.limits.store.store
    counts: collections.Counter[str] = collections.Counter()
    run = store.run

    async def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return await run(name, *args, **kwargs)

    store.run = counted
    return counts


async def _round_trips(url: str, n: int) -> list[tuple[str, int, int]]:
    """EVALSHA calls by script for ``n`` retries and ``n`` bulkhead calls (ours only)."""

    from msfw_redis import ServiceSDK, ServiceSDKConfig
    from msfw_redis._limits.config import BulkheadConfig

    sdk = ServiceSDK(
        sdk_config=ServiceSDKConfig(
            redis_url=url, key_prefix=f"b{uuid.uuid4().hex[:8]}", service_discovery_enabled=False
        )
    )
    counts = _count_scripts(sdk)
    rows: list[tuple[str, int, int]] = []
    budget = sdk.limits.retry_budget("bench", ratio=0.2, min_per_second=10.0)
    if budget is None:
        raise RuntimeError("the retry budget is off")
    budget.record_request(10 * n)  # far from the edge: the common path
    granted = sum([await budget.allow_retry() for _ in range(n)])
    rows.append((f"retry budget, {granted} granted retries", n, sum(counts.values())))
    counts.clear()
    bulkhead = sdk.limits.bulkhead("bench", BulkheadConfig(max_concurrent_calls=10))

    async def one(hold: float) -> None:
        permit = await bulkhead.acquire()
        await asyncio.sleep(hold)
        await permit.release()

    for _ in range(n):
        await one(0.0)
    rows.append(("bulkhead acquire + release, sequential", n, sum(counts.values())))
    counts.clear()
    for _ in range(n // 10):
        await asyncio.gather(*(one(0.01) for _ in range(10)))
    rows.append(("bulkhead acquire + release, 10 concurrent", n // 10 * 10, sum(counts.values())))
    await sdk.close()
    return rows


async def _call_round_trips(url: str, n: int) -> list[tuple[str, int, int]]:
    """EVALSHA calls for ``n`` pipeline calls, retry budget on and off (ours only).

    Budget on, each call's request is counted by the breaker's report; the difference
    from "off" is what counting requests costs in round trips (retry decisions apart).
    Totals include the same first-use scripts (breaker load and index) in both.
    """

    from msfw_redis import ServiceSDK, ServiceSDKConfig
    from msfw_redis.testing import ScriptedService, Step

    async def no_sleep(_: float) -> None:
        return None

    async def trips(svc: ScriptedService, ratio: float | None, path: str, attempts: int) -> Any:
        service = {"host": svc.host, "port": svc.port, "failure_threshold": 1_000_000}
        sdk = ServiceSDK(
            config={"services": {"bench": service}},
            sdk_config=ServiceSDKConfig(
                redis_url=url, key_prefix=f"b{uuid.uuid4().hex[:8]}",
                service_discovery_enabled=False, retry_budget_ratio=ratio,
            ),
            sleep=no_sleep,
        )  # fmt: skip
        counts = _count_scripts(sdk)
        for _ in range(n):
            await sdk.call_service("bench", path, retry_attempts=attempts)
        await sdk.close()  # flushes batched reports: counted too
        return counts

    rows: list[tuple[str, int, int]] = []
    with ScriptedService() as svc:
        svc.script("/ok", Step(200, json=1))
        svc.script("/busy", Step(503))
        for label, ratio in (("on", 0.2), ("off", None)):
            c = await trips(svc, ratio, "/ok", 1)
            spend = c["limits_retrybudget_spend"]
            rows.append(
                (f"calls 200 OK, budget {label} ({spend} budget calls)", n, sum(c.values()))
            )
        for label, ratio in (("on", 0.2), ("off", None)):
            c = await trips(svc, ratio, "/busy", 2)
            spend = c["limits_retrybudget_spend"]
            rows.append((f"calls 503 + 1 retry, budget {label} ({spend} budget decisions)", n,
                         sum(c.values())))  # fmt: skip
    return rows


async def run(ctx: Context) -> Result:
    duration = 5.0 if not ctx.quick else 2.0
    rate = Result(
        "limits",
        f"Rate limit {RATE}/s (burst {BURST}) hammered by 4 processes x 25 tasks for {duration:g} s",
        ["limiter", "decisions/s", "commands/decision", "max in 1 s", "allowed in 1 s",
         "admitted", "allowed", "admitted/allowed"],
    )  # fmt: skip
    skew = Result(
        "limits_skew",
        "Same limit, 2 processes x 25 tasks, one process's clock 1 s ahead",
        ["limiter", "max in 1 s", "allowed in 1 s", "admitted/allowed"],
    )
    for kind in KINDS:
        module = _PEER_MODULES.get(kind)
        if module is not None and not _installed(module):
            rate.add(limiter=kind, **{"decisions/s": NOT_INSTALLED})
            skew.add(limiter=kind, **{"max in 1 s": NOT_INSTALLED})
            continue
        ctx.progress(f"[limits] {kind}")
        rate.add(limiter=kind, **_rate_run(ctx, kind, 4, 25, duration, [0.0] * 4))
        ctx.progress(f"[limits] {kind} with skew")
        row = _rate_run(ctx, kind, 2, 25, duration, [0.0, 1.0])
        skew.add(
            limiter=kind,
            **{k: row[k] for k in ("max in 1 s", "allowed in 1 s", "admitted/allowed")},
        )
    ctx.progress("[limits] bulkhead costs")
    bulk = Result("limits_bulkhead", "Bulkhead permit cost (median of sequential pairs)",
                  ["operation", "median µs"])  # fmt: skip
    for op, us in (await _pair_cost_us(ctx.redis_url, ctx.scale(3000, 500))).items():
        bulk.add(**{"operation": op, "median µs": us})
    trips = Result("limits_round_trips", "Redis round trips (EVALSHA calls) per operation, ours",
                   ["operation", "operations", "round trips", "per operation"])  # fmt: skip
    for op, ops, rt in [*await _round_trips(ctx.redis_url, 200),
                        *await _call_round_trips(ctx.redis_url, 200)]:  # fmt: skip
        trips.add(**{"operation": op, "operations": ops, "round trips": rt,
                     "per operation": rt / ops})  # fmt: skip
    kill = Result("limits_sigkill", "A holder of all 3 permits is SIGKILLed",
                  ["bulkhead", "after the SIGKILL"])  # fmt: skip
    ctx.progress("[limits] SIGKILL: ours")
    kill.add(bulkhead="msfw-redis (leases, 2 s)", **{
        "after the SIGKILL": await _after_sigkill("ours", ctx.redis_url, 3, 10.0)})  # fmt: skip
    ctx.progress("[limits] SIGKILL: redis-rate-limiters")
    peer_after = (
        await _after_sigkill("peer", ctx.redis_url, 3, 10.0)
        if _installed("limiters")
        else NOT_INSTALLED
    )
    kill.add(bulkhead="redis-rate-limiters semaphore", **{"after the SIGKILL": peer_after})
    rate.notes.append(
        "commands/decision counts every Redis command (INFO commandstats delta) over decisions; "
        "max in 1 s is over sliding windows of admission times."
    )
    rate.subtables.extend([skew, bulk, trips, kill])
    return rate
