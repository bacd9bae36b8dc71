"""The distributed breaker component: two replicas (two stores, buses, hubs) in one process."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._breaker.views import TransitionEvent
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.topologies

Replica = tuple[Store, EventBus, BreakerHub]


@pytest.fixture
def replicas(redis_url: str, key_prefix: str) -> Callable[[], object]:
    """A factory of replicas sharing one store URL and key prefix."""

    @asynccontextmanager
    async def make() -> AsyncIterator[Replica]:
        store = Store.from_url(redis_url, key_prefix=key_prefix, op_timeout=2.0)
        await store.start()
        bus = EventBus(store)
        hub = BreakerHub(store, bus)
        try:
            yield store, bus, hub
        finally:
            await hub.aclose()
            await bus.aclose()
            await store.aclose()

    return make


def _cfg(**kw: object) -> CircuitBreakerConfig:
    base: dict[str, object] = {
        "failure_threshold": 3,
        "success_threshold": 1,
        "timeout": 30.0,
        "success_flush_interval": 0.0,
    }
    base.update(kw)
    return CircuitBreakerConfig(**base)


def _count_scripts(store: Store) -> list[str]:
    """Record the name of every script the store runs from now on."""
    calls: list[str] = []
    original = store.run

    async def counting(name: str, keys: object, args: object) -> object:
        calls.append(name)
        return await original(name, keys, args)  # type: ignore[arg-type]

    store.run = counting  # type: ignore[method-assign,assignment]
    return calls


async def test_closed_admission_needs_no_round_trip(replicas) -> None:  # type: ignore[no-untyped-def]
    """Once loaded, a CLOSED breaker admits and batches successes without calling Redis."""
    cfg = _cfg(success_flush_interval=10.0)
    async with replicas() as (store, _, a):
        breaker = a.get("orders", config=cfg)
        await breaker.acquire()
        await a.drain()  # the first use also updates the fleet index in the background
        calls = _count_scripts(store)
        for _ in range(100):
            await (await breaker.acquire()).success()
        assert calls == []
        await breaker.flush()
        assert calls == ["breaker_record"]


async def _trip(hub: BreakerHub, service: str, cfg: CircuitBreakerConfig) -> None:
    b = hub.get(service, config=cfg)
    for _ in range(cfg.failure_threshold):
        permit = await b.acquire()
        await permit.failure()


async def test_trip_reaches_the_other_replica_by_pubsub(replicas) -> None:  # type: ignore[no-untyped-def]
    """A trip in replica A makes replica B reject without B calling Redis."""
    cfg = _cfg()
    async with replicas() as (_, _, a), replicas() as (store_b, _, b):
        opened = asyncio.Event()

        def on_event(event: TransitionEvent) -> None:
            if event.state == "open":
                opened.set()

        b.add_listener(on_event)
        await b.get("orders", config=cfg).acquire()  # B loads and subscribes
        await _trip(a, "orders", cfg)
        await asyncio.wait_for(opened.wait(), 5)
        calls = _count_scripts(store_b)
        with pytest.raises(CircuitOpenError) as info:
            await b.get("orders", config=cfg).acquire()
        assert 25.0 < info.value.retry_after <= 30.0
        assert calls == []
        assert b.get("orders").state().state == "open"


async def test_cold_replica_rejects_its_first_call(replicas) -> None:  # type: ignore[no-untyped-def]
    """A replica that starts while the shared breaker is OPEN rejects at once."""
    cfg = _cfg()
    async with replicas() as (_, _, a):
        await _trip(a, "orders", cfg)
        async with replicas() as (_, _, fresh):
            with pytest.raises(CircuitOpenError) as info:
                await fresh.get("orders", config=cfg).acquire()
            assert info.value.retry_after > 25.0


async def test_stale_success_does_not_close(replicas) -> None:  # type: ignore[no-untyped-def]
    """A success admitted before the trip, reported after it, changes nothing."""
    cfg = _cfg()
    async with replicas() as (_, _, a), replicas() as (_, _, b):
        early = await b.get("orders", config=cfg).acquire()
        await _trip(a, "orders", cfg)
        await early.success()
        state = await a.get("orders").refresh()
        assert state.state == "open"


async def test_half_open_admits_one_probe_across_replicas(replicas) -> None:  # type: ignore[no-untyped-def]
    """After the cool-down, concurrent callers in two replicas get one probe in total."""
    cfg = _cfg(timeout=0.2, half_open_max_calls=1)
    async with replicas() as (_, _, a), replicas() as (_, _, b):
        await _trip(a, "orders", cfg)
        await asyncio.sleep(0.25)

        async def try_acquire(hub: BreakerHub) -> bool:
            try:
                await hub.get("orders", config=cfg).acquire()
            except CircuitOpenError:
                return False
            return True

        results = await asyncio.gather(*(try_acquire(h) for h in [a, b] * 10))
        assert sum(results) == 1


async def test_probe_success_closes_for_everyone(replicas) -> None:  # type: ignore[no-untyped-def]
    """success_threshold probe successes close the breaker; the other replica admits."""
    cfg = _cfg(timeout=0.1)
    async with replicas() as (_, _, a), replicas() as (_, _, b):
        closed = asyncio.Event()
        b.add_listener(lambda e: closed.set() if e.state == "closed" else None)
        await b.get("orders", config=cfg).acquire()
        await _trip(a, "orders", cfg)
        await asyncio.sleep(0.15)
        probe = await a.get("orders").acquire()
        assert probe.probe
        await probe.success()
        await asyncio.wait_for(closed.wait(), 5)
        permit = await b.get("orders").acquire()
        assert not permit.probe


async def test_cancelled_probe_frees_its_slot(replicas) -> None:  # type: ignore[no-untyped-def]
    """A probe released without an outcome lets the next caller probe at once."""
    cfg = _cfg(timeout=0.1)
    async with replicas() as (_, _, a):
        await _trip(a, "orders", cfg)
        await asyncio.sleep(0.15)
        breaker = a.get("orders")
        probe = await breaker.acquire()
        with pytest.raises(CircuitOpenError):
            await breaker.acquire()
        await probe.release()
        assert (await breaker.acquire()).probe


async def test_manual_control_is_fleet_wide(replicas) -> None:  # type: ignore[no-untyped-def]
    """force open in A is seen by B; reset re-admits; a TTL'd override lapses."""
    cfg = _cfg()
    async with replicas() as (_, _, a), replicas() as (_, _, b):
        seen: asyncio.Queue[str] = asyncio.Queue()
        b.add_listener(lambda e: seen.put_nowait(e.state))
        await b.get("orders", config=cfg).acquire()
        await a.get("orders", config=cfg).control("open")
        assert await asyncio.wait_for(seen.get(), 5) == "forced_open"
        with pytest.raises(CircuitOpenError):
            await b.get("orders").acquire()
        await a.get("orders").control("reset")
        assert await asyncio.wait_for(seen.get(), 5) == "closed"
        await b.get("orders").acquire()
        await a.get("orders").control("disable", ttl=0.1)
        assert await asyncio.wait_for(seen.get(), 5) == "disabled"
        for _ in range(5):
            await (await b.get("orders").acquire()).failure()
        assert b.get("orders").state().state == "disabled"
        await asyncio.sleep(0.15)
        await b.get("orders").acquire()  # the lapsed override normalises to CLOSED
        assert (await b.get("orders").refresh()).state == "closed"


