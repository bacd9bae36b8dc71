"""The registry, discovery and health part of :class:`ServiceSDK`'s surface.

As redis-py's command mixins do for its client, :class:`RegistryMethods` holds the
SDK's public methods of one area, here the registry (register, deregister, discover,
pick an instance), health (checks, states, change callbacks, deregistering on a
signal) and the resolver the pipeline is given (the address of a call's service).
It owns no state: the attributes it declares are made by ``ServiceSDK.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from msfw_redis._exceptions import ServiceNotFoundError, StoreError

if TYPE_CHECKING:
    from msfw_redis._breaker.hub import BreakerHub
    from msfw_redis._config import ServiceSDKConfig
    from msfw_redis._pipeline.pipeline import Pipeline
    from msfw_redis._registry.health import HealthMonitor, HealthStatus
    from msfw_redis._registry.instance import ServiceInstance
    from msfw_redis._registry.registry import ServiceRegistry
    from msfw_redis._settings import AppSettings

__all__ = ["RegistryMethods"]

logger = logging.getLogger("msfw_redis.sdk")

F = TypeVar("F", bound=Callable[..., Any])


class RegistryMethods:
    """Registry, discovery and health methods of :class:`ServiceSDK` (see module docs)."""

    config: ServiceSDKConfig
    settings: AppSettings
    _registry: ServiceRegistry
    _health: HealthMonitor
    _hub: BreakerHub
    _pipeline: Pipeline
    _signal_tasks: set[asyncio.Task[None]]

    async def _ensure_started(self) -> None:
        raise NotImplementedError  # pragma: no cover - ServiceSDK defines it

    async def register_current_service(
        self,
        service_name: str,
        version: str | None = None,
        host: str = "localhost",
        port: int = 8000,
        health_check_path: str | None = "/health",
        metadata: dict[str, Any] | None = None,
        weight: int = 1,
        ttl: float | None = None,
        *,
        protocol: str = "http",
        instance_id: str | None = None,
    ) -> ServiceInstance:
        """Register this process's instance and keep it alive with heartbeats.

        Heartbeats go out about every ``ttl / 3`` seconds (``ttl`` defaults to
        ``instance_ttl``), with jitter; without one for ``ttl`` seconds of Redis server
        time the instance is evicted. :meth:`close` deregisters it at once. A host of
        ``0.0.0.0`` or ``::`` is refused (``ConfigurationError`` naming ``host``). With
        ``store_failure_policy="fail_open"`` an unreachable Redis does not fail this
        call: the heartbeat task registers as soon as Redis answers.
        """
        await self._ensure_started()
        return await self._registry.register(
            service_name,
            host=host,
            port=port,
            protocol=protocol,
            version=version,
            health_check_path=health_check_path,
            metadata=metadata,
            weight=weight,
            ttl=ttl,
            instance_id=instance_id,
            background_retry=self.config.store_failure_policy == "fail_open",
        )

    async def register_external_service(
        self,
        service_name: str,
        host: str,
        port: int,
        protocol: str = "http",
        health_check_path: str | None = None,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ServiceInstance:
        """Register an instance this process does not run; it stays until deregistered
        and is health-probed like the others."""
        await self._ensure_started()
        return await self._registry.register_external(
            service_name,
            host=host,
            port=port,
            protocol=protocol,
            health_check_path=health_check_path,
            version=version,
            metadata=metadata,
        )

    async def deregister_service(self, service_name: str, instance_id: str | None = None) -> int:
        """Remove an instance (by default this process's instances of the service);
        returns how many were removed."""
        await self._ensure_started()
        return await self._registry.deregister(service_name, instance_id)

    async def discover_services(
        self, service_name: str, version: str | None = None
    ) -> list[ServiceInstance]:
        """Every registered instance of ``service_name`` (only ``version`` when given).

        Usually answered from a per-process cache kept current by revision events (no
        round trip). While Redis is down the last known instances are returned.
        """
        await self._ensure_started()
        return await self._registry.discover(service_name, version=version)

    async def get_service_instance(
        self,
        service_name: str,
        strategy: str | None = None,
        version: str | None = None,
    ) -> ServiceInstance | None:
        """One instance chosen by ``strategy`` (default ``load_balancing_strategy``):
        unhealthy instances are skipped. ``None`` when there is none."""
        await self._ensure_started()
        return await self._registry.get_instance(
            service_name,
            strategy=strategy or self.config.load_balancing_strategy,
            version=version,
        )

    async def health_check_service(self, service_name: str) -> bool:
        """Whether ``service_name`` is healthy (fleet-wide state, probing if stale).

        A service only in the settings is probed at ``<base_url>/health``; ``unknown``
        (never probed) answers ``False``."""
        await self._ensure_started()
        return await self._health.check(service_name)

    async def get_all_service_health(self) -> dict[str, bool]:
        """``{service: healthy}`` for every monitored, configured or registered service;
        a service whose health is ``unknown`` is omitted (see
        :meth:`get_service_health_states`)."""
        await self._ensure_started()
        return await self._health.all_health()

    async def get_service_health_states(self) -> dict[str, HealthStatus]:
        """``{service: "healthy" | "unhealthy" | "unknown"}`` for the same services as
        :meth:`get_all_service_health`, ``unknown`` ones included."""
        await self._ensure_started()
        return await self._health.all_states()

    def on_service_health_change(self, fn: F) -> F:
        """Decorator: ``async def cb(service_name, is_healthy)`` runs in every replica,
        once per change of a service's health."""
        self._health.on_change(fn)
        return fn

    def deregister_on_signal(self, *signals: int) -> None:
        """Deregister this process's instances when one of ``signals`` (default SIGTERM)
        arrives, then let the signal do what it would have done.

        Call it from inside the running loop. Frameworks that own signal handling
        (uvicorn, gunicorn) should call ``await sdk.close()`` from their shutdown hook
        instead.
        """
        import os
        import signal as signal_module

        loop = asyncio.get_running_loop()
        chosen = signals or (signal_module.SIGTERM,)

        def handler(signum: int) -> None:
            async def shutdown() -> None:
                try:
                    await self._registry.aclose()
                finally:
                    loop.remove_signal_handler(signum)
                    os.kill(os.getpid(), signum)

            task = loop.create_task(shutdown())
            self._signal_tasks.add(task)

        for signum in chosen:
            loop.add_signal_handler(signum, handler, signum)

    # -- the resolver given to the pipeline ---------------------------------------------------

    async def _resolve(
        self, service: str, version: str | None
    ) -> tuple[str, str | None, ServiceInstance | None]:
        """``(base_url, instance label, instance)`` for a call to ``service``.

        The registry answers first when discovery is on (and usually from its cache);
        the ``[services.<name>]`` settings answer otherwise.
        """
        if self.config.service_discovery_enabled:
            try:
                # Never the settings address while the registry knows instances (panic).
                route = await self._registry.route(
                    service,
                    strategy=self.config.load_balancing_strategy,
                    version=version,
                    is_open=lambda inst: self._hub.is_open(service, f"instance:{inst.instance_id}"),
                    **self._panic_options(service),
                )
            except StoreError as exc:
                logger.debug("discovery of %s unavailable: %s", service, exc)
                route = None
            if route is not None:
                if route.panic:
                    self._pipeline.metrics["panic_routed"] += 1
                return route.instance.url, route.instance.instance_id, route.instance
        svc = self.settings.for_service(service)
        if svc is not None and svc.base_url is not None:
            return svc.base_url, svc.base_url, None
        places = []
        if self.config.service_discovery_enabled:
            places.append("the service registry")
        places.append(f"[services.{service}] in the settings ({self.settings.source})")
        raise ServiceNotFoundError(
            f"no address known for service {service!r}; looked in {' and '.join(places)}",
            service_name=service,
        )

    def _panic_options(self, service: str) -> dict[str, Any]:
        svc = self.settings.for_service(service)
        routing = self.config.panic_routing
        if svc is not None and svc.panic_routing is not None:
            routing = svc.panic_routing
        return {"panic_threshold": self.config.panic_threshold, "panic_routing": routing}
