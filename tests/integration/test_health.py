"""HealthMonitor on each backend against real loopback services."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, ScriptedService, Step, find_server_binary, free_port

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.topologies

SVC = "orders"


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, timeout: float = 15.0) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (a no-hang bound)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


class Clock:
    """A settable server clock (ms) for now_ms injection."""

    def __init__(self, start: int = 5_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


class Replica:
    """One replica: its own store, event bus, registry and monitor on a shared backend."""

    def __init__(self, store: Store, **monitor_kwargs: Any) -> None:
        self.store = store
        self.bus = EventBus(store)
        self.registry = ServiceRegistry(store, self.bus)
        self.monitor = HealthMonitor(store, self.registry, self.bus, **monitor_kwargs)
        self.events: list[tuple[str, bool]] = []
        self.monitor.on_change(self._record)

    async def _record(self, service: str, healthy: bool) -> None:
        self.events.append((service, healthy))

    async def start(self) -> None:
        await self.registry.start()
        await self.monitor.start()

    async def close(self) -> None:
        await self.monitor.aclose()
        await self.registry.aclose()
        await self.bus.aclose()


async def chosen_port(registry: ServiceRegistry) -> int:
    """The port of the instance get_instance picks (fails when it picks none)."""
    chosen = await registry.get_instance(SVC)
    assert chosen is not None
    return chosen.port


async def open_store(like: Store) -> Store:
    assert like.url is not None
    other = Store.from_url(like.url, key_prefix=like.keys.prefix, op_timeout=2.0)
    await other.start()
    return other


async def test_every_replica_fires_once_per_change_and_one_probes_per_round(
    store: Store, http_service: ScriptedService
) -> None:
    """Two replicas: each callback sees [down, up] exactly once; each round probed once."""
    http_service.script("/health", Step(200), Step(200), *[Step(500)] * 6, Step(200))
    settings = {"interval": 0.25, "timeout": 1.0, "failure_threshold": 2, "success_threshold": 2}
    other = await open_store(store)
    replicas = [Replica(store, **settings), Replica(other, **settings)]
    try:
        for replica in replicas:
            await replica.start()
        await replicas[0].registry.register(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        for replica in replicas:
            replica.monitor.enroll(SVC)
        await eventually(lambda: all(len(r.events) >= 2 for r in replicas))
        # A few more rounds: a duplicate delivery would show up here.
        target = sum(len(r.monitor.won_rounds) for r in replicas) + 3
        await eventually(lambda: sum(len(r.monitor.won_rounds) for r in replicas) >= target)
    finally:
        # Stop every monitor before any registry deregisters its instances: a round that
        # found the service with no instance left would rightly report it unhealthy.
        for replica in replicas:
            await replica.monitor.aclose()
        for replica in replicas:
            await replica.close()
        await other.aclose()
    for replica in replicas:
        assert replica.events == [(SVC, False), (SVC, True)]
    rounds = [n for r in replicas for _, n in r.monitor.won_rounds]
    assert len(rounds) == len(set(rounds)), "a round was probed twice"
    assert http_service.hits("/health") == len(rounds)


async def test_tcp_probe_marks_a_closed_port_unhealthy(store: Store) -> None:
    """An instance without a health path is probed by TCP connect; refused -> unhealthy."""
    clock = Clock()
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry, now_ms=clock, failure_threshold=2, timeout=1.0)
    await monitor.start()
    try:
        await registry.register_external(SVC, host="127.0.0.1", port=free_port())
        first = await monitor.probe_round(SVC)
        assert first is not None
        assert first.results[0][1] is False
        assert first.transitions == ()
        clock.now += 60_000
        second = await monitor.probe_round(SVC)
        assert second is not None
        assert second.transitions == ((first.results[0][0], "unknown", "unhealthy"),)
        (inst,) = await registry.discover(SVC, fresh=True)
        assert inst.status == "unhealthy"
        assert await registry.get_instance(SVC) is None
    finally:
        await monitor.aclose()


async def test_tcp_probe_passes_on_an_open_port(
    store: Store, http_service: ScriptedService
) -> None:
    """A listening port passes the TCP probe; the service is healthy."""
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry)
    await monitor.start()
    try:
        await registry.register_external(SVC, host=http_service.host, port=http_service.port)
        assert await monitor.check(SVC) is True
        assert http_service.hits() == 0  # TCP only: no HTTP request
    finally:
        await monitor.aclose()


async def test_unhealthy_instance_is_skipped_by_discovery(
    store: Store, http_service: ScriptedService
) -> None:
    """After a failing instance turns unhealthy, get_instance only returns the healthy one."""
    http_service.script("/health", Step(200))
    clock = Clock()
    registry = ServiceRegistry(store, cache_max_staleness=60.0)
    monitor = HealthMonitor(store, registry, now_ms=clock, failure_threshold=1)
    await monitor.start()
    try:
        await registry.register_external(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        dead_port = free_port()
        await registry.register_external(
            SVC, host="127.0.0.1", port=dead_port, health_check_path="/health"
        )
        assert {await chosen_port(registry) for _ in range(4)} == {
            http_service.port,
            dead_port,
        }
        probe = await monitor.probe_round(SVC)
        assert probe is not None
        # Both were unknown: the live one becomes healthy, the dead one unhealthy.
        assert sorted(t[1:] for t in probe.transitions) == [
            ("unknown", "healthy"),
            ("unknown", "unhealthy"),
        ]
        assert {await chosen_port(registry) for _ in range(6)} == {http_service.port}
    finally:
        await monitor.aclose()


async def test_check_probes_a_never_probed_service(
    store: Store, http_service: ScriptedService
) -> None:
    """check() on a service nobody probed yet runs a round and answers from it."""
    http_service.script("/health", Step(200))
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry)
    await monitor.start()
    try:
        await registry.register_external(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        assert await monitor.check(SVC) is True
        assert http_service.hits("/health") == 1
        # Fresh state answers without probing again.
        assert await monitor.check(SVC) is True
        assert http_service.hits("/health") == 1
        state = await monitor.state(SVC)
        assert state is not None
        assert (state.healthy, state.members, state.healthy_members) == (True, 1, 1)
        assert await monitor.check("nobody") is False
        assert await monitor.status("nobody") == "unhealthy"  # probed: no instance at all
    finally:
        await monitor.aclose()


async def test_all_health_covers_enrolled_and_registered(
    store: Store, http_service: ScriptedService
) -> None:
    """get_all_service_health's core: enrolled services plus the registry index."""
    http_service.script("/ok", Step(200))
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry, interval=60.0)
    await registry.register_external(
        "good", host=http_service.host, port=http_service.port, health_check_path="/ok"
    )
    await registry.register_external("bad", host="127.0.0.1", port=free_port())
    monitor.enroll("empty")
    await monitor.start()
    try:
        health = await monitor.all_health()
        states = await monitor.all_states()
    finally:
        await monitor.aclose()
    # "bad" has failed one probe of the three needed and never passed one: unknown, so
    # all_health() omits it (it is never reported healthy).
    assert health == {"empty": False, "good": True}
    assert states == {"bad": "unknown", "empty": "unhealthy", "good": "healthy"}


