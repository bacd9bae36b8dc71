"""The breaker hub: every breaker of one SDK, their subscriptions, index and listeners.

The breakers themselves (mirror, admission, outcomes) are in
:mod:`msfw_redis._breaker.breaker`; the hub makes them, routes each service's transition
events to them and lists them in the fleet index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from msfw_redis._breaker.breaker import DistributedBreaker
from msfw_redis._breaker.flusher import SuccessFlusher, flush_all
from msfw_redis._breaker.host import params_from_config
from msfw_redis._breaker.machine import BreakerParams, BreakerState
from msfw_redis._breaker.views import (
    SERVICE_SCOPE,
    CircuitState,
    TransitionEvent,
    TransitionListener,
)
from msfw_redis._callbacks import call_logged
from msfw_redis._config import CircuitBreakerConfig, StoreFailurePolicy
from msfw_redis._exceptions import StoreError
from msfw_redis._store.keys import canonical_service_name

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from msfw_redis._breaker.flusher import Flushable
    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

__all__ = ["BreakerHub"]

logger = logging.getLogger("msfw_redis.breaker")

#: Background mirror refreshes (staleness re-reads, rejoin writes) in flight at once.
REFRESH_CONCURRENCY = 8


class BreakerHub:
    """Every breaker of one SDK: mirrors, the per-service subscriptions, listeners."""

    def __init__(
        self,
        store: Store,
        bus: EventBus | None,
        *,
        failure_policy: StoreFailurePolicy = "fail_open",
    ) -> None:
        self.store = store
        self.bus = bus
        self.failure_policy = failure_policy
        self._breakers: dict[tuple[str, str], DistributedBreaker] = {}
        # Spellings seen at the edge (``order_service``) -> the canonical breaker, so the
        # hot path pays one dict lookup, not a name check, per call.
        self._aliases: dict[tuple[str, str], DistributedBreaker] = {}
        self._subscribed: set[str] = set()
        self._listeners: list[TransitionListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Services listed in the global services index, by monotonic time of the write.
        self._indexed: dict[str, float] = {}
        # Shared immutable defaults: one config (and its script params) for every breaker
        # made without one, and one params object per config in use, not one per breaker.
        self._default_config = CircuitBreakerConfig()
        self._params: dict[int, tuple[CircuitBreakerConfig, BreakerParams]] = {}
        # One timer for every breaker's batched successes, not one per breaker.
        self._flusher = SuccessFlusher(self.spawn)
        self._refresh_slots = asyncio.Semaphore(REFRESH_CONCURRENCY)
        store.on_recovery(self._on_store_recovery)

    def params_for(self, config: CircuitBreakerConfig) -> BreakerParams:
        """The script params of ``config``, derived once per config object."""
        hit = self._params.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        params = params_from_config(config)
        # The config is kept with its params, so its id cannot be reused meanwhile.
        self._params[id(config)] = (config, params)
        return params

    @property
    def refresh_slots(self) -> asyncio.Semaphore:
        """Bounds the background mirror refreshes in flight, across all breakers."""
        return self._refresh_slots

    def schedule_flush(self, breaker: Flushable, interval: float) -> None:
        """Send ``breaker``'s batched successes ``interval`` seconds from now."""
        self._flusher.schedule(breaker, interval)

    def get(
        self,
        service: str,
        endpoint: str | None = None,
        config: CircuitBreakerConfig | None = None,
    ) -> DistributedBreaker:
        """The breaker for ``service`` (and ``endpoint`` when scoped per endpoint)."""
        name = endpoint if endpoint is not None else SERVICE_SCOPE
        breaker = self._breakers.get((service, name)) or self._aliases.get((service, name))
        if breaker is None:
            # Validated once, where a breaker is made: a name in the dicts already passed.
            canonical = canonical_service_name(service)
            breaker = self._breakers.get((canonical, name))
            if breaker is None:
                breaker = DistributedBreaker(
                    self, canonical, endpoint, config or self._default_config
                )
                self._breakers[(canonical, name)] = breaker
            if canonical != service:
                self._aliases[(service, name)] = breaker
        if config is not None and config is not breaker.config:
            breaker.config = config
            breaker.params = self.params_for(config)
        return breaker

    def is_open(self, service: str, endpoint: str) -> bool:
        """True when this process's mirror says the breaker is refusing calls now.

        No I/O: a breaker this process never used reads as not open.
        """
        breaker = self._breakers.get((service, endpoint)) or self._aliases.get((service, endpoint))
        if breaker is None:
            return False
        state = breaker.state()
        return state.state in ("open", "forced_open") and (
            state.retry_after is None or state.retry_after > 0
        )

    def breakers(self) -> list[DistributedBreaker]:
        """Every breaker this process has used."""
        return list(self._breakers.values())

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(event)`` on every transition, as seen through pub/sub."""
        self._listeners.append(listener)

    async def subscribe(self, service: str) -> None:
        if service in self._subscribed or self.bus is None:
            return
        self._subscribed.add(service)
        channel = self.store.keys.channel(service, "breaker")

        async def resync() -> None:
            for (svc, _), breaker in list(self._breakers.items()):
                if svc == service:
                    with contextlib.suppress(StoreError):
                        await breaker.refresh()

        await self.bus.subscribe(
            channel, lambda payload: self._on_message(service, payload), on_resync=resync
        )

    async def _on_message(self, service: str, payload: bytes) -> None:
        try:
            gen_s, state_s, opened_s, until_s, now_s, name = payload.decode().split("|", 5)
            gen, opened, until, now = int(gen_s), int(opened_s), int(until_s), int(now_s)
            state = BreakerState(int(state_s))
        except (ValueError, UnicodeDecodeError):
            logger.warning("ignoring malformed breaker event %r", payload[:200])
            return
        breaker = self._breakers.get((service, name))
        before: str | None = None
        if breaker is not None:
            breaker.on_event(gen, state, opened, until, now)
            if breaker.prior is not None and breaker.prior[0] == gen:
                before = breaker.prior[1]
        if not self._listeners:
            return
        retry_after = max(0.0, (until - now) / 1000.0) if state is BreakerState.OPEN else 0.0
        event = TransitionEvent(
            service=service,
            endpoint=None if name == SERVICE_SCOPE else name,
            state=state.label,
            generation=gen,
            opened_at=opened / 1000.0 if opened else None,
            retry_after=retry_after,
            from_state=before,
            at=now / 1000.0,
        )
        for listener in list(self._listeners):
            await call_logged(listener, event, log=logger, what="breaker transition listener")

    async def enter(self, service: str, retention_ms: int) -> None:
        """Before a breaker of ``service`` first reads its state: subscribe, and list the
        service in the global services index, in one round trip (sent concurrently).

        The subscription is confirmed before the read that follows, so no later change
        can be missed; the services index is written before the first call proceeds, so
        ``status`` and the CLI list the service at once.
        """
        if service in self._subscribed and not self._index_due(service):
            return
        await asyncio.gather(self.subscribe(service), self._index_service(service, retention_ms))

    def _index_due(self, service: str) -> bool:
        return time.monotonic() - self._indexed.get(service, -math.inf) >= 3600

    async def _index_service(self, service: str, retention_ms: int) -> None:
        if not self._index_due(service):
            return
        self._indexed[service] = time.monotonic()
        try:
            await self.store.run(
                "registry_index",
                [self.store.keys.global_key("breaker", "services")],
                [0, service, retention_ms],
            )
        except StoreError as exc:
            self._indexed.pop(service, None)
            logger.debug("breaker services index update failed: %s", exc)

    async def index(self, service: str, name: str, retention_ms: int) -> None:
        """Record the breaker in the fleet-wide indexes (for ``status`` and the CLI).

        Two single-key calls: the per-service index carries the service's hash tag, the
        list of services is a global key. A breaker's first use does not come here: its
        ``breaker_read`` writes the per-service entry and :meth:`enter` the other.
        """
        keys = self.store.keys
        try:
            await self.store.run(
                "registry_index",
                [keys.key(service, "breaker", "index")],
                [0, name, retention_ms],
            )
        except StoreError as exc:
            logger.debug("breaker index update failed: %s", exc)
            return
        await self._index_service(service, retention_ms)

    async def fleet(self, service: str | None = None) -> list[CircuitState]:
        """Every breaker known fleet-wide (or of one service), read from Redis."""
        keys = self.store.keys
        services = (
            [service]
            if service
            else await self.store.zmembers(keys.global_key("breaker", "services"))
        )
        states: list[CircuitState] = []
        for svc in services:
            for name in await self.store.zmembers(keys.key(svc, "breaker", "index")):
                endpoint = None if name == SERVICE_SCOPE else name
                states.append(await self.get(svc, endpoint).refresh())
        return states

    def _on_store_recovery(self) -> None:
        for breaker in list(self._breakers.values()):
            if breaker.running_local:
                breaker.background_refresh()

    def rebind(self) -> None:
        """Forget the tasks and timers of a previous (closed) event loop.

        Those tasks were cancelled with their loop and are never awaited here; every
        breaker keeps its config, mirror and batched counts (see
        :meth:`DistributedBreaker.rebind`).
        """
        self._tasks.clear()
        self._refresh_slots = asyncio.Semaphore(REFRESH_CONCURRENCY)  # bound to the old loop
        for breaker in list(self._breakers.values()):
            breaker.rebind()
        self._flusher.rebind()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for background work (index updates, mirror refreshes) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def flush(self) -> None:
        """Send every breaker's batched successes now (a few scripts in flight at once)."""
        await flush_all(self._pending_breakers(), self._flusher.concurrency)

    def _pending_breakers(self) -> list[DistributedBreaker]:
        return [b for b in self._breakers.values() if b.has_pending]

    async def release_loop(self) -> None:
        """The running event loop is ending: stop the flush timer, send every batch and
        wait for background work, so no task is left pending when the loop closes.
        The caller bounds it (Redis may be down)."""
        self._flusher.stop_timer()
        await self.flush()
        await self.drain()

    async def aclose(self) -> None:
        """Flush batched successes and wait for background refreshes.

        The flush gives up once no report has gone through for one op timeout, so a
        Redis that stopped answering costs a close about that, not one per breaker.
        """
        self._flusher.close()
        left = await flush_all(
            self._pending_breakers(), self._flusher.concurrency, stall=self.store.op_timeout
        )
        if left:
            logger.warning(
                "breaker hub closed with the batched successes of %d breakers unsent "
                "(no report went through for %.2fs)",
                left,
                self.store.op_timeout,
            )
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
