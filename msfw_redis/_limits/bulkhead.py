"""The fleet-wide bulkhead: permits as leases in Redis, waiters woken by pub/sub.

* **Acquire** is one round trip (``limits_bulkhead_acquire``): reap lapsed leases, count,
  add. A full bulkhead raises :class:`BulkheadFullError` at once, or, with
  ``max_wait``, the caller waits for a ``free`` event on the service's limits channel
  (published by every release and by any reap that frees a permit) or for the earliest
  lease to lapse, whichever comes first, always within ``max_wait``. No polling.
* **Release** is batched: releases that arrive while a release call is in flight go out
  together in the next one, so a busy process pays far less than one round trip per call.
* **Leases** last ``permit_lease`` seconds of server time. One renewal task per bulkhead
  extends every permit this process still holds, every third of a lease, in one call; a
  SIGKILLed holder renews nothing, so its permits lapse within one lease.
* **Redis down**: ``fail_open`` admits the call without a permit (one WARNING per
  outage is the store's); ``fail_closed`` raises the store error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING

from msfw_redis._exceptions import BulkheadFullError, StoreError
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from types import TracebackType

    from msfw_redis._config import StoreFailurePolicy
    from msfw_redis._limits.config import BulkheadConfig
    from msfw_redis._limits.store import LimitsStore
    from msfw_redis._store.events import EventBus

__all__ = ["BulkheadStats", "FleetBulkhead", "Permit"]

logger = logging.getLogger("msfw_redis.limits")


class BulkheadStats:
    """In-process counters of one bulkhead, for status and metrics."""

    __slots__ = ("acquired", "rejected", "released", "unguarded", "waited", "woken")

    def __init__(self) -> None:
        self.acquired = 0
        self.rejected = 0
        self.waited = 0
        self.woken = 0
        self.released = 0
        self.unguarded = 0


class Permit:
    """One held permit; release it with :meth:`release` or ``async with``."""

    __slots__ = ("_bulkhead", "_released", "token")

    def __init__(self, bulkhead: FleetBulkhead | None, token: str) -> None:
        self._bulkhead = bulkhead
        self.token = token
        self._released = False

    @property
    def guarded(self) -> bool:
        """False for the permit handed out while Redis was down (``fail_open``)."""
        return self._bulkhead is not None

    async def release(self) -> None:
        """Give the permit back (idempotent)."""
        if self._released:
            return
        self._released = True
        if self._bulkhead is not None:
            await self._bulkhead.release(self.token)

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.shield(self.release())


class FleetBulkhead:
    """At most ``config.max_concurrent_calls`` permits held across every replica."""

    def __init__(
        self,
        store: LimitsStore,
        bus: EventBus,
        service: str,
        config: BulkheadConfig,
        *,
        instance: str | None = None,
        failure_policy: StoreFailurePolicy = "fail_open",
    ) -> None:
        self._store = store
        self._bus = bus
        self.service = service
        self.instance = instance
        self.config = config
        self._policy = failure_policy
        self.stats = BulkheadStats()
        self._held: set[str] = set()
        self._pending_release: list[str] = []
        self._flushing: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._subscription: asyncio.Task[None] | None = None
        self._free_seq = 0
        self.last_in_flight = 0

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.config.permit_lease * 1000))

    @property
    def held(self) -> int:
        """Permits this process holds now."""
        return len(self._held)

    def rebind(self) -> None:
        """Forget the waiters and tasks of a previous (closed) event loop; permits and
        stats stay, and the tasks start again on the running loop when needed."""
        self._waiters.clear()
        for name in ("_flushing", "_renewer", "_subscription"):
            task = getattr(self, name)
            if task is not None and (not task.done() or task.cancelled()):
                setattr(self, name, None)

    async def acquire(self, *, max_wait: float | None = None) -> Permit:
        """A permit; :class:`BulkheadFullError` once ``max_wait`` (default: config's) passed."""
        wait = self.config.max_wait if max_wait is None else max_wait
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        if wait > 0:
            await self._subscribed()
        while True:
            seq = self._free_seq
            try:
                reply = await self._store.bulkhead_acquire(
                    self.service, self.instance, token, self.config.max_concurrent_calls,
                    self.lease_ms,
                )  # fmt: skip
            except StoreError:
                if self._policy == "fail_closed":
                    raise
                self.stats.unguarded += 1
                return Permit(None, token)
            self.last_in_flight = reply.in_flight
            if reply.granted:
                self.stats.acquired += 1
                self._held.add(token)
                self._ensure_renewer()
                return Permit(self, token)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.rejected += 1
                raise BulkheadFullError(
                    f"bulkhead of {self.service!r} is full: {reply.in_flight} of "
                    f"{self.config.max_concurrent_calls} permits in flight across the fleet",
                    limit=self.config.max_concurrent_calls,
                    in_flight=reply.in_flight,
                    service_name=self.service,
                )
            if seq != self._free_seq:
                continue  # a permit freed while our acquire was on the wire
            # The earliest lease lapsing frees a permit too, without any event.
            lapse = max(0.0, (reply.earliest_expiry_ms - reply.now_ms) / 1000.0) + 0.001
            self.stats.waited += 1
            await self._wait_free(min(remaining, lapse) if reply.earliest_expiry_ms else remaining)

    async def release(self, token: str) -> None:
        """Queue ``token`` for the next batched release and make sure one is under way."""
        if token not in self._held:
            return
        self._held.discard(token)
        self._pending_release.append(token)
        self.stats.released += 1
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="msfw-bulkhead-release")
        await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        # Every release queued while one call is on the wire goes out in the next one.
        while self._pending_release:
            batch, self._pending_release = self._pending_release, []
            try:
                await self._store.bulkhead_release(self.service, self.instance, batch)
            except StoreError as exc:
                # The leases lapse on their own within permit_lease; nothing is lost.
                logger.debug("bulkhead release of %d permits failed: %r", len(batch), exc)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_loop(), name="msfw-bulkhead-renew")

    async def _renew_loop(self) -> None:
        period = self.config.permit_lease / 3.0
        while self._held:
            await asyncio.sleep(period)
            tokens = list(self._held)
            if not tokens:
                return
            try:
                await self._store.bulkhead_renew(self.service, self.instance, tokens, self.lease_ms)
            except StoreError as exc:
                logger.debug("bulkhead lease renewal failed: %r", exc)

    async def _subscribed(self) -> None:
        # One subscription per bulkhead; every would-be waiter awaits its confirmation,
        # so none can miss a free event published after its refused acquire.
        if self._subscription is None:
            channel = self._store.keys.limits_channel(self.service)
            self._subscription = asyncio.create_task(
                self._bus.subscribe(channel, self._on_event, on_resync=self._wake_all)
            )
        await asyncio.shield(self._subscription)

    def _on_event(self, payload: bytes) -> None:
        parts = payload.split(b"|")
        if parts[0] != b"free":
            return
        try:
            freed = int(parts[1])
        except (IndexError, ValueError):
            freed = 1
        self._free_seq += 1
        # Wake as many local waiters as permits came free: the rest would only lose the
        # race and cost a round trip each.
        for _ in range(max(1, freed)):
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self.stats.woken += 1
                return

    def _wake_all(self) -> None:
        self._free_seq += 1
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _wait_free(self, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await fut
        finally:
            # A timed-out waiter stays queued as a cancelled future; wakes skip those.
            if not fut.done():
                fut.cancel()

    async def aclose(self) -> None:
        """Stop renewing and release every permit still held."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged("bulkhead renewer"):
                await self._renewer
        for token in list(self._held):
            await self.release(token)
        if self._flushing is not None:
            with logged("bulkhead release"):
                await self._flushing
