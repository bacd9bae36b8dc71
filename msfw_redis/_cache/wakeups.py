"""Waking callers that wait for another caller's fill: futures resolved by pub/sub.

One :class:`FillWakeups` per :class:`~msfw_redis._cache.ResponseCache`. A resolution
*arms* a future for its key before each lookup, because the wake-up message can be
read before the lookup's reply. The fill scripts publish on the service's cache
channel (``<prefix>:v1:{<service>}:cache:events``), and only when a WAIT was answered:

* ``<digest> F``: the fill landed; look again (the answer is then FRESH).
* ``<digest> S``: the filler will not store (origin failed, not storable, too large,
  generation changed, key cleared); call the origin yourself.

The process's one subscriber connection (:class:`~msfw_redis._events.EventBus`)
delivers them. A service's channel is subscribed on first need (or in
``prepare``); right after a new subscription, the waiter looks again at once, since a
fill may have landed before it. After a reconnect the bus calls ``on_resync`` and
every waiter of that service looks again, because messages may have been lost.

Pub/sub only shortens waits; it is never needed for correctness. Every wait also ends
when the lease it waits on expires (plus a little jitter, so a crowd of waiters does
not retry in lock-step), and at the caller's deadline. Without a bus, waiters re-check
with back-off instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._store.events import EventBus

__all__ = [
    "POLL_INITIAL",
    "POLL_MAX",
    "WAKE_DEADLINE",
    "WAKE_FILL",
    "WAKE_RECHECK",
    "WAKE_SKIP",
    "FillWakeups",
]

logger = logging.getLogger("msfw_redis.cache")

#: Why a wait ended.
WAKE_FILL = "F"  # the fill landed: look again
WAKE_SKIP = "S"  # the filler will not store: call the origin
WAKE_RECHECK = "R"  # subscribed afresh, lease ended, resync or poll: look again
WAKE_DEADLINE = "D"  # the caller's wait_timeout passed: call the origin

#: Re-check back-off without a bus (seconds): first delay and cap.
POLL_INITIAL = 0.02
POLL_MAX = 0.5
# Waking a little after a lease ends, with jitter, spreads the takeover attempts.
_WAKE_SLACK = 0.002
_WAKE_JITTER = 0.02


@dataclass(slots=True)
class _Waiter:
    service: str
    future: asyncio.Future[str] = field(repr=False)


class FillWakeups:
    """The waiters of one cache in this process, and their subscriptions.

    Args:
        bus: the process's event bus, or ``None`` to re-check with back-off.
        channel_for: the cache channel name of a service.
    """

    def __init__(
        self,
        bus: EventBus | None,
        channel_for: Callable[[str], str],
        listener: Callable[[str, str, str], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._bus = bus
        self._channel_for = channel_for
        # The near cache hears every message (service, id, kind), and every resync.
        self._listener = listener
        self._on_lost = on_lost
        self._waiters: dict[tuple[str, str], _Waiter] = {}
        self._subscriptions: dict[str, asyncio.Task[None]] = {}

    def arm(self, service: str, digest: str) -> asyncio.Future[str]:
        """A new future for ``(service, digest)``, replacing any earlier one."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[(service, digest)] = _Waiter(service, future)
        return future

    def disarm(self, service: str, digest: str, future: asyncio.Future[str] | None) -> None:
        """Forget ``future`` if it is still the one armed for the key."""
        waiter = self._waiters.get((service, digest))
        if waiter is not None and waiter.future is future:
            del self._waiters[(service, digest)]

    def _on_message(self, service: str, payload: bytes) -> None:
        digest, _, kind = payload.decode("ascii", "replace").partition(" ")
        if self._listener is not None:
            self._listener(service, digest, kind)
        waiter = self._waiters.get((service, digest))
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(WAKE_SKIP if kind == WAKE_SKIP else WAKE_FILL)

    def _on_resync(self, service: str) -> None:
        # Messages may have been lost while the subscriber was away: everyone looks again.
        if self._on_lost is not None:
            self._on_lost(service)
        for waiter in list(self._waiters.values()):
            if waiter.service == service and not waiter.future.done():
                waiter.future.set_result(WAKE_RECHECK)

    async def subscribe(self, service: str) -> bool:
        """Make sure wake-ups for ``service`` arrive; True if this call had to subscribe."""
        if self._bus is None:
            return False
        task = self._subscriptions.get(service)
        if task is not None and task.done():
            return False
        if task is None:
            task = asyncio.ensure_future(
                self._bus.subscribe(
                    self._channel_for(service),
                    functools.partial(self._on_message, service),
                    on_resync=functools.partial(self._on_resync, service),
                )
            )
            self._subscriptions[service] = task
        try:
            await asyncio.shield(task)
        except Exception as exc:
            # The task stays (done), so later waits rely on lease-expiry timers instead
            # of retrying the subscription in a loop.
            logger.warning("cannot subscribe to cache wake-ups of %s: %r", service, exc)
        return True

    async def wait(
        self,
        service: str,
        future: asyncio.Future[str],
        *,
        lease_left: float,
        deadline: float,
        poll: float,
    ) -> str:
        """Wait for a wake-up, the lease's end or ``deadline`` (loop time); why it ended."""
        loop = asyncio.get_running_loop()
        budget = deadline - loop.time()
        if budget <= 0:
            return WAKE_DEADLINE
        lease_wake = lease_left + _WAKE_SLACK + random.uniform(0, _WAKE_JITTER)
        if self._bus is None:
            delay = min(poll, lease_wake)
        else:
            try:
                async with asyncio.timeout(budget):
                    if await self.subscribe(service):
                        # A fill may have landed before the subscription: look again.
                        return WAKE_RECHECK
            except TimeoutError:
                return WAKE_DEADLINE
            delay = lease_wake
        if delay >= budget:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget):
                    return await future
            return WAKE_DEADLINE
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                return await future
        return WAKE_RECHECK

    def rebind(self) -> None:
        """Forget waiters and unfinished subscriptions of a previous (closed) event loop;
        finished subscriptions stay (the bus resubscribes their channels itself)."""
        self._waiters.clear()
        for service, task in list(self._subscriptions.items()):
            if not task.done() or task.cancelled():
                del self._subscriptions[service]

    async def aclose(self) -> None:
        """Cancel pending subscriptions and wake every waiter to look again."""
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_result(WAKE_RECHECK)
        self._waiters.clear()
        pending = list(self._subscriptions.values())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError), logged("cache_wakeups task"):
                await task
        self._subscriptions.clear()
