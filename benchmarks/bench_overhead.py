"""SDK overhead: ``call_service`` against raw httpx over the same in-process MockTransport.

Both clients send to one ``httpx.MockTransport`` (no sockets), so the difference is what
the SDK itself adds per call: policy, request building, middleware and cache steps, the
retry loop, breaker admission on the real server's CLOSED breaker (no round trip: the
mirror admits and outcomes are batched), the attempt timeout and result building. ``T``
tasks each make calls back to back; a round's figure is its wall time divided by its
calls, and the table gives the median over rounds, raw and SDK rounds alternating so
drift hits both alike. Goal (issue #12): at most 20 µs of difference at 1, 10 and 50 tasks.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from benchmarks._common import Context, Result
from msfw_redis import ServiceSDK, ServiceSDKConfig, set_default_sdk

BODY = {"id": 1, "items": [1, 2, 3]}
TASKS = (1, 10, 50)


def _origin(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=BODY)


async def _round(call: Callable[[], Awaitable[object]], tasks: int, per_task: int) -> float:
    """µs per call for ``tasks`` tasks making ``per_task`` calls each."""

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.perf_counter() - started) / (tasks * per_task) * 1e6


async def run(ctx: Context) -> Result:
    rounds = ctx.scale(30, 10)
    calls_per_round = ctx.scale(2_000, 1_000)
    result = Result(
        "overhead",
        "SDK overhead over raw httpx, same in-process MockTransport "
        f"({rounds} rounds of {calls_per_round:,} calls per level)",
        ["tasks", "raw httpx µs/call", "SDK µs/call", "difference µs", "ratio", "goal ≤ 20 µs"],
    )
    transport = httpx.MockTransport(_origin)
    http = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
    raw = httpx.AsyncClient(
        transport=transport, base_url="http://orders:8080", follow_redirects=False, trust_env=False
    )
    cfg = ServiceSDKConfig(
        redis_url=ctx.redis_url,
        key_prefix=f"ov{time.monotonic_ns()}",
        service_discovery_enabled=False,
    )
    sdk = ServiceSDK(
        config={"services": {"orders": {"host": "orders", "port": 8080}}},
        sdk_config=cfg,
        http_client=http,
    )

    async def raw_call() -> object:
        return (await raw.get("/orders/1")).json()

    async def sdk_call() -> object:
        res = await sdk.call_service("orders", "/orders/1")
        if not res.success:
            raise RuntimeError(f"call failed during the benchmark: {res.error}")
        return res.data

    try:
        for _ in range(200):  # warm the breaker mirror, the policy and both clients
            await sdk_call()
            await raw_call()
        for tasks in TASKS:
            per_task = max(1, calls_per_round // tasks)
            raw_us: list[float] = []
            sdk_us: list[float] = []
            for i in range(rounds):
                ctx.progress(f"[overhead] {tasks} tasks, round {i + 1}/{rounds}")
                raw_us.append(await _round(raw_call, tasks, per_task))
                sdk_us.append(await _round(sdk_call, tasks, per_task))
            raw_med = statistics.median(raw_us)
            sdk_med = statistics.median(sdk_us)
            diff = sdk_med - raw_med
            result.add(
                **{
                    "tasks": tasks,
                    "raw httpx µs/call": round(raw_med, 1),
                    "SDK µs/call": round(sdk_med, 1),
                    "difference µs": round(diff, 1),
                    "ratio": f"{sdk_med / raw_med:.2f}",
                    "goal ≤ 20 µs": "met" if diff <= 20 else "not met",
                }
            )
    finally:
        await sdk.close()
        await raw.aclose()
        await http.aclose()
        set_default_sdk(None)
    result.notes.append(
        "median over rounds of wall time / calls; both clients share one MockTransport; the "
        "SDK's breaker is CLOSED on the real server and its cache is off for this service"
    )
    return result
