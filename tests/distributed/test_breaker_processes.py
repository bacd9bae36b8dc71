"""Several OS processes against one real Redis: the breaker's fleet-wide invariants."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import uuid

import pytest

from msfw_redis._breaker.machine import Snapshot
from msfw_redis._store.replies import reply_list
from msfw_redis._store.store import Store
from msfw_redis.testing import ScriptedService, run_in_processes
from tests.distributed import _breaker_workers as w

pytestmark = pytest.mark.real_redis


def _prefix() -> str:
    return f"d{uuid.uuid4().hex[:10]}"


async def _read_totals(url: str, prefix: str) -> list[int]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    keys = [store.keys.key(w.SERVICE, "breaker", part, "*") for part in ("state", "probes")]
    try:
        return [int(v) for v in reply_list(await store.run("breaker_read", keys, [0]))]
    finally:
        await store.aclose()


async def test_no_lost_updates_and_one_transition(real_redis_url: str) -> None:
    """8 processes x 25 tasks fail at once: 200 failures counted, exactly one trip."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(8)
    counts = run_in_processes(
        w.report_failures, [(real_redis_url, prefix, 25, 5, barrier)] * 8, timeout=120
    )
    assert sum(counts) == 200
    snap = await _read_totals(real_redis_url, prefix)
    state, total_failures, trips = snap[1], snap[9], snap[11]
    assert total_failures == 200
    assert trips == 1
    assert state == 1  # OPEN


def test_half_open_herd_is_bounded(real_redis_url: str) -> None:
    """16 processes rush an elapsed OPEN breaker 20 times: one probe per round reaches it."""
    prefix = _prefix()
    rounds = 20
    barrier = mp.get_context("spawn").Barrier(16)
    with ScriptedService() as svc:
        from msfw_redis.testing import Step

        svc.script("/probe", Step(200, json={"ok": True}, delay=0.05))
        results = run_in_processes(
            w.herd,
            [(real_redis_url, prefix, i, rounds, svc.url, barrier) for i in range(16)],
            timeout=240,
        )
        per_round = [sum(r[i] for r in results) for i in range(rounds)]
        assert all(n <= 1 for n in per_round), per_round
        assert sum(per_round) >= rounds - 2  # the breaker did let probes through
        assert svc.hits("/probe") == sum(per_round)


async def test_cold_process_rejects_first_call(real_redis_url: str) -> None:
    """Processes started while the shared breaker is OPEN reject their first call."""
    prefix = _prefix()
    async with w.replica(real_redis_url, prefix) as hub:
        breaker = hub.get(w.SERVICE, config=w.config(failure_threshold=1))
        await (await breaker.acquire()).failure()
    retry_afters = run_in_processes(w.first_call, [(real_redis_url, prefix)] * 3, timeout=60)
    assert all(25.0 < r <= 30.0 for r in retry_afters), retry_afters


def test_stale_generation_success_does_not_close(real_redis_url: str) -> None:
    """A success admitted before a re-open, reported after it, leaves the breaker OPEN."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(2)
    states = run_in_processes(
        w.stale_success,
        [(real_redis_url, prefix, "early", barrier), (real_redis_url, prefix, "tripper", barrier)],
        timeout=60,
    )
    assert states == ["open", "open"]


def test_trip_propagates_by_pubsub(real_redis_url: str) -> None:
    """A trip in one process reaches 3 others as an event; each then rejects locally."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(4)
    times = run_in_processes(
        w.propagation, [(real_redis_url, prefix, i, barrier) for i in range(4)], timeout=60
    )
    started, arrivals = times[0], times[1:]
    delays_ms = [(t - started) * 1000 for t in arrivals]
    assert len(delays_ms) == 3
    print(
        f"trip propagation ms: median {statistics.median(delays_ms):.2f} max {max(delays_ms):.2f}"
    )


async def test_rate_mode_trips_at_the_ratio_across_processes(real_redis_url: str) -> None:
    """4 processes: 16/40 failed keeps it CLOSED; failures pushing past 50 % trip it once."""
    prefix = _prefix()
    barrier = mp.get_context("spawn").Barrier(4)
    phase1 = [(6, 4)] * 4  # 24 successes, 16 failures: 40 %
    states = run_in_processes(
        w.rate_mix, [(real_redis_url, prefix, p, 5, barrier) for p in phase1], timeout=60
    )
    assert states == ["closed"] * 4
    snap = await _read_totals(real_redis_url, prefix)
    assert snap[1] == 1  # OPEN
    assert snap[11] == 1  # one trip
    # (16 + k) / (40 + k) >= 50 % first holds at k = 8 more failures.
    assert snap[9] >= 24
    assert Snapshot.from_reply(snap).state.label == "open"
