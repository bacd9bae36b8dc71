"""What the demo observed, and the guarantees judged from it.

:class:`DemoState` is filled in by the demo's parent while it runs: the replicas'
counters (from their pipes), what reached the service (the origin), the breaker
transitions (from pub/sub, in the parent and in every replica), and the registry.
:func:`evaluate` turns it into the summary; it is pure, so it is easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msfw_redis._cli.demo_origin import OriginStats
from msfw_redis._cli.demo_plan import DEAD_INSTANCE, LIVE_INSTANCE, SERVICE, DemoPlan, Phase
from msfw_redis._cli.output import count

if TYPE_CHECKING:
    from msfw_redis._breaker.views import CircuitState
    from msfw_redis._registry.health_state import ServiceHealth
    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["DemoState", "Guarantee", "Transitions", "evaluate", "summary_json"]

_TRIP, _PROBES = "breaker_opened_once", "probes_within_limit"
_CACHE, _EVICTION = "one_origin_call_per_key", "dead_instance_evicted"
_REPLICA_FIELDS = (
    "pid", "calls", "ok", "failed", "rejected", "cache_requests", "cache_served", "cache_origin",
)  # fmt: skip


@dataclass(slots=True)
class Transitions:
    """The breaker's transitions after the demo's reset, by generation."""

    reset_gen: int = 0
    by_gen: dict[int, str] = field(default_factory=dict)

    def add(self, generation: int, state: str) -> None:
        if generation > self.reset_gen:
            self.by_gen[generation] = state

    def trips(self) -> list[int]:
        """Generations at which the breaker went from CLOSED to OPEN."""
        previous, trips = "closed", []
        for gen in sorted(self.by_gen):
            state = self.by_gen[gen]
            if state == "open" and previous == "closed":
                trips.append(gen)
            previous = state
        return trips

    def count(self, state: str) -> int:
        return sum(1 for s in self.by_gen.values() if s == state)

    def missing(self) -> int:
        """Generations never seen (events lost): the counts above may then be short."""
        if not self.by_gen:
            return 0
        return max(self.by_gen) - self.reset_gen - len(self.by_gen)


@dataclass(slots=True)
class DemoState:
    """Everything the live view shows and the summary judges."""

    plan: DemoPlan
    store_label: str
    t0: float | None = None
    elapsed: float = 0.0
    replicas: dict[int, dict[str, Any]] = field(default_factory=dict)
    cold_keys: set[str] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    origin: OriginStats = field(default_factory=OriginStats)
    fleet: CircuitState | None = None
    transitions: Transitions = field(default_factory=Transitions)
    instances: list[ServiceInstance] = field(default_factory=list)
    health: ServiceHealth | None = None
    server_now: float | None = None
    crashed_at: float | None = None
    evicted_at: float | None = None
    interrupted: bool = False

    @property
    def phase(self) -> Phase:
        if self.t0 is None:
            return "starting"
        return self.plan.phase_at(self.elapsed)

    def total(self, name: str) -> int:
        return sum(int(r.get(name) or 0) for r in self.replicas.values())

    def absorb(self, index: int, message: dict[str, Any]) -> None:
        """A replica's stats line: its totals, plus the cold keys it asked for and the
        breaker transitions it saw since its previous line."""
        self.cold_keys.update(str(k) for k in message.pop("cold_keys_new", ()))
        for gen, state in message.pop("seen_new", ()):
            self.transitions.add(int(gen), str(state))
        self.replicas[index] = message


@dataclass(frozen=True, slots=True)
class Guarantee:
    """One claim and whether this run bore it out (``held`` is None: not reached)."""

    key: str
    claim: str
    held: bool | None
    detail: str
    measured: dict[str, Any]


def _breaker(state: DemoState) -> Guarantee:
    n = state.plan.replicas
    claim = f"the breaker opened once for all {n} replicas"
    trips = state.transitions.trips()
    replicas = [state.replicas[i] for i in sorted(state.replicas)]
    rejected_all = bool(replicas) and len(replicas) == n and all(r["rejected"] for r in replicas)
    own = [int(r.get("failed_before_reject") or 0) for r in replicas]
    measured = {
        "trips": len(trips),
        "trip_generations": trips,
        "replicas_rejecting": sum(1 for r in replicas if r["rejected"]),
        "failures_before_first_rejection": own,
        "failure_threshold": state.plan.failure_threshold,
        "failing_calls_at_service": state.origin.orders_failed,
        "events_missed": state.transitions.missing(),
    }
    if state.elapsed < state.plan.healthy_end:
        return Guarantee(_TRIP, claim, None, "the failing phase never came", measured)
    per_replica = ", ".join(f"r{i + 1} {f}" for i, f in enumerate(own))
    held = len(trips) == 1 and rejected_all
    threshold = state.plan.failure_threshold
    if held and all(f < threshold for f in own):
        detail = (
            f"1 trip (generation {trips[0]}), shared: every replica rejected calls from then "
            f"on, though none had seen {threshold} failures itself ({per_replica}); "
            f"per-replica breakers would each need {threshold}"
        )
    elif held:
        detail = (
            f"1 trip (generation {trips[0]}), shared: every replica rejected calls from then "
            f"on (failures each saw first: {per_replica})"
        )
    elif not trips:
        detail = "the breaker never opened"
    elif len(trips) > 1:
        detail = f"{len(trips)} separate trips (generations {trips})"
    else:
        detail = f"only {measured['replicas_rejecting']} of {n} replicas rejected calls"
    return Guarantee(_TRIP, claim, held, detail, measured)


def _probes(state: DemoState) -> Guarantee:
    limit = state.plan.half_open_max_calls
    claim = f"probes stayed within half_open_max_calls={limit}"
    origin = state.origin
    periods = state.transitions.count("half_open")
    measured = {
        "probes": origin.probes,
        "max_probes_at_once": origin.max_probes_in_flight,
        "half_open_max_calls": limit,
        "half_open_periods": periods,
        "arrived_while_open": origin.while_open,
    }
    if state.elapsed < state.plan.failing_end and not origin.probes:
        return Guarantee(_PROBES, claim, None, "no half-open period yet", measured)
    held = origin.probes > 0 and origin.max_probes_in_flight <= limit
    if origin.probes == 0:
        detail = "no probe reached the service (the breaker never went half-open)"
    else:
        detail = (
            f"{count(origin.probes, 'probe')} reached order-service in "
            f"{count(periods, 'half-open period')}, "
            f"at most {origin.max_probes_in_flight} at once (per-replica breakers: up to "
            f"{state.plan.replicas} at once)"
        )
    return Guarantee(_PROBES, claim, held, detail, measured)


def _cache(state: DemoState) -> Guarantee:
    claim = "one origin call per cold cache key"
    keys = sorted(state.cold_keys)
    calls = {k: state.origin.catalog.get(k, 0) for k in keys}
    extra = {k: v for k, v in state.origin.catalog.items() if k not in calls}
    most = max([*calls.values(), *extra.values()], default=0)
    origin_calls = sum(calls.values()) + sum(extra.values())
    served = state.total("cache_served")
    measured = {
        "cold_keys": len(keys),
        "requests": state.total("cache_requests"),
        "served_from_cache": served,
        "origin_calls": origin_calls,
        "max_origin_calls_per_key": most,
        "origin_calls_per_key": {**calls, **extra},
    }
    if not keys:
        return Guarantee(_CACHE, claim, None, "no cold key was asked for", measured)
    held = most == 1
    fanout = state.plan.cache_fanout * state.plan.replicas
    detail = (
        f"{count(len(keys), 'cold key')}, each asked for by up to {fanout} requests at once "
        f"from {state.plan.replicas} replicas: {count(origin_calls, 'origin call')}, at most "
        f"{most} per key; {served} requests served by the shared cache"
    )
    return Guarantee(_CACHE, claim, held, detail, measured)


def _eviction(state: DemoState) -> Guarantee:
    claim = "the dead instance was evicted"
    alive = [i.instance_id for i in state.instances]
    measured = {
        "crashed_at": _round(state.crashed_at),
        "evicted_at": _round(state.evicted_at),
        "heartbeat_ttl": state.plan.dead_ttl,
        "instances_left": alive,
    }
    if state.crashed_at is None:
        return Guarantee(_EVICTION, claim, None, f"{DEAD_INSTANCE} never crashed", measured)
    if state.evicted_at is None:
        held = None if state.interrupted else False
        detail = f"{DEAD_INSTANCE} crashed at {state.crashed_at:.1f}s and is still registered"
        return Guarantee(_EVICTION, claim, held, detail, measured)
    after = state.evicted_at - state.crashed_at
    detail = (
        f"{DEAD_INSTANCE} crashed at {state.crashed_at:.1f}s (heartbeat lease "
        f"{state.plan.dead_ttl:g}s) and was evicted {after:.1f}s later"
    )
    held = LIVE_INSTANCE in alive
    if not held:
        detail += f", but the live instance {LIVE_INSTANCE} is missing too"
    return Guarantee(_EVICTION, claim, held, detail, measured)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def evaluate(state: DemoState) -> list[Guarantee]:
    """The four guarantees, as measured in this run."""
    return [_breaker(state), _probes(state), _cache(state), _eviction(state)]


def summary_json(state: DemoState, guarantees: list[Guarantee]) -> dict[str, Any]:
    """The machine-readable summary (``msfw-redis demo --json``)."""
    judged = [g for g in guarantees if g.held is not None]
    return {
        "ok": all(g.held for g in judged) and (bool(judged) or state.interrupted),
        "interrupted": state.interrupted,
        "service": SERVICE,
        "seconds": state.plan.seconds,
        "elapsed": round(state.elapsed, 2),
        "replicas": state.plan.replicas,
        "store": state.store_label,
        "guarantees": [
            {"key": g.key, "claim": g.claim, "held": g.held, "detail": g.detail, **g.measured}
            for g in guarantees
        ],
        "per_replica": [
            {
                "replica": f"r{i + 1}",
                **{k: state.replicas[i].get(k) for k in _REPLICA_FIELDS},
            }
            for i in sorted(state.replicas)
        ],
        "origin": {
            "orders": state.origin.orders,
            "orders_failed": state.origin.orders_failed,
            "probes": state.origin.probes,
            "max_probes_at_once": state.origin.max_probes_in_flight,
            "arrived_while_open": state.origin.while_open,
            "catalog_calls": sum(state.origin.catalog.values()),
            "by_instance": dict(state.origin.by_instance),
        },
    }
