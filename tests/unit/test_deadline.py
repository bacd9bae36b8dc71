"""bounded() keeps asyncio.timeout's semantics: its own expiry is a TimeoutError, an outer
cancel stays a cancel, and no cancel request is left behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from msfw_redis._deadline import _watchdog, bounded


async def _value(x: int) -> int:
    return x


async def test_a_prompt_result_is_returned_and_leaves_no_deadline_behind() -> None:
    """The value comes back, the task carries no cancel request afterwards, and the
    loop's watchdog holds no deadline for it (one timer serves every deadline)."""
    loop = asyncio.get_running_loop()
    assert await bounded(_value(7), 5.0) == 7
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert not any(_watchdog(loop).queues.values())
    before = len(getattr(loop, "_scheduled", []))
    for _ in range(100):
        await bounded(_value(1), 5.0)
    # No timer per call: at most the watchdog's one was added.
    assert len(getattr(loop, "_scheduled", [])) <= before + 1


async def test_expiry_raises_timeout_error_chained_to_the_cancel() -> None:
    """A slow awaitable ends in TimeoutError, and the task is not left cancelling."""
    with pytest.raises(TimeoutError) as info:
        await bounded(asyncio.sleep(10), 0.01)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # the task can go on awaiting: no stray cancel is pending


async def test_an_outer_cancel_passes_through_as_cancelled_error() -> None:
    """Cancelling the caller's task is never turned into a timeout."""
    started = asyncio.Event()

    async def caller() -> None:
        async def slow() -> None:
            started.set()
            await asyncio.sleep(10)

        await bounded(slow(), 5.0)

    task = asyncio.create_task(caller())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_cancel_after_expiry_is_not_swallowed() -> None:
    """When an outer cancel arrives after the deadline fired, the cancel wins."""
    outcome: list[str] = []

    async def stubborn() -> None:
        # Swallows the first cancel (the deadline's), then waits again.
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome.append("first cancel")
        await asyncio.sleep(10)

    async def caller() -> None:
        await bounded(stubborn(), 0.01)

    task = asyncio.create_task(caller())
    while not outcome:
        await asyncio.sleep(0.005)
    task.cancel()  # the outer cancel, after the deadline's
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["first cancel"]


async def test_a_swallowed_expiry_takes_its_cancel_request_back() -> None:
    """Code that catches the deadline's cancel and returns leaves the task clean."""

    async def swallows() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "caught"
        return "slept"  # pragma: no cover

    assert await bounded(swallows(), 0.01) == "caught"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # no stray cancel is delivered here


async def test_an_exception_from_the_awaitable_passes_through_unchanged() -> None:
    """Errors of the awaited code are not wrapped."""

    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await bounded(fails(), 5.0)


