"""Several OS processes against one real Redis: the fleet-wide limits' invariants."""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import signal
import uuid

import pytest

from msfw_redis._exceptions import BulkheadFullError
from msfw_redis._limits.budget import retries_allowed
from msfw_redis._limits.config import RETRY_BUDGET_WINDOW, BulkheadConfig
from msfw_redis._limits.limits import FleetLimits
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import run_in_processes
from tests.distributed import _limits_workers as w

pytestmark = pytest.mark.real_redis


def _prefix() -> str:
    return f"l{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("max_wait", [0.0, 30.0], ids=["fail-fast", "wait"])
def test_bulkhead_bounds_fleet_in_flight(real_redis_url: str, max_wait: float) -> None:
    """8 processes x 25 tasks, limit 10: the service never sees more than 10 at once.

    Without waiting every call ran or got BulkheadFullError; with max_wait every call ran.
    """
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(8)
    with w.MeteredService() as svc:
        results = run_in_processes(
            w.bulkhead_calls,
            [(real_redis_url, prefix, svc.url, 25, 10, max_wait, barrier)] * 8,
            timeout=240,
        )
        ran = sum(r for r, _ in results)
        refused = sum(f for _, f in results)
        assert svc.max_in_flight <= 10
        assert ran + refused == 200
        assert ran == svc.hits("/slow")
        if max_wait:
            assert ran == 200
        else:
            assert refused > 0  # 200 calls at once against 10 permits must be refused


async def test_sigkilled_holder_permits_return_within_lease(real_redis_url: str) -> None:
    """A SIGKILLed holder's permits all lapse within permit_lease of the kill; then they are free."""
    prefix = _prefix()
    lease = 2.0
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_run_holder, args=(real_redis_url, prefix, 3, lease, ready))
    proc.start()
    store = Store.from_url(real_redis_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    bus.start()
    limits = FleetLimits(store, bus, failure_policy="fail_closed")
    try:
        assert await asyncio.to_thread(ready.wait, 60)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        killed_at_ms = store.clock.now_ms()
        scores = await store.client.zrange(
            store.keys.bulkhead_permits(w.SERVICE), 0, -1, withscores=True
        )
        assert len(scores) == 3
        assert max(score for _, score in scores) <= killed_at_ms + lease * 1000
        bh = limits.bulkhead(w.SERVICE, BulkheadConfig(max_concurrent_calls=3, permit_lease=lease))
        with pytest.raises(BulkheadFullError):
            await bh.acquire(max_wait=0.0)
        permit = await bh.acquire(max_wait=lease * 10)
        assert permit.guarded
        await permit.release()
    finally:
        if proc.is_alive():
            proc.kill()
        await limits.aclose()
        await bus.aclose()
        await store.aclose()


def _run_holder(url: str, prefix: str, limit: int, lease: float, ready: object) -> None:
    asyncio.run(w.hold_and_hang(url, prefix, limit, lease, ready))


def test_rate_limit_exact_in_every_window_and_not_under_admitting(real_redis_url: str) -> None:
    """4 processes hammer 100/s for 5 s: every window admits <= rate x W + burst, total >= 90 %."""
    prefix = _prefix()
    rate, burst, duration = 100.0, 10, 5.0
    barrier = mp.get_context("spawn").Barrier(4)
    with w.MeteredService() as svc:
        results = run_in_processes(
            w.rate_hammer,
            [(real_redis_url, prefix, svc.url, 5, duration, rate, barrier)] * 4,
            timeout=240,
        )
        stamps = sorted(s for r in results for s in r)
        assert len(stamps) == svc.hits("/rated")
    emission_us = 1_000_000 / rate
    # Sliding windows of 0.1, 0.5 and 1 s starting at every admission.
    for window_us in (100_000, 500_000, 1_000_000):
        j = 0
        for i, start in enumerate(stamps):
            while j < len(stamps) and stamps[j] < start + window_us:
                j += 1
            assert j - i <= math.floor(window_us / emission_us) + burst, (window_us, i)
    elapsed_us = stamps[-1] - stamps[0]
    allowed = math.floor(elapsed_us / emission_us) + burst
    assert len(stamps) <= allowed
    assert len(stamps) >= 0.9 * allowed


def test_retry_budget_bounds_fleet_retries(real_redis_url: str) -> None:
    """A service answering 503 to 4 processes: retries stay within 0.2 x requests + minimum."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(4)
    with w.MeteredService() as svc:
        results = run_in_processes(
            w.budget_calls, [(real_redis_url, prefix, svc.url, 60, 3, barrier)] * 4, timeout=240
        )
        requests = sum(r[0] for r in results)
        granted = sum(r[1] for r in results)
        refused = sum(r[2] for r in results)
        assert svc.hits("/busy") == requests + granted
    assert requests == 240
    assert refused > 0
    # Every retry granted in an aligned 10 s block [10k, 10k + 10) was checked against a
    # window that covers the whole block up to it, so each block's retries are within
    # 0.2 x requests + 1/s x 10 s. A run inside one block gets exactly that bound.
    start_s = min(r[3] for r in results) // 1000
    end_s = max(r[4] for r in results) // 1000
    blocks = end_s // RETRY_BUDGET_WINDOW - start_s // RETRY_BUDGET_WINDOW + 1
    per_block = retries_allowed(requests, 0.2, 1.0, RETRY_BUDGET_WINDOW)
    assert granted <= blocks * per_block
    if blocks == 1:
        assert granted <= per_block


def test_retry_after_closes_endpoint_for_every_replica(real_redis_url: str) -> None:
    """One replica's 429 Retry-After: 2 stops /a on every replica for 2 s; /b goes on."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(4)
    with w.MeteredService() as svc:
        results = run_in_processes(
            w.retry_after_replica,
            [(real_redis_url, prefix, svc.url, i, 3.5, barrier) for i in range(4)],
            timeout=240,
        )
        first_429 = svc.first_429_at
        a_arrivals = list(svc.arrivals.get("/a", []))
        b_arrivals = list(svc.arrivals.get("/b", []))
    closers = [r for r in results if r["closed_at"] is not None]
    assert len(closers) == 1
    assert closers[0]["window"] == 2.0
    assert first_429 is not None
    closed_at = closers[0]["closed_at"]
    # Pub/sub delivery to the other replicas gets 100 ms of allowance (measured p99 ~1 ms).
    quiet_from, quiet_until = closed_at + 0.1, first_429 + 2.0 - 0.05
    assert not [t for t in a_arrivals if quiet_from <= t < quiet_until]
    assert [t for t in a_arrivals if t >= first_429 + 2.0]  # resumed after the window
    assert len([t for t in b_arrivals if quiet_from <= t < quiet_until]) >= 4
    for r in results:
        assert [t for t in r["sent"]["/b"] if quiet_from <= t < quiet_until]
