"""``ServiceSDK``: the object applications hold, and the module-level shortcuts.

The SDK owns one store connection pool, one pub/sub connection, one breaker hub and one
``httpx.AsyncClient`` connection pool shared by every service. It starts lazily on first
use (construction never does I/O, so invalid settings fail at once and nothing else
does), and it is an async context manager; ``await sdk.close()`` also works.

The first SDK constructed becomes the default used by :func:`call_service` and by typed
interfaces built without ``sdk=``; :func:`set_default_sdk` changes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cache.cache import ResponseCache
from msfw_redis._cache.stats import CacheStatsFlusher
from msfw_redis._config import CircuitBreakerConfig, ServiceSDKConfig
from msfw_redis._exceptions import ConfigurationError
from msfw_redis._limits.limits import FleetLimits
from msfw_redis._limits.plan import LimitsPlan
from msfw_redis._pipeline.batch import run_batch
from msfw_redis._pipeline.client import ServiceClient
from msfw_redis._pipeline.pipeline import Pipeline
from msfw_redis._pipeline.policy import PolicyBook
from msfw_redis._pipeline.request import UNSET, Middleware, parse_body
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._sdk.lifecycle import LifecycleMethods
from msfw_redis._sdk.loop import LoopBinding
from msfw_redis._sdk.metrics import CallCounters, DurationHistogram
from msfw_redis._sdk.registry_methods import RegistryMethods
from msfw_redis._sdk.results import json_or_content, result_from
from msfw_redis._sdk.transitions import TransitionFeed
from msfw_redis._settings import AppSettings, load_settings
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    from msfw_redis._breaker.views import CircuitState, TransitionListener
    from msfw_redis._limits.config import BulkheadConfig
    from msfw_redis._models import HTTPMethod, ServiceResult
    from msfw_redis._pipeline.observe import CallObserver

__all__ = ["ServiceSDK", "call_service", "get_default_sdk", "set_default_sdk"]

logger = logging.getLogger("msfw_redis.sdk")

F = TypeVar("F", bound=Callable[..., Any])
ErrorHandler = Callable[[BaseException, dict[str, Any]], Awaitable[None] | None]

_default_sdk: ServiceSDK | None = None


def get_default_sdk() -> ServiceSDK:
    """The default SDK: the first one constructed, or a new one on the default store."""
    global _default_sdk
    if _default_sdk is None:
        _default_sdk = ServiceSDK()
    return _default_sdk


def set_default_sdk(sdk: ServiceSDK | None) -> None:
    """Make ``sdk`` the default for :func:`call_service` and typed interfaces."""
    global _default_sdk
    _default_sdk = sdk


@dataclass(frozen=True, slots=True)
class Components:
    """The SDK's collaborators, handed to the layers above (interfaces, decorators,
    integrations) so that none of them reads the SDK's private attributes."""

    store: Store
    hub: BreakerHub
    cache: ResponseCache
    registry: ServiceRegistry
    health: HealthMonitor
    sleep: Callable[[float], Awaitable[None]]


