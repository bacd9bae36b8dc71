"""Dashboard latency: ms from a breaker trip until the tile in headless Chromium shows it.

The dashboard (``msfw-redis dashboard``'s server) runs on the benchmark's real server;
Debian's chromium, driven by Playwright, has the page open. Each round resets the
breaker, waits for the tile to read closed, notes the wall clock, trips the breaker
(one failure at threshold 1, from this process's own store connection), and a
MutationObserver in the page notes the wall clock when the tile's ``data-state``
becomes ``open``. Both clocks are this machine's. Median of 10 rounds (5 with --quick).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from benchmarks._common import Context, Result
from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cli.dashboard import run_dashboard
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store

CHROMIUM = "/usr/bin/chromium"
_WATCH = """() => new Promise(resolve => {
  const seen = () => document.querySelector('[data-breaker="pay"][data-state="open"]');
  if (seen()) return resolve(Date.now());
  const obs = new MutationObserver(() => { if (seen()) { obs.disconnect(); resolve(Date.now()); } });
  obs.observe(document.body, {subtree: true, childList: true, attributes: true});
})"""


async def run(ctx: Context) -> Result:
    from playwright.async_api import async_playwright

    rounds = ctx.scale(10, 5)
    prefix = f"db{time.monotonic_ns()}"
    result = Result(
        "dashboard",
        f"ms from a breaker trip to the dashboard tile turning open (headless Chromium, {rounds} rounds)",
        ["median ms", "min ms", "max ms", "rounds"],
    )
    store = Store.from_url(ctx.redis_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    registry = ServiceRegistry(store, None)
    reader = FleetReader(
        store, BreakerHub(store, None), registry, HealthMonitor(store, registry, None)
    )
    hub = BreakerHub(store, None)
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=30.0, success_flush_interval=0.0)
    breaker = hub.get("pay", config=cfg)
    await breaker.control("reset")
    await breaker.index()
    ports: list[int] = []
    server = asyncio.create_task(run_dashboard(store, reader, "127.0.0.1", 0, started=ports.append))
    latencies: list[float] = []
    try:
        while not ports:
            await asyncio.sleep(0.01)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{ports[0]}/")
            await page.wait_for_selector("#live.on", timeout=10_000)
            for i in range(rounds):
                ctx.progress(f"[dashboard] round {i + 1}/{rounds}")
                await breaker.control("reset")
                await page.wait_for_selector(
                    '[data-breaker="pay"][data-state="closed"]', timeout=15_000
                )
                watch = asyncio.ensure_future(page.evaluate(_WATCH))
                await asyncio.sleep(0.05)  # the observer is installed
                tripped = time.time() * 1000
                await (await breaker.acquire()).failure()
                seen = await asyncio.wait_for(watch, 15)
                latencies.append(float(seen) - tripped)
            await browser.close()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await hub.aclose()
        await store.aclose()
    result.add(
        **{
            "median ms": round(statistics.median(latencies), 1),
            "min ms": round(min(latencies), 1),
            "max ms": round(max(latencies), 1),
            "rounds": rounds,
        }
    )
    result.notes.append(
        "pushed over Server-Sent Events after the breaker's pub/sub message; includes the "
        "server's re-read of the fleet and the page's re-render"
    )
    return result
