"""Prometheus metrics of one SDK, named after Resilience4j's Micrometer metrics.

Needs the ``prometheus`` extra (``prometheus-client``)::

    from msfw_redis.contrib.prometheus import MsfwCollector
    MsfwCollector(sdk)            # registers with prometheus_client.REGISTRY

The names are Resilience4j's with the prefix ``msfw_``, so its dashboards (Grafana
21307) adapt by changing the prefix. ``name`` is the breaker's label (``service`` or
``service:endpoint``); every series also carries ``service``.

- ``msfw_circuitbreaker_state{name,state}``: 1 for the current state, 0 for the others;
- ``msfw_circuitbreaker_calls_total{name,kind}``: successful, failed, not_permitted,
  ignored (a 4xx response, which breakers do not count by default), per service;
- ``msfw_circuitbreaker_failure_rate{name}``: failed / (successful + failed), 0 to 1,
  over this process's lifetime;
- ``msfw_circuitbreaker_slow_call_rate{name}``: calls slower than the breaker's
  ``slow_call_threshold`` / (successful + failed), 0 to 1, as this process timed them
  (0 without a threshold); the failure rate that opens the breaker is the fleet's;
- ``msfw_circuitbreaker_transitions_total{name,from_state,to_state}`` as this replica
  heard them (``from_state`` is ``unknown`` for a breaker it had not seen before);
- ``msfw_retry_calls_total{name,kind}``: successful_without_retry,
  successful_with_retry, failed_with_retry, failed_without_retry;
- ``msfw_cache_requests_total{name,result}``: hit, miss, stale, coalesced, bypass, for
  the SDK's whole response cache (``name`` and ``service`` are ``_all``) and per service;
- ``msfw_registry_instances{service,status}``: the instances this process last
  discovered, by stored status (healthy, recovering, unhealthy, suspect);
- ``msfw_health_status{service}``: 1 healthy, 0 unhealthy, the last verdict this
  replica saw (its own probe rounds and the fleet's events; absent before one);
- ``msfw_store_up`` (0/1);
- ``msfw_http_client_request_duration_seconds{service,method,status_code}``.

The fleet-wide series (instances and health read from Redis, trips and totals) come
from ``msfw-redis metrics --serve``: one scrape for the whole fleet.

Collection reads in-process counters only (no I/O), so a scrape never waits on Redis.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from msfw_redis._breaker.machine import BreakerState
from msfw_redis._sdk.metrics import DURATION_BUCKETS

try:
    from prometheus_client import REGISTRY
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "msfw_redis.contrib.prometheus needs the 'prometheus' extra: "
        "pip install 'msfw-redis[prometheus]'"
    ) from exc

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from msfw_redis._breaker.views import TransitionEvent
    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["MsfwCollector"]

_ALL = "_all"
_STATES = tuple(state.label for state in BreakerState)
#: (result label, SDK-wide cache counter, per-service call counter)
_CACHE_RESULTS = (
    ("hit", "hits", "cache_hits"),
    ("miss", "misses", "cache_misses"),
    ("stale", "stale_served", "cache_stale"),
    ("coalesced", "coalesced_waiters", "cache_coalesced"),
    ("bypass", "bypasses", "cache_bypasses"),
)
_INSTANCE_STATUSES = ("healthy", "recovering", "unhealthy", "suspect")
_RETRY_KINDS = (
    "successful_without_retry",
    "successful_with_retry",
    "failed_with_retry",
    "failed_without_retry",
)


class MsfwCollector:
    """A custom collector over one :class:`~msfw_redis.ServiceSDK`.

    Args:
        sdk: the SDK whose calls, breakers and cache are exported.
        registry: where to register (default ``prometheus_client.REGISTRY``); ``None``
            registers nowhere (call ``registry.register(collector)`` yourself).
    """

    def __init__(self, sdk: ServiceSDK, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._sdk = sdk
        self._transitions: Counter[tuple[str, str, str, str]] = Counter()
        sdk.on_breaker_transition(self._on_transition)
        if registry is not None:
            registry.register(self)

    def _on_transition(self, event: TransitionEvent) -> None:
        name = event.service if event.endpoint is None else f"{event.service}:{event.endpoint}"
        self._transitions[(name, event.service, event.from_state or "unknown", event.state)] += 1

    def describe(self) -> list[Metric]:
        """No up-front description: the series depend on the services in use."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The current values (called by the registry on every scrape)."""
        metrics: dict[str, Any] = self._sdk.metrics()
        services: dict[str, dict[str, int]] = metrics.get("services", {})

        state = GaugeMetricFamily(
            "msfw_circuitbreaker_state",
            "1 for the breaker's current state, 0 for the others",
            labels=["name", "service", "state"],
        )
        for cs in self._sdk.circuit_states():
            name = cs.service if cs.endpoint is None else f"{cs.service}:{cs.endpoint}"
            for label in _STATES:
                state.add_metric([name, cs.service, label], int(cs.state == label))
        yield state

        calls = CounterMetricFamily(
            "msfw_circuitbreaker_calls",
            "calls by outcome as the breaker saw them",
            labels=["name", "service", "kind"],
        )
        rate = GaugeMetricFamily(
            "msfw_circuitbreaker_failure_rate",
            "failed / (successful + failed) calls, 0 to 1",
            labels=["name", "service"],
        )
        slow = GaugeMetricFamily(
            "msfw_circuitbreaker_slow_call_rate",
            "calls slower than slow_call_threshold / (successful + failed), 0 to 1, "
            "this process's view",
            labels=["name", "service"],
        )
        retry = CounterMetricFamily(
            "msfw_retry_calls", "calls by retry outcome", labels=["name", "service", "kind"]
        )
        for svc, c in services.items():
            failed = c["failures"] - c["client_errors"]
            for kind, value in (
                ("successful", c["successes"]),
                ("failed", failed),
                ("not_permitted", c["rejections"]),
                ("ignored", c["client_errors"]),
            ):
                calls.add_metric([svc, svc, kind], value)
            judged = c["successes"] + failed
            rate.add_metric([svc, svc], failed / judged if judged else 0.0)
            slow.add_metric([svc, svc], c["slow_calls"] / judged if judged else 0.0)
            for kind in _RETRY_KINDS:
                retry.add_metric([svc, svc, kind], c[kind])
        yield calls
        yield rate
        yield slow
        yield retry

        transitions = CounterMetricFamily(
            "msfw_circuitbreaker_transitions",
            "breaker state transitions heard by this replica",
            labels=["name", "service", "from_state", "to_state"],
        )
        for (name, svc, before, after), count in sorted(self._transitions.items()):
            transitions.add_metric([name, svc, before, after], count)
        yield transitions

        cache = CounterMetricFamily(
            "msfw_cache_requests",
            "response cache lookups by result (the whole SDK)",
            labels=["name", "service", "result"],
        )
        if metrics:
            for result, key, _ in _CACHE_RESULTS:
                cache.add_metric([_ALL, _ALL, result], metrics.get(f"cache_{key}", 0))
        for svc, c in services.items():
            for result, _, key in _CACHE_RESULTS:
                cache.add_metric([svc, svc, result], c[key])
        yield cache

        components = self._sdk.components
        instances = GaugeMetricFamily(
            "msfw_registry_instances",
            "instances this process last discovered, by stored status",
            labels=["service", "status"],
        )
        for svc, known in components.registry.known_instances().items():
            counts: Counter[str] = Counter(inst.status for inst in known)
            for status in _INSTANCE_STATUSES:
                instances.add_metric([svc, status], counts[status])
        yield instances
        health = GaugeMetricFamily(
            "msfw_health_status",
            "1 healthy, 0 unhealthy: the last shared verdict this replica saw",
            labels=["service"],
        )
        for svc, verdict in components.health.known_states().items():
            health.add_metric([svc], int(verdict == "healthy"))
        yield health

        up = GaugeMetricFamily("msfw_store_up", "1 while the shared store is reachable")
        if "store_up" in metrics:
            up.add_metric([], metrics["store_up"])
        yield up

        duration = HistogramMetricFamily(
            "msfw_http_client_request_duration_seconds",
            "duration of calls through the SDK, seconds",
            labels=["service", "method", "status_code"],
        )
        for (svc, method, status), h in sorted(self._sdk.call_durations().items()):
            running, buckets = 0, []
            for bound, count in zip((*DURATION_BUCKETS, float("inf")), h.counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            duration.add_metric([svc, method, status], buckets, h.total)
        yield duration
