"""msfw-redis metrics: the fleet's shared state in the Prometheus text format."""

from __future__ import annotations

import asyncio
import io
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cli.exporter import parse_hostport, render_text, serve
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._cli.main import main
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store
from msfw_redis.testing import free_port, run_in_processes
from tests.integration import _obs_workers as w


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def _reader(store: Store) -> FleetReader:
    registry = ServiceRegistry(store, None)
    return FleetReader(
        store, BreakerHub(store, None), registry, HealthMonitor(store, registry, None)
    )


@pytest.mark.real_redis
async def test_once_reports_a_breaker_opened_by_another_process(real_redis_url: str) -> None:
    """A breaker tripped in another OS process reads open, with one trip, in --once."""
    prefix = f"x{uuid.uuid4().hex[:10]}"
    assert run_in_processes(w.breaker, [(real_redis_url, prefix, "pay", "trip")]) == ["open"]
    out = io.StringIO()
    code = await asyncio.to_thread(
        main, ["metrics", "--once", "--redis-url", real_redis_url, "--prefix", prefix], out=out
    )
    assert code == 0
    got = _samples(out.getvalue())
    labels = {("name", "pay"), ("service", "pay")}
    assert got[("msfw_circuitbreaker_state", frozenset(labels | {("state", "open")}))] == 1
    assert got[("msfw_circuitbreaker_state", frozenset(labels | {("state", "closed")}))] == 0
    assert got[("msfw_circuitbreaker_trips_total", frozenset(labels))] == 1
    assert got[("msfw_circuitbreaker_calls_total", frozenset(labels | {("kind", "failed")}))] == 1
    assert got[("msfw_circuitbreaker_generation", frozenset(labels))] >= 1
    assert got[("msfw_store_up", frozenset())] == 1


async def test_registry_and_health_series(redis_url: str) -> None:
    """Registered instances are counted by status per service."""
    store = Store.from_url(redis_url, op_timeout=5.0)
    await store.start()
    try:
        registry = ServiceRegistry(store, None)
        await registry.register("users", host="10.0.0.1", port=8000)
        await registry.register("users", host="10.0.0.2", port=8000)
        reader = FleetReader(
            store, BreakerHub(store, None), registry, HealthMonitor(store, registry, None)
        )
        got = _samples(render_text(await reader.read()))
        await registry.aclose()
    finally:
        await store.aclose()
    healthy = frozenset({("service", "users"), ("status", "healthy")})
    assert got[("msfw_registry_instances", healthy)] == 2
    assert (
        got[("msfw_registry_instances", frozenset({("service", "users"), ("status", "unhealthy")}))]
        == 0
    )


async def test_serve_answers_scrapes(redis_url: str) -> None:
    """--serve's server answers GET /metrics with the text format and 404 elsewhere."""
    store = Store.from_url(redis_url, op_timeout=5.0)
    await store.start()
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve(_reader(store), "127.0.0.1", port, started=started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
            ok = await c.get("/metrics")
            missing = await c.get("/nope")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.aclose()
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _samples(ok.text)[("msfw_store_up", frozenset())] == 1
    assert missing.status_code == 404


def test_hostport_is_validated() -> None:
    """--serve takes HOST:PORT, IPv6 in brackets, and names a bad value."""
    assert parse_hostport("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_hostport("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_hostport("9464")


def test_label_values_are_escaped() -> None:
    """A quote or newline in a name cannot break the exposition."""
    from msfw_redis._cli.fleet_view import BreakerView, FleetView

    b = BreakerView('a"b', "svc", 'x"\n', "open", 1, 0, 1.0, None, 1, 1, 0, 0)
    text = render_text(FleetView(now=0.0, store_up=True, breakers=[b]))
    got = _samples(text)
    assert (
        got[("msfw_circuitbreaker_trips_total", frozenset({("name", 'a"b'), ("service", "svc")}))]
        == 1
    )
