"""Worker functions for the multi-process breaker tests (run in spawned processes)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.breaker import DistributedBreaker
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVICE = "orders"


@asynccontextmanager
async def replica(url: str, prefix: str) -> AsyncIterator[BreakerHub]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    try:
        yield hub
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()


def config(**kw: Any) -> CircuitBreakerConfig:
    base: dict[str, Any] = {"success_flush_interval": 0.0, "timeout": 30.0}
    base.update(kw)
    return CircuitBreakerConfig(**base)


def _wait(barrier: Any) -> None:
    barrier.wait(timeout=60)


async def _barrier(barrier: Any) -> None:
    await asyncio.to_thread(_wait, barrier)


async def report_failures(url: str, prefix: str, tasks: int, threshold: int, barrier: Any) -> int:
    """Acquire `tasks` permits while CLOSED, then report all of them failed at once."""
    async with replica(url, prefix) as hub:
        breaker = hub.get(SERVICE, config=config(failure_threshold=threshold))
        permits = [await breaker.acquire() for _ in range(tasks)]
        await _barrier(barrier)
        await asyncio.gather(*(p.failure() for p in permits))
        return len(permits)


async def herd(
    url: str, prefix: str, index: int, rounds: int, service_url: str, barrier: Any
) -> list[int]:
    """Each round: worker 0 trips the breaker; all wait out the cool-down and rush it."""
    cfg = config(failure_threshold=1, timeout=0.3, half_open_max_calls=1, probe_lease=5.0)
    admitted: list[int] = []
    async with replica(url, prefix) as hub, httpx.AsyncClient() as client:
        breaker = hub.get(SERVICE, config=cfg)
        await breaker.refresh()
        for _ in range(rounds):
            await _barrier(barrier)
            if index == 0:
                await breaker.control("reset")
                permit = await breaker.acquire()
                await permit.failure()
            await _barrier(barrier)
            await asyncio.sleep(0.35)  # the cool-down passes for everyone
            await _barrier(barrier)
            try:
                permit = await breaker.acquire()
            except CircuitOpenError:
                admitted.append(0)
                continue
            await client.get(f"{service_url}/probe")
            await permit.failure()  # re-open so the next round starts from OPEN
            admitted.append(1)
    return admitted


async def first_call(url: str, prefix: str) -> float:
    """Start cold and make one call; return retry_after when it is rejected."""
    async with replica(url, prefix) as hub:
        try:
            await hub.get(SERVICE, config=config()).acquire()
        except CircuitOpenError as exc:
            return exc.retry_after
        return -1.0


async def stale_success(url: str, prefix: str, role: str, barrier: Any) -> str:
    """'early' holds a CLOSED permit across a trip by 'tripper', then reports success."""
    async with replica(url, prefix) as hub:
        breaker = hub.get(SERVICE, config=config(failure_threshold=2))
        await breaker.refresh()
        permit = await breaker.acquire() if role == "early" else None
        await _barrier(barrier)  # early holds its permit
        if role == "tripper":
            for _ in range(2):
                await (await breaker.acquire()).failure()
        await _barrier(barrier)  # the breaker is open now
        if permit is not None:
            await permit.success()
        await _barrier(barrier)
        return (await breaker.refresh()).state


async def propagation(url: str, prefix: str, index: int, barrier: Any) -> float:
    """Listeners wait for the trip event; worker 0 trips. Returns ms from trip to event."""
    async with replica(url, prefix) as hub:
        breaker: DistributedBreaker = hub.get(SERVICE, config=config(failure_threshold=1))
        opened = asyncio.Event()
        hub.add_listener(lambda e: opened.set() if e.state == "open" else None)
        await breaker.acquire()
        await _barrier(barrier)
        if index == 0:
            started = time.time()
            await (await breaker.acquire()).failure()
            await _barrier(barrier)
            return started
        await _barrier(barrier)
        await asyncio.wait_for(opened.wait(), 10)
        arrived = time.time()
        try:
            await breaker.acquire()
        except CircuitOpenError:
            return arrived
        raise AssertionError("the breaker admitted a call after the trip event")


async def rate_mix(
    url: str, prefix: str, phase1: tuple[int, int], phase2: int, barrier: Any
) -> str:
    """Record phase-1 (successes, failures), sync, then phase-2 failures one by one."""
    cfg = config(failure_rate_threshold=50.0, minimum_calls=40, sliding_window=60.0)
    async with replica(url, prefix) as hub:
        breaker = hub.get(SERVICE, config=cfg)
        await breaker.refresh()
        succ, fail = phase1
        permits = [await breaker.acquire() for _ in range(succ + fail)]
        for i, p in enumerate(permits):
            await (p.success() if i < succ else p.failure())
        await _barrier(barrier)
        state_after_phase1 = (await breaker.refresh()).state
        await _barrier(barrier)
        for _ in range(phase2):
            try:
                permit = await breaker.acquire()
            except CircuitOpenError:
                break
            await permit.failure()
        return state_after_phase1
