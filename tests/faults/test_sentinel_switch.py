"""Following ``+switch-master``: the store drops the old primary, the bus moves at once."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from typing import Any

import pytest
import redis

from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import SentinelSetup, run_in_processes
from tests.faults._sentinel_workers import OP_TIMEOUT, through_fault, trip, trip_listener

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


def _numsub(port: int, channel: str) -> int:
    conn = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)
    try:
        reply: Any = conn.pubsub_numsub(channel)
        return int(reply[0][1])
    finally:
        conn.close()


async def _until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_switch_master_moves_the_subscriber_without_any_command(
    sentinel_setup: SentinelSetup, key_prefix: str
) -> None:
    """After SENTINEL FAILOVER the bus subscribes on the new primary, though this store
    sent no command (so no READONLY could have moved it), and another process's trip
    made after the switch reaches it."""
    store = Store.from_url(sentinel_setup.url, key_prefix=key_prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    bus = EventBus(store)
    channel = f"{key_prefix}:probe-channel"
    got: list[bytes] = []
    try:
        await bus.subscribe(channel, got.append)
        watcher = store.sentinel_watcher
        assert watcher is not None
        assert await watcher.wait_subscribed(30)
        old = sentinel_setup.current_primary()
        assert await asyncio.to_thread(_numsub, old.port, channel) == 1
        new = await asyncio.to_thread(sentinel_setup.failover)
        assert new is not old
        assert await _until(lambda: _numsub(new.port, channel) == 1, 30)
        assert watcher.switches == 1
        assert bus.reconnects == 1
        assert await asyncio.to_thread(_numsub, old.port, channel) == 0
    finally:
        await bus.aclose()
        await store.aclose()


async def test_trip_after_the_switch_reaches_another_process(
    sentinel_setup: SentinelSetup, key_prefix: str
) -> None:
    """A listener process stays idle through a failover; a trip made afterwards by
    another process reaches it."""
    url = sentinel_setup.url
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    result: list[Any] = []

    def listen() -> None:
        result.extend(
            run_in_processes(trip_listener, [(url, key_prefix, ready, 60.0)], timeout=120)
        )

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 60)
        await asyncio.to_thread(sentinel_setup.failover)
        await trip(url, key_prefix)
    finally:
        await asyncio.to_thread(thread.join)
    assert result[0]["opened"] is True


@pytest.fixture
def own_sentinel() -> Any:
    """A setup of this test's own: it kills servers."""
    with SentinelSetup() as setup:
        yield setup


@pytest.mark.parametrize("fault", ["failover", "sigkill"])
def test_three_processes_through_a_sentinel_fault(
    own_sentinel: SentinelSetup, key_prefix: str, fault: str
) -> None:
    """3 processes under load through SENTINEL FAILOVER or SIGKILL of the primary:
    0 caller errors, every process hears a trip made after the switch, and the half-open
    limit holds across processes afterwards (exactly 1 probe)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    switched = ctx.Event()
    times: dict[str, float] = {}

    def inject() -> None:
        barrier.wait(timeout=120)
        times["fault"] = time.time()
        if fault == "sigkill":
            own_sentinel.kill_primary()
        else:
            own_sentinel.failover()
        times["switched"] = time.time()
        switched.set()
        for _ in range(4):  # the worker phases
            barrier.wait(timeout=120)

    thread = threading.Thread(target=inject)
    thread.start()
    try:
        results = run_in_processes(
            through_fault,
            [(own_sentinel.url, key_prefix, i, barrier, switched, 3.0) for i in range(3)],
            timeout=240,
        )
    finally:
        thread.join()
    failed = [t for r in results for t in r["failed_reads_at"]]
    figures = {
        "fault": fault,
        "failover_s": round(times["switched"] - times["fault"], 2),
        "state_back_after_fault_s": round(max(failed) - times["fault"], 2) if failed else 0.0,
        "caller_errors": sum(r["caller_errors"] for r in results),
        "calls": sum(r["calls"] for r in results),
        "probes": sum(r["probe"] for r in results),
        "admitted": sum(r["admitted"] for r in results),
        "switches_seen": [r["switches_seen"] for r in results],
    }
    print(f"\nsentinel {figures}")
    assert figures["caller_errors"] == 0
    assert results[0]["trip_local"] is False
    assert all(r["heard_trip"] for r in results)
    assert figures["admitted"] == 1
    assert figures["probes"] == 1
    assert all(s >= 1 for s in figures["switches_seen"])


def test_the_watcher_follows_the_store_across_event_loops(
    sentinel_setup: SentinelSetup, key_prefix: str
) -> None:
    """A store used in two event loops runs a watcher in each, and stops each at the
    loop's end (release_connections) or at close."""
    store = Store.from_url(sentinel_setup.url, key_prefix=key_prefix, op_timeout=OP_TIMEOUT)
    seen: list[bool] = []

    async def first() -> None:
        await store.start()
        watcher = store.sentinel_watcher
        assert watcher is not None
        seen.append(await watcher.wait_subscribed(30))
        await store.release_connections()
        seen.append(watcher.running)

    async def second() -> None:
        await store.start()
        watcher = store.sentinel_watcher
        assert watcher is not None
        seen.append(await watcher.wait_subscribed(30))
        await store.aclose()
        seen.append(watcher.running)

    asyncio.run(first())
    store.rebind()
    asyncio.run(second())
    assert seen == [True, False, True, False]


async def test_the_watcher_survives_its_sentinel_dying(
    own_sentinel: SentinelSetup, key_prefix: str
) -> None:
    """SIGKILL of the sentinel the watcher listens on: it moves to another sentinel, and
    a later failover still moves the bus's subscriber."""
    store = Store.from_url(own_sentinel.url, key_prefix=key_prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    bus = EventBus(store)
    channel = f"{key_prefix}:probe-channel"
    try:
        await bus.subscribe(channel, lambda _: None)
        watcher = store.sentinel_watcher
        assert watcher is not None
        assert await watcher.wait_subscribed(30)
        listening = watcher.listening_on
        victim = next(s for s in own_sentinel.sentinels if ("127.0.0.1", s.port) == listening)
        victim.kill()

        def moved() -> bool:
            return watcher.listening_on not in (None, listening)

        assert await _until(moved, 30)
        new = await asyncio.to_thread(own_sentinel.failover)
        assert await _until(lambda: _numsub(new.port, channel) == 1, 30)
        assert watcher.switches == 1
        assert watcher.reconnects >= 1
    finally:
        await bus.aclose()
        await store.aclose()
