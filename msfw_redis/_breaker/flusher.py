"""The shared success flush: one timer per hub sends every breaker's batched successes.

A CLOSED breaker batches its successes for ``success_flush_interval`` seconds after the
first one, then reports them in one ``breaker_record`` per generation pending. With one
timer per breaker, 10,000 endpoint breakers meant 10,000 timers firing together and as
many concurrent scripts, which exhausts the connection pool (redis-py's default is 100)
and sends healthy breakers into local mode on "Too many connections".

:class:`SuccessFlusher` keeps one timer per hub instead, armed for the earliest due
breaker. When it fires, every breaker due by then is flushed by at most
:data:`FLUSH_CONCURRENCY` concurrent calls, each with its own keys in its own
``{service}`` hash tag (no multi-key script across services, so Redis Cluster works).
What is sent, and what a failed send does (the breaker runs locally and keeps the
counts), is the breaker's own :meth:`flush`; this module only decides when and how many
at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["FLUSH_CONCURRENCY", "Flushable", "SuccessFlusher"]

logger = logging.getLogger("msfw_redis.breaker")

#: Batched reports in flight at once per hub: a small share of redis-py's default pool
#: of 100 connections, which the calls themselves need too.
FLUSH_CONCURRENCY = 8


class Flushable(Protocol):
    """A breaker, as the flusher sees it."""

    #: Monotonic time its batch is due, or 0.0 when nothing is scheduled.
    flush_due: float

    async def flush(self) -> None:
        """Send the batched successes now (never raises :class:`StoreError`)."""


class SuccessFlusher:
    """Sends the batched successes of every breaker of one hub, on one shared timer."""

    def __init__(self, spawn: Any, *, concurrency: int = FLUSH_CONCURRENCY) -> None:
        #: ``spawn(coro)``: the hub's background runner (tracked, logged if it fails).
        self._spawn = spawn
        self.concurrency = max(1, concurrency)
        # (due, sequence, breaker): a breaker whose flush_due no longer matches its entry
        # was flushed (or rescheduled) since, and its entry is skipped.
        self._heap: list[tuple[float, int, Flushable]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._running = False
        self._closed = False

    def schedule(self, breaker: Flushable, interval: float) -> None:
        """Flush ``breaker`` ``interval`` seconds from now, unless already scheduled."""
        if breaker.flush_due:
            return
        due = time.monotonic() + interval
        breaker.flush_due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, breaker))
        if not self._running:
            self._arm()

    def _arm(self) -> None:
        if self._closed:
            return
        heap = self._heap
        while heap and heap[0][2].flush_due != heap[0][0]:
            heapq.heappop(heap)  # flushed by hand meanwhile
        if not heap:
            return
        due = heap[0][0]
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = due
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._running:
            return
        self._running = True
        self._spawn(self._run())

    async def _run(self) -> None:
        try:
            while True:
                due = self._take_due(time.monotonic())
                if not due:
                    break
                await flush_all(due, self.concurrency)
        finally:
            self._running = False
            self._arm()

    def _take_due(self, now: float) -> list[Flushable]:
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            at, _, breaker = heapq.heappop(heap)
            if breaker.flush_due == at:
                due.append(breaker)
        return due

    def rebind(self) -> None:
        """Forget the timer of a previous (closed) event loop; re-arm on this one."""
        self._timer = None
        self._running = False
        if self._heap:
            self._arm()

    def stop_timer(self) -> None:
        """Cancel the timer of an event loop that is ending (:meth:`rebind` re-arms on
        the next one): it must not fire during that loop's shutdown."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Stop the timer for good (the hub flushes what is pending itself)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def flush_all(
    breakers: Iterable[Flushable], concurrency: int, *, stall: float | None = None
) -> int:
    """``flush()`` every breaker, at most ``concurrency`` of them in flight at once.

    With ``stall``, give up once no flush has finished for ``stall`` seconds (a close
    must not hang on a Redis that stopped answering; each script call is bounded by the
    store's op timeout already, so this only trips when something is badly wrong).
    Returns how many breakers were left unflushed.
    """
    todo: Iterator[Flushable] = iter(list(breakers))
    left = 0
    done = [0]

    async def worker() -> None:
        # One shared iterator: each worker takes the next breaker when it is free.
        for breaker in todo:
            try:
                await breaker.flush()
            except Exception:  # a bug must not strand the other breakers' batches
                logger.exception("breaker batched-success flush failed")
            done[0] += 1

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    pending: set[asyncio.Future[None]] = set(tasks)
    try:
        while pending:
            seen = done[0]
            _, pending = await asyncio.wait(pending, timeout=stall)
            if pending and done[0] == seen:
                left = sum(1 for _ in todo) + len(pending)
                break
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return left
