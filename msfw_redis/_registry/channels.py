"""Per-service subscriptions of the registry and the health monitor.

Registry revision events and health events go out on each service's own channels,
``keys.channel(service, "registry")`` and ``keys.channel(service, "health")``, in the slot
of that service's keys: on Redis Cluster the scripts SPUBLISH them and the event bus
SSUBSCRIBEs on the shard that owns the slot, so an event crosses no other shard. A
process subscribes to a service's channel when it first uses that service, and the
subscription is confirmed before the read that follows, so no later change is missed.
Every (re)subscription of a channel calls its resync, which re-reads that service only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._store.events import EventBus, Handler, Resync

__all__ = ["ServiceChannels"]

logger = logging.getLogger("msfw_redis.registry")


class ServiceChannels:
    """Subscribes once per service to one component's channel on the event bus.

    Args:
        bus: the process's event bus; ``None`` makes every call a no-op.
        channel: ``channel(service)``, the service's channel name.
        handler: the message handler, shared by every service (payloads name the service).
        resync: ``resync(service)`` returns the callback run at each (re)subscription.
    """

    def __init__(
        self,
        bus: EventBus | None,
        channel: Callable[[str], str],
        handler: Handler,
        resync: Callable[[str], Resync],
    ) -> None:
        self._bus = bus
        self._channel = channel
        self._handler = handler
        self._resync = resync
        self._subscribed: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}

    def services(self) -> set[str]:
        """The services subscribed (or being subscribed) so far."""
        return self._subscribed | set(self._pending)

    async def ensure(self, service: str, *, wait: bool = True) -> None:
        """Subscribe to ``service``'s channel unless done already.

        With ``wait`` this returns once Redis confirmed the subscription (bounded by the
        bus), including when another caller started it, so a read that follows cannot
        miss a later change. Without ``wait`` the subscription proceeds in the background.
        """
        bus = self._bus
        if bus is None:
            return
        pending = self._pending.get(service)
        if pending is None:
            if service in self._subscribed:
                return
            pending = asyncio.ensure_future(self._subscribe(bus, service))
            self._pending[service] = pending
            pending.add_done_callback(lambda done: self._done(service, done))
        if wait:
            await asyncio.shield(pending)

    def rebind(self) -> None:
        """Forget subscriptions in flight on a previous (closed) event loop.

        The bus keeps every channel it was given and subscribes them again on the new
        loop; a service whose subscription never started is subscribed at its next use.
        """
        self._pending.clear()

    async def _subscribe(self, bus: EventBus, service: str) -> None:
        channel = self._channel(service)
        try:
            # Marked in the same step in which the bus registers the handler (its first
            # await comes later), so a cancel can never leave one without the other.
            self._subscribed.add(service)
            await bus.subscribe(channel, self._handler, on_resync=self._resync(service))
        except Exception:
            # The handler is registered; the bus subscribes it at its next reconnect, and
            # discovery's max staleness covers the events missed until then.
            logger.exception("subscription to %s failed; it is retried at reconnect", channel)

    def _done(self, service: str, task: asyncio.Future[None]) -> None:
        if self._pending.get(service) is task:
            del self._pending[service]
