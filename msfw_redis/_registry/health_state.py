"""The values of fleet health monitoring: per-service settings, the state stored in
Redis, the outcome of one probe round, and the monitor's counters.

``_registry.health`` runs the monitor with them; the hysteresis that moves an instance
between states is ``lua/health_report.lua``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from msfw_redis._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_HEALTH_FAILURE_THRESHOLD",
    "DEFAULT_HEALTH_INTERVAL",
    "DEFAULT_HEALTH_TIMEOUT",
    "DEFAULT_SUCCESS_THRESHOLD",
    "HealthCallback",
    "HealthCheckSettings",
    "HealthStats",
    "HealthStatus",
    "ProbeRound",
    "ServiceHealth",
    "status_of",
]

DEFAULT_HEALTH_INTERVAL = 30.0
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_HEALTH_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 2
#: Time a round's report may take beyond the probe timeout: the registry read and the
#: report itself (s). The lease is min(interval, timeout + this).
_REPORT_MARGIN = 1.0
#: A service's health: ``unknown`` when nothing has been learned about it yet.
HealthStatus = Literal["healthy", "unhealthy", "unknown"]

#: ``async def callback(service_name, is_healthy)`` (a plain function works too).
HealthCallback = Callable[[str, bool], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    """How one service is monitored.

    Attributes:
        interval: seconds between probe rounds, fleet-wide. Default 30.
        timeout: seconds one probe may take. Default 5.
        failure_threshold: consecutive failed probes that make an instance unhealthy.
            Default 3.
        success_threshold: consecutive passed probes that make it healthy again.
            Default 2.
    """

    interval: float = DEFAULT_HEALTH_INTERVAL
    timeout: float = DEFAULT_HEALTH_TIMEOUT
    failure_threshold: int = DEFAULT_HEALTH_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigurationError(
                    f"invalid health check {name} {value!r}: must be > 0 seconds", field=name
                )
        for name in ("failure_threshold", "success_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ConfigurationError(
                    f"invalid health check {name} {value!r}: must be an integer >= 1",
                    field=name,
                )

    @property
    def lease(self) -> float:
        """Seconds within which a round's report is accepted: min(interval, timeout + 1)."""
        return min(self.interval, self.timeout + _REPORT_MARGIN)


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """A service's health as stored in Redis (times are server ms)."""

    service: str
    healthy: bool
    seq: int
    changed_ms: int
    probed_ms: int
    members: int
    healthy_members: int
    unknown_members: int = 0

    @classmethod
    def from_fields(cls, service: str, raw: Mapping[bytes, bytes]) -> ServiceHealth:
        """The state from the service's health hash (``HGETALL``; absent fields are 0)."""
        fields = {k.decode(): int(v) for k, v in raw.items()}
        return cls(
            service=service,
            healthy=fields.get("healthy", 0) == 1,
            seq=fields.get("seq", 0),
            changed_ms=fields.get("changed_ms", 0),
            probed_ms=fields.get("probed_ms", 0),
            members=fields.get("members", 0),
            healthy_members=fields.get("healthy_members", 0),
            unknown_members=fields.get("unknown_members", 0),
        )

    @property
    def status(self) -> HealthStatus:
        """``healthy``; ``unknown`` when no instance is healthy and some were never
        decided by a probe; else ``unhealthy``."""
        if self.healthy:
            return "healthy"
        return "unknown" if self.unknown_members > 0 else "unhealthy"


@dataclass(frozen=True, slots=True)
class ProbeRound:
    """One probe round this replica ran (``number`` counts the service's rounds).

    ``code`` is 1 when the report was applied, -1 when another round had taken over,
    -2 when the lease ran out first. ``transitions`` holds ``(instance_id, from, to)``.
    """

    service: str
    number: int
    code: int
    healthy: bool
    changed: bool
    seq: int
    results: tuple[tuple[str, bool], ...]
    transitions: tuple[tuple[str, str, str], ...]


@dataclass(slots=True)
class HealthStats:
    """Counters for metrics."""

    rounds_won: int = 0
    rounds_skipped: int = 0
    probes: int = 0
    probe_failures: int = 0
    reports_rejected: int = 0
    changes_seen: int = 0
    callbacks_fired: int = 0
    callback_errors: int = 0


def status_of(healthy: bool) -> HealthStatus:
    """The status of a decided verdict."""
    return "healthy" if healthy else "unhealthy"
