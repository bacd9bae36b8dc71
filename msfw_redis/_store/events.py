"""The process's one pub/sub connection, shared by every component.

Transition scripts PUBLISH what changed; components subscribe here to keep their local
mirrors fresh. Pub/sub is a notification channel, never the source of truth: a message
can be lost during a reconnect, so after every (re)subscription the bus calls each
channel's ``on_resync`` callback, and the component re-reads its state from Redis.

The reader task reconnects with full-jitter exponential back-off, so a fleet does not
reconnect in lock-step after a Redis restart.

On Redis Cluster, per-service channels (those with a ``{hash tag}``) use sharded pub/sub:
SSUBSCRIBE on the shard that owns the channel's slot, which is the slot of the service's
keys, where the scripts SPUBLISH. A channel is subscribed when a component first uses
that service, so a process listens only on the shards of the services it calls.
redis-py's ``ClusterPubSub`` follows slot moves and failovers and resubscribes by itself;
each such (re)subscription confirmation triggers the channel's resync here, exactly as a
reconnect of the bus does. Cross-service channels stay classic pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from redis import exceptions as rexc

from msfw_redis._callbacks import call_logged
from msfw_redis._shutdown import logged, raise_if_cancelling
from msfw_redis._store.connection import close_client
from msfw_redis._store.gates import is_cluster_client

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

    from msfw_redis._store.connection import StoreClient
    from msfw_redis._store.store import Store

__all__ = ["EventBus", "Handler", "Resync"]

logger = logging.getLogger("msfw_redis.events")

Handler = Callable[[bytes], Awaitable[None] | None]
Resync = Callable[[], Awaitable[None] | None]

_BACKOFF_INITIAL = 0.05
_BACKOFF_MAX = 5.0
_POLL_TIMEOUT = 1.0
#: On Cluster the reader polls the classic connection and each shard's connection in
#: turn, so each poll is short: a message waits at most about (shards + 1) polls.
_SHARD_POLL_TIMEOUT = 0.02
_RECHECK_DELAYS = (1.0, 3.0)
#: After a slot move, how long to wait for a slot table naming the new owner (and how
#: often to ask) before subscribing anyway.
_FOLLOW_WAIT = 3.0
_FOLLOW_STEP = 0.1
_SUBSCRIBE_CONFIRMS = frozenset({"subscribe", "ssubscribe"})


@dataclass(slots=True)
class _Channel:
    handlers: list[Handler] = field(default_factory=list)
    resyncs: list[Resync] = field(default_factory=list)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)


class EventBus:
    """Routes pub/sub messages to handlers; one subscriber connection per process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._channels: dict[str, _Channel] = {}
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._client: StoreClient | None = None
        self._closed = False
        self._recheck: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0
        self.resubscribes = 0
        self.messages = 0
        self._reconnecting = False
        # On Sentinel, a new primary: subscribe there at once (see reconnect()).
        store.on_primary_switch(self.reconnect)

    @property
    def connected(self) -> bool:
        """True while the subscriber connection is up."""
        return self._connected.is_set()

    def rebind(self) -> None:
        """Forget the reader of a previous (closed) event loop without awaiting it.

        The next :meth:`start` makes a new reader and resubscribes every channel.
        """
        self._task = None
        self._pubsub = None
        self._client = None
        self._connected = asyncio.Event()
        for entry in self._channels.values():
            entry.confirmed = asyncio.Event()

    async def release_connections(self) -> None:
        """Close the subscriber connection of an ending event loop (its reader task is
        already cancelled); :meth:`rebind` then prepares the next loop's reader."""
        await self._teardown()

    def start(self) -> None:
        """Start the reader task (idempotent)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="msfw-redis-events")

    async def reconnect(self) -> None:
        """Drop the subscriber connection now and make a new one, resubscribing every
        channel (each then resyncs, as after any reconnect).

        The store calls this when Sentinel names a new primary, so the subscriber moves
        there at once instead of staying on the demoted one.
        """
        if self._task is None or self._closed or self._reconnecting:
            return
        self._reconnecting = True
        try:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged("events task"):
                await task
            await self._teardown()
            if not self._closed:
                self._task = asyncio.create_task(self._run(first=False), name="msfw-redis-events")
        finally:
            self._reconnecting = False

    async def subscribe(
        self,
        channel: str,
        handler: Handler,
        *,
        on_resync: Resync | None = None,
        wait: bool = True,
    ) -> None:
        """Deliver every message on ``channel`` to ``handler``.

        With ``wait`` (the default) this returns once Redis has confirmed the
        subscription, or after the store's operation timeout when Redis is unwell, so a
        caller can read state afterwards knowing no later change will be missed.
        """
        self.start()
        entry = self._channels.get(channel)
        new = entry is None
        if entry is None:
            entry = self._channels[channel] = _Channel()
        entry.handlers.append(handler)
        if on_resync is not None:
            entry.resyncs.append(on_resync)
        if new and self._pubsub is not None and self._connected.is_set():
            try:
                async with asyncio.timeout(self._store.op_timeout):
                    await self._subscribe_all([channel])
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                logger.debug("subscribe to %s deferred to reconnect: %r", channel, exc)
        if wait and self._store.available:
            # While the store is known to be down the confirmation cannot come; the
            # subscription is made (and on_resync called) when the bus reconnects.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._store.op_timeout * 4):
                    await entry.confirmed.wait()

    async def publish(self, channel: str, message: bytes) -> int:
        """Publish through the command connection; returns the number of receivers."""
        return await self._store.publish(channel, message)

    async def aclose(self) -> None:
        """Stop the reader and close the subscriber connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged("events task"):
                await self._task
            self._task = None
        await self._teardown()

    async def _teardown(self) -> None:
        self._connected.clear()
        recheck, self._recheck = self._recheck, None
        if recheck is not None:
            recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged("events recheck"):
                await recheck
        for entry in self._channels.values():
            entry.confirmed.clear()
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        if pubsub is not None:
            with logged("events close"):
                await pubsub.aclose()
        if client is not None and client is not self._store.client:
            with logged("events close"):
                await close_client(client)

    async def _run(self, *, first: bool = True) -> None:
        backoff = _BACKOFF_INITIAL
        while not self._closed:
            try:
                self._client = self._store.pubsub_client()
                if is_cluster_client(self._client):
                    # SSUBSCRIBE needs the slot table (SlotNotCoveredError otherwise); the
                    # classic connection (cross-service channels: PUBLISH reaches every
                    # node) goes to a node picked from it.
                    async with asyncio.timeout(self._store.op_timeout * 4):
                        await self._client.initialize()
                self._pubsub = self._client.pubsub()
                # A throwaway channel keeps the connection in subscribed mode even when no
                # component has subscribed yet, so get_message() has a socket to read.
                await self._pubsub.subscribe(self._store.keys.global_key("events", "bus"))
                sent = set(self._channels)
                if sent:
                    await self._subscribe_all(list(sent))
                # A channel added while those were being sent saw no connection yet and
                # left its SUBSCRIBE to us: send those too. No await separates the last
                # (empty) check from _connected.set(), so none can slip in between.
                while late := [c for c in self._channels if c not in sent]:
                    sent.update(late)
                    await self._subscribe_all(late)
                self._connected.set()
                if not first:
                    self.reconnects += 1
                    logger.info("event bus resubscribed to %d channels", len(self._channels))
                backoff = _BACKOFF_INITIAL
                await self._read_loop(resync=not first)
            except asyncio.CancelledError:
                raise
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                logger.debug("event bus connection lost: %r", exc)
            except Exception:
                logger.exception("event bus reader failed; reconnecting")
            first = False
            await self._teardown()
            raise_if_cancelling()  # a cancel that became a TimeoutError above still ends us
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _sharded(self, channel: str) -> bool:
        return is_cluster_client(self._client) and "{" in channel

    async def _subscribe_all(self, channels: list[str]) -> None:
        sharded = [c for c in channels if self._sharded(c)]
        classic = [c for c in channels if not self._sharded(c)]
        if classic:
            await self._pubsub.subscribe(*classic)
        if sharded:
            # ClusterPubSub routes each channel to the node owning its slot.
            await self._pubsub.ssubscribe(*sharded)

    async def _next_message(self) -> dict[str, Any] | None:
        if not is_cluster_client(self._client):
            return cast(
                "dict[str, Any] | None",
                await self._pubsub.get_message(
                    ignore_subscribe_messages=False, timeout=_POLL_TIMEOUT
                ),
            )
        message = await self._pubsub.get_message(
            ignore_subscribe_messages=False, timeout=_SHARD_POLL_TIMEOUT
        )
        if message is None and self._pubsub.node_pubsub_mapping:
            message = await self._pubsub.get_sharded_message(
                ignore_subscribe_messages=False, timeout=_SHARD_POLL_TIMEOUT
            )
        return cast("dict[str, Any] | None", message)

    async def _follow_slot_move(self, channel: str) -> None:
        """Subscribe again where ``channel``'s slot lives now.

        The server unsubscribes sharded subscribers when their node stops owning the
        slot (a reshard, or a failover that demoted it). We never unsubscribe, so this
        is always that: refresh the slot table and SSUBSCRIBE on the new owner. The
        confirmation then triggers the resync. A failure here reconnects the whole bus.
        """
        if not is_cluster_client(self._client):
            return
        logger.info("sharded channel %s moved; subscribing on its new owner", channel)
        client = self._client
        # The node that unsubscribed us no longer owns the slot, but the node asked for
        # the slot table may not know yet and name it again. Subscribing there would
        # land on a demoted replica that its new master may not yet count in its shard,
        # so SPUBLISHes would miss us: wait (bounded) for a table that names another
        # owner, then subscribe; past the bound, subscribe anyway and let the re-checks
        # below move the subscription.
        gone = _owner(client, channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FOLLOW_WAIT
        async with asyncio.timeout(self._store.op_timeout * 4 + _FOLLOW_WAIT):
            while True:
                await client.nodes_manager.initialize()
                owner = _owner(client, channel)
                if (owner is not None and owner != gone) or loop.time() >= deadline:
                    break
                await asyncio.sleep(_FOLLOW_STEP)
            await self._pubsub.ssubscribe(channel)
        if self._recheck is None or self._recheck.done():
            # The node asked first may not have learnt of the move yet: read the slot
            # table again a little later; redis-py then moves any subscription whose
            # owner changed (and the confirmation resyncs it).
            self._recheck = asyncio.create_task(self._recheck_slots(client))

    async def _recheck_slots(self, client: RedisCluster) -> None:
        for delay in _RECHECK_DELAYS:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(self._store.op_timeout * 4):
                    await client.nodes_manager.initialize()
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                logger.debug("slot table re-check failed: %r", exc)

    async def _read_loop(self, *, resync: bool) -> None:
        pending_resync = resync
        while not self._closed:
            raise_if_cancelling()
            message = await self._next_message()
            # A cancel that lands as a message arrives can be swallowed by the client's
            # read timeout (Python 3.11 wait_for); honour it here, or asyncio.run's
            # cancel-all at loop end would wait for ever.
            raise_if_cancelling()
            if message is None:
                continue
            kind = message.get("type")
            kind = kind.decode() if isinstance(kind, bytes) else kind
            channel_raw = message.get("channel")
            channel = channel_raw.decode() if isinstance(channel_raw, bytes) else str(channel_raw)
            entry = self._channels.get(channel)
            if kind in _SUBSCRIBE_CONFIRMS:
                if entry is not None:
                    # A confirmation for a channel already confirmed on this connection
                    # is redis-py resubscribing by itself (a reconnect, a slot move, a
                    # failover): messages may have been lost in between, so resync.
                    again = entry.confirmed.is_set()
                    entry.confirmed.set()
                    if pending_resync or again:
                        if again:
                            self.resubscribes += 1
                        await self._call_all(entry.resyncs, None)
                continue
            if kind == "sunsubscribe":
                if entry is not None and not self._closed:
                    await self._follow_slot_move(channel)
                continue
            if kind not in ("message", "smessage") or entry is None:
                continue
            self.messages += 1
            data = message.get("data")
            payload = data if isinstance(data, bytes) else str(data).encode()
            await self._call_all(entry.handlers, payload)

    @staticmethod
    async def _call_all(callbacks: list[Any], payload: bytes | None) -> None:
        args = () if payload is None else (payload,)
        for callback in list(callbacks):
            await call_logged(callback, *args, log=logger, what="event handler")


def _owner(client: RedisCluster, channel: str) -> str | None:
    """The name of the node the slot table says owns ``channel``'s slot, if any."""
    try:
        node = client.get_node_from_key(channel)
    except rexc.RedisError:
        return None
    return None if node is None else str(node.name)
