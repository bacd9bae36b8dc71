"""The scripted loopback HTTP service used by the integration tests."""

from __future__ import annotations

import httpx
import pytest

from msfw_redis.testing import ScriptedService, Step


async def test_status_sequence_counts_and_headers(http_service: ScriptedService) -> None:
    """Steps are served in order, the last repeats, hits and headers are recorded."""
    http_service.script("/orders", Step(500), Step(200, json={"ok": True}))
    async with httpx.AsyncClient(base_url=http_service.url) as client:
        first = await client.get("/orders", headers={"X-Trace": "abc"})
        second = await client.get("/orders?x=1")
        third = await client.get("/orders")
    assert [first.status_code, second.status_code, third.status_code] == [500, 200, 200]
    assert second.json() == {"ok": True}
    assert http_service.hits("/orders") == 3
    reqs = http_service.requests("/orders")
    assert reqs[0].headers["x-trace"] == "abc"
    assert reqs[1].query == [("x", "1")]


async def test_unscripted_path_is_404(http_service: ScriptedService) -> None:
    """A path without a script answers 404 naming it."""
    async with httpx.AsyncClient(base_url=http_service.url) as client:
        resp = await client.get("/nope")
    assert resp.status_code == 404
    assert resp.json()["path"] == "/nope"


async def test_connection_reset(http_service: ScriptedService) -> None:
    """A reset step drops the connection; the client sees a transport error."""
    http_service.script("/reset", Step(reset=True))
    async with httpx.AsyncClient(base_url=http_service.url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/reset")


async def test_delay_causes_client_timeout(http_service: ScriptedService) -> None:
    """A delayed step makes a short client timeout fire."""
    http_service.script("/slow", Step(delay=1.0))
    async with httpx.AsyncClient(base_url=http_service.url, timeout=0.1) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get("/slow")
