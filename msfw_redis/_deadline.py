"""A deadline for one awaited operation: ``asyncio.timeout``'s job, at half its cost.

Used for every call attempt and every Redis operation. ``asyncio.timeout`` builds a
context manager with a state machine and reschedules a timer on every entry; on the
CLOSED hot path that was the largest single cost of our own (about 7 µs of a call on a
2-core machine, against 3 µs for one ``call_at`` and a cancel). :func:`bounded` keeps its
semantics where they matter:

- when the timer fires, the task is cancelled and the operation ends in ``TimeoutError``
  (chained to the ``CancelledError``), whatever the awaited code was doing;
- a cancellation from outside (the caller's own ``task.cancel()``, ``asyncio.run``'s
  shutdown) passes through as ``CancelledError`` and is never turned into a timeout:
  the cancel request the timer made is counted with ``Task.uncancel()``, as
  ``asyncio.timeout`` does, so an outer one is still seen;
- the timer is cancelled however the operation ends, and a cancel request it made is
  taken back (``uncancel``) even when the awaited code swallowed it.

**A blocked loop is not a slow peer** (``stall_grace``). When the event loop was blocked
past the deadline (a CPU-bound stretch of the application), the timer runs late, in the
same loop turn that delivers the reply that arrived meanwhile; cancelling then throws
away an answer that is already here. With ``stall_grace``, a timer that runs more than
``stall_threshold`` late moves the deadline one ``timeout`` past the moment it ran,
instead of cancelling, for as long as the loop keeps being the late one and at most
``stall_grace`` seconds in all: an operation that needs several loop turns (connect,
write, read) behind an application that blocks between each still completes, and a
timer that runs on time (a slow peer, the loop free) cancels as before. Measured: a
benchmark that blocks its loop for 400 ms at a time sent the fleet breaker into local
mode (every flush in flight timed out), at 30-40 µs per call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from msfw_redis._running import running_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["bounded"]

logger = logging.getLogger("msfw_redis.deadline")

T = TypeVar("T")


#: A watch's queue before it joins one (no dict allocated per call for it).
_NOT_QUEUED: dict[int, Any] = {}


class _Watch:
    """One pending deadline: the task to cancel, when, and whether it fired."""

    __slots__ = (
        "due",
        "fired",
        "grace",
        "queue",
        "since",
        "stalled",
        "task",
        "threshold",
        "timeout",
        "token",
    )

    def __init__(
        self,
        task: asyncio.Task[Any],
        timeout: float,
        due: float,
        grace: float,
        threshold: float,
        stalled: Callable[[float], bool] | None,
    ) -> None:
        self.task = task
        self.timeout = timeout
        self.due = due
        self.since = due - timeout
        self.stalled = stalled
        self.grace = grace
        self.threshold = threshold
        self.fired = False
        self.queue: dict[int, _Watch] = _NOT_QUEUED  # set by _Watchdog.add at once
        self.token = 0


class _Watchdog:
    """Every deadline of one event loop, on one timer.

    Deadlines with the same duration fall due in the order they were set (the loop's
    clock is monotonic), so each duration has a queue in insertion order (a dict: O(1)
    to add and to drop a finished one), and the timer is armed for the earliest head.
    A finished operation only leaves its queue; the timer, if it was armed for it,
    fires once for nothing and re-arms for the next head.

    Why not one ``call_at`` per deadline: a cancelled ``TimerHandle`` stays in the
    loop's heap until the heap is cleaned, long enough for garbage collection to
    promote it; on a busy loop a handle per call made full collections (22-26 ms each
    with 65,000 objects) land every ~9,000 calls, about 2.5 µs per call on average.
    A finished :class:`_Watch` is freed at once by reference counting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # duration -> {token: watch}. Every watch of a queue was added at some moment t
        # with due t + duration, so insertion order is due order (extensions included).
        self.queues: dict[float, dict[int, _Watch]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.tokens = itertools.count()

    def add(self, watch: _Watch, key: float) -> None:
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = {}
        watch.queue = queue
        watch.token = token = next(self.tokens)
        queue[token] = watch
        if watch.due < self.timer_at:
            self._arm(watch.due)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self.fire)

    def fire(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        now = self.loop.time()
        regrace: list[_Watch] = []
        earliest = math.inf
        for key in list(self.queues):
            queue = self.queues[key]
            while queue:
                token = next(iter(queue))
                watch = queue[token]
                if watch.due > now:
                    earliest = min(earliest, watch.due)
                    break
                del queue[token]
                if watch.grace > 0.0 and (
                    now - watch.due > watch.threshold or _reports_stall(watch)
                ):
                    # The loop was blocked during the window: the reply may be here.
                    regrace.append(watch)
                else:
                    watch.fired = True
                    watch.task.cancel()
            if not queue:
                del self.queues[key]
        for watch in regrace:
            extra = min(watch.timeout, watch.grace)
            watch.grace -= extra
            watch.since = now
            watch.due = now + extra
            self.add(watch, extra)
        if earliest < self.timer_at:
            self._arm(earliest)


def _reports_stall(watch: _Watch) -> bool:
    if watch.stalled is None:
        return False
    try:
        return watch.stalled(watch.since)
    except Exception:  # a broken report must not break every deadline of the loop
        logger.exception("stall report %r raised; deadline not extended", watch.stalled)
        return False


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
    weakref.WeakKeyDictionary()
)
#: The last loop and its watchdog, so the usual single-loop case skips the weak
#: dictionary. One tuple, replaced whole: threads running loops of their own never see
#: one loop paired with another loop's watchdog.
_last: tuple[asyncio.AbstractEventLoop | None, _Watchdog | None] = (None, None)


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    global _last
    last_loop, last_dog = _last
    if last_loop is loop and last_dog is not None:
        return last_dog
    dog = _watchdogs.get(loop)
    if dog is None:
        dog = _watchdogs[loop] = _Watchdog(loop)
    _last = (loop, dog)
    return dog


