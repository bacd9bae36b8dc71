"""Issue #12's lean breaker: first use costs at most 2 Redis round trips before the call
proceeds (and the fleet index already lists it), and a breaker costs at most 1 KB.

Round trips are counted, never timed: every store operation and bus subscription made
while a first ``acquire()`` runs is recorded with how many others were in flight when
it started. Operations started while another is in flight share its round trip (they
were sent concurrently); each start with nothing in flight opens a new one.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import TYPE_CHECKING, Any

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

import contextlib

import pytest

SERVICE = "footprint-svc"


class RoundTrips:
    """Counts sequential round trips through a store's scripts and a bus's subscribe."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.in_flight = 0
        self.trips = 0
        self.ops: list[str] = []
        self.counting = False
        self._wrap(store, "run", lambda a: f"run {a[0]}")
        self._wrap(store, "zmembers", lambda a: "zmembers")
        self._wrap(store, "hgetall", lambda a: "hgetall")
        self._wrap(bus, "subscribe", lambda a: f"subscribe {a[0]}")

    def _wrap(self, obj: Any, attr: str, label: Callable[[tuple[Any, ...]], str]) -> None:
        inner = getattr(obj, attr)

        async def counted(*args: Any, **kw: Any) -> Any:
            if not self.counting:
                return await inner(*args, **kw)
            if self.in_flight == 0:
                self.trips += 1
            self.ops.append(label(args))
            self.in_flight += 1
            try:
                return await inner(*args, **kw)
            finally:
                self.in_flight -= 1

        setattr(obj, attr, counted)

    @contextlib.contextmanager
    def window(self) -> Any:
        self.trips, self.ops, self.counting = 0, [], True
        try:
            yield self
        finally:
            self.counting = False


@pytest.fixture
async def hub(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Store, EventBus, BreakerHub]]:
    store = Store.from_url(redis_url, key_prefix=key_prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    bus.start()
    h = BreakerHub(store, bus)
    try:
        yield store, bus, h
    finally:
        await h.aclose()
        await bus.aclose()
        await store.aclose()


async def test_first_use_of_a_new_service_is_at_most_two_round_trips(
    hub: tuple[Store, EventBus, BreakerHub],
) -> None:
    """First call to a new service: subscription + services index, then read + index."""
    store, bus, h = hub
    counter = RoundTrips(store, bus)
    with counter.window():
        permit = await h.get(SERVICE).acquire()
    await permit.success()
    assert counter.trips <= 2, counter.ops
    assert counter.ops, "the first use made no Redis call at all"
    # Listed at once: an operator's listing right after the first call sees it, with no
    # background work drained first.
    keys = store.keys
    assert SERVICE in await store.zmembers(keys.global_key("breaker", "services"))
    assert "*" in await store.zmembers(keys.key(SERVICE, "breaker", "index"))


async def test_first_use_of_a_new_endpoint_is_one_round_trip(
    hub: tuple[Store, EventBus, BreakerHub],
) -> None:
    """A new endpoint of a service already in use: the read carries its index entry."""
    store, bus, h = hub
    await (await h.get(SERVICE, "/warm").acquire()).success()
    await h.drain()
    counter = RoundTrips(store, bus)
    with counter.window():
        permit = await h.get(SERVICE, "/orders/{id}").acquire()
    await permit.success()
    assert counter.trips == 1, counter.ops
    assert counter.ops == ["run breaker_read"]
    assert "/orders/{id}" in await store.zmembers(store.keys.key(SERVICE, "breaker", "index"))
    # The CLI's listing goes through fleet(): it sees both endpoints at once.
    labels = {s.endpoint for s in await h.fleet(SERVICE)}
    assert labels == {"/warm", "/orders/{id}"}


async def test_a_used_closed_breaker_is_at_most_1_kb(
    hub: tuple[Store, EventBus, BreakerHub],
) -> None:
    """tracemalloc growth over making and using 2,000 breakers, per breaker, <= 1 KB.

    fakeredis keeps the server's data in this process, so allocations made in its own
    frames are left out there; against a real server nothing is left out.
    """
    _, _, h = hub
    config = CircuitBreakerConfig()
    n = 2_000
    warm = h.get(SERVICE, "/warm", config)
    await (await warm.acquire()).success()
    await h.drain()
    names = [f"/e/{i}" for i in range(n)]  # made before measuring: the caller's strings
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for name in names:
            await (await h.get(SERVICE, name, config).acquire()).success()
        await h.drain()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    server_side = [tracemalloc.Filter(False, "*/fakeredis/*")]
    diff = after.filter_traces(server_side).compare_to(before.filter_traces(server_side), "lineno")
    per_breaker = sum(stat.size_diff for stat in diff) / n
    assert len(h.breakers()) == n + 1
    assert all(b.state().state == "closed" for b in h.breakers())
    assert per_breaker <= 1024, f"{per_breaker:.0f} bytes per breaker"