def _block(seconds: float) -> None:
    """Keep the event loop busy (a CPU-bound stretch of an application)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_a_reply_that_arrived_while_the_loop_was_blocked_is_kept_with_stall_grace() -> None:
    """The answer arrives during a stall past the deadline: with the grace it is returned,
    without it the late timer throws it away (the failure the grace exists to end)."""

    async def answered_during_stall(future: asyncio.Future[str]) -> str:
        return await future

    for grace, expected in ((1.0, "answer"), (0.0, None)):
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        op = asyncio.ensure_future(
            bounded(answered_during_stall(future), 0.05, stall_grace=grace, stall_threshold=0.02)
        )
        await asyncio.sleep(0)  # the operation starts and arms its deadline
        # The loop is blocked past the deadline; the reply is delivered in the turn after
        # the stall, just before the late timer runs (a socket read's callback comes
        # before the timers of its turn): the task has its answer but has not run yet.
        loop.call_later(0.04, future.set_result, "answer")
        loop.call_soon(_block, 0.15)
        if expected is None:
            with pytest.raises(TimeoutError):
                await op
        else:
            assert await op == expected


async def test_stall_grace_lasts_while_the_loop_stalls_and_is_bounded() -> None:
    """Each late timer moves the deadline one timeout on, until the grace is spent: a
    blocked loop buys bounded extensions, never an unbounded wait."""
    loop = asyncio.get_running_loop()
    for at in (0.0, 0.1, 0.2, 0.3, 0.4):  # the loop blocks again and again
        loop.call_later(at, _block, 0.08)
    op = asyncio.ensure_future(
        bounded(asyncio.sleep(10), 0.02, stall_grace=0.1, stall_threshold=0.01)
    )
    with pytest.raises(TimeoutError):
        await op
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_operation_needing_several_stalled_turns_completes() -> None:
    """Three steps, each behind a stall longer than the timeout: with a grace of several
    timeouts it completes; with none it times out at the first late timer."""

    async def three_steps(loop: asyncio.AbstractEventLoop) -> str:
        for _ in range(3):
            loop.call_soon(_block, 0.06)  # blocks the loop right after this step
            await asyncio.sleep(0)
        return "done"

    loop = asyncio.get_running_loop()
    assert await bounded(three_steps(loop), 0.03, stall_grace=0.3, stall_threshold=0.01) == "done"
    with pytest.raises(TimeoutError):
        await bounded(three_steps(loop), 0.03)


async def test_a_prompt_timer_gets_no_grace() -> None:
    """A deadline whose timer ran on time (the peer is slow, not the loop) is not
    extended: an operation the grace would have let finish still times out."""
    with pytest.raises(TimeoutError):
        await bounded(asyncio.sleep(0.3), 0.05, stall_grace=5.0, stall_threshold=1.0)


async def test_a_short_deadline_set_after_a_long_one_still_fires_first() -> None:
    """The shared timer is re-armed for an earlier deadline of another duration."""
    long_op = asyncio.ensure_future(bounded(asyncio.sleep(10), 5.0))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await bounded(asyncio.sleep(10), 0.02)
    assert not long_op.done()  # its own deadline is still ahead
    long_op.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_op


async def test_many_concurrent_deadlines_each_fire_or_finish() -> None:
    """Interleaved deadlines of several durations: every slow one times out, every
    prompt one returns its value, and none is left behind."""

    async def slow(i: int) -> int:
        await asyncio.sleep(10)
        return i  # pragma: no cover

    async def quick(i: int) -> int:
        await asyncio.sleep(0)
        return i

    ops = []
    for i in range(60):
        work = slow(i) if i % 2 else quick(i)
        ops.append(asyncio.ensure_future(bounded(work, 0.01 * (1 + i % 5))))
    results = await asyncio.gather(*ops, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, TimeoutError), (i, result)
        else:
            assert result == i
    assert not any(_watchdog(asyncio.get_running_loop()).queues.values())


def test_deadlines_work_on_each_new_event_loop() -> None:
    """One SDK may outlive its loop: the next asyncio.run gets a watchdog of its own."""

    async def one() -> str:
        try:
            await bounded(asyncio.sleep(10), 0.01)
        except TimeoutError:
            return "timed out"
        return "slept"  # pragma: no cover

    assert asyncio.run(one()) == "timed out"
    assert asyncio.run(one()) == "timed out"


def test_loops_in_two_threads_keep_their_own_deadlines() -> None:
    """Each thread's loop has its own watchdog: deadlines fire on the right loop."""
    import threading

    outcomes: list[str] = []

    async def many() -> None:
        for _ in range(200):
            assert await bounded(_value(1), 5.0) == 1
        try:
            await bounded(asyncio.sleep(10), 0.01)
        except TimeoutError:
            outcomes.append("timed out")

    threads = [threading.Thread(target=lambda: asyncio.run(many())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == ["timed out", "timed out"]


async def test_a_stall_reported_within_the_window_extends_an_on_time_deadline() -> None:
    """A stall that ended before the deadline leaves the timer on time, yet the
    operation had little of its window: the ``stalled`` report extends it, and only
    while stalls are reported (then the deadline holds again)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    asked: list[float] = []

    def stalled_twice(since: float) -> bool:
        asked.append(since)
        if len(asked) == 2 and not answer.done():
            answer.set_result("answered in the third window")
        return len(asked) <= 2

    got = await bounded(answer, 0.05, stall_grace=1.0, stall_threshold=10.0, stalled=stalled_twice)
    assert got == "answered in the third window"
    assert len(asked) == 2 and asked[0] < asked[1]  # each window starts where the last ended
    never: asyncio.Future[str] = loop.create_future()
    asked.clear()
    asked.append(0.0)  # this call's reports: True once more, then False
    with pytest.raises(TimeoutError):
        await bounded(never, 0.05, stall_grace=1.0, stall_threshold=10.0, stalled=stalled_twice)
    assert len(asked) == 3  # one extension, then a window with no stall: timed out


async def test_a_stall_report_that_raises_is_logged_and_the_deadline_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken ``stalled`` callable neither extends the deadline nor breaks the shared
    timer: the operation times out, the error is logged, and later deadlines still fire."""

    def broken(since: float) -> bool:
        raise RuntimeError("report failed")

    with pytest.raises(TimeoutError):
        await bounded(
            asyncio.sleep(10), 0.02, stall_grace=1.0, stall_threshold=10.0, stalled=broken
        )
    assert any("stall report" in r.getMessage() for r in caplog.records)
    with pytest.raises(TimeoutError):
        await bounded(asyncio.sleep(10), 0.02)
