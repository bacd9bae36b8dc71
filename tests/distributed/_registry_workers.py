"""Worker functions for the registry and health multi-process tests (module level, so that
spawned processes can import them)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier, Event


def registry_replica(
    url: str, prefix: str, service: str, port: int, ttl: float, out: Queue[Any], stop: Event
) -> None:
    """Register one instance, heartbeat until ``stop`` is set, then close gracefully.

    Puts ``("ready", pid, instance_id)`` once registered and ``("closed", pid,
    instance_id)`` after ``aclose()`` deregistered it. A SIGKILL ends it without either.
    """
    asyncio.run(_registry_replica(url, prefix, service, port, ttl, out, stop))


async def _registry_replica(
    url: str, prefix: str, service: str, port: int, ttl: float, out: Queue[Any], stop: Event
) -> None:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
    await store.start()
    registry = ServiceRegistry(store)
    await registry.start()
    instance = await registry.register(service, host="127.0.0.1", port=port, ttl=ttl)
    out.put(("ready", os.getpid(), instance.instance_id))
    while not stop.is_set():
        await asyncio.sleep(0.02)
    try:
        # aclose() is bounded by op timeouts; if it ever is not, say so instead of hanging.
        async with asyncio.timeout(20):
            await registry.aclose()
            await store.aclose()
    except TimeoutError:
        out.put(("close-hung", os.getpid(), instance.instance_id))
        return
    out.put(("closed", os.getpid(), instance.instance_id))


async def health_replica(
    url: str,
    prefix: str,
    service: str,
    interval: float,
    barrier: Barrier,
    expected_events: int,
    extra_rounds: int,
) -> dict[str, Any]:
    """Run a monitor until ``expected_events`` callbacks fired, then ``extra_rounds`` more.

    Returns the callback log and the round numbers this replica probed.
    """
    store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
    await store.start()
    bus = EventBus(store)
    registry = ServiceRegistry(store, bus)
    monitor = HealthMonitor(
        store, registry, bus, interval=interval, timeout=1.0, failure_threshold=2
    )
    events: list[tuple[str, bool]] = []

    async def record(name: str, healthy: bool) -> None:
        events.append((name, healthy))

    monitor.on_change(record)
    await registry.start()
    await monitor.start()  # subscribed before anyone probes
    await asyncio.to_thread(barrier.wait, 60)
    monitor.enroll(service)
    probe_key = registry.scripts.keys(service).health_probe

    async def current_round() -> int:
        return int((await store.hgetall(probe_key)).get(b"round", b"0"))

    deadline = time.monotonic() + 60
    while len(events) < expected_events and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    # Keep going for a few more fleet-wide rounds, so that a duplicate would show.
    target = await current_round() + extra_rounds
    while await current_round() < target and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await monitor.aclose()
    await registry.aclose()
    await bus.aclose()
    await store.aclose()
    return {
        "events": events,
        "rounds": [number for _, number in monitor.won_rounds],
        "pid": os.getpid(),
    }


def sharded_listener(
    url: str, prefix: str, service: str, barrier: Barrier
) -> tuple[int, list[Any]]:
    """Resolve ``service`` (subscribing to its registry channel) and run its first health
    round (subscribing to its health channel; a quiet baseline with no instance), then
    wait for the other process's registration and health flip to arrive by pub/sub.

    Returns (instances discovered afterwards, on_change events). The discovery cache
    never expires by age here, so only the revision event can show the new instance.
    """
    return asyncio.run(_sharded_listener(url, prefix, service, barrier))


async def _sharded_listener(
    url: str, prefix: str, service: str, barrier: Barrier
) -> tuple[int, list[Any]]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
    await store.start()
    bus = EventBus(store)
    registry = ServiceRegistry(store, bus, cache_max_staleness=3600.0)
    monitor = HealthMonitor(store, registry, bus)
    changes: list[Any] = []
    changed = asyncio.Event()

    def record(name: str, healthy: bool) -> None:
        changes.append((name, healthy))
        changed.set()

    monitor.on_change(record)
    try:
        await registry.start()
        await monitor.start()
        assert await registry.discover(service) == []
        baseline = await monitor.probe_round(service)
        assert baseline is not None and baseline.code == 1 and not baseline.healthy
        await asyncio.to_thread(barrier.wait, 60)
        async with asyncio.timeout(30):
            await changed.wait()
        # The registration's revision event came before the flip on this connection.
        return len(await registry.discover(service)), changes
    finally:
        await monitor.aclose()
        await registry.aclose()
        await bus.aclose()
        await store.aclose()


def sharded_registrar(url: str, prefix: str, service: str, barrier: Barrier) -> bool:
    """After the barrier, register an instance on an open port and run one health round
    (with a clock an hour ahead, so it is due): the service flips to healthy."""
    return asyncio.run(_sharded_registrar(url, prefix, service, barrier))


async def _sharded_registrar(url: str, prefix: str, service: str, barrier: Barrier) -> bool:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=1.0)
    await store.start()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    registry = ServiceRegistry(store)
    monitor = HealthMonitor(store, registry, now_ms=lambda: store.clock.now_ms() + 3_600_000)
    try:
        await registry.start()
        await monitor.start()
        await asyncio.to_thread(barrier.wait, 60)
        await registry.register(service, host="127.0.0.1", port=port, start_heartbeats=False)
        probe = await monitor.probe_round(service)
        return probe is not None and probe.code == 1 and probe.changed and probe.healthy
    finally:
        await monitor.aclose()
        await registry.aclose(deregister=False)
        server.close()
        await server.wait_closed()
        await store.aclose()
