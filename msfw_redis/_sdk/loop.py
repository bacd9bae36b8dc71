"""Which event loop an SDK's loop-bound resources belong to.

Redis connection pools, pub/sub readers, httpx connections, asyncio primitives and
background tasks all belong to the loop that made them. A user who calls
``asyncio.run`` twice, or a test suite with one loop per test, meets the SDK on a new
loop; :class:`LoopBinding` notices that with one identity check per call and lets the
SDK rebuild those resources once, keeping everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from msfw_redis._running import running_loop

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["LoopBinding"]

logger = logging.getLogger("msfw_redis.sdk")


class LoopBinding:
    """Remembers the loop the SDK is bound to and releases its connections as it ends.

    The release rides on the loop's async-generator shutdown: ``asyncio.run`` (and
    ``asyncio.Runner``, which pytest-asyncio uses) first cancels every task and waits
    for them, then closes the async generators the loop knows of. A sentinel generator
    parked at a ``yield`` is closed there, while the loop still runs and after every
    task of the SDK (pub/sub reader, heartbeats, monitors) is gone, so closing the
    connections cannot race a reader still using them.
    """

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release = release
        # The loop holds its async generators weakly: this reference keeps ours alive.
        self._sentinel: AsyncGenerator[None, None] | None = None
        self._armed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the resources belong to (``None`` before first use)."""
        return self._loop

    def current(self) -> bool:
        """True while the running loop is the bound one (the hot-path check)."""
        return running_loop() is self._loop  # no getpid() call (msfw_redis._running)

    async def bind(self) -> bool:
        """Bind to the running loop; True when an earlier loop's resources must go.

        Runs on the running loop's thread without awaiting anything before the swap,
        so two tasks of one loop cannot both rebind.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return False
        moved = self._loop is not None
        self._loop = loop
        self._armed = True
        sentinel = self._watch(loop)
        self._sentinel = sentinel
        # The first step registers the generator with the running loop and parks it.
        await sentinel.__anext__()
        return moved

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # Closed by the loop's shutdown_asyncgens (or garbage collection): release
            # only if this loop is still the bound one and the SDK was not closed on it.
            if self._armed and self._loop is loop and asyncio.get_running_loop() is loop:
                self._armed = False
                with contextlib.suppress(Exception):
                    await self._release()

    def disarm(self) -> None:
        """The SDK closes on this loop itself: the sentinel must not release again."""
        self._armed = False
