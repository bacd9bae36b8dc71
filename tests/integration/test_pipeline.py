"""The composed pipeline: ResilientTransport in a plain httpx client, and call observers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from msfw_redis import CircuitBreakerConfig, CircuitOpenError, ResilientTransport
from msfw_redis._pipeline.observe import AttemptRecord, CallRecord
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


class Recorder:
    """An observer writing down every hook it sees."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def call_started(self, call: CallRecord) -> None:
        self.events.append(("call_started", call.attempts))

    def attempt_started(self, call: CallRecord, attempt: AttemptRecord) -> None:
        attempt.request.headers["x-trace"] = f"t{attempt.number}"
        self.events.append(("attempt_started", (attempt.number, call.breaker_state)))

    def attempt_ended(self, call: CallRecord, attempt: AttemptRecord) -> None:
        status = attempt.response.status_code if attempt.response is not None else None
        self.events.append(("attempt_ended", (attempt.number, status)))

    def call_ended(self, call: CallRecord) -> None:
        self.events.append(("call_ended", (call.attempts, call.status_code, call.cache)))


class Broken:
    """An observer whose every hook raises."""

    def call_started(self, call: CallRecord) -> None:
        raise RuntimeError("observer bug")

    attempt_started = attempt_ended = call_ended = call_started  # type: ignore[assignment]


async def test_retries_happen_inside_the_transport(make_sdk: Any) -> None:
    """Two 503s then a 200: one client.get, three sends, the 200 returned."""
    answers = iter([503, 503, 200])
    sends: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        sends.append(request.url.path)
        return httpx.Response(next(answers), json={"n": len(sends)})

    sdk = make_sdk({"services": {"order-service": {"host": "orders", "port": 80}}})
    transport = ResilientTransport(
        sdk=sdk, service="order-service", transport=httpx.MockTransport(origin)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
        response = await client.get("/orders")
    assert (response.status_code, response.json()) == (200, {"n": 3})
    assert sends == ["/orders"] * 3


async def test_transport_shares_the_sdk_breaker(make_sdk: Any) -> None:
    """Once the transport's failures open the breaker, the SDK refuses the same service."""
    cfg = CircuitBreakerConfig(failure_threshold=2, timeout=60.0)
    sdk = make_sdk(
        {"services": {"order-service": {"host": "orders", "port": 80}}},
        circuit_breaker=cfg,
        default_retry_attempts=0,
    )
    transport = ResilientTransport(
        sdk=sdk,
        service="order-service",
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
        for _ in range(2):
            assert (await client.get("/x")).status_code == 500
        with pytest.raises(CircuitOpenError):
            await client.get("/x")
    result = await sdk.call_service("order-service", "/x")
    assert isinstance(result.exception, CircuitOpenError)


async def test_transport_without_service_scopes_by_host_and_port(make_sdk: Any) -> None:
    """With service=None the breaker is named after the request's host:port."""
    sdk = make_sdk()
    transport = ResilientTransport(
        sdk=sdk, transport=httpx.MockTransport(lambda request: httpx.Response(200))
    )
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://inventory:8081/a")).status_code == 200
    names = {breaker.service for breaker in sdk.pipeline.hub.breakers()}
    assert names == {"inventory:8081"}


async def test_observers_see_every_hook_in_order(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """call_started, then per attempt started/ended after breaker admission, then call_ended."""
    http_service.script("/r", Step(503), Step(200, json={"ok": True}))
    sdk = make_sdk(services_for(http_service, "svc"))
    recorder = Recorder()
    sdk.add_observer(recorder)
    result = await sdk.call_service("svc", "/r")
    assert result.success and result.attempts == 2
    assert recorder.events == [
        ("call_started", 0),
        ("attempt_started", (1, "closed")),
        ("attempt_ended", (1, 503)),
        ("attempt_started", (2, "closed")),
        ("attempt_ended", (2, 200)),
        ("call_ended", (2, 200, None)),
    ]
    assert [r.headers.get("x-trace") for r in http_service.requests("/r")] == ["t1", "t2"]
    sdk.remove_observer(recorder)
    await sdk.call_service("svc", "/r")
    assert len(recorder.events) == 6


async def test_observer_sees_the_cache_result(make_sdk: Any, http_service: ScriptedService) -> None:
    """The call record says miss, then hit, for a cached GET."""
    http_service.script("/c", Step(200, json={"v": 1}))
    sdk = make_sdk(services_for(http_service, "svc", cache_enabled=True))
    recorder = Recorder()
    sdk.add_observer(recorder)
    await sdk.call_service("svc", "/c")
    await sdk.call_service("svc", "/c")
    ends = [value for name, value in recorder.events if name == "call_ended"]
    assert ends == [(1, 200, "miss"), (0, 200, "hit")]


async def test_a_raising_observer_is_logged_and_ignored(
    make_sdk: Any, http_service: ScriptedService, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises in every hook changes nothing about the call."""
    http_service.script("/ok", Step(200, json={"ok": True}))
    sdk = make_sdk(services_for(http_service, "svc"))
    sdk.add_observer(Broken())
    result = await sdk.call_service("svc", "/ok")
    assert (result.success, result.data) == (True, {"ok": True})
    assert sum("observer" in r.getMessage() for r in caplog.records) == 4
