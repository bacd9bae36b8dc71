"""The ASGI lifespan and health endpoint under a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from msfw_redis.contrib.asgi import HealthEndpoint, lifespan
from msfw_redis.testing import free_port

starlette_apps = pytest.importorskip("starlette.applications")
uvicorn = pytest.importorskip("uvicorn")

SVC = "asgi-users"


async def test_lifespan_registers_serves_health_and_deregisters(make_sdk: Any) -> None:
    """Registered while up, health route answers 200, deregistered after graceful shutdown."""
    app_sdk = make_sdk(service_discovery_enabled=True)
    observer = make_sdk(service_discovery_enabled=True)
    port = free_port()
    app = starlette_apps.Starlette(
        lifespan=lifespan(app_sdk, service_name=SVC, host="127.0.0.1", port=port, version="1.0")
    )
    app.add_route("/health", HealthEndpoint(app_sdk))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.02)
        [instance] = await observer.discover_services(SVC)
        assert (instance.host, instance.port, instance.version) == ("127.0.0.1", port, "1.0")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/health")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await serving
    assert app_sdk.closed
    listing = await observer._registry.list_service(SVC)
    assert list(listing.instances or ()) == []


async def test_health_endpoint_answers_503_when_the_check_fails(make_sdk: Any) -> None:
    """HealthEndpoint answers 503 when the application's own check says False."""
    sdk = make_sdk()
    await sdk.start()

    async def check() -> bool:
        return False

    endpoint = HealthEndpoint(sdk, check=check)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    await endpoint({"type": "http", "method": "GET"}, receive, send)
    assert sent[0]["status"] == 503
    assert b"unavailable" in sent[1]["body"]
