"""The store when Redis refuses, hangs, restarts or flushes its scripts."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from msfw_redis._exceptions import StoreConnectionError, StoreError, StoreTimeoutError
from msfw_redis._store.events import EventBus
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, SilentServer, find_server_binary, free_port

needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)


async def test_refused_connection_fails_fast_with_store_error() -> None:
    """A port with nothing listening gives StoreConnectionError within about the timeout."""
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", op_timeout=0.2)
    start = time.monotonic()
    with pytest.raises(StoreConnectionError):
        await store.run("clock_now", [], [])
    assert time.monotonic() - start < 2.0
    await store.aclose()


async def test_silent_server_times_out_with_store_error() -> None:
    """A server that accepts but never answers gives StoreTimeoutError, not a hang."""
    with SilentServer() as silent:
        store = Store.from_url(silent.url, op_timeout=0.2)
        start = time.monotonic()
        with pytest.raises(StoreTimeoutError):
            await store.run("clock_now", [], [])
        assert time.monotonic() - start < 2.0
        # The outage is remembered: the next call fails at once without a round trip.
        before = store.stats.fast_failures
        with pytest.raises(StoreConnectionError):
            await store.get("k")
        assert store.stats.fast_failures == before + 1
        assert not store.available
        assert store.stats.outages == 1
        await store.aclose()


async def test_one_warning_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """Many failed operations in one outage log one WARNING."""
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", op_timeout=0.1)
    for _ in range(20):
        with pytest.raises(StoreError):
            await store.get("k")
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and r.name == "msfw_redis.store"
    ]
    assert len(warnings) == 1
    await store.aclose()


@pytest.mark.real_redis
@needs_binary
async def test_restart_recovers_and_reloads_scripts(caplog: pytest.LogCaptureFixture) -> None:
    """After the server restarts (scripts gone), calls recover and scripts reload."""
    caplog.set_level(logging.INFO, logger="msfw_redis.store")
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.3)
        await store.start()
        recovered = asyncio.Event()
        store.on_recovery(recovered.set)
        server.kill()
        with pytest.raises(StoreError):
            await store.run("clock_now", [], [])
        server.start()
        # Wait out the outage window, then the call goes through with a NOSCRIPT reload.
        deadline = time.monotonic() + 15
        value = None
        while value is None and time.monotonic() < deadline:
            try:
                value = reply_int(await store.run("clock_now", [], []))
            except StoreError:
                await asyncio.sleep(0.1)
        assert value is not None
        assert recovered.is_set()
        assert store.stats.script_reloads >= 1
        assert any("recovered" in r.getMessage() for r in caplog.records)
        await store.aclose()


@pytest.mark.real_redis
@needs_binary
async def test_event_bus_resubscribes_and_resyncs_after_restart() -> None:
    """After a restart the bus reconnects, calls on_resync and delivers new messages."""
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.3)
        await store.start()
        bus = EventBus(store)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        resynced = asyncio.Event()
        channel = store.keys.channel("svc", "breaker")
        await bus.subscribe(channel, got.put_nowait, on_resync=resynced.set)
        server.kill()
        server.start()
        await asyncio.wait_for(resynced.wait(), 20)
        publisher = Store.from_url(server.url, op_timeout=0.5)
        await publisher.publish(channel, b"after")
        assert await asyncio.wait_for(got.get(), 5) == b"after"
        assert bus.reconnects >= 1
        await bus.aclose()
        await publisher.aclose()
        await store.aclose()