async def test_callback_errors_are_logged_and_do_not_stop_others(
    store: Store, http_service: ScriptedService, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing callback is logged; the next callback still runs."""
    http_service.script("/health", Step(200), Step(500))
    clock = Clock()
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry, now_ms=clock, failure_threshold=1)
    seen: list[bool] = []

    def broken(service: str, healthy: bool) -> None:
        raise RuntimeError("boom")

    monitor.on_change(broken)
    monitor.on_change(lambda service, healthy: seen.append(healthy))
    await monitor.start()
    try:
        await registry.register_external(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        await monitor.probe_round(SVC)  # the quiet baseline: healthy
        clock.now += 60_000
        await monitor.probe_round(SVC)  # 500 with threshold 1: unhealthy
        await eventually(lambda: seen == [False])
        assert "boom" in caplog.text
        assert monitor.stats.callback_errors == 1
    finally:
        await monitor.aclose()


async def test_resync_fires_a_change_missed_while_disconnected(store: Store) -> None:
    """A flip stored in Redis but never delivered fires once when the bus resyncs."""
    replica = Replica(store)
    await replica.start()
    key = replica.registry.scripts.keys(SVC).health_service
    try:
        await store.client.hset(key, mapping={"healthy": 1, "seq": 10, "probed_ms": 1})
        replica.monitor.enroll(SVC, interval=3600)
        await replica.monitor._read_states([SVC])  # the start-up read: a quiet baseline
        assert replica.events == []
        await store.client.hset(key, mapping={"healthy": 0, "seq": 11})
        replica.monitor._resync()
        await eventually(lambda: replica.events == [(SVC, False)])
        replica.monitor._resync()
        await asyncio.sleep(0.1)
        assert replica.events == [(SVC, False)]
    finally:
        await replica.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": 0}, "interval"),
        ({"timeout": -1.0}, "timeout"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 0}, "success_threshold"),
    ],
)
async def test_enroll_validates_settings(store: Store, kwargs: dict[str, Any], field: str) -> None:
    """Bad per-service settings are ConfigurationErrors naming the field."""
    monitor = HealthMonitor(store, ServiceRegistry(store))
    with pytest.raises(ConfigurationError) as info:
        monitor.enroll(SVC, **kwargs)
    assert info.value.field == field


needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)


@pytest.mark.real_redis
@needs_binary
async def test_check_answers_from_memory_while_redis_is_down(
    http_service: ScriptedService, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis gone, check() answers the last state seen, else probes directly."""
    http_service.script("/health", Step(200))
    caplog.set_level(logging.INFO, logger="msfw_redis.health")
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.3)
        await store.start()
        replica = Replica(store, interval=3600)
        await replica.start()
        await replica.registry.register_external(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        await replica.registry.register_external(
            "other", host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        replica.monitor.enroll(SVC)
        assert await replica.monitor.check(SVC) is True
        await replica.registry.discover("other")
        await replica.monitor._read_states([SVC])
        server.kill()
        assert await replica.monitor.check(SVC) is True
        # Never probed through Redis: a direct probe of the cached instance answers.
        hits = http_service.hits("/health")
        assert await replica.monitor.check("other") is True
        assert http_service.hits("/health") == hits + 1
        await replica.close()
        await store.aclose()


async def test_static_service_is_probed_at_its_settings_address(
    store: Store, http_service: ScriptedService
) -> None:
    """A service known only by its settings address (no registered instance) is probed
    there: running -> True, dead -> False, both listed by all_health()."""
    http_service.script("/health", Step(200))
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(
        store,
        registry,
        static_addresses={"live": http_service.url, "dead": f"http://127.0.0.1:{free_port()}"},
    )
    monitor.enroll("live")
    await monitor.start()
    try:
        assert await monitor.check("live") is True
        assert http_service.hits("/health") == 1
        assert await monitor.check("dead") is False
        assert await monitor.all_health() == {"dead": False, "live": True}
        http_service.script("/health", Step(503))
        assert await monitor.status("live") == "unhealthy"
    finally:
        await monitor.aclose()


async def test_registered_instances_win_over_the_settings_address(
    store: Store, http_service: ScriptedService
) -> None:
    """Once the registry knows instances of a configured service, their probes decide,
    not the settings address (which is dead here)."""
    http_service.script("/health", Step(200))
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(
        store, registry, static_addresses={SVC: f"http://127.0.0.1:{free_port()}"}
    )
    await monitor.start()
    try:
        await registry.register_external(
            SVC, host=http_service.host, port=http_service.port, health_check_path="/health"
        )
        assert await monitor.check(SVC) is True
        assert http_service.hits("/health") == 1
    finally:
        await monitor.aclose()


async def test_status_waits_for_the_round_its_own_loop_holds_the_lease_of(store: Store) -> None:
    """A status() that loses the lease to this process's own loop, before that loop has
    started its round, waits for the round instead of answering "unknown"."""
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry, interval=60.0)
    held, release = asyncio.Event(), asyncio.Event()
    real_acquire = monitor.round_scripts.acquire
    calls = 0

    async def slow_first_reply(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        reply = await real_acquire(*args, **kwargs)
        if calls == 1:  # the loop's: it holds the lease, its round not yet started
            held.set()
            await release.wait()
        return reply

    monitor.round_scripts.acquire = slow_first_reply  # type: ignore[method-assign]
    monitor.enroll("empty")
    await monitor.start()
    try:
        async with asyncio.timeout(30):
            await held.wait()
        status = asyncio.create_task(monitor.status("empty"))
        async with asyncio.timeout(30):
            while calls < 2:  # status() asked for the lease too (and lost it)
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        release.set()
        async with asyncio.timeout(30):
            assert await status == "unhealthy"
    finally:
        release.set()
        await monitor.aclose()
