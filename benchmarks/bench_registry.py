"""Registry figures: round trips per discovery, heartbeat cost, SIGKILL-to-eviction time.

Run from the repository root::

    python -m benchmarks.bench_registry [--quick] [--json PATH] [--redis-url URL]

(``run(ctx)`` also fits the ``python -m benchmarks`` suite.) Round trips are counted at
the client, as commands sent through ``execute_command`` (nothing here pipelines);
``INFO commandstats`` would also count the commands each script runs inside Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from typing import Any

import redis

from benchmarks._common import Context, Result, dump, machine, redis_server
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store

SVC = "bench-orders"


def _prefix() -> str:
    return f"bench{uuid.uuid4().hex[:10]}"


def _evalsha_usec(url: str) -> tuple[int, int]:
    """(calls, usec) of EVALSHA so far, from ``INFO commandstats`` (no reset needed)."""
    client = redis.Redis.from_url(url)
    try:
        stat = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        client.close()
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


class CommandCounter:
    """Counts the commands a store's client sends (each one is a round trip here)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        original = store.client.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        store.client.execute_command = counting  # type: ignore[method-assign]


async def _discovery(ctx: Context, result: Result) -> None:
    url = ctx.redis_url
    prefix = _prefix()
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    counter = CommandCounter(store)
    writer = ServiceRegistry(store)
    for port in (8001, 8002, 8003):
        await writer.register(SVC, host="10.0.0.1", port=port, start_heartbeats=False)
    n = ctx.scale(2_000, 300)

    async def measure(label: str, registry: ServiceRegistry, fresh: bool, count: int) -> None:
        before = counter.count
        samples = []
        for _ in range(count):
            t = time.perf_counter()
            await registry.discover(SVC, fresh=fresh)
            samples.append(time.perf_counter() - t)
        commands = counter.count - before
        result.add(
            case=label,
            calls=count,
            **{
                "round trips / lookup": round(commands / count, 3),
                "median µs": statistics.median(samples) * 1e6,
            },
        )

    # A new process's very first lookup: the list plus a once-an-hour index touch.
    cold_commands = []
    for _ in range(ctx.scale(50, 10)):
        cold = ServiceRegistry(store)
        before = counter.count
        await cold.discover(SVC)
        cold_commands.append(counter.count - before)
    result.add(
        case="first lookup in a new process",
        calls=len(cold_commands),
        **{"round trips / lookup": statistics.mean(cold_commands), "median µs": ""},
    )
    warm = ServiceRegistry(store, cache_max_staleness=3600.0)
    await warm.discover(SVC)
    await measure("uncached (fresh=True: full list)", warm, True, n)
    await measure("cached (revision current)", warm, False, n * 10)
    revalidating = ServiceRegistry(store, cache_max_staleness=0.0)
    await revalidating.discover(SVC)
    await measure("past max staleness, unchanged (revision-only reply)", revalidating, False, n)
    await store.aclose()


async def _heartbeat(ctx: Context, result: Result) -> None:
    n = ctx.scale(5_000, 1_000)
    for label, url in (
        ("fakeredis (memory://)", "memory://bench-registry"),
        (ctx.server_kind, ctx.redis_url),
    ):
        store = Store.from_url(url, key_prefix=_prefix(), op_timeout=5.0)
        await store.start()
        registry = ServiceRegistry(store)
        for port in range(8000, 8010):
            await registry.register(SVC, host="10.0.0.1", port=port, start_heartbeats=False)
        for _ in range(100):  # warm-up
            await registry.heartbeat(SVC, "10.0.0.1:8000")
        counter = CommandCounter(store)
        real = not url.startswith("memory://")
        calls_before, usec_before = _evalsha_usec(url) if real else (0, 0)
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            await registry.heartbeat(SVC, "10.0.0.1:8000")
            samples.append(time.perf_counter() - t)
        per_beat = counter.count / n
        server_us: float | str = ""
        if real:
            calls_after, usec_after = _evalsha_usec(url)
            server_us = (usec_after - usec_before) / max(1, calls_after - calls_before)
        baseline = []
        for _ in range(n):
            t = time.perf_counter()
            await store.run("clock_now", [], [])
            baseline.append(time.perf_counter() - t)
        ordered = sorted(samples)
        result.add(
            backend=label,
            beats=n,
            **{
                "median µs": statistics.median(samples) * 1e6,
                "p99 µs": ordered[int(len(ordered) * 0.99)] * 1e6,
                "round trips / beat": round(per_beat, 3),
                "Redis CPU µs / beat": server_us,
                "clock_now EVALSHA µs": statistics.median(baseline) * 1e6,
            },
        )
        await registry.aclose(deregister=False)
        await store.aclose()


def _replica_main(url: str, prefix: str, port: int, ttl: float, out: Any, stop: Any) -> None:
    """A replica process: register, heartbeat until stopped (module level for spawn)."""

    async def main() -> None:
        store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
        await store.start()
        registry = ServiceRegistry(store)
        await registry.start()
        instance = await registry.register(SVC, host="127.0.0.1", port=port, ttl=ttl)
        out.put((os.getpid(), instance.instance_id))
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await registry.aclose()
        await store.aclose()

    asyncio.run(main())


