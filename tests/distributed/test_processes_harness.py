"""The multi-process harnesses: run_in_processes on one real server, and per-worker mailboxes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import signal
import time
from typing import TYPE_CHECKING, Any

from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store
from msfw_redis.testing import run_in_processes
from tests.distributed._mailboxes import Mailboxes

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event


async def _read_server_clock(url: str) -> int:
    store = Store.from_url(url, op_timeout=2.0)
    await store.start()
    try:
        return reply_int(await store.run("clock_now", [], []))
    finally:
        await store.aclose()


def test_processes_share_one_server_clock(real_redis_url: str) -> None:
    """Four processes read one server clock; readings agree within a few seconds."""
    readings = run_in_processes(_read_server_clock, [(real_redis_url,)] * 4, timeout=60)
    assert len(readings) == 4
    assert max(readings) - min(readings) < 10_000


def _hold_write_lock_and_hang(box: Queue[Any], holding: Event) -> None:
    # The lock a queue's feeder thread holds while it writes a message; taken here
    # directly so that the SIGKILL lands while it is held every time, as it does now
    # and then on a loaded machine just after a message went out.
    box._wlock.acquire()  # type: ignore[attr-defined]
    holding.set()
    time.sleep(3600)


def _report_when_told(box: Queue[Any], go: Event) -> None:
    go.wait(60)
    box.put("after the kill")  # exiting joins the feeder: the message is in the pipe


async def test_a_worker_killed_holding_its_queue_lock_does_not_silence_another() -> None:
    """A worker SIGKILLed while it holds its queue's write lock leaves another worker's
    message free to arrive (on one shared queue it would never come)."""
    ctx = mp.get_context("spawn")
    boxes = Mailboxes(ctx, 2)
    holding, go = ctx.Event(), ctx.Event()
    victim = ctx.Process(target=_hold_write_lock_and_hang, args=(boxes.box(0), holding))
    other = ctx.Process(target=_report_when_told, args=(boxes.box(1), go))
    victim.start()
    other.start()
    try:
        assert await asyncio.to_thread(holding.wait, 60)
        victim.kill()
        await asyncio.to_thread(victim.join, 10)
        go.set()
        assert await boxes.next(1, timeout=30, procs=[victim, other]) == "after the kill"
        await asyncio.to_thread(other.join, 10)
        assert other.exitcode == 0
    finally:
        for proc in (victim, other):
            if proc.is_alive():
                proc.kill()
    assert victim.exitcode == -signal.SIGKILL
