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

_REJECTED: tuple[str, ...] = ("calls", "rejections")
#: Indexed by "was the call retried".
_SUCCEEDED: tuple[tuple[str, ...], ...] = (
    ("calls", "successes", "successful_without_retry"),
    ("calls", "successes", "successful_with_retry"),
)
_FAILED: tuple[tuple[str, ...], ...] = (
    ("calls", "failures", "failed_without_retry"),
    ("calls", "failures", "failed_with_retry"),
)
_CLIENT_ERROR: tuple[tuple[str, ...], ...] = (
    ("calls", "failures", "failed_without_retry", "client_errors"),
    ("calls", "failures", "failed_with_retry", "client_errors"),
)
_STATUS_TEXT = {code: str(code) for code in range(100, 600)}


def _status_text(code: int) -> str:
    return _STATUS_TEXT.get(code) or str(code)


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
        per = self.services.get(service)
        if per is None:
            per = self.service(service)
        totals = self.totals
        attempts = outcome.attempts
        exception = outcome.exception
        response = outcome.response
        # The counters of each kind of end, as tuples built once (this runs per call).
        if exception is not None and isinstance(exception, CircuitOpenError):
            kinds = _REJECTED
        elif outcome.ok:
            kinds = _SUCCEEDED[attempts > 1]
        elif response is not None and response.status_code < 500:
            kinds = _CLIENT_ERROR[attempts > 1]  # a 4xx: a failed call, not a breaker failure
        else:
            kinds = _FAILED[attempts > 1]
        for kind in kinds:
            totals[kind] += 1
            per[kind] += 1
        cache = outcome.cache
        if cache is not None:
            cache_kind = _CACHE_COUNTERS.get(cache)
            if cache_kind is not None:
                totals[cache_kind] += 1
                per[cache_kind] += 1
        # The process's view of the breaker's slow-call rule: the whole call, end to end,
        # against the threshold (the breaker itself judges each admitted attempt).
        slow = outcome.slow_after
        if slow is not None and kinds is not _REJECTED and outcome.elapsed > slow:
            totals["slow_calls"] += 1
            per["slow_calls"] += 1
        if attempts > 1:
            totals["retries"] += attempts - 1
            per["retries"] += attempts - 1
        key = (service, method, "" if response is None else _status_text(response.status_code))
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
