"""Observability cost: the CLOSED hot path with OpenTelemetry off and on (issue #17).

``call_service`` over an in-process ``httpx.MockTransport`` (no sockets) through a CLOSED
breaker on the real server, in four configurations run in alternating rounds so drift
hits all alike: no instrumentation (the pipeline has no observer); ``instrument()``
with SDK providers that export nothing (no span processor, no metric reader); with an
``InMemorySpanExporter`` and an ``InMemoryMetricReader``; and after ``uninstrument()``
(back to no observer: the zero-cost-when-off row). The figure is the median over rounds
of wall time / calls.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from benchmarks._common import Context, Result
from msfw_redis import ServiceSDK, ServiceSDKConfig, set_default_sdk


def _origin(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": 1})


async def run(ctx: Context) -> Result:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from msfw_redis.contrib.otel import instrument

    rounds = ctx.scale(30, 10)
    calls = ctx.scale(2_000, 500)
    result = Result(
        "observability",
        f"µs per call_service, CLOSED path, OTel off and on ({rounds} rounds of {calls:,} calls)",
        ["configuration", "µs/call", "added µs/call"],
    )
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(_origin), follow_redirects=False, trust_env=False
    )
    sdk = ServiceSDK(
        config={"services": {"orders": {"host": "orders", "port": 8080}}},
        sdk_config=ServiceSDKConfig(
            redis_url=ctx.redis_url,
            key_prefix=f"ob{time.monotonic_ns()}",
            service_discovery_enabled=False,
        ),
        http_client=http,
    )
    exporter = InMemorySpanExporter()
    exporting = TracerProvider()
    exporting.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    configs = {
        "off (no observer)": None,
        "on, no exporter": (TracerProvider(), MeterProvider()),
        "on, in-memory exporter": (exporting, MeterProvider(metric_readers=[reader])),
        "off again (after uninstrument)": None,
    }

    async def one_round() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            res = await sdk.call_service("orders", "/orders/1")
            if not res.success:
                raise RuntimeError(f"call failed during the benchmark: {res.error}")
        return (time.perf_counter() - started) / calls * 1e6

    figures: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for _ in range(200):
            await sdk.call_service("orders", "/orders/1")
        for i in range(rounds):
            ctx.progress(f"[observability] round {i + 1}/{rounds}")
            for name, providers in configs.items():
                handle = None
                if providers is not None:
                    handle = instrument(
                        sdk, tracer_provider=providers[0], meter_provider=providers[1]
                    )
                figures[name].append(await one_round())
                if handle is not None:
                    handle.uninstrument()
                exporter.clear()
                await asyncio.sleep(0)
    finally:
        await sdk.close()
        await http.aclose()
        set_default_sdk(None)
    base = statistics.median(figures["off (no observer)"])
    for name, values in figures.items():
        med = statistics.median(values)
        result.add(
            **{
                "configuration": name,
                "µs/call": round(med, 1),
                "added µs/call": round(med - base, 1),
            }
        )
    result.notes.append(
        "one task, calls back to back; MockTransport origin; the breaker is CLOSED on the real "
        "server; 'added' is against the no-observer row"
    )
    return result
