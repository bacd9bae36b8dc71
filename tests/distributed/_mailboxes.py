"""One message queue per worker process, for tests that SIGKILL some of their workers.

The writers of one ``multiprocessing.Queue`` share a lock that each one's feeder thread
holds while it writes a message to the pipe. A worker SIGKILLed while its feeder holds
that lock (just after its message went out, before the thread got the CPU back to
release it, which a loaded machine makes likely enough) takes the lock with it, and
every later message of every other worker waits on it for ever: the other workers look
hung on exit (their feeder never finishes) and their messages never come. With a queue
per worker a kill can only break the queue of the worker killed.
"""

from __future__ import annotations

import asyncio
import queue
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from multiprocessing.context import SpawnContext
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue

__all__ = ["Mailboxes"]


class Mailboxes:
    """``count`` queues, one per worker: pass ``box(i)`` to worker ``i`` only."""

    def __init__(self, ctx: SpawnContext, count: int) -> None:
        self._queues: list[Queue[Any]] = [ctx.Queue() for _ in range(count)]

    def box(self, index: int) -> Queue[Any]:
        """Worker ``index``'s queue (no other worker may write to it)."""
        return self._queues[index]

    async def next(
        self, index: int, *, timeout: float = 60.0, procs: list[BaseProcess] | None = None
    ) -> Any:
        """Worker ``index``'s next message (a no-hang bound, not a timing assertion)."""
        try:
            return await asyncio.to_thread(self._queues[index].get, True, timeout)
        except queue.Empty:
            # Say which workers are still alive and how the others ended, so a hang in a
            # worker can be told apart from a message lost on the way.
            status = [(p.pid, p.is_alive(), p.exitcode) for p in procs or []]
            pytest.fail(
                f"no message from worker {index} within {timeout}s; "
                f"workers (pid, alive, exit): {status}"
            )
