"""running_loop(): the running loop from the async-generator hooks, else the exact answer."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from msfw_redis._running import running_loop


def test_outside_any_loop_it_raises_like_get_running_loop() -> None:
    with pytest.raises(RuntimeError):
        running_loop()


def test_inside_each_of_two_runs_it_names_that_runs_loop() -> None:
    async def both() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        return running_loop(), asyncio.get_running_loop()

    first = asyncio.run(both())
    second = asyncio.run(both())
    assert first[0] is first[1]
    assert second[0] is second[1]
    assert first[0] is not second[0]
    with pytest.raises(RuntimeError):  # the hooks were restored when the loop stopped
        running_loop()


def test_a_loop_in_another_thread_is_not_this_threads_loop() -> None:
    other = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=lambda: (other.call_soon(started.set), other.run_forever()))
    thread.start()
    try:
        assert started.wait(10)
        assert other.is_running()
        with pytest.raises(RuntimeError):
            running_loop()

        async def here() -> asyncio.AbstractEventLoop:
            return running_loop()

        mine = asyncio.run(here())
        assert mine is not other
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
        other.close()


def test_hooks_set_by_other_code_fall_back_to_the_exact_answer() -> None:
    def firstiter(agen: object) -> None:
        return None

    async def inside() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        old = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=old.finalizer)
        try:
            return running_loop(), asyncio.get_running_loop()
        finally:
            sys.set_asyncgen_hooks(*old)

    found, exact = asyncio.run(inside())
    assert found is exact


def test_hooks_bound_to_a_stopped_loop_fall_back() -> None:
    stopped = asyncio.new_event_loop()
    old = sys.get_asyncgen_hooks()
    # What a loop's run_forever installs, left behind as if never restored.
    sys.set_asyncgen_hooks(
        firstiter=stopped._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
        finalizer=stopped._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
    )
    try:
        with pytest.raises(RuntimeError):
            running_loop()
    finally:
        sys.set_asyncgen_hooks(*old)
        stopped.close()
