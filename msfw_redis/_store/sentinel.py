"""Following Sentinel's ``+switch-master`` announcements.

A store on ``redis+sentinel://`` runs one :class:`SentinelWatcher`: one connection to one
sentinel, subscribed to its ``+switch-master`` channel. When a sentinel fails the
monitored primary over, it publishes ``<master> <old-ip> <old-port> <new-ip> <new-port>``
there; the watcher hands the new address to the store, which drops its pooled
connections to the demoted primary and moves the event bus's subscriber at once, instead
of waiting for a write to hit READONLY on the demoted primary (seconds later, once the
sentinels convert it), or worse, to be accepted there and lost.

A sentinel that dies (or stops answering its PINGs) costs the watcher one reconnect, to
the next sentinel in the list. Events published while no connection was up are not
lost for good: after every (re)subscription the watcher asks its sentinel for the
primary's address and reports a switch it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from msfw_redis._shutdown import logged, raise_if_cancelling

__all__ = ["Address", "SentinelWatcher", "SWITCH_CHANNEL"]

logger = logging.getLogger("msfw_redis.sentinel")

Address = tuple[str, int]
#: Called with the sentinel that announced the switch and the new primary's address.
OnSwitch = Callable[[Address, Address], Awaitable[None]]

SWITCH_CHANNEL = "+switch-master"
_POLL_TIMEOUT = 1.0
#: A PING on the subscribed connection every this many seconds; no reply (nor any
#: message) within _PING_GRACE more seconds means the sentinel is gone.
_PING_INTERVAL = 2.0
_PING_GRACE = 3.0
_RETRY_DELAY = 0.2


class SentinelWatcher:
    """Subscribes to ``+switch-master`` on one sentinel at a time; see the module doc."""

    def __init__(
        self,
        sentinels: list[Address],
        master_name: str,
        on_switch: OnSwitch,
        *,
        connection_kwargs: dict[str, Any],
        connect_timeout: float,
    ) -> None:
        if not sentinels:
            raise ValueError("a SentinelWatcher needs at least one sentinel address")
        self.sentinels = list(sentinels)
        self.master_name = master_name
        self.primary: Address | None = None
        #: Switches reported, and subscriptions lost (each followed by a reconnect).
        self.switches = 0
        self.reconnects = 0
        self._on_switch = on_switch
        self._kwargs = dict(connection_kwargs)
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.listening_on: Address | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the watcher task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="msfw-redis-sentinel-watch")

    def forget(self) -> None:
        """Drop the task of a previous (closed) event loop without awaiting it."""
        self._task = None
        self._subscribed = asyncio.Event()
        self.listening_on = None

    async def wait_subscribed(self, timeout: float) -> bool:
        """True once the watcher is subscribed on some sentinel (within ``timeout`` s)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        return self._subscribed.is_set()

    async def aclose(self) -> None:
        """Stop the watcher and close its connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged("sentinel watcher"):
                await task

    async def _run(self) -> None:
        index = 0
        first = True
        while True:
            address = self.sentinels[index % len(self.sentinels)]
            try:
                await self._watch(address, first=first)
            except asyncio.CancelledError:
                raise
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                logger.debug("sentinel %s:%d watch lost: %r", *address, exc)
            except Exception:
                logger.exception("sentinel watcher failed on %s:%d; trying the next", *address)
            raise_if_cancelling()
            if self.listening_on is not None:
                self.reconnects += 1  # a subscription was lost: the next is a reconnect
            self._subscribed.clear()
            self.listening_on = None
            first = False
            index += 1
            if index % len(self.sentinels) == 0:
                # Every sentinel tried once: pause before going round again.
                await asyncio.sleep(_RETRY_DELAY)

    async def _watch(self, address: Address, *, first: bool) -> None:
        kwargs = {**self._kwargs, "socket_timeout": None}
        kwargs["socket_connect_timeout"] = self._connect_timeout
        client: Any = aioredis.Redis(host=address[0], port=address[1], **kwargs)
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self._connect_timeout * 4):
                await pubsub.subscribe(SWITCH_CHANNEL)
                reply: Any = await client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
            self.listening_on = address
            self._subscribed.set()
            if reply:
                current = (_text(reply[0]), int(reply[1]))
                if self.primary is not None and current != self.primary and not first:
                    # A switch announced while no connection was up.
                    await self._switched(address, current)
                self.primary = current
            await self._listen(address, pubsub)
        finally:
            with logged("sentinel watcher close"):
                await pubsub.aclose()
            with logged("sentinel watcher close"):
                await client.aclose()

    async def _listen(self, address: Address, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        last_seen = loop.time()
        pinged_at: float | None = None
        while True:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=_POLL_TIMEOUT
            )
            raise_if_cancelling()
            now = loop.time()
            if message is not None:
                last_seen, pinged_at = now, None
                if message.get("type") == "message":
                    await self._on_message(address, message.get("data"))
                continue
            if pinged_at is not None and now - pinged_at > _PING_GRACE:
                raise TimeoutError(f"sentinel {address[0]}:{address[1]} stopped answering")
            if pinged_at is None and now - last_seen > _PING_INTERVAL:
                await pubsub.ping()
                pinged_at = now

    async def _on_message(self, address: Address, data: Any) -> None:
        parts = _text(data).split()
        if len(parts) != 5 or parts[0] != self.master_name:
            return
        try:
            new = (parts[3], int(parts[4]))
        except ValueError:
            return
        if new == self.primary:
            return
        self.primary = new
        await self._switched(address, new)

    async def _switched(self, sentinel: Address, new: Address) -> None:
        self.switches += 1
        self.primary = new
        try:
            await self._on_switch(sentinel, new)
        except Exception:
            logger.exception("handling the switch of %s to %s:%d failed", self.master_name, *new)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
