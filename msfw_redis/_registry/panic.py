"""Panic routing: while the registry knows instances of a service, calls go to them.

A call never detours silently to the service's ``[services.*]`` settings address while
the registry holds instances of it. When too many instances are unhealthy, as Envoy does
(every one, or more than ``panic_threshold`` of them, default 50 %), health is ignored
and the call is routed across **all** registered instances: a degraded fleet beats a
guess. Each episode (from the first panic-routed call of a service until a call is again
routed normally) logs one WARNING, and every panic-routed call is counted.

With ``panic_routing=False`` a :class:`~msfw_redis.ServiceClientError` naming the
unhealthy instances is raised instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msfw_redis._exceptions import ServiceClientError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from msfw_redis._registry.balancing import LoadBalancer
    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["DEFAULT_PANIC_THRESHOLD", "PanicRouter", "PanicStats", "Route"]

logger = logging.getLogger("msfw_redis.registry")

#: Share of unhealthy instances above which a service is panic-routed (Envoy's default).
DEFAULT_PANIC_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Route:
    """The instance a call goes to, and whether it was chosen in panic mode."""

    instance: ServiceInstance
    panic: bool


@dataclass(slots=True)
class PanicStats:
    """Counters of one router (per process)."""

    panic_calls: int = 0
    episodes: int = 0
    by_service: dict[str, int] = field(default_factory=dict)


class PanicRouter:
    """Chooses an instance for a call, panic-routing when too many are unhealthy."""

    def __init__(self, balancer: LoadBalancer) -> None:
        self.balancer = balancer
        self.stats = PanicStats()
        self._in_panic: set[str] = set()

    def route(
        self,
        service: str,
        instances: Sequence[ServiceInstance],
        *,
        strategy: str,
        is_open: Callable[[ServiceInstance], bool] | None,
        panic_threshold: float,
        panic_routing: bool,
    ) -> Route | None:
        """A :class:`Route`, or ``None`` when the registry knows no instance at all.

        Raises ServiceClientError when instances exist, none may be used normally and
        ``panic_routing`` is off.
        """
        if not instances:
            return None
        unhealthy = [inst for inst in instances if inst.status == "unhealthy"]
        share = len(unhealthy) / len(instances)
        if share <= panic_threshold and len(unhealthy) < len(instances):
            chosen = self.balancer.choose(instances, strategy=strategy, is_open=is_open)
            if chosen is not None:
                self._calm(service)
                return Route(chosen, panic=False)
        if not panic_routing:
            names = ", ".join(inst.instance_id for inst in unhealthy) or "none"
            raise ServiceClientError(
                f"no usable instance of {service!r}: {len(unhealthy)} of {len(instances)} "
                f"registered instances are unhealthy ({names}) and panic_routing is off",
                service_name=service,
            )
        # Panic: every registered instance is a candidate, healthy or not.
        candidates = [inst.model_copy(update={"status": "healthy"}) for inst in instances]
        chosen = self.balancer.choose(candidates, strategy=strategy, is_open=None)
        if chosen is None:  # pragma: no cover - a non-empty healthy list always yields one
            return None
        original = next(inst for inst in instances if inst.instance_id == chosen.instance_id)
        self._panic(service, len(unhealthy), len(instances))
        return Route(original, panic=True)

    def _panic(self, service: str, unhealthy: int, total: int) -> None:
        self.stats.panic_calls += 1
        self.stats.by_service[service] = self.stats.by_service.get(service, 0) + 1
        if service not in self._in_panic:
            self._in_panic.add(service)
            self.stats.episodes += 1
            logger.warning(
                "panic routing %s: %d of %d instances unhealthy; routing across all "
                "registered instances until enough recover",
                service,
                unhealthy,
                total,
            )

    def _calm(self, service: str) -> None:
        if service in self._in_panic:
            self._in_panic.discard(service)
            logger.info("panic routing of %s ended: calls are routed by health again", service)
