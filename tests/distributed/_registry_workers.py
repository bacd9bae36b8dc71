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
