"""Sentinel failover while two replicas use their breakers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._breaker.views import TransitionEvent
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import SentinelSetup

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

_CFG = CircuitBreakerConfig(
    failure_threshold=3, success_threshold=1, timeout=30.0, success_flush_interval=0.0
)


@asynccontextmanager
async def _replica(url: str, prefix: str) -> AsyncIterator[BreakerHub]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    try:
        yield hub
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()


async def test_sentinel_failover_costs_no_caller_errors_and_keeps_trips_flowing(
    sentinel_setup: SentinelSetup, key_prefix: str
) -> None:
    """Through SENTINEL FAILOVER no acquire fails, and a later trip reaches the other replica."""
    url = sentinel_setup.url
    async with _replica(url, key_prefix) as a, _replica(url, key_prefix) as b:
        opened = asyncio.Event()

        def on_event(event: TransitionEvent) -> None:
            if event.state == "open":
                opened.set()

        b.add_listener(on_event)
        await (await b.get("orders", config=_CFG).acquire()).success()
        old = sentinel_setup.current_primary()
        failover = asyncio.ensure_future(asyncio.to_thread(sentinel_setup.failover))
        errors = calls = 0
        while not failover.done():
            for hub in (a, b):
                calls += 1
                try:
                    permit = await hub.get("orders", config=_CFG).acquire()
                    await permit.success()
                except Exception:
                    errors += 1
            await asyncio.sleep(0.01)
        new = await failover
        assert new is not old
        # The first operations after the switch find the demoted primary and move on.
        for _ in range(20):
            await (await a.get("orders", config=_CFG).acquire()).success()
            await asyncio.sleep(0.05)
        for _ in range(_CFG.failure_threshold):
            permit = await a.get("orders", config=_CFG).acquire()
            await permit.failure()
        await asyncio.wait_for(opened.wait(), 10)
        print(f"\nsentinel failover: {errors} caller errors in {calls} acquires")
        assert errors == 0
        assert b.get("orders").state().state == "open"
