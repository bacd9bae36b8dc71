"""The cache's background work: stale-while-revalidate refreshes and lease releases.

A refresh runs after its caller was already served the stale entry, so nobody awaits
it: :class:`Background` keeps each task referenced until it ends, counts and logs the
refreshes that fail, lets tests :meth:`~Background.drain` them and cancels what is left
when the cache closes (a cancelled refresh's lease simply lapses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from msfw_redis._cache.policy import CacheOutcome
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from msfw_redis._cache.filling import Outcome
    from msfw_redis._cache.policy import CacheStats

__all__ = ["Background"]

logger = logging.getLogger("msfw_redis.cache")


class Background:
    """The tasks a cache started and nobody awaits."""

    def __init__(self, stats: CacheStats) -> None:
        self._stats = stats
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh(self, fill: Callable[[], Awaitable[Outcome]], label: str) -> None:
        """Run one refresh (``fill`` calls the origin and stores under the lease)."""
        self._stats.refreshes += 1
        self.spawn(self._refresh(fill, label))

    async def _refresh(self, fill: Callable[[], Awaitable[Outcome]], label: str) -> None:
        try:
            outcome = await fill()
        except Exception as exc:
            self._stats.refresh_failures += 1
            logger.warning("background refresh of %s crashed: %r", label, exc)
            return
        if outcome.kind is not CacheOutcome.MISS or outcome.error is not None:
            self._stats.refresh_failures += 1
            error = outcome.error or (outcome.result.error if outcome.result else None)
            logger.info("background refresh of %s failed: %r", label, error)

    async def drain(self) -> None:
        """Wait until the work started so far has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self) -> None:
        """Drop the tasks of a previous (closed) event loop."""
        self._tasks.clear()

    async def aclose(self) -> None:
        """Cancel what still runs and wait for it to end."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError), logged("cache task"):
                await task
        self._tasks.clear()
