"""Data loss (FLUSHALL, a restart without persistence) is detected, not trusted.

Owners heartbeat every ~200 s here (ttl 600 s), so an owner that is back within the
test's bound was woken by the detected loss, not by its own next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, find_server_binary, run_in_processes
from tests.faults._data_loss_workers import discovering_owner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

SVC = "orders"
LONG_TTL = 600.0  # heartbeats about every 200 s: far beyond any bound below


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (a no-hang bound)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def registered_ids(store: Store) -> set[str]:
    """The ids Redis lists for SVC right now, read by a registry with no cache of its own."""
    probe = ServiceRegistry(store, cache_max_staleness=0.0)
    return {inst.instance_id for inst in await probe.discover(SVC, fresh=True)}


async def test_flushall_keeps_last_known_and_reregisters_every_owner(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """After FLUSHALL: discovery keeps the last known list (one WARNING), and every owner
    in the process registers again once the loss is seen, long before its heartbeat."""
    reg = ServiceRegistry(store, default_ttl=LONG_TTL, cache_max_staleness=0.0)
    await reg.start()
    try:
        a = (await reg.register(SVC, host="127.0.0.1", port=9001, ttl=LONG_TTL)).instance_id
        b = (await reg.register("billing", host="127.0.0.1", port=9002, ttl=LONG_TTL)).instance_id
        assert [i.instance_id for i in await reg.discover(SVC)] == [a]
        await store.client.flushall()
        assert await registered_ids(store) == set()
        with caplog.at_level(logging.WARNING, logger="msfw_redis.registry"):
            for _ in range(20):
                assert [i.instance_id for i in await reg.discover(SVC)] == [a]
        assert reg.stats.data_loss_serves >= 1
        lost = [r for r in caplog.records if "vanished" in r.getMessage()]
        assert len(lost) == 1
        # Both owners (also "billing", whose discovery saw nothing) are back.
        await eventually(lambda: _has(store, SVC, a))
        await eventually(lambda: _has(store, "billing", b))
        assert reg.stats.reregistrations == 2
        assert [i.instance_id for i in await reg.discover(SVC)] == [a]
        assert not reg.cache.is_stale(SVC)
    finally:
        await reg.aclose()


async def _has(store: Store, service: str, instance_id: str) -> bool:
    probe = ServiceRegistry(store, cache_max_staleness=0.0)
    return instance_id in {i.instance_id for i in await probe.discover(service, fresh=True)}


async def test_other_process_caller_never_sees_an_empty_list(store: Store) -> None:
    """A caller registry (another replica's store) keeps serving the owner through the
    loss: 0 empty answers; the owner is back once its own process sees the loss."""
    assert store.url is not None
    other = Store.from_url(store.url, key_prefix=store.keys.prefix, op_timeout=2.0)
    await other.start()
    owner = ServiceRegistry(store, default_ttl=LONG_TTL, cache_max_staleness=0.0)
    caller = ServiceRegistry(other, cache_max_staleness=0.0)
    await owner.start()
    await caller.start()
    try:
        a = (await owner.register(SVC, host="127.0.0.1", port=9001, ttl=LONG_TTL)).instance_id
        assert [i.instance_id for i in await caller.discover(SVC)] == [a]
        assert [i.instance_id for i in await owner.discover(SVC)] == [a]
        await store.client.flushall()
        empty = 0
        for _ in range(50):
            if not await caller.discover(SVC):
                empty += 1
        assert empty == 0
        # The owner's process sees the loss in its own discovery and registers again at
        # once, not at its heartbeat ~200 s away.
        assert [i.instance_id for i in await owner.discover(SVC)] == [a]
        await eventually(lambda: _has(store, SVC, a))
    finally:
        await caller.aclose()
        await owner.aclose()
        await other.aclose()


needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)


@needs_binary
@pytest.mark.real_redis
async def test_restart_without_persistence_keeps_discovery_and_reregisters() -> None:
    """A real server restarted without persistence: discovery keeps the last known list,
    the owner is back once its process sees the loss."""
    binary = find_server_binary()
    assert binary is not None
    with RedisServer(binary) as server:
        store = Store.from_url(server.url, key_prefix="dl", op_timeout=2.0)
        await store.start()
        reg = ServiceRegistry(store, default_ttl=LONG_TTL, cache_max_staleness=0.0)
        await reg.start()
        try:
            a = (await reg.register(SVC, host="127.0.0.1", port=9001, ttl=LONG_TTL)).instance_id
            assert [i.instance_id for i in await reg.discover(SVC)] == [a]
            server.stop()
            server.start()
            answers = []
            for _ in range(50):
                answers.append([i.instance_id for i in await reg.discover(SVC)])
                await asyncio.sleep(0.01)
            assert answers == [[a]] * 50
            await eventually(lambda: _has(store, SVC, a), timeout=20.0)
        finally:
            await reg.aclose()
            await store.aclose()


BREAKER_CFG = CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_flush_interval=0.0)


@asynccontextmanager
async def breaker_replica(url: str, prefix: str) -> AsyncIterator[tuple[Store, BreakerHub]]:
    """One replica's store and breaker hub on a shared backend and prefix."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    try:
        yield store, hub
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()


async def test_flushall_while_open_no_existing_replica_admits(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """FLUSHALL while OPEN: the replicas' re-reads find the key gone and write OPEN back
    (one WARNING); none admits, and neither does a replica started after the write-back."""
    async with (
        breaker_replica(redis_url, key_prefix) as (store, hub_a),
        breaker_replica(redis_url, key_prefix) as (_, hub_b),
    ):
        a = hub_a.get(SVC, config=BREAKER_CFG)
        b = hub_b.get(SVC, config=BREAKER_CFG)
        for _ in range(3):
            permit = await a.acquire()
            await permit.failure()
        opened = await b.refresh()
        assert opened.state == "open"
        with pytest.raises(CircuitOpenError):
            await b.acquire()
        await store.client.flushall()
        with caplog.at_level(logging.WARNING, logger="msfw_redis.breaker"):
            # What the max_staleness re-read does in the background, done here at once.
            state_a = await a.refresh()
            state_b = await b.refresh()
        assert (state_a.state, state_b.state) == ("open", "open")
        assert state_a.generation == opened.generation == state_b.generation
        written = [r for r in caplog.records if "vanished while OPEN" in r.getMessage()]
        assert len(written) == 1
        key = store.keys.key(SVC, "breaker", "state", a.name)
        assert await store.client.pttl(key) > 0
        for breaker in (a, b):
            for _ in range(10):
                with pytest.raises(CircuitOpenError) as info:
                    await breaker.acquire()
                assert info.value.retry_after > 20.0
        async with breaker_replica(redis_url, key_prefix) as (_, hub_c):
            with pytest.raises(CircuitOpenError):
                await hub_c.get(SVC, config=BREAKER_CFG).acquire()


@pytest.mark.real_redis
async def test_flushall_under_load_from_two_processes(real_redis_url: str, key_prefix: str) -> None:
    """Two OS processes, each an owner discovering the service in a loop: FLUSHALL gives
    0 empty or failed lookups, and both owners are back long before their heartbeats."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(3)
    stop = ctx.Event()
    args = [(real_redis_url, key_prefix, SVC, port, ready, stop) for port in (9101, 9102)]
    workers = asyncio.create_task(
        asyncio.to_thread(run_in_processes, discovering_owner, args, timeout=120.0)
    )
    store = Store.from_url(real_redis_url, key_prefix=key_prefix, op_timeout=2.0)
    await store.start()
    try:
        await asyncio.to_thread(ready.wait, 60.0)
        await asyncio.sleep(0.5)  # let both discover under load first (no timing asserted)
        await store.client.flushall()
        assert await registered_ids(store) == set()
        expected = {"127.0.0.1:9101", "127.0.0.1:9102"}
        await eventually(lambda: _all_back(store, expected), timeout=30.0)
        await asyncio.sleep(0.5)  # more lookups after the return
        stop.set()
        results = await workers
    finally:
        stop.set()
        await store.aclose()
    assert [failed for _, failed, _ in results] == [0, 0]
    assert all(lookups > 10 for lookups, _, _ in results)
    assert [rereg for _, _, rereg in results] == [1, 1]


async def _all_back(store: Store, expected: set[str]) -> bool:
    return await registered_ids(store) == expected


@pytest.mark.real_redis
async def test_an_owner_that_looks_after_another_re_registered_registers_again(
    real_redis_url: str, key_prefix: str
) -> None:
    """After a FLUSHALL, the first owner to look sees the revision go backwards and
    registers again, which restarts the revision above every cached one; an owner that
    looks only then sees a forward revision without its own instance, and registers
    again too (its heartbeat is 600 s away, so nothing else would bring it back)."""
    stores = [Store.from_url(real_redis_url, key_prefix=key_prefix, op_timeout=2.0) for _ in "ab"]
    for s in stores:
        await s.start()
    regs = [ServiceRegistry(s, default_ttl=600.0, cache_max_staleness=0.0) for s in stores]
    try:
        for reg, port in zip(regs, (9101, 9102), strict=True):
            await reg.start()
            await reg.register(SVC, host="127.0.0.1", port=port, ttl=600.0)
        for reg in regs:
            assert len(await reg.discover(SVC)) == 2  # both cached the full list
        await stores[0].client.flushall()
        await regs[0].discover(SVC)  # sees the loss, wakes its owner
        await eventually(lambda: _has(stores[0], SVC, "127.0.0.1:9101"))
        assert "127.0.0.1:9102" not in await registered_ids(stores[0])
        await regs[1].discover(SVC)  # a forward revision, without its own instance
        await eventually(lambda: _has(stores[0], SVC, "127.0.0.1:9102"))
        assert regs[1].stats.reregistrations == 1
    finally:
        for reg in regs:
            await reg.aclose()
        for s in stores:
            await s.aclose()
