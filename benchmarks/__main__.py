"""Run the benchmark suite, or one benchmark: ``python -m benchmarks [NAME ...]``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from typing import Any

from benchmarks._common import Context, Result, dump, machine, redis_server

#: name -> (module, what it measures)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "store": ("benchmarks.bench_store", "one clock_now EVALSHA round trip, each backend"),
    "hot_path": (
        "benchmarks.bench_hot_path",
        "µs per call through a CLOSED breaker; commands per call; vs the peers",
    ),
    "contention": (
        "benchmarks.bench_contention",
        "P processes x T tasks recording on 1 vs 100 breakers; lost updates; vs the peers",
    ),
    "herd": (
        "benchmarks.bench_herd",
        "16 processes released on an elapsed OPEN breaker: probes admitted",
    ),
    "propagation": (
        "benchmarks.bench_propagation",
        "ms from a trip in one process until every other process rejects",
    ),
    "redis_down": (
        "benchmarks.bench_redis_down",
        "per-call latency and whether the breaker opens with Redis refusing or hung",
    ),
    "cache": (
        "benchmarks.bench_cache",
        "cache stampede (4 processes x 5 callers, cold key) and hit latency; vs the peers",
    ),
    "full_stack": ("benchmarks.bench_full_stack", "call_service GET vs raw httpx GET on loopback"),
    "overhead": (
        "benchmarks.bench_overhead",
        "SDK vs raw httpx over one in-process MockTransport at 1, 10 and 50 tasks",
    ),
    "scale": (
        "benchmarks.bench_scale",
        "1 / 100 / 10,000 breakers: hot path, first use, bytes in process and in Redis",
    ),
    "observability": (
        "benchmarks.bench_observability",
        "µs per call on the CLOSED path with OpenTelemetry off, on (no exporter), on (in-memory)",
    ),
    "dashboard": (
        "benchmarks.bench_dashboard",
        "ms from a breaker trip to the dashboard tile turning open in headless Chromium",
    ),
    "registry": (
        "benchmarks.bench_registry",
        "round trips per discovery, heartbeat cost, SIGKILL-to-eviction time",
    ),
    "faults": (
        "benchmarks.bench_faults",
        "READONLY and NOPERM: calls admitted, rejoin time, lost failures; loop stalls; redaction",
    ),
    "cluster": (
        "benchmarks.bench_cluster",
        "Cluster pub/sub: trip propagation p50/p99, bus messages per PUBLISH vs SPUBLISH",
    ),
    "limits": (
        "benchmarks.bench_limits",
        "fleet rate limit and bulkhead vs limits, pyrate-limiter, redis-rate-limiters",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations (whole suite in minutes)"
    )
    parser.add_argument("--json", metavar="PATH", help="write results as JSON to PATH")
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    names = args.names or list(BENCHMARKS)
    results: list[Result] = []
    started = time.time()
    with redis_server(args.redis_url) as (url, kind):
        ctx = Context(redis_url=url, quick=args.quick, server_kind=kind)
        for name in names:
            module = importlib.import_module(BENCHMARKS[name][0])
            ctx.progress(f"[{name}] running...")
            result = module.run(ctx)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            results.append(result)
            ctx.progress(f"[{name}] done")
            sys.stderr.write("\n")
            print(result.render(), end="\n\n", flush=True)
    meta: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
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
