"""ServiceRegistry on each backend: registration, fencing, self-preservation, caching."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest

from msfw_redis._exceptions import ConfigurationError, StoreError
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, find_server_binary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.topologies

SVC = "orders"


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (a no-hang bound)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def second_store(store: Store) -> Store:
    """Another replica's store on the same backend and prefix."""
    assert store.url is not None
    other = Store.from_url(store.url, key_prefix=store.keys.prefix, op_timeout=2.0)
    await other.start()
    return other


@pytest.fixture
async def registry(store: Store) -> AsyncIterator[ServiceRegistry]:
    reg = ServiceRegistry(store, default_ttl=5.0)
    await reg.start()
    try:
        yield reg
    finally:
        await reg.aclose()


class Clock:
    """A settable server clock (ms) for now_ms injection."""

    def __init__(self, start: int = 1_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


async def test_metadata_and_fields_round_trip(registry: ServiceRegistry) -> None:
    """Everything an instance advertises comes back from discovery unchanged."""
    metadata: dict[str, Any] = {
        "region": "us-west-2",
        "team": "platform",
        "nested": {"list": [1, 2.5, None, True], "ünïcode": "✓"},
    }
    await registry.register(
        SVC,
        host="10.1.2.3",
        port=8443,
        protocol="https",
        version="2.0",
        health_check_path="/health",
        metadata=metadata,
        weight=3,
        start_heartbeats=False,
    )
    (inst,) = await registry.discover(SVC)
    assert inst.metadata == metadata
    assert (inst.name, inst.host, inst.port, inst.protocol) == (SVC, "10.1.2.3", 8443, "https")
    assert (inst.version, inst.weight, inst.health_check_path) == ("2.0", 3, "/health")
    assert inst.instance_id == "10.1.2.3:8443"
    assert inst.url == "https://10.1.2.3:8443"
    assert inst.status == "healthy"
    assert inst.external is False
    assert inst.last_heartbeat is not None
    assert abs(inst.last_heartbeat - time.time()) < 60


async def test_version_filter(registry: ServiceRegistry) -> None:
    """discover(version=...) keeps exact matches only."""
    await registry.register(SVC, host="h1", port=1, version="1.0", start_heartbeats=False)
    await registry.register(SVC, host="h2", port=2, version="2.0", start_heartbeats=False)
    assert [i.host for i in await registry.discover(SVC, version="2.0")] == ["h2"]
    assert len(await registry.discover(SVC)) == 2


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0", "", "  "])
async def test_wildcard_and_empty_hosts_are_refused(registry: ServiceRegistry, host: str) -> None:
    """A wildcard bind address is not callable: refused with an error naming 'host'."""
    with pytest.raises(ConfigurationError) as info:
        await registry.register(SVC, host=host, port=8000)
    assert info.value.field == "host"
    with pytest.raises(ConfigurationError):
        await registry.register_external(SVC, host=host, port=8000)
    assert await registry.discover(SVC) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"protocol": "ftp"}, "protocol"),
        ({"ttl": 0.01}, "ttl"),
        ({"metadata": {"x": object()}}, "metadata"),
        ({"instance_id": "has space"}, "instance_id"),
        ({"health_check_path": "health"}, "health_check_path"),
        ({"weight": -1}, "weight"),
    ],
)
async def test_invalid_registrations_name_the_field(
    registry: ServiceRegistry, kwargs: dict[str, Any], field: str
) -> None:
    """Each invalid argument is a ConfigurationError whose field is that argument."""
    args: dict[str, Any] = {"host": "10.0.0.1", "port": 8000, **kwargs}
    with pytest.raises(ConfigurationError) as info:
        await registry.register(SVC, **args)
    assert info.value.field == field


async def test_late_heartbeat_after_deregistration_does_not_revive(store: Store) -> None:
    """An operator deregisters a live instance; its own late heartbeats are refused."""
    owner = ServiceRegistry(store, default_ttl=5.0)
    operator = ServiceRegistry(store)
    await owner.start()
    await owner.register(SVC, host="10.0.0.1", port=8000, start_heartbeats=False)
    assert await operator.deregister(SVC, "10.0.0.1:8000") == 1
    late = await owner.heartbeat(SVC, "10.0.0.1:8000")
    assert late.code == -1
    assert await operator.discover(SVC, fresh=True) == []
    await owner.aclose()


async def test_fenced_heartbeat_task_stops(store: Store) -> None:
    """The background heartbeat of a deregistered instance is refused and stops by itself."""
    owner = ServiceRegistry(store)
    operator = ServiceRegistry(store)
    await owner.start()
    await owner.register(SVC, host="10.0.0.1", port=8000, ttl=0.3)
    await operator.deregister(SVC, "10.0.0.1:8000")

    async def stopped() -> bool:
        return owner.owned() == []

    await eventually(stopped)
    assert owner.stats.fenced == 1
    assert await operator.discover(SVC, fresh=True) == []
    await owner.aclose()


