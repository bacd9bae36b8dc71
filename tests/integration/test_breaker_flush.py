"""The shared success flush: many breakers with batched successes, one small pool.

With one flush timer per breaker, 1,000 endpoint breakers whose batches fall due
together sent 1,000 concurrent ``breaker_record`` scripts: past the connection pool's
size every extra one failed with "Too many connections", and those breakers dropped
into local mode with their counts. The hub's one flusher sends them a few at a time.
Nothing here is timed: concurrency and counts are counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.flusher import FLUSH_CONCURRENCY
from msfw_redis._breaker.hub import REFRESH_CONCURRENCY, BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVICE = "flush-svc"
BREAKERS = 1_000
SUCCESSES = 3
#: Smaller than the breakers' number by far, larger than the flusher's share.
POOL = FLUSH_CONCURRENCY + 4


class InFlight:
    """Counts concurrent calls of one script (``breaker_record``) through a store."""

    def __init__(self, store: Store, script: str = "breaker_record") -> None:
        self.now = 0
        self.most = 0
        self.calls = 0
        inner = store.run

        async def counted(name: str, keys: Any, args: Any) -> Any:
            if name != script:
                return await inner(name, keys, args)
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
            try:
                return await inner(name, keys, args)
            finally:
                self.now -= 1

        store.run = counted  # type: ignore[method-assign]


def _small_pool(url: str) -> str:
    # redis-py reads the pool size from the URL; fakeredis answers in-process.
    return f"{url}?max_connections={POOL}" if url.startswith("redis://") else url


@pytest.fixture
async def hub(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Store, BreakerHub]]:
    store = Store.from_url(_small_pool(redis_url), key_prefix=key_prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    bus.start()
    h = BreakerHub(store, bus)
    try:
        yield store, h
    finally:
        await h.aclose()
        await bus.aclose()
        await store.aclose()


async def _batched(h: BreakerHub, cfg: CircuitBreakerConfig) -> list[Any]:
    """BREAKERS loaded breakers, each with SUCCESSES batched successes (none sent yet)."""
    breakers = [h.get(SERVICE, f"/e/{i}", cfg) for i in range(BREAKERS)]
    for b in breakers:
        await b.acquire()  # loads the mirror; this permit is never reported
    await h.drain()
    for _ in range(SUCCESSES):
        for b in breakers:
            await (await b.acquire()).success()
    return breakers


async def _totals(h: BreakerHub, breakers: list[Any]) -> list[int | None]:
    return [(await b.refresh()).total_successes for b in breakers]


async def test_due_batches_of_many_breakers_arrive_exactly_a_few_at_a_time(
    hub: tuple[Store, BreakerHub],
) -> None:
    store, h = hub
    cfg = CircuitBreakerConfig(success_flush_interval=0.05)
    in_flight = InFlight(store)
    breakers = await _batched(h, cfg)
    for _ in range(1_000):  # the flush timers fire on their own; wait for the reports
        if in_flight.calls >= BREAKERS and in_flight.now == 0:
            break
        await asyncio.sleep(cfg.success_flush_interval)
        await h.drain()
    await h.drain()
    assert not any(b.running_local for b in breakers), "a flush hit the pool's limit"
    assert in_flight.calls >= BREAKERS  # one report per breaker (one generation each)
    assert in_flight.most <= FLUSH_CONCURRENCY
    assert await _totals(h, breakers) == [SUCCESSES] * BREAKERS


async def test_mirrors_going_stale_together_are_reread_a_few_at_a_time(
    hub: tuple[Store, BreakerHub],
) -> None:
    """The staleness safety net re-reads every mirror, but not all at once."""
    store, h = hub
    cfg = CircuitBreakerConfig(success_flush_interval=0.0, max_staleness=0.01)
    breakers = [h.get(SERVICE, f"/s/{i}", cfg) for i in range(BREAKERS)]
    for b in breakers:
        await (await b.acquire()).success()
    await h.drain()
    await asyncio.sleep(cfg.max_staleness * 2)  # every mirror is past max_staleness now
    reads = InFlight(store, "breaker_read")
    for b in breakers:
        await b.acquire()  # each spawns its background re-read
    await h.drain()
    assert reads.calls >= BREAKERS
    assert reads.most <= REFRESH_CONCURRENCY
    assert not any(b.running_local for b in breakers), "a re-read hit the pool's limit"


async def test_close_sends_every_pending_batch(redis_url: str, key_prefix: str) -> None:
    cfg = CircuitBreakerConfig(success_flush_interval=10.0)  # never due before the close
    store = Store.from_url(_small_pool(redis_url), key_prefix=key_prefix, op_timeout=5.0)
    await store.start()
    h = BreakerHub(store, None)
    in_flight = InFlight(store)
    try:
        breakers = await _batched(h, cfg)
        assert in_flight.calls == 0
        await h.aclose()
        assert not any(b.running_local for b in breakers)
        assert in_flight.calls == BREAKERS
        assert in_flight.most <= FLUSH_CONCURRENCY
        # Read back through a hub of its own: the closed one sends nothing more.
        reader = BreakerHub(store, None)
        assert (
            await _totals(reader, [reader.get(SERVICE, b.endpoint, cfg) for b in breakers])
            == [SUCCESSES] * BREAKERS
        )
    finally:
        await store.aclose()


async def test_close_gives_up_on_a_store_that_stopped_answering(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A hung script call (past the store's own timeout) cannot hang the close."""
    cfg = CircuitBreakerConfig(success_flush_interval=10.0)
    store = Store.from_url(redis_url, key_prefix=key_prefix, op_timeout=0.2)
    await store.start()
    h = BreakerHub(store, None)
    try:
        breakers = [h.get(SERVICE, f"/h/{i}", cfg) for i in range(20)]
        for b in breakers:
            await (await b.acquire()).success()
        await h.drain()
        inner = store.run
        started: list[str] = []

        async def hung(name: str, keys: Any, args: Any) -> Any:
            if name == "breaker_record":
                started.append(name)
                await asyncio.Event().wait()
            return await inner(name, keys, args)

        store.run = hung  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="msfw_redis.breaker"):
            await h.aclose()
        assert len(started) == FLUSH_CONCURRENCY  # the rest never started
        assert "batched successes of 20 breakers unsent" in caplog.text
    finally:
        await store.aclose()
