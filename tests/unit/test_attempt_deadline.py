"""bounded() keeps asyncio.timeout's semantics: its own expiry is a TimeoutError, an outer
cancel stays a cancel, and no cancel request is left behind."""

from __future__ import annotations

import asyncio

import pytest

from msfw_redis._pipeline.deadline import bounded


async def _value(x: int) -> int:
    return x


async def test_a_prompt_result_is_returned_and_leaves_no_timer_behind() -> None:
    """The value comes back and the task carries no cancel request afterwards."""
    loop = asyncio.get_running_loop()
    before = len(getattr(loop, "_scheduled", []))
    assert await bounded(_value(7), 5.0) == 7
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    # The timer was cancelled: the loop skips (and eventually drops) cancelled handles.
    pending = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
    assert len(pending) <= before


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