async def test_batched_successes_reset_the_streak(replicas) -> None:  # type: ignore[no-untyped-def]
    """Batched successes, once flushed, break another replica's failure streak."""
    cfg = _cfg(failure_threshold=2, success_flush_interval=10.0)
    async with replicas() as (_, _, a), replicas() as (_, _, b):
        await (await a.get("orders", config=cfg).acquire()).failure()
        await (await b.get("orders", config=cfg).acquire()).success()
        assert (await a.get("orders").refresh()).failure_count == 1
        await b.flush()
        await (await a.get("orders").acquire()).failure()
        state = await a.get("orders").refresh()
        assert (state.state, state.failure_count) == ("closed", 1)


async def test_slow_calls_count_as_failures(replicas) -> None:  # type: ignore[no-untyped-def]
    """With slow_call_threshold, a slow success counts as a failure."""
    cfg = _cfg(failure_threshold=1, slow_call_threshold=0.01)
    async with replicas() as (_, _, a):
        permit = await a.get("orders", config=cfg).acquire()
        await asyncio.sleep(0.03)
        await permit.success()
        assert (await a.get("orders").refresh()).state == "open"


async def test_endpoint_scope_breakers_are_independent(replicas) -> None:  # type: ignore[no-untyped-def]
    """Per-endpoint breakers of one service trip independently."""
    cfg = _cfg(scope="endpoint")
    async with replicas() as (_, _, a):
        x = a.get("orders", "/orders/{id}", cfg)
        for _ in range(3):
            await (await x.acquire()).failure()
        with pytest.raises(CircuitOpenError) as info:
            await x.acquire()
        assert info.value.endpoint == "/orders/{id}"
        await a.get("orders", "/health", cfg).acquire()


