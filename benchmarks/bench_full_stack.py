"""Full-stack overhead: ``call_service`` GET against a raw ``httpx.AsyncClient`` GET.

Both hit the same loopback service; calls alternate in blocks so drift hits both alike.
The SDK runs with its defaults (shared breaker on the real server, no cache for this
service), so the figure is what the resilience layer adds to a plain call.
"""

from __future__ import annotations

import statistics
import time

import httpx

from benchmarks._common import Context, Result, spread
from msfw_redis import ServiceSDK, ServiceSDKConfig, set_default_sdk
from msfw_redis.testing import ScriptedService, Step


async def run(ctx: Context) -> Result:
    calls = ctx.scale(5_000, 2_000)
    block = 100
    result = Result(
        "full_stack",
        f"Full stack: call_service GET vs raw httpx GET, loopback, {calls:,} sequential calls each",
        [
            "client",
            "median µs",
            "p90 µs",
            "block medians min-max µs",
            "ratio vs raw httpx",
            "block ratios min-max",
        ],
    )
    with ScriptedService() as svc:
        svc.script("/orders/1", Step(200, json={"id": 1, "items": [1, 2, 3]}))
        cfg = ServiceSDKConfig(
            redis_url=ctx.redis_url,
            key_prefix=f"fs{time.monotonic_ns()}",
            service_discovery_enabled=False,
        )
        sdk = ServiceSDK(
            config={"services": {"orders": {"host": svc.host, "port": svc.port}}}, sdk_config=cfg
        )
        raw = httpx.AsyncClient(base_url=svc.url, trust_env=False)
        sdk_times: list[float] = []
        raw_times: list[float] = []
        try:
            for _ in range(50):  # warm both connection pools and the breaker mirror
                await sdk.call_service("orders", "/orders/1")
                (await raw.get("/orders/1")).json()
            done = 0
            while done < calls:
                ctx.progress(f"[full_stack] {done:,}/{calls:,}")
                for _ in range(block):
                    t = time.perf_counter()
                    r = await raw.get("/orders/1")
                    r.json()
                    raw_times.append(time.perf_counter() - t)
                for _ in range(block):
                    t = time.perf_counter()
                    res = await sdk.call_service("orders", "/orders/1")
                    sdk_times.append(time.perf_counter() - t)
                    if not res.success:
                        raise RuntimeError(f"call failed during the benchmark: {res.error}")
                done += block
        finally:
            await raw.aclose()
            await sdk.close()
            set_default_sdk(None)

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[int(q * (len(xs) - 1))] * 1e6

    raw_med = statistics.median(raw_times) * 1e6
    sdk_med = statistics.median(sdk_times) * 1e6

    def blocks(xs: list[float]) -> list[float]:
        return [statistics.median(xs[i : i + block]) * 1e6 for i in range(0, len(xs), block)]

    raw_blocks, sdk_blocks = blocks(raw_times), blocks(sdk_times)
    block_ratios = [s / r for s, r in zip(sdk_blocks, raw_blocks, strict=True)]
    result.add(
        **{
            "client": "raw httpx.AsyncClient",
            "median µs": raw_med,
            "p90 µs": pct(raw_times, 0.9),
            "block medians min-max µs": spread(raw_blocks),
            "ratio vs raw httpx": 1.0,
            "block ratios min-max": "-",
        }
    )
    result.add(
        **{
            "client": "msfw_redis call_service",
            "median µs": sdk_med,
            "p90 µs": pct(sdk_times, 0.9),
            "block medians min-max µs": spread(sdk_blocks),
            "ratio vs raw httpx": sdk_med / raw_med,
            "block ratios min-max": spread(block_ratios, "{:.2f}"),
        }
    )
    result.notes.append(
        f"server: {ctx.server_kind}; loopback service: msfw_redis.testing.ScriptedService (stdlib threads)"
    )
    result.notes.append(
        f"calls alternate in blocks of {block}; block medians / ratios: the spread of the "
        "per-block medians and of their ratio (sdk block / the raw block before it)"
    )
    return result
