"""Shutting things down quietly, but never silently, and always when asked.

Closing a connection or awaiting a cancelled task at shutdown may fail in ways nobody can
act on (the peer is gone, the loop is closing). Those errors must not mask the shutdown,
yet a bug there should still leave a trace: :func:`logged` records them at DEBUG level.

Every background loop must end when its task is cancelled (``asyncio.run`` cancels the
tasks of an SDK that was never closed, then waits for them). A cancellation can be lost
on the way: a library that turns a ``CancelledError`` arriving together with its own
timeout into a result or a ``TimeoutError``, which a loop then treats as one more round.
Measured on Python 3.11 with redis-py 8.1: 5 of 16 ``asyncio.run`` calls hung with the
health monitor's tasks "cancelling" for ever. So the loops do not rely on seeing the
exception: :func:`raise_if_cancelling` ends a task whose cancellation was *requested*
(``Task.cancelling()``), and :func:`pause` is the loops' one way to wait between rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["logged", "pause", "raise_if_cancelling"]

logger = logging.getLogger("msfw_redis.shutdown")


@contextlib.contextmanager
def logged(what: str) -> Iterator[None]:
    """Run the block; an ``Exception`` from it is logged at DEBUG with ``what``, not raised."""
    try:
        yield
    except Exception:
        logger.debug("%s failed during shutdown", what, exc_info=True)


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` when someone asked to cancel the current task.

    Only for background loops, which nobody un-cancels: outside an ``asyncio.timeout``
    block a pending request (``cancelling() > 0``) there always means "stop", even when
    the exception itself was swallowed further down.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def pause(wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` is set or ``seconds`` pass; end the task if it was cancelled.

    Checked before and after the wait, so a loop ends at its next pause whatever
    happened to the ``CancelledError`` during its round.
    """
    raise_if_cancelling()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await wake.wait()
    raise_if_cancelling()