async def test_call_classifies_outcomes(replicas) -> None:  # type: ignore[no-untyped-def]
    """call(): transport errors and configured exceptions fail; others do not."""
    cfg = _cfg(failure_threshold=2, failure_exceptions=(KeyError,))
    async with replicas() as (_, _, a):
        b = a.get(f"svc-{uuid.uuid4().hex[:6]}", config=cfg)

        async def raise_(exc: BaseException) -> None:
            raise exc

        with pytest.raises(ValueError):
            await b.call(lambda: raise_(ValueError("not a failure")))
        with pytest.raises(httpx.ConnectError):
            await b.call(lambda: raise_(httpx.ConnectError("refused")))
        assert (await b.refresh()).failure_count == 1
        with pytest.raises(KeyError):
            await b.call(lambda: raise_(KeyError("configured")))
        assert (await b.refresh()).state == "open"
        assert b.classify_status(503)
        assert not b.classify_status(404)


async def test_fleet_lists_every_breaker_from_redis(replicas) -> None:  # type: ignore[no-untyped-def]
    """Breakers used in one replica are listed, with their state, by another."""
    cfg = _cfg()
    async with replicas() as (store, _, a), replicas() as (_, _, b):
        await a.get("orders", config=cfg).acquire()
        await a.get("payments", "/charge", cfg).acquire()
        await _trip(a, "orders", cfg)
        await a.drain()  # the index updates run in the background
        listed = {(s.service, s.endpoint): s.state for s in await b.fleet()}
        assert listed == {("orders", None): "open", ("payments", "/charge"): "closed"}
        assert [s.endpoint for s in await b.fleet("payments")] == ["/charge"]
        index = store.keys.key("orders", "breaker", "index")
        assert await store.client.pttl(index) > 0


async def test_full_half_open_rejects_locally_until_a_slot_frees(replicas) -> None:  # type: ignore[no-untyped-def]
    """Once told every probe slot is taken, a replica rejects without a round trip until the
    freed-slot event arrives; then it may probe."""
    cfg = _cfg(timeout=0.1, success_threshold=2, half_open_max_calls=1)
    async with replicas() as (_, _, a), replicas() as (store_b, _, b):
        freed = asyncio.Event()
        await b.get("orders", config=cfg).acquire()
        await _trip(a, "orders", cfg)
        await asyncio.sleep(0.15)
        probe = await a.get("orders").acquire()
        assert probe.probe
        with pytest.raises(CircuitOpenError):
            await b.get("orders").acquire()  # asks Redis: all slots taken
        calls = _count_scripts(store_b)
        with pytest.raises(CircuitOpenError):
            await b.get("orders").acquire()
        assert calls == []  # rejected locally
        b.add_listener(lambda e: freed.set() if e.state == "half_open" else None)
        await probe.success()  # 1 of 2 successes: still half-open, the slot frees
        await asyncio.wait_for(freed.wait(), 5)
        second = await b.get("orders").acquire()
        assert second.probe
        assert calls == ["breaker_acquire"]


async def test_refresh_reports_lifetime_totals(replicas) -> None:  # type: ignore[no-untyped-def]
    """refresh() carries the fleet-wide totals; the local mirror leaves them unset."""
    cfg = _cfg()
    async with replicas() as (_, _, a):
        await _trip(a, "orders", cfg)
        state = await a.get("orders").refresh()
        assert (state.trips, state.total_failures, state.total_successes) == (1, 3, 0)
        assert state.active_probes == 0
        assert a.get("orders").state().trips is None
