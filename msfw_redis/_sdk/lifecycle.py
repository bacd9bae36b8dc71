"""The start, loop-change and close part of :class:`ServiceSDK`.

In the manner of ``msfw_redis._sdk.registry_methods``, :class:`LifecycleMethods` holds
the SDK's lifecycle: the lazy start on first use (store, event bus, registry, health
monitor, fleet cache counts, health enrollments), the release of a loop's connections
as that loop ends, the rebuild of loop-bound resources on a new loop and the shutdown
of every component. It owns no state: the attributes it declares are made by
``ServiceSDK.__init__``, and ``ServiceSDK.close`` (which also clears the default SDK)
runs :meth:`LifecycleMethods._shut_down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httpx

from msfw_redis._exceptions import StoreError
from msfw_redis._registry.enrollment import ENROLLMENTS
from msfw_redis._urls import redact_url

if TYPE_CHECKING:
    from msfw_redis._breaker.hub import BreakerHub
    from msfw_redis._cache.cache import ResponseCache
    from msfw_redis._cache.stats import CacheStatsFlusher
    from msfw_redis._config import ServiceSDKConfig
    from msfw_redis._limits.limits import FleetLimits
    from msfw_redis._pipeline.pipeline import Pipeline
    from msfw_redis._registry.enrollment import HealthEnrollment
    from msfw_redis._registry.health import HealthMonitor
    from msfw_redis._registry.registry import ServiceRegistry
    from msfw_redis._sdk.loop import LoopBinding
    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

__all__ = ["LifecycleMethods"]

logger = logging.getLogger("msfw_redis.sdk")


class LifecycleMethods:
    """Start, loop release and rebind, and shutdown of :class:`ServiceSDK` (see module docs)."""

    config: ServiceSDKConfig
    _store: Store
    _bus: EventBus
    _hub: BreakerHub
    _registry: ServiceRegistry
    _health: HealthMonitor
    _cache: ResponseCache
    _cache_stats: CacheStatsFlusher
    _limits: FleetLimits
    _pipeline: Pipeline
    _http: httpx.AsyncClient
    _owns_http: bool
    _binding: LoopBinding
    _started: bool
    _closed: bool
    _start_lock: asyncio.Lock | None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def started(self) -> bool:
        """True once the SDK has connected (or tried to) to its store."""
        return self._started

    async def start(self) -> None:
        """Connect to the store and load the scripts (done for you on first use).

        An unreachable store is logged and tolerated under ``fail_open``; calls then use
        local breakers until Redis answers.
        """
        await self._ensure_started()

    async def _ensure_started(self) -> None:
        # The hot path: one identity check of the running loop against the bound one.
        if not self._binding.current() and await self._binding.bind():
            self._rebind()
        if self._started:
            return
        if self._closed:
            raise RuntimeError("this ServiceSDK is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.started:  # another task started it while this one waited
                return
            try:
                await self._store.start()
            except StoreError as exc:
                logger.warning(
                    "store %s unavailable at start-up (%s); continuing with local state",
                    redact_url(self._store.url) if self._store.url else "(client)",
                    exc,
                )
            self._bus.start()
            await self._registry.start()
            for enrollment in ENROLLMENTS.all():
                self._on_enrollment(enrollment)
            ENROLLMENTS.subscribe(self._on_enrollment)
            await self._health.start()
            self._cache_stats.start()
            self._started = True

    async def _release_loop(self) -> None:
        # The bound loop is ending (its tasks are already cancelled): close its
        # connections while it still runs, so none is left open once it is gone. First
        # the breakers' batched successes go out, which also cancels their flush timers:
        # a timer firing during the loop's shutdown would leave a flush task pending
        # when the loop closes. Bounded: Redis may be down while the loop ends.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.redis_op_timeout):
                await self._hub.release_loop()
        await self._bus.release_connections()
        await self._store.release_connections()
        if self._owns_http:
            with contextlib.suppress(Exception):
                await self._http.aclose()

    def _rebind(self) -> None:
        # A new event loop: everything bound to the old one is dropped unawaited (that
        # loop is gone) and rebuilt lazily; settings, breaker config and counts stay.
        self._store.rebind()
        self._bus.rebind()
        self._hub.rebind()
        self._registry.rebind()
        self._health.rebind()
        self._cache.rebind()
        self._cache_stats.rebind()
        self._limits.rebind()
        if self._owns_http:
            # httpx clients cannot reopen: the old one was closed with its loop.
            self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self._pipeline.use_http(self._http)
            self._health.use_http(self._http)
        self._started = False
        self._start_lock = None

    async def _shut_down(self) -> bool:
        """Flush and close every component; False when the SDK was already closed."""
        if self._closed:
            return False
        if not self._binding.current() and await self._binding.bind():
            self._rebind()
        self._binding.disarm()
        self._closed = True
        ENROLLMENTS.unsubscribe(self._on_enrollment)
        if self._started:
            await self._health.aclose()
            await self._registry.aclose()
        await self._cache.aclose()
        await self._cache_stats.aclose()
        await self._limits.aclose()
        with contextlib.suppress(StoreError):
            await self._hub.aclose()
        await self._bus.aclose()
        await self._store.aclose()
        if self._owns_http:
            await self._http.aclose()
        return True

    def _on_enrollment(self, e: HealthEnrollment) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Enrolled outside any event loop (at import, say): no monitoring task can
            # start from here; this SDK enrols it when it starts.
            return
        self._health.enroll(
            e.service, interval=e.interval, timeout=e.timeout, failure_threshold=e.failure_threshold
        )