async def test_heartbeats_keep_an_instance_alive_past_its_ttl(store: Store) -> None:
    """With heartbeats at about ttl/3, an instance outlives several ttls."""
    reg = ServiceRegistry(store)
    await reg.start()
    await reg.register(SVC, host="10.0.0.1", port=8000, ttl=0.3)

    async def beaten() -> bool:
        return reg.stats.heartbeats >= 6

    await eventually(beaten)
    assert [i.instance_id for i in await reg.discover(SVC, fresh=True)] == ["10.0.0.1:8000"]
    assert reg.stats.evictions == 0
    await reg.aclose()


async def test_lost_registration_is_restored_by_the_heartbeat(store: Store) -> None:
    """When Redis loses the entry (flush, failover), the next heartbeat registers again."""
    reg = ServiceRegistry(store)
    await reg.start()
    await reg.register(SVC, host="10.0.0.1", port=8000, ttl=0.3)
    keys = reg.scripts.keys(SVC)
    await store.client.delete(*keys.registry)

    async def back() -> bool:
        return len(await reg.discover(SVC, fresh=True)) == 1

    await eventually(back)
    assert reg.stats.reregistrations >= 1
    await reg.aclose()


async def test_close_deregisters_owned_but_not_external(store: Store) -> None:
    """aclose() removes this process's instances at once; external ones stay."""
    reg = ServiceRegistry(store)
    await reg.start()
    await reg.register(SVC, host="10.0.0.1", port=8000, ttl=30)
    ext = await reg.register_external(SVC, host="ext.example.com", port=443, protocol="https")
    assert ext.external
    await reg.aclose()
    observer = ServiceRegistry(store)
    remaining = await observer.discover(SVC, fresh=True)
    assert [i.instance_id for i in remaining] == ["ext.example.com:443"]
    assert remaining[0].external
    assert remaining[0].last_heartbeat is None


async def test_close_with_a_heartbeat_stuck_in_flight_is_bounded(store: Store) -> None:
    """aclose() with a heartbeat that never returns (Redis stalled mid-beat) cancels it
    after the stop bound, still deregisters the instance, and returns."""
    assert store.url is not None
    fast = Store.from_url(store.url, key_prefix=store.keys.prefix, op_timeout=0.1)
    await fast.start()
    reg = ServiceRegistry(fast)
    await reg.start()
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        try:
            await asyncio.Event().wait()  # never set: the reply never comes
        finally:
            cancelled.set()

    try:
        await reg.register(SVC, host="10.0.0.1", port=8000, ttl=30)
        reg.scripts.heartbeat = stuck  # type: ignore[method-assign]
        reg.heartbeats.wake_all()
        await asyncio.wait_for(entered.wait(), 30)  # no-hang bounds, not timings
        await asyncio.wait_for(reg.aclose(), 30)
        await asyncio.wait_for(cancelled.wait(), 30)
        assert await ServiceRegistry(store).discover(SVC, fresh=True) == []
    finally:
        await fast.aclose()


async def test_external_instances_do_not_expire(store: Store) -> None:
    """An external instance is still listed long after any heartbeat ttl."""
    clock = Clock()
    reg = ServiceRegistry(store, now_ms=clock)
    await reg.register_external(SVC, host="ext.example.com", port=80)
    clock.now += 365 * 86_400_000
    assert len(await reg.discover(SVC, fresh=True)) == 1
    assert reg.owned() == []


