"""Which event loop an SDK's loop-bound resources belong to.

Redis connection pools, pub/sub readers, httpx connections, asyncio primitives and
background tasks all belong to the loop that made them. A user who calls
``asyncio.run`` twice, or a test suite with one loop per test, meets the SDK on a new
loop; :class:`LoopBinding` notices that with one identity check per call and lets the
SDK rebuild those resources once, under a guard, keeping everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

__all__ = ["LoopBinding"]


class LoopBinding:
    """Remembers the loop the SDK is bound to and tells when the running one differs."""

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release = release
        self._keeper: asyncio.Task[None] | None = None
        # A threading lock: the check runs before any loop-bound primitive exists.
        self._guard = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the resources belong to (``None`` before first use)."""
        return self._loop

    def moved(self) -> bool:
        """True once per change of running loop (the first bind counts as no move).

        The hot path is one identity comparison; the guard is taken only on a change.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return False
        with self._guard:
            if loop is self._loop:
                return False
            first = self._loop is None
            self._loop = loop
            self._keeper = loop.create_task(self._keep(), name="msfw-loop-keeper")
            return not first

    async def _keep(self) -> None:
        # asyncio.run (and pytest-asyncio) cancel every pending task before closing the
        # loop: that cancellation is the one moment to close connections that belong to
        # the loop, so none is left open (and unwarned) once it is gone.
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._release()
            raise

    def stop(self) -> None:
        """Cancel the keeper without releasing (the SDK is closing on this loop)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None and not keeper.done():
            self._release = _nothing
            keeper.cancel()


async def _nothing() -> None:
    return None