async def _one_kill(url: str, ttl: float) -> dict[str, float]:
    prefix = _prefix()
    mp_ctx = mp.get_context("spawn")
    out = mp_ctx.Queue()
    stop = mp_ctx.Event()
    procs = [
        mp_ctx.Process(
            target=_replica_main, args=(url, prefix, 9000 + i, ttl, out, stop), daemon=True
        )
        for i in range(3)
    ]
    for proc in procs:
        proc.start()
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    observer = ServiceRegistry(store)
    try:
        ids = dict([await asyncio.to_thread(out.get, True, 60) for _ in procs])
        # Let heartbeats settle into their rhythm before the kill.
        await asyncio.sleep(ttl)
        victim = procs[0]
        assert victim.pid is not None
        victim_id = ids[victim.pid]
        last_beat_ms = 0
        victim.kill()
        killed = time.monotonic()
        killed_server_ms = reply_int(await store.run("clock_now", [], []))
        while True:
            listed = await observer.list_service(SVC)
            present = {i.instance_id: i for i in listed.instances or ()}
            if victim_id not in present:
                evicted = time.monotonic()
                evicted_server_ms = listed.now_ms
                break
            beat = present[victim_id].last_heartbeat
            last_beat_ms = round((beat or 0) * 1000)
            if time.monotonic() - killed > ttl * 10 + 10:
                raise RuntimeError("the killed replica was never evicted")
            await asyncio.sleep(0.01)
        return {
            "kill_to_eviction_s": evicted - killed,
            "kill_to_eviction_server_s": (evicted_server_ms - killed_server_ms) / 1000,
            "last_beat_to_eviction_s": (
                (evicted_server_ms - last_beat_ms) / 1000 if last_beat_ms else float("nan")
            ),
            "others_remaining": float(len(present)),
        }
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        await store.aclose()


async def _eviction(ctx: Context, result: Result) -> None:
    runs = ctx.scale(3, 1)
    for ttl in (1.0, 2.0):
        samples = []
        for i in range(runs):
            ctx.progress(f"[registry] SIGKILL run {i + 1}/{runs}, ttl {ttl}s")
            samples.append(await _one_kill(ctx.redis_url, ttl))
        kill = [s["kill_to_eviction_s"] for s in samples]
        beat = [s["last_beat_to_eviction_s"] for s in samples]
        spread = f"{min(kill):.2f} / {statistics.median(kill):.2f} / {max(kill):.2f}"
        result.add(
            **{
                "ttl s": ttl,
                "runs": runs,
                "kill→eviction s (min/median/max)": spread,
                "last beat→eviction s (median)": statistics.median(beat),
                "others left": int(min(s["others_remaining"] for s in samples)),
            }
        )


async def run(ctx: Context) -> Result:
    """For ``python -m benchmarks``: one table with the headline figure of each part."""
    discovery, heartbeat, eviction = await run_all(ctx)
    summary = Result("registry", "Registry headline figures", ["figure", "value"])
    for row in discovery.rows:
        summary.add(
            figure=f"round trips per lookup: {row['case']}", value=row["round trips / lookup"]
        )
    for row in heartbeat.rows:
        summary.add(figure=f"heartbeat median µs ({row['backend']})", value=row["median µs"])
    for row in eviction.rows:
        summary.add(
            figure=f"SIGKILL→eviction s, ttl {row['ttl s']} s",
            value=row["kill→eviction s (min/median/max)"],
        )
    summary.notes.append("full tables: python -m benchmarks.bench_registry")
    return summary


async def run_all(ctx: Context) -> list[Result]:
    discovery = Result(
        "registry_discovery",
        "Discovery: Redis round trips and latency per lookup (3 instances)",
        ["case", "calls", "round trips / lookup", "median µs"],
    )
    ctx.progress("[registry] discovery")
    await _discovery(ctx, discovery)
    discovery.notes.append(
        "a changed revision (event or revalidation) costs one registry_list call that returns "
        "the full list; cached lookups cost no round trip"
    )
    heartbeat = Result(
        "registry_heartbeat",
        "One heartbeat (registry_heartbeat EVALSHA, sequential, service of 10 instances)",
        [
            "backend",
            "beats",
            "median µs",
            "p99 µs",
            "round trips / beat",
            "Redis CPU µs / beat",
            "clock_now EVALSHA µs",
        ],
    )
    ctx.progress("[registry] heartbeat")
    await _heartbeat(ctx, heartbeat)
    eviction = Result(
        "registry_eviction",
        "SIGKILL of 1 of 3 replicas until a registry read no longer lists it (polled every 10 ms)",
        [
            "ttl s",
            "runs",
            "kill→eviction s (min/median/max)",
            "last beat→eviction s (median)",
            "others left",
        ],
    )
    await _eviction(ctx, eviction)
    eviction.notes.append(
        "eviction happens at last heartbeat + ttl by server time; heartbeats go out every "
        "ttl/3 x U(0.8, 1.0), so kill→eviction lies between about 0.67 x ttl and ttl"
    )
    return [discovery, heartbeat, eviction]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_registry", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON to PATH")
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    args = parser.parse_args(argv)
    started = time.time()
    with redis_server(args.redis_url) as (url, kind):
        ctx = Context(redis_url=url, quick=args.quick, server_kind=kind)
        results = asyncio.run(run_all(ctx))
    sys.stderr.write("\n")
    for result in results:
        print(result.render(), end="\n\n")
    given = sys.argv[1:] if argv is None else argv
    meta: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.bench_registry", *given]),
        "server": kind,
        "quick": args.quick,
        "seconds": round(time.time() - started, 1),
        **machine(),
    }
    print(f"server: {kind}; python {meta['python']}; {meta['cpus']} cpus; {meta['seconds']}s")
    if args.json:
        dump(args.json, results, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
