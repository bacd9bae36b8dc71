"""One read of the fleet-wide state Redis holds, for the exporter and the dashboard.

Every breaker in the breaker indexes (its state, generation, trips, totals and probes in
flight, read with ``breaker_read``) and every registered service (its instances and the
health verdict the monitors share), plus each service's fleet-wide cache results over
the last ``cache_window_minutes`` (:mod:`msfw_redis._cache.stats`).
Nothing here is per process: whichever replica or operator runs it sees the same fleet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from msfw_redis._breaker.machine import BreakerState
from msfw_redis._cache.stats import DEFAULT_WINDOW_MINUTES, CacheStatsReader
from msfw_redis._exceptions import StoreError

if TYPE_CHECKING:
    from msfw_redis._breaker.hub import BreakerHub
    from msfw_redis._breaker.views import CircuitState
    from msfw_redis._registry.health import HealthMonitor
    from msfw_redis._registry.registry import ServiceRegistry
    from msfw_redis._store.store import Store

__all__ = ["BREAKER_STATES", "BreakerView", "CacheView", "FleetReader", "FleetView", "ServiceView"]

#: Every state a breaker can be in, as the metrics and the dashboard label them.
BREAKER_STATES = tuple(state.label for state in BreakerState)


@dataclass(frozen=True, slots=True)
class BreakerView:
    """One breaker as Redis holds it; ``name`` is ``service`` or ``service:endpoint``."""

    name: str
    service: str
    endpoint: str | None
    state: str
    generation: int
    failure_count: int
    retry_after: float | None
    opened_at: float | None
    trips: int
    total_failures: int
    total_successes: int
    active_probes: int


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One registered service: health verdict (None when never probed) and instances."""

    service: str
    healthy: bool | None
    instances: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CacheView:
    """One service's cache results, fleet-wide, over the last ``window_minutes``.

    ``hit_ratio`` (0 to 1) counts hit, stale and coalesced lookups as answered by the
    cache; ``counts`` is ``{result: n}`` for hit, miss, stale, coalesced and bypass.
    """

    service: str
    window_minutes: int
    hit_ratio: float
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class FleetView:
    """The whole fleet at server time ``now`` (Unix seconds); ``store_up`` False on error."""

    now: float
    store_up: bool
    breakers: list[BreakerView] = field(default_factory=list)
    services: list[ServiceView] = field(default_factory=list)
    caches: list[CacheView] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def _breaker_view(state: CircuitState) -> BreakerView:
    name = state.service if state.endpoint is None else f"{state.service}:{state.endpoint}"
    return BreakerView(
        name=name,
        service=state.service,
        endpoint=state.endpoint,
        state=state.state,
        generation=state.generation,
        failure_count=state.failure_count,
        retry_after=None if state.retry_after is None else round(state.retry_after, 3),
        opened_at=state.opened_at,
        trips=state.trips or 0,
        total_failures=state.total_failures or 0,
        total_successes=state.total_successes or 0,
        active_probes=state.active_probes or 0,
    )


class FleetReader:
    """Reads a :class:`FleetView` through the components it is given."""

    def __init__(
        self,
        store: Store,
        hub: BreakerHub,
        registry: ServiceRegistry,
        health: HealthMonitor,
        *,
        cache_window_minutes: int = DEFAULT_WINDOW_MINUTES,
    ) -> None:
        self._store = store
        self._hub = hub
        self._registry = registry
        self._health = health
        self._cache_stats = CacheStatsReader(store)
        self.cache_window_minutes = cache_window_minutes

    async def read(self) -> FleetView:
        """The fleet now; a store error gives an empty view with ``store_up`` False."""
        now = self._store.clock.now_ms() / 1000.0
        try:
            breakers = [_breaker_view(s) for s in await self._hub.fleet()]
            services = []
            for name in sorted(await self._registry.services()):
                listing = await self._registry.list_service(name)
                health = await self._health.state(name)
                instances = [
                    {"instance_id": i.instance_id, "url": i.url, "status": i.status}
                    for i in listing.instances or ()
                ]
                services.append(
                    ServiceView(name, None if health is None else health.healthy, instances)
                )
            known = sorted({b.service for b in breakers} | {s.service for s in services})
            counted = await self._cache_stats.read(known, window_minutes=self.cache_window_minutes)
        except StoreError:
            return FleetView(now=now, store_up=False)
        breakers.sort(key=lambda b: b.name)
        caches = [
            CacheView(c.service, c.window_minutes, round(c.hit_ratio, 4), c.counts())
            for c in counted
            if c.hit_ratio is not None
        ]
        return FleetView(
            now=now, store_up=True, breakers=breakers, services=services, caches=caches
        )
