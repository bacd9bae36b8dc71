"""Workers for the Sentinel fault tests (run in spawned processes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._breaker.views import TransitionEvent
from msfw_redis._exceptions import StoreError
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

OP_TIMEOUT = 1.0
SERVICE = "orders"
#: Long enough for every process to see the trip before the cool-down ends; the probe
#: lease outlasts the probe phase, so a granted probe is never handed back meanwhile.
COOL_DOWN = 3.0
CFG = CircuitBreakerConfig(
    failure_threshold=3,
    success_threshold=1,
    timeout=COOL_DOWN,
    half_open_max_calls=1,
    probe_lease=60.0,
    success_flush_interval=0.0,
)


def _wait(barrier: Any) -> None:
    barrier.wait(timeout=120)


async def _barrier(barrier: Any) -> None:
    await asyncio.to_thread(_wait, barrier)


async def trip_listener(url: str, prefix: str, ready: Any, seconds: float) -> dict[str, Any]:
    """Wait (bounded) for the breaker to open, as another process trips it."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus, failure_policy="fail_open")
    opened = asyncio.Event()

    def on_event(event: TransitionEvent) -> None:
        if event.state == "open":
            opened.set()

    hub.add_listener(on_event)
    try:
        await (await hub.get(SERVICE, config=CFG).acquire()).success()
        ready.set()
        with_timeout = True
        try:
            await asyncio.wait_for(opened.wait(), seconds)
        except TimeoutError:
            with_timeout = False
        return {"opened": with_timeout, "messages": bus.messages}
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()


async def trip(url: str, prefix: str) -> None:
    """Trip the breaker through the shared state (its failures must reach Redis)."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    hub = BreakerHub(store, None, failure_policy="fail_open")
    try:
        breaker = hub.get(SERVICE, config=CFG)
        for _ in range(CFG.failure_threshold):
            await (await breaker.acquire()).failure()
        if breaker.running_local:
            raise AssertionError("the trip did not reach Redis")
    finally:
        await hub.aclose()
        await store.aclose()


async def through_fault(
    url: str, prefix: str, index: int, barrier: Any, switched: Any, after: float
) -> dict[str, Any]:
    """Call through a fault, then join a trip and a half-open probe race.

    Phases, each started together by ``barrier`` (the parent is a party too):
    1. acquire/success in a loop while the parent injects the fault, until it sets
       ``switched`` and ``after`` more seconds passed; failed reads of the breaker's key
       are timed, so the parent can tell when shared state was back;
    2. worker 0 trips the breaker; everyone waits (bounded) to hear it;
    3. once the cool-down has passed, everyone asks for a probe at once.
    """
    store = Store.from_url(url, key_prefix=prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus, failure_policy="fail_open")
    opened = asyncio.Event()

    def on_event(event: TransitionEvent) -> None:
        if event.state == "open":
            opened.set()

    hub.add_listener(on_event)
    out: dict[str, Any] = {"caller_errors": 0, "calls": 0, "failed_reads_at": []}
    key = store.keys.key(SERVICE, "breaker")
    try:
        breaker = hub.get(SERVICE, config=CFG)
        await (await breaker.acquire()).success()
        await _barrier(barrier)  # phase 1: the parent injects the fault now
        end: float | None = None
        while end is None or time.monotonic() < end:
            if end is None and switched.is_set():
                end = time.monotonic() + after
            out["calls"] += 1
            try:
                await (await breaker.acquire()).success()
            except Exception:
                out["caller_errors"] += 1
            try:
                await store.hgetall(key)
            except StoreError:
                out["failed_reads_at"].append(time.time())
            await asyncio.sleep(0.01)
        out["local_after_fault"] = breaker.running_local
        await _barrier(barrier)  # phase 2: the trip
        if index == 0:
            for _ in range(CFG.failure_threshold):
                await (await breaker.acquire()).failure()
            out["trip_local"] = breaker.running_local
        try:
            await asyncio.wait_for(opened.wait(), 20)
            out["heard_trip"] = True
        except TimeoutError:
            out["heard_trip"] = False
        tripped_at = time.monotonic()
        await _barrier(barrier)  # phase 3: the probe race, once the cool-down is over
        # Waiting out the breaker's own timer (a state change in time, not a hand-off).
        await asyncio.sleep(max(0.0, tripped_at + COOL_DOWN + 0.5 - time.monotonic()))
        await _barrier(barrier)
        try:
            permit = await breaker.acquire()
            out["probe"] = 1 if permit.probe else 0
            out["admitted"] = 1
        except CircuitOpenError:
            out["probe"] = 0
            out["admitted"] = 0
        await _barrier(barrier)  # every process has asked before any probe ends
        out["bus_reconnects"] = bus.reconnects
        watcher = store.sentinel_watcher
        out["switches_seen"] = watcher.switches if watcher is not None else -1
        return out
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()
