"""msfw-redis dashboard: the page, the JSON view, and a real headless Chromium watching it."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cli.dashboard import run_dashboard
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store
from msfw_redis.testing import ENV_REQUIRE_REAL_REDIS, run_in_processes
from tests.integration import _obs_workers as w

CHROMIUM = "/usr/bin/chromium"


async def _dashboard(url: str, prefix: str) -> AsyncIterator[str]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    registry = ServiceRegistry(store, None)
    reader = FleetReader(
        store, BreakerHub(store, None), registry, HealthMonitor(store, registry, None)
    )
    ports: list[int] = []
    task = asyncio.create_task(run_dashboard(store, reader, "127.0.0.1", 0, started=ports.append))
    try:
        while not ports and not task.done():
            await asyncio.sleep(0.01)
        assert ports, "the dashboard did not start"
        yield f"http://127.0.0.1:{ports[0]}/"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.aclose()


def _breaker(url: str, prefix: str, action: str) -> str:
    return run_in_processes(w.breaker, [(url, prefix, "pay", action)])[0]


@pytest.mark.real_redis
async def test_page_and_json_view(real_redis_url: str) -> None:
    """/ serves the inline page (no external asset); /api/fleet lists the breaker."""
    prefix = f"x{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(_breaker, real_redis_url, prefix, "trip")
    async for base in _dashboard(real_redis_url, prefix):
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            page = await client.get("/")
            view = (await client.get("/api/fleet")).json()
    assert page.status_code == 200
    assert "EventSource" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page.text
    assert [(b["name"], b["state"], b["trips"]) for b in view["breakers"]] == [("pay", "open", 1)]


@pytest.mark.real_redis
async def test_chromium_sees_a_trip_and_a_reset(real_redis_url: str) -> None:
    """Headless Chromium: a trip in another process turns the tile open within 1 s; reset closes it."""
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        if os.environ.get(ENV_REQUIRE_REAL_REDIS, "") not in ("", "0", "false", "no"):
            pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
        pytest.skip("no chromium at /usr/bin/chromium")
    from playwright.async_api import async_playwright

    prefix = f"x{uuid.uuid4().hex[:10]}"
    assert await asyncio.to_thread(_breaker, real_redis_url, prefix, "reset") == "closed"
    async for base in _dashboard(real_redis_url, prefix):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page()
                await page.goto(base)
                await page.wait_for_selector("#live.on", timeout=10_000)
                await page.wait_for_selector(
                    '[data-breaker="pay"][data-state="closed"]', timeout=10_000
                )
                assert await asyncio.to_thread(_breaker, real_redis_url, prefix, "trip") == "open"
                # The bound: the tile follows the trip within one second (pushed, not polled).
                await page.wait_for_selector(
                    '[data-breaker="pay"][data-state="open"]', timeout=1_000
                )
                assert (
                    await asyncio.to_thread(_breaker, real_redis_url, prefix, "reset") == "closed"
                )
                await page.wait_for_selector(
                    '[data-breaker="pay"][data-state="closed"]', timeout=1_000
                )
                trips = await page.locator('[data-breaker="pay"] .stat b').nth(1).inner_text()
            finally:
                await browser.close()
    assert trips == "1"


def test_demo_with_dashboard_keeps_json_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """demo --dashboard --json: the dashboard's address goes to stderr, stdout stays JSON."""
    import io
    import json

    from msfw_redis._cli.main import main

    out = io.StringIO()
    argv = [
        "demo",
        "--seconds",
        "6",
        "--replicas",
        "1",
        "--json",
        "--dashboard",
        "--dashboard-port",
        "0",
    ]
    assert main(argv, out=out) == 0
    assert json.loads(out.getvalue())["ok"] is True
    assert "dashboard: http://127.0.0.1:" in capsys.readouterr().err
