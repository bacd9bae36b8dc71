"""contrib.otel: spans per call and attempt, traceparent propagation, the duration histogram."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from msfw_redis.contrib.otel import instrument
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


def _providers() -> tuple[
    InMemorySpanExporter, TracerProvider, InMemoryMetricReader, MeterProvider
]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return exporter, tracer_provider, reader, MeterProvider(metric_readers=[reader])


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_two_retries_give_one_parent_and_three_attempt_spans(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """503, 503, 200: a parent span, three attempt spans, resend counts 1 and 2, traceparent sent."""
    http_service.script("/orders", Step(503), Step(503), Step(200, json=[]))
    sdk = make_sdk(services_for(http_service, "orders"))
    exporter, tracer_provider, reader, meter_provider = _providers()
    instrument(sdk, tracer_provider=tracer_provider, meter_provider=meter_provider)
    result = await sdk.call_service("orders", "/orders", retry_attempts=3)
    assert (result.success, result.attempts) == (True, 3)

    spans = exporter.get_finished_spans()
    parents = [s for s in spans if s.parent is None]
    assert len(parents) == 1
    parent = parents[0]
    attempts = sorted(
        (s for s in spans if s.parent is not None), key=lambda s: s.attributes["msfw.attempt"]
    )
    assert len(attempts) == 3
    assert all(s.parent.span_id == parent.context.span_id for s in attempts)
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [503, 503, 200]
    assert [s.attributes.get("error.type") for s in attempts] == ["503", "503", None]
    assert attempts[0].status.status_code is StatusCode.ERROR
    first = attempts[0].attributes
    assert first["http.request.method"] == "GET"
    assert first["server.address"] == http_service.host
    assert first["server.port"] == http_service.port
    assert first["url.full"] == f"{http_service.url}/orders"
    assert first["msfw.breaker.state"] == "closed"
    assert parent.attributes["http.response.status_code"] == 200
    assert parent.attributes["msfw.attempts"] == 3
    assert parent.attributes["msfw.service"] == "orders"

    sent = [r.headers.get("traceparent", "")[:-3] for r in http_service.requests("/orders")]
    expected = [f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}" for s in attempts]
    assert sent == expected  # (the trailing flags byte may carry the random-trace-id bit)

    durations = _points(reader, "http.client.request.duration")
    assert [p.count for p in durations] == [1]
    assert durations[0].attributes["http.request.method"] == "GET"
    assert durations[0].attributes["http.response.status_code"] == 200
    assert durations[0].attributes["server.address"] == http_service.host
    assert list(durations[0].explicit_bounds)[:3] == [0.005, 0.01, 0.025]
    retries = {p.attributes["kind"]: p.value for p in _points(reader, "msfw.retry.calls")}
    assert retries == {"successful_with_retry": 1}
    states = {
        p.attributes["state"]: p.value
        for p in _points(reader, "msfw.circuitbreaker.state")
        if p.attributes["name"] == "orders"
    }
    assert states["closed"] == 1 and states["open"] == 0


async def test_cache_hit_is_on_the_span_and_uninstrument_stops(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A cache hit is marked msfw.cache=hit with no attempt span; after uninstrument no spans."""
    http_service.script("/data", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "cat", cache_enabled=True))
    exporter, tracer_provider, _reader, meter_provider = _providers()
    handle = instrument(sdk, tracer_provider=tracer_provider, meter_provider=meter_provider)
    await sdk.call_service("cat", "/data")
    assert (await sdk.call_service("cat", "/data")).from_cache
    parents = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert [p.attributes.get("msfw.cache") for p in parents] == ["miss", "hit"]
    assert len([s for s in exporter.get_finished_spans() if s.parent is not None]) == 1
    handle.uninstrument()
    exporter.clear()
    await sdk.call_service("cat", "/data")
    assert exporter.get_finished_spans() == ()


async def test_gauges_mirror_slow_call_rate_instances_and_health(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A slow call (1.5 s over a 1 s threshold), a registered instance and a probe round
    show in the msfw.circuitbreaker.slow_call_rate, msfw.registry.instances and
    msfw.health.status gauges."""
    http_service.script("/health", Step(200))
    http_service.script("/slow", Step(200, json=1, delay=1.5))
    sdk = make_sdk(
        services_for(http_service, "inv"),
        service_discovery_enabled=True,
        health_check_interval=60.0,
        monitor_registered_services=False,
        circuit_breaker={"slow_call_threshold": 1.0},
    )
    _exporter, _tracer_provider, reader, meter_provider = _providers()
    instrument(sdk, meter_provider=meter_provider)
    await sdk.register_external_service(
        "inv", host=http_service.host, port=http_service.port, health_check_path="/health"
    )
    probe = await sdk.components.health.probe_round("inv")
    assert probe is not None and probe.healthy
    assert (await sdk.call_service("inv", "/slow")).success
    slow = _points(reader, "msfw.circuitbreaker.slow_call_rate")
    assert [(p.attributes["service"], p.value) for p in slow] == [("inv", 1.0)]
    instances = {
        p.attributes["status"]: p.value
        for p in _points(reader, "msfw.registry.instances")
        if p.attributes["service"] == "inv"
    }
    assert instances == {"healthy": 1, "recovering": 0, "unhealthy": 0, "suspect": 0}
    health = [
        (p.attributes["service"], p.value)
        for p in _points(reader, "msfw.health.status")
        if p.attributes["service"] == "inv"  # other services' fleet events may be seen
    ]
    assert health == [("inv", 1)]