async def test_self_preservation_scenario_and_release(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """3 of 4 miss their deadline together: kept as suspect, visible; released on return."""
    clock = Clock()
    reg = ServiceRegistry(store, now_ms=clock, self_preservation_hold=60.0)
    for port in (1, 2, 3, 4):
        await reg.register(SVC, host="10.0.0.1", port=port, ttl=1.0, start_heartbeats=False)
    clock.now += 900
    await reg.heartbeat(SVC, "10.0.0.1:4")
    clock.now += 200  # 1, 2, 3 are now 100 ms past their deadline; 4 is not
    with caplog.at_level(logging.WARNING, logger="msfw_redis.registry"):
        listed = await reg.discover(SVC, fresh=True)
    statuses = {i.port: i.status for i in listed}
    assert statuses == {1: "suspect", 2: "suspect", 3: "suspect", 4: "healthy"}
    assert "self-preservation" in caplog.text
    assert reg.stats.suspects_marked == 3
    # Suspects are a fallback only: the healthy instance is preferred.
    for _ in range(5):
        chosen = await reg.get_instance(SVC)
        assert chosen is not None
        assert chosen.port == 4
    # Release: two come back; the one still silent is now a minority and is evicted.
    await reg.heartbeat(SVC, "10.0.0.1:1")
    await reg.heartbeat(SVC, "10.0.0.1:2")
    listed = await reg.discover(SVC, fresh=True)
    assert {i.port: i.status for i in listed} == {1: "healthy", 2: "healthy", 4: "healthy"}
    assert reg.stats.evictions == 1


async def test_self_preservation_has_a_hold_limit(store: Store) -> None:
    """If the silent majority never returns, it is evicted after the hold."""
    clock = Clock()
    reg = ServiceRegistry(store, now_ms=clock, self_preservation_hold=5.0)
    for port in (1, 2, 3):
        await reg.register(SVC, host="10.0.0.1", port=port, ttl=1.0, start_heartbeats=False)
    clock.now += 1_500
    assert {i.status for i in await reg.discover(SVC, fresh=True)} == {"suspect"}
    clock.now += 5_000
    assert await reg.discover(SVC, fresh=True) == []


async def test_discovery_is_cached_and_invalidated_by_events(store: Store) -> None:
    """Lookups cost no round trip while cached; a registration elsewhere invalidates at once."""
    bus = EventBus(store)
    reader = ServiceRegistry(store, bus, cache_max_staleness=60.0)
    await reader.start()
    other_store = await second_store(store)
    writer = ServiceRegistry(other_store)
    try:
        await writer.register(SVC, host="10.0.0.1", port=1, start_heartbeats=False)
        assert len(await reader.discover(SVC)) == 1
        for _ in range(20):
            await reader.discover(SVC)
        assert reader.stats.list_calls == 1
        assert reader.stats.cache_hits == 20
        await writer.register(SVC, host="10.0.0.1", port=2, start_heartbeats=False)

        async def sees_both() -> bool:
            return len(await reader.discover(SVC)) == 2

        await eventually(sees_both)
        assert reader.stats.list_calls == 2
    finally:
        await writer.aclose()
        await reader.aclose()
        await bus.aclose()
        await other_store.aclose()


async def test_stale_cache_is_revalidated_with_a_short_reply(store: Store) -> None:
    """Past max staleness an unchanged service costs one call that returns no instances."""
    reg = ServiceRegistry(store, cache_max_staleness=0.0)
    await reg.register(SVC, host="10.0.0.1", port=1, start_heartbeats=False)
    first = await reg.discover(SVC)
    second = await reg.discover(SVC)
    assert first == second
    assert reg.stats.list_calls == 2
    assert reg.stats.list_unchanged == 1


async def test_concurrent_lookups_share_one_round_trip(store: Store) -> None:
    """Fifty concurrent cold lookups of one service make one registry_list call."""
    reg = ServiceRegistry(store)
    await reg.register(SVC, host="10.0.0.1", port=1, start_heartbeats=False)
    results = await asyncio.gather(*(reg.discover(SVC) for _ in range(50)))
    assert all(len(r) == 1 for r in results)
    assert reg.stats.list_calls == 1


async def test_get_instance_round_robins(registry: ServiceRegistry) -> None:
    """get_instance spreads 30 lookups over 3 instances as 10/10/10."""
    for port in (1, 2, 3):
        await registry.register(SVC, host="10.0.0.1", port=port, start_heartbeats=False)
    counts: dict[int, int] = {}
    for _ in range(30):
        chosen = await registry.get_instance(SVC)
        assert chosen is not None
        counts[chosen.port] = counts.get(chosen.port, 0) + 1
    assert counts == {1: 10, 2: 10, 3: 10}
    assert await registry.get_instance("nobody") is None


async def test_services_index(registry: ServiceRegistry) -> None:
    """Registered services appear in the global index."""
    await registry.register("b-svc", host="10.0.0.1", port=1, start_heartbeats=False)
    await registry.register_external("a-svc", host="ext", port=2)
    assert await registry.services() == ["a-svc", "b-svc"]


needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)


@pytest.mark.real_redis
@needs_binary
async def test_outage_serves_stale_then_heartbeats_restore(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis dies: discovery serves the last known instances (stale, one WARNING);
    Redis returns empty: the heartbeat registers the instance again."""
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.3)
        await store.start()
        reg = ServiceRegistry(store, cache_max_staleness=0.0)
        await reg.start()
        await reg.register(SVC, host="10.0.0.1", port=1, ttl=0.6)
        assert len(await reg.discover(SVC)) == 1
        server.kill()
        with caplog.at_level(logging.WARNING, logger="msfw_redis.registry"):
            for _ in range(3):
                stale = await reg.discover(SVC)
                assert [i.port for i in stale] == [1]
        assert reg.is_stale(SVC)
        assert reg.stats.stale_serves == 3
        assert caplog.text.count("serving the last known") == 1
        with pytest.raises(StoreError):
            await reg.discover("never-seen")
        server.start()

        async def restored() -> bool:
            try:
                found = await reg.discover(SVC, fresh=True)
            except StoreError:
                return False
            return len(found) == 1 and not reg.is_stale(SVC)

        await eventually(restored, timeout=20)
        await reg.aclose()
        await store.aclose()
