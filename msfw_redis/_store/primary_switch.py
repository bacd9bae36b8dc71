"""What the store does when Sentinel names a new primary.

:class:`PrimarySwitch` owns the :class:`~msfw_redis._store.sentinel.SentinelWatcher`
of a store on ``redis+sentinel://`` (none on any other client) and the store's
switch listeners. When the watcher reports a switch, it points the client at the
sentinel that announced it, drops the pooled connections to the demoted primary and
calls each listener (the event bus moves its subscriber), so no write waits for a
READONLY from the old primary, or is accepted there and lost.

The watcher follows one client: a store that makes a new client for a new event loop
gets a new watcher for it on its next start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from msfw_redis._store.connection import drop_primary_connections, prefer_sentinel, sentinel_of
from msfw_redis._store.sentinel import Address, SentinelWatcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._store.connection import StoreClient

__all__ = ["PrimarySwitch"]

# The store's logger: a switch is logged as the store's event, as it always was.
logger = logging.getLogger("msfw_redis.store")


class PrimarySwitch:
    """Follows the Sentinel primary of one store's client; see the module doc.

    ``label`` names the store in log lines (its URL, redacted); ``connect_timeout``
    bounds each connection to a sentinel (the store's ``op_timeout``).
    """

    def __init__(self, *, label: str, connect_timeout: float) -> None:
        self.label = label
        self.connect_timeout = connect_timeout
        #: On Sentinel: follows ``+switch-master`` (``msfw_redis._store.sentinel``).
        self.watcher: SentinelWatcher | None = None
        self._client: StoreClient | None = None  # the client the watcher was made for
        self._listeners: list[Callable[[], Awaitable[None] | None]] = []

    def add_listener(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``callback`` after each switch, once the old primary's connections went."""
        self._listeners.append(callback)

    def start(self, client: StoreClient) -> None:
        """Start watching the sentinels of ``client``; nothing if it has none (idempotent)."""
        if self.watcher is None:
            found = sentinel_of(client)
            if found is None:
                return
            master_name, sentinels, kwargs = found
            self._client = client
            self.watcher = SentinelWatcher(
                sentinels,
                master_name,
                self._on_switch,
                connection_kwargs=kwargs,
                connect_timeout=self.connect_timeout,
            )
        self.watcher.start()

    def rebind(self, client: StoreClient) -> None:
        """A new event loop, on which the store uses ``client``.

        The old loop's watcher task is dropped unawaited; a watcher made for another
        client goes too, and :meth:`start` makes one for ``client``.
        """
        if self.watcher is not None:
            self.watcher.forget()
            if client is not self._client:
                self.watcher = None

    async def aclose(self) -> None:
        """Stop the watcher and close its connection (it can start again)."""
        if self.watcher is not None:
            await self.watcher.aclose()

    async def _on_switch(self, sentinel: Address, new: Address) -> None:
        watcher, client = self.watcher, self._client
        name = watcher.master_name if watcher is not None else "?"
        logger.info(
            "Redis store %s: Sentinel %s:%d names %s:%d the primary of %s; dropping the "
            "connections to the old primary and moving the event subscriber",
            self.label,
            *sentinel,
            *new,
            name,
        )
        if client is not None:  # always set while a watcher runs
            prefer_sentinel(client, sentinel)
            try:
                await drop_primary_connections(client)
            except Exception as exc:  # the next command's READONLY handling still applies
                logger.debug("dropping connections to the old primary failed: %r", exc)
        for callback in list(self._listeners):
            try:
                result = callback()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("store primary-switch listener failed")
