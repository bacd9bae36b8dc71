"""The breaker when Redis dies, hangs or loses its scripts."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import pytest
import redis

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, find_server_binary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from msfw_redis._config import StoreFailurePolicy

pytestmark = [
    pytest.mark.real_redis,
    pytest.mark.skipif(find_server_binary() is None, reason="needs a server binary"),
]

CFG = CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_flush_interval=0.0)


@asynccontextmanager
async def replica(
    url: str, *, op_timeout: float = 0.05, policy: StoreFailurePolicy = "fail_open"
) -> AsyncIterator[tuple[Store, BreakerHub]]:
    store = Store.from_url(url, op_timeout=op_timeout, key_prefix="faults")
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus, failure_policy=policy)
    try:
        yield store, hub
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()


async def _timed_call(hub: BreakerHub, ok: bool) -> float:
    """One guarded call; returns its duration. CircuitOpenError is a valid outcome."""
    start = time.monotonic()
    try:
        permit = await hub.get("orders", config=CFG).acquire()
    except CircuitOpenError:
        return time.monotonic() - start
    await (permit.success() if ok else permit.failure())
    return time.monotonic() - start


async def test_redis_killed_mid_run(caplog: pytest.LogCaptureFixture) -> None:
    """Calls keep working, the local breaker still opens, and state rejoins afterwards."""
    caplog.set_level(logging.INFO)
    with RedisServer() as server:
        async with replica(server.url) as (_store, hub):
            breaker = hub.get("orders", config=CFG)
            for _ in range(5):
                await _timed_call(hub, ok=True)
            server.kill()
            durations = [await _timed_call(hub, ok=True) for _ in range(20)]
            assert max(durations) < 1.0  # no call hangs (generous: op timeout is 0.05 s)
            assert breaker.state().local
            for _ in range(3):
                durations.append(await _timed_call(hub, ok=False))
            with pytest.raises(CircuitOpenError):
                await breaker.acquire()  # the local breaker opened on its own
            assert max(durations) < 1.0
            warnings = [r for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            server.start()
            deadline = time.monotonic() + 20
            while breaker.state().local and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                with suppress(CircuitOpenError):
                    await breaker.acquire()
            assert not breaker.state().local
            # Rejoined by a write carrying the local failures: the fresh shared state
            # opened on them, instead of forgetting them.
            assert breaker.state().state == "open"
            assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_redis_hanging_never_hangs_calls() -> None:
    """With every Redis client paused, calls still return within the policy."""
    with RedisServer() as server:
        async with replica(server.url) as (_, hub):
            breaker = hub.get("orders", config=CFG)
            await _timed_call(hub, ok=True)
            admin = redis.Redis.from_url(server.url)
            admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            try:
                durations = [await _timed_call(hub, ok=False) for _ in range(6)]
            finally:
                admin.close()
            assert max(durations) < 1.0
            assert breaker.state().state == "open"
            assert breaker.state().local


async def test_script_flush_mid_run() -> None:
    """After SCRIPT FLUSH the breaker keeps sharing state (scripts reload)."""
    with RedisServer() as server:
        async with replica(server.url, op_timeout=2.0) as (store, hub):
            breaker = hub.get("orders", config=CFG)
            await _timed_call(hub, ok=False)
            await store.client.script_flush()
            await _timed_call(hub, ok=False)
            await _timed_call(hub, ok=False)
            state = await breaker.refresh()
            assert state.state == "open"
            assert not breaker.state().local
            assert store.stats.script_reloads >= 1


async def test_fail_closed_rejects_while_redis_is_down() -> None:
    """store_failure_policy=fail_closed refuses calls while the shared state is unreachable."""
    with RedisServer() as server:
        async with replica(server.url, policy="fail_closed") as (_, hub):
            breaker = hub.get("orders", config=CFG)
            await _timed_call(hub, ok=False)
            server.kill()
            await _timed_call(hub, ok=False)  # this failure report finds Redis gone
            with pytest.raises(CircuitOpenError, match="fail_closed"):
                await breaker.acquire()