async def bounded(
    awaitable: Awaitable[T],
    timeout: float,
    *,
    stall_grace: float = 0.0,
    stall_threshold: float = 0.0,
    stalled: Callable[[float], bool] | None = None,
) -> T:
    """Await ``awaitable``; ``TimeoutError`` if it takes longer than ``timeout`` seconds.

    Must be awaited from a task (every asyncio caller is one). ``timeout`` <= 0 expires
    at the next turn of the loop, as ``asyncio.timeout`` does with a past deadline.
    With ``stall_grace`` > 0, a deadline whose timer runs more than ``stall_threshold``
    seconds late (the loop was blocked) is moved ``timeout`` past the moment it ran, as
    long as that keeps happening and for ``stall_grace`` seconds in all (see the module
    docstring). ``stalled(since)``, if given, also counts: it is asked, with the loop
    time the current window began, whether the loop was blocked at some point since
    (a stall that ended just before the deadline leaves the timer on time, yet the
    operation had little of its window to run in).
    """
    # running_loop(), then current_task(loop): neither makes a getpid() system call
    # (see msfw_redis._running), where current_task() alone would.
    loop = running_loop()
    task = asyncio.current_task(loop)
    if task is None:  # pragma: no cover - awaited outside a task: no deadline to enforce
        raise RuntimeError("bounded() must be awaited inside an asyncio task")
    cancelling = task.cancelling()
    watch = _Watch(task, timeout, loop.time() + timeout, stall_grace, stall_threshold, stalled)
    _watchdog(loop).add(watch, timeout)
    try:
        result = await awaitable
    except asyncio.CancelledError as exc:
        watch.queue.pop(watch.token, None)
        # Ours only if the timer fired and no cancel request but ours is pending.
        if watch.fired and task.uncancel() <= cancelling:
            raise TimeoutError from exc
        raise
    except BaseException:
        watch.queue.pop(watch.token, None)
        if watch.fired:  # the awaited code swallowed our cancel: take the request back
            task.uncancel()
        raise
    watch.queue.pop(watch.token, None)
    if watch.fired:
        task.uncancel()
    return result