class ServiceSDK(LifecycleMethods, RegistryMethods):
    """Resilient calls to other services, with state shared by every replica.

    Args:
        config: the application's settings holding ``[services.<name>]`` sections: a
            TOML file path, a dict, or a settings object with a ``services`` attribute.
        sdk_config: the SDK's own settings; defaults to ``ServiceSDKConfig()``.
        redis: a ready-made ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            client to use (and not close)
            instead of ``sdk_config.redis_url``.
        http_client: an ``httpx.AsyncClient`` to send with (the SDK will not close it).
        sleep: the coroutine used to wait between retries (tests pass a fake).
    """

    def __init__(
        self,
        config: Any = None,
        sdk_config: ServiceSDKConfig | None = None,
        redis: aioredis.Redis | RedisCluster | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        global _default_sdk
        if sdk_config is not None and not isinstance(sdk_config, ServiceSDKConfig):
            raise ConfigurationError(
                f"sdk_config must be a ServiceSDKConfig, got {type(sdk_config).__name__}",
                field="sdk_config",
            )
        self.config = sdk_config if sdk_config is not None else ServiceSDKConfig()
        self.settings: AppSettings = load_settings(config)
        cfg = self.config
        if redis is not None:
            self._store = Store.from_client(
                redis, op_timeout=cfg.redis_op_timeout, key_prefix=cfg.key_prefix
            )
        else:
            self._store = Store.from_url(
                cfg.redis_url, op_timeout=cfg.redis_op_timeout, key_prefix=cfg.key_prefix
            )
        self._bus = EventBus(self._store)
        self._hub = BreakerHub(self._store, self._bus, failure_policy=cfg.store_failure_policy)
        self._transitions = TransitionFeed(self._store)
        self._hub.add_listener(self._transitions)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._registry = ServiceRegistry(self._store, self._bus, default_ttl=cfg.instance_ttl)
        secret = cfg.cache_key_secret.encode() if cfg.cache_key_secret else None
        self._cache = ResponseCache(
            self._store,
            self._bus,
            secret=secret,
            credential_headers=cfg.cache_credential_headers,
            credential_params=cfg.cache_credential_params,
            near_max_entries=cfg.near_cache_max_entries,
            near_max_staleness=cfg.near_cache_max_staleness,
        )
        self._health = HealthMonitor(
            self._store,
            self._registry,
            self._bus,
            interval=cfg.health_check_interval,
            timeout=cfg.health_check_timeout,
            failure_threshold=cfg.health_failure_threshold,
            success_threshold=cfg.health_success_threshold,
            http_client=self._http,
            monitor_registered=cfg.monitor_registered_services,
            static_addresses={
                name: svc.base_url
                for name, svc in self.settings.services.items()
                if svc.base_url is not None
            },
        )
        self._sleep: Callable[[float], Awaitable[None]] = sleep or asyncio.sleep
        self._limits = FleetLimits(
            self._store,
            self._bus,
            failure_policy=cfg.store_failure_policy,
            retry_after_max=cfg.retry_after_max,
        )
        self._limits_plan = LimitsPlan(self._limits, cfg, self.settings)
        self._middlewares: list[Middleware] = []
        self._error_handlers: list[ErrorHandler] = []
        self._calls = CallCounters(cfg.metrics_enabled)
        # One timer per SDK sends the per-service cache results to the fleet's counts.
        self._cache_stats = CacheStatsFlusher(self._store, self._calls.cache_results)
        self._started = False
        self._closed = False
        self._start_lock: asyncio.Lock | None = None
        self._binding = LoopBinding(self._release_loop)
        self._signal_tasks: set[asyncio.Task[None]] = set()
        self._policies = PolicyBook(cfg, self.settings)
        self._pipeline = Pipeline(
            config=cfg,
            policies=self._policies,
            hub=self._hub,
            cache=self._cache,
            http=self._http,
            resolve=self._resolve,
            balancer=self._registry.balancer,
            middlewares=self._middlewares,
            error_handlers=self._error_handlers,
            sleep=self._sleep,
            start=self._ensure_started,
            limits=self._limits_plan,
            record_outcome=self._calls.record,
        )
        self._components = Components(
            store=self._store,
            hub=self._hub,
            cache=self._cache,
            registry=self._registry,
            health=self._health,
            sleep=self._sleep,
        )
        # Clients of call_service() and the verbs, made (and their names validated) once.
        self._clients: dict[str, ServiceClient] = {}
        if _default_sdk is None:
            _default_sdk = self

    # -- parts and lifecycle (start, loop change and shutdown: _sdk/lifecycle.py) ----------

    @property
    def store_url(self) -> str | None:
        """The store's URL (``None`` when a ready-made client was given)."""
        return self._store.url

    @property
    def limits(self) -> FleetLimits:
        """The fleet-wide limits (bulkheads, rate limits, retry budgets, Retry-After gate)."""
        return self._limits

    @property
    def components(self) -> Components:
        """The store, breaker hub, cache, registry, health monitor and sleep of this SDK."""
        return self._components

    @property
    def pipeline(self) -> Pipeline:
        """The call pipeline every client of this SDK (and ``ResilientTransport``) uses."""
        return self._pipeline

    async def close(self) -> None:
        """Flush batched reports and close every connection the SDK opened."""
        global _default_sdk
        if await self._shut_down() and _default_sdk is self:
            _default_sdk = None

    async def __aenter__(self) -> ServiceSDK:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- registration of hooks ------------------------------------------------------------------

    def middleware(self, fn: F) -> F:
        """Decorator: run ``async def mw(request, call_next)`` around every call.

        Middleware run in registration order. ``request`` is an ``httpx.Request`` with
        mutable ``headers``, ``url``, ``method`` and ``extensions``; returning a response
        without calling ``call_next`` short-circuits the call.
        """
        self._middlewares.append(fn)
        return fn

    def error_handler(self, fn: F) -> F:
        """Decorator: call ``async def h(error, context)`` once per failed call.

        ``context`` has ``service_name``, ``endpoint``, ``method``, ``attempts``,
        ``instance`` and ``status_code``. A handler that raises is logged; it never
        hides the original error.
        """
        self._error_handlers.append(fn)
        return fn

    def on_circuit_state_change(self, fn: TransitionListener) -> TransitionListener:
        """Decorator: call ``fn(event)`` in this replica on every breaker transition."""
        self._hub.add_listener(fn)
        return fn

    def on_breaker_transition(self, fn: TransitionListener) -> TransitionListener:
        """Decorator: call ``fn(event)`` in this replica on every breaker state change.

        The event carries ``service``, ``endpoint``, ``from_state``, ``to_state``,
        ``generation`` and ``at`` (Redis server time, Unix seconds). Events that change
        no state are not passed on. Each transition is also logged once per fleet at
        INFO on ``msfw_redis.breaker.transitions``.
        """
        self._transitions.add(fn)
        return fn

    def circuit_states(self) -> list[CircuitState]:
        """This replica's view of every breaker it has used (no I/O)."""
        return [breaker.state() for breaker in self._hub.breakers()]

    def call_durations(self) -> dict[tuple[str, str, str], DurationHistogram]:
        """Call duration histograms keyed by (service, method, status code); copies."""
        return {
            key: DurationHistogram(list(h.counts), h.total, h.count)
            for key, h in self._calls.durations.items()
        }

    def add_observer(self, observer: CallObserver) -> None:
        """Show every call and attempt to ``observer`` (see ``CallObserver``).

        Observers must be quick; one that raises is logged and ignored. With none, the
        pipeline pays one truth test per call.
        """
        self._pipeline.observers.add(observer)

    def remove_observer(self, observer: CallObserver) -> None:
        """Stop showing calls to ``observer`` (no error if it was not added)."""
        self._pipeline.observers.remove(observer)

    # -- clients and calls ----------------------------------------------------------------------

    def get_client(
        self,
        service_name: str,
        circuit_config: CircuitBreakerConfig | None = None,
        *,
        version: str | None = None,
        bulkhead_config: BulkheadConfig | None = None,
    ) -> ServiceClient:
        """A client for ``service_name``; ``circuit_config`` overrides its breaker policy.

        ``bulkhead_config`` guards every call to the service, from any client of this SDK,
        with a fleet-wide bulkhead (the bulkhead belongs to the service, not the client).
        """
        if bulkhead_config is not None:
            self._limits_plan.set_bulkhead(service_name, bulkhead_config)
        if circuit_config is None and version is None:
            client = self._clients.get(service_name)
            if client is None:
                client = ServiceClient(self._pipeline, service_name)
                if len(self._clients) < 10_000:  # a bound: names may come from callers
                    self._clients[service_name] = client
            return client
        return ServiceClient(
            self._pipeline, service_name, circuit_config=circuit_config, version=version
        )

    def service_client(
        self,
        service_name: str,
        circuit_config: CircuitBreakerConfig | None = None,
        *,
        version: str | None = None,
    ) -> ServiceClient:
        """Like :meth:`get_client`, for ``async with sdk.service_client(name) as client``."""
        return self.get_client(service_name, circuit_config, version=version)

    async def call_service(
        self,
        service: str,
        endpoint: str,
        method: str | HTTPMethod = "GET",
        timeout: float | None = None,
        retry_attempts: int | None = None,
        params: Any = None,
        data: Any = None,
        json: Any = UNSET,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ServiceResult:
        """Call ``service`` and return a :class:`ServiceResult`; never raises for HTTP,
        network or breaker failures. Bad arguments raise InvalidRequestError before I/O.
        """
        client = self.get_client(service)
        if data is None and json is UNSET and not options:
            # The common call, straight to the pipeline (no keyword dicts to build).
            outcome = await self._pipeline.execute(
                client.service_name,
                method,
                endpoint,
                circuit_config=client.circuit_config,
                version=client.version,
                params=params,
                headers=headers,
                timeout=timeout,
                retry_attempts=retry_attempts,
            )
        else:
            outcome = await client.execute(
                method,
                endpoint,
                params=params,
                headers=headers,
                timeout=timeout,
                retry_attempts=retry_attempts,
                **json_or_content(data, json),
                **options,
            )
        return result_from(outcome, service)

    async def _verb(self, method: str, service_name: str, path: str, **kwargs: Any) -> Any:
        response = await self.get_client(service_name).request(method, path, **kwargs)
        return parse_body(response)

    async def get_from_service(
        self, service_name: str, path: str, params: Any = None, **kwargs: Any
    ) -> Any:
        """GET and return the parsed body; raises ServiceClientError and friends."""
        return await self._verb("GET", service_name, path, params=params, **kwargs)

    async def post_to_service(
        self, service_name: str, path: str, data: Any = None, params: Any = None, **kwargs: Any
    ) -> Any:
        """POST ``data`` as JSON and return the parsed body."""
        body = json_or_content(data, kwargs.pop("json", UNSET))
        return await self._verb("POST", service_name, path, params=params, **body, **kwargs)

    async def put_to_service(
        self, service_name: str, path: str, data: Any = None, params: Any = None, **kwargs: Any
    ) -> Any:
        """PUT ``data`` as JSON and return the parsed body."""
        body = json_or_content(data, kwargs.pop("json", UNSET))
        return await self._verb("PUT", service_name, path, params=params, **body, **kwargs)

    async def patch_to_service(
        self, service_name: str, path: str, data: Any = None, params: Any = None, **kwargs: Any
    ) -> Any:
        """PATCH ``data`` as JSON and return the parsed body."""
        body = json_or_content(data, kwargs.pop("json", UNSET))
        return await self._verb("PATCH", service_name, path, params=params, **body, **kwargs)

    async def delete_from_service(
        self, service_name: str, path: str, params: Any = None, **kwargs: Any
    ) -> Any:
        """DELETE and return the parsed body (``None`` when empty)."""
        return await self._verb("DELETE", service_name, path, params=params, **kwargs)

    async def batch_call(
        self,
        calls: Iterable[tuple[str, Awaitable[Any]]],
        concurrency: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, ServiceResult]:
        """Run named awaitables concurrently; ``{name: ServiceResult}`` in input order.

        One failure never cancels the others. ``concurrency`` bounds how many run at
        once; ``timeout`` (seconds) bounds each item. Duplicate names are an error.
        """
        return await run_batch(calls, concurrency=concurrency, timeout=timeout)

    def metrics(self) -> dict[str, Any]:
        """In-process counters (empty when ``metrics_enabled`` is off).

        Integer totals (every key present from the start), plus ``services``: the same
        call counters per service. A call refused by an open breaker counts as one of
        ``rejections``, not also as a failure.
        """
        metrics = self._pipeline.metrics
        counters: dict[str, Any] = dict(metrics)
        counters.update(self._calls.snapshot())
        if metrics.enabled:
            counters.update({f"cache_{k}": v for k, v in self._cache.metrics().items()})
            stats = self._store.stats
            counters.update(
                store_up=int(self._store.available),
                store_outages=stats.outages,
                store_recoveries=stats.recoveries,
                store_fast_failures=stats.fast_failures,
                script_reloads=stats.script_reloads,
            )
        return counters

    async def clear_service_cache(self, service_name: str) -> None:
        """Invalidate every cached entry of ``service_name`` fleet-wide, in O(1)."""
        await self._ensure_started()
        await self._cache.clear_service(service_name)


async def call_service(
    service: str,
    endpoint: str,
    method: str | HTTPMethod = "GET",
    timeout: float | None = None,
    retry_attempts: int | None = None,
    params: Any = None,
    data: Any = None,
    json: Any = UNSET,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> ServiceResult:
    """Call ``service`` through the default SDK (see :meth:`ServiceSDK.call_service`)."""
    return await get_default_sdk().call_service(
        service,
        endpoint,
        method=method,
        timeout=timeout,
        retry_attempts=retry_attempts,
        params=params,
        data=data,
        json=json,
        headers=headers,
        **options,
    )
