"""One ``clock_now`` EVALSHA round trip, sequentially, on fakeredis and a real server."""

from __future__ import annotations

import time

from benchmarks._common import Context, Result, stats
from msfw_redis._store.store import Store


async def _median_us(url: str, n: int) -> float:
    store = Store.from_url(url, op_timeout=5.0)
    await store.start()
    samples = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            await store.run("clock_now", [], [])
            samples.append(time.perf_counter() - t)
    finally:
        await store.aclose()
    return stats(samples)["median"] * 1e6


async def run(ctx: Context) -> Result:
    n = ctx.scale(10_000, 2_000)
    result = Result(
        "store",
        f"clock_now EVALSHA round trip (median of {n:,} sequential calls)",
        ["backend", "median µs"],
    )
    for label, url in (
        ("fakeredis (memory://)", "memory://bench-store"),
        (ctx.server_kind, ctx.redis_url),
    ):
        ctx.progress(f"[store] {label}")
        result.add(**{"backend": label, "median µs": await _median_us(url, n)})
    return result
