"""The shared cache across OS processes on a real server: stampede and crashed filler."""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from msfw_redis.testing import ScriptedService, Step, run_in_processes
from tests.distributed import _cache_workers as workers

if TYPE_CHECKING:
    from collections.abc import Callable

PROCESSES = 4
CALLERS = 5
ORIGIN_DELAY = 0.3
COMMAND_CEILING = 100


def commandstats(url: str) -> dict[str, int]:
    """Calls per command on the server, leaving out the INFO calls that read them."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if name != "cmdstat_info"
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in out.items() if calls}


class Background:
    """run_in_processes in a thread, so this process can take part in the barriers."""

    def __init__(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> None:
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> None:
        try:
            self.results = run_in_processes(fn, args, timeout=90)
        except BaseException as exc:
            self.error = exc

    def join(self) -> list[Any]:
        self._thread.join(120)
        if self.error is not None:
            raise self.error
        return self.results


@pytest.mark.real_redis
@pytest.mark.slow
def test_stampede_on_a_cold_key_makes_one_origin_call(real_redis_url: str, key_prefix: str) -> None:
    """4 processes x 5 callers on a cold key, 300 ms origin: 1 origin call, bounded commands."""
    ctx = mp.get_context("spawn")
    parties = PROCESSES + 1
    ready, go, done = ctx.Barrier(parties), ctx.Barrier(parties), ctx.Barrier(parties)
    with ScriptedService() as origin:
        origin.script("/hot", Step(200, json={"value": 42}, delay=ORIGIN_DELAY))
        args = (real_redis_url, key_prefix, origin.url, "/hot", CALLERS, ready, go, done)
        background = Background(workers.stampede_worker, [args] * PROCESSES)
        try:
            ready.wait(60)
            before = commandstats(real_redis_url)
            go.wait(60)
            done.wait(60)
            after = commandstats(real_redis_url)
        except threading.BrokenBarrierError:
            background.join()  # raises the worker's error, if any
            raise
        results = background.join()
        origin_calls = origin.hits("/hot")

    used = delta(before, after)
    total = sum(used.values())
    outcomes = [o for r in results for o in r["outcomes"]]
    print(
        f"\nstampede: {PROCESSES} processes x {CALLERS} callers, origin {ORIGIN_DELAY * 1000:.0f} ms:"
        f" {origin_calls} origin call(s), {total} Redis commands"
        f" ({used.get('evalsha', 0)} EVALSHA round trips) {used}"
    )
    assert origin_calls == 1
    assert all(v == {"value": 42} for r in results for v in r["values"])
    assert outcomes.count("miss") == 1
    assert outcomes.count("coalesced") == PROCESSES * CALLERS - 1
    assert sum(r["metrics"]["fills"] for r in results) == 1
    assert total < COMMAND_CEILING, used
    # Nobody waited much longer than the one origin call (generous: no-hang bound).
    assert max(r["elapsed"] for r in results) < 10


@pytest.mark.real_redis
@pytest.mark.slow
def test_killed_filler_is_taken_over_after_its_lease(real_redis_url: str, key_prefix: str) -> None:
    """A filler SIGKILLed mid-fill: one waiter takes over when the lease ends; nobody waits
    past the bound, and the origin is called once more, not once per waiter."""
    lease_timeout, wait_timeout, callers, procs = 1.5, 5.0, 2, 3
    ctx = mp.get_context("spawn")
    ready, go = ctx.Barrier(procs + 1), ctx.Barrier(procs + 1)
    leased = ctx.Event()
    with ScriptedService() as origin:
        # The doomed filler's request hangs; every later one answers at once.
        origin.script("/slow", Step(200, json={"n": 0}, delay=20), Step(200, json={"n": 1}))
        args = (
            real_redis_url,
            key_prefix,
            origin.url,
            "/slow",
            callers,
            lease_timeout,
            wait_timeout,
            ready,
            go,
        )
        background = Background(workers.takeover_worker, [args] * procs)
        ready.wait(60)
        filler = ctx.Process(
            target=workers.run_doomed_filler,
            args=(real_redis_url, key_prefix, origin.url, "/slow", lease_timeout, leased),
            daemon=True,
        )
        filler.start()
        try:
            assert leased.wait(60), "the filler never took the lease"
            deadline = time.monotonic() + 10
            while origin.hits("/slow") < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert origin.hits("/slow") == 1  # mid-fill: its origin call is in flight
            go.wait(60)
            time.sleep(0.2)  # the waiters are now waiting on the filler's lease
        finally:
            filler.kill()
            filler.join(10)
        assert filler.exitcode == -signal.SIGKILL
        results = background.join()
        origin_calls = origin.hits("/slow")

    calls = [c for r in results for c in r["calls"]]
    print(f"\ntakeover: {origin_calls} origin calls, waits {[round(c[2], 3) for c in calls]}")
    assert origin_calls == 2  # the dead filler's, then exactly one takeover
    assert sum(r["metrics"]["lease_expiries"] for r in results) == 1
    assert all(value == {"n": 1} for _, value, _ in calls)
    outcomes = [outcome for outcome, _, _ in calls]
    assert outcomes.count("miss") == 1
    assert outcomes.count("coalesced") == procs * callers - 1
    # Bounded: nobody waited for wait_timeout, let alone forever.
    assert max(elapsed for _, _, elapsed in calls) < wait_timeout
