"""In-process call counters behind ``ServiceSDK.metrics()``, in total and per service.

Every counter exists from the start at zero (a dashboard never has to tell "absent"
from "none yet"), and each call lands in exactly one of ``successes``, ``failures`` and
``rejections``: a call refused by an open breaker is a rejection, not also a failure.

``client_errors`` counts the failures that ended with a 4xx response, which breakers
ignore by default. ``cache_hits``, ``cache_stale``, ``cache_misses``, ``cache_coalesced``
and ``cache_bypasses`` count the calls the response cache answered, by outcome.
``slow_calls`` counts the calls (not rejections) that took longer than their
breaker's ``slow_call_threshold``, as this process timed them end to end.

The retry kinds follow Resilience4j's: a call is ``successful_without_retry``,
``successful_with_retry``, ``failed_with_retry`` or ``failed_without_retry``. Durations
go into a fixed-bucket histogram per (service, method, status code), the buckets being
OpenTelemetry's advised boundaries for ``http.client.request.duration``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import CircuitOpenError

if TYPE_CHECKING:
    from msfw_redis._pipeline.pipeline import CallOutcome

__all__ = ["COUNTERS", "DURATION_BUCKETS", "CallCounters", "DurationHistogram"]

#: The counters kept for the whole SDK and for each service, all starting at zero.
COUNTERS = (
    "calls",
    "successes",
    "failures",
    "rejections",
    "retries",
    "successful_without_retry",
    "successful_with_retry",
    "failed_with_retry",
    "failed_without_retry",
    "client_errors",
    "cache_hits",
    "cache_stale",
    "cache_misses",
    "cache_coalesced",
    "cache_bypasses",
    "slow_calls",
)

#: A cache step's outcome to its per-service counter (one per call the cache answered).
_CACHE_COUNTERS = {
    "hit": "cache_hits",
    "stale": "cache_stale",
    "miss": "cache_misses",
    "coalesced": "cache_coalesced",
    "bypass": "cache_bypasses",
}

#: Upper bounds in seconds: OpenTelemetry's advice for ``http.client.request.duration``.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass(slots=True)
class DurationHistogram:
    """Call durations: per-bucket counts (not cumulative; the last is +Inf), sum, count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Add one duration in seconds."""
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class CallCounters:
    """The SDK's call counters; ``record`` is called once per finished call."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.services: dict[str, dict[str, int]] = {}
        self.durations: dict[tuple[str, str, str], DurationHistogram] = {}

    def service(self, name: str) -> dict[str, int]:
        """The counters of one service, created at zero on first use."""
        counters = self.services.get(name)
        if counters is None:
            counters = self.services[name] = dict.fromkeys(COUNTERS, 0)
        return counters

    def record(self, service: str, method: str, outcome: CallOutcome) -> None:
        """Count one finished call of ``service``."""
        if not self.enabled:
            return
        per = self.service(service)
        retried = outcome.attempts > 1
        if isinstance(outcome.exception, CircuitOpenError):
            kinds = ["rejections"]
        elif outcome.ok:
            kinds = ["successes", f"successful_with{'' if retried else 'out'}_retry"]
        else:
            kinds = ["failures", f"failed_with{'' if retried else 'out'}_retry"]
            if outcome.response is not None and outcome.response.status_code < 500:
                kinds.append("client_errors")  # a 4xx: a failed call, not a breaker failure
        cache_kind = _CACHE_COUNTERS.get(outcome.cache or "")
        if cache_kind is not None:
            kinds.append(cache_kind)
        # The process's view of the breaker's slow-call rule: the whole call, end to end,
        # against the threshold (the breaker itself judges each admitted attempt).
        slow = outcome.slow_after
        if slow is not None and kinds[0] != "rejections" and outcome.elapsed > slow:
            kinds.append("slow_calls")
        retries = max(0, outcome.attempts - 1)
        for counters in (self.totals, per):
            counters["calls"] += 1
            counters["retries"] += retries
            for kind in kinds:
                counters[kind] += 1
        status = "" if outcome.response is None else str(outcome.response.status_code)
        key = (service, method.upper(), status)
        histogram = self.durations.get(key)
        if histogram is None:
            histogram = self.durations[key] = DurationHistogram()
        histogram.observe(outcome.elapsed)

    def cache_results(self) -> dict[str, dict[str, int]]:
        """Each service's cumulative cache results so far: ``{service: {result: n}}``."""
        return {
            name: {result: c[counter] for result, counter in _CACHE_COUNTERS.items()}
            for name, c in list(self.services.items())
        }

    def snapshot(self) -> dict[str, Any]:
        """The totals, plus ``services``: each service's counters (copies)."""
        if not self.enabled:
            return {}
        data: dict[str, Any] = dict(self.totals)
        data["services"] = {name: dict(c) for name, c in sorted(self.services.items())}
        return data
