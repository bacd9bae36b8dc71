"""The demo's script: phase timings and the settings every demo process shares.

``msfw-redis demo`` runs one parent (store, order-service, live view) and N replica
processes. They agree on *when* each phase starts through one :class:`DemoPlan` and one
wall-clock start time (``t0``, Unix seconds; every process runs on this machine, so it
reads the same clock). This module is pure: no I/O, no clocks read.

The phases split ``seconds``::

    healthy (30 %)  -> failing (35 %) -> recovering (35 %)

* healthy: ``/orders`` answers 200. Every ``wave`` seconds all replicas ask at once
  for a new, cold catalogue key (a stampede the shared cache turns into one call).
* failing: ``/orders`` answers 503 and instance ``order-2`` crashes (its listener
  closes and its heartbeats stop). The shared breaker opens once for the fleet;
  after each ``cooldown`` one probe (``half_open_max_calls``) is let through.
* recovering: ``/orders`` answers 200 again; the next probes close the breaker and
  new catalogue keys follow once a replica sees it closed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from msfw_redis._config import CircuitBreakerConfig, ServiceSDKConfig

__all__ = [
    "DEAD_INSTANCE",
    "LIVE_INSTANCE",
    "MAX_REPLICAS",
    "MIN_SECONDS",
    "SERVICE",
    "DemoPlan",
    "Phase",
]

SERVICE = "order-service"
LIVE_INSTANCE = "order-1"
DEAD_INSTANCE = "order-2"
MIN_SECONDS = 6.0
MAX_SECONDS = 3600.0
MAX_REPLICAS = 16

Phase = Literal["starting", "healthy", "failing", "recovering", "done"]

_HEALTHY_SHARE = 0.30
_FAILING_SHARE = 0.35


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """Everything the demo processes must agree on (times in seconds).

    Attributes:
        seconds: how long the three phases last together.
        replicas: how many replica processes call the service.
        redis_url: the store every process uses.
        prefix: the key prefix.
        failure_threshold: consecutive failures, fleet-wide, that open the breaker.
        success_threshold: good probes that close it.
        half_open_max_calls: probes admitted at once, fleet-wide.
        orders_tasks: concurrent ``/orders`` callers per replica.
        orders_interval: pause between one caller's calls.
        cache_fanout: concurrent requests per replica for each new catalogue key.
        catalog_delay: how long the origin takes to answer a catalogue request (so that
            a stampede's requests really overlap).
        call_timeout: seconds one call may take.
    """

    seconds: float
    replicas: int
    redis_url: str
    prefix: str = "msfw"
    failure_threshold: int = 5
    success_threshold: int = 2
    half_open_max_calls: int = 1
    orders_tasks: int = 2
    orders_interval: float = 0.05
    cache_fanout: int = 4
    catalog_delay: float = 0.05
    call_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not MIN_SECONDS <= self.seconds <= MAX_SECONDS:
            raise ValueError(
                f"--seconds must be between {MIN_SECONDS:g} and {MAX_SECONDS:g}, "
                f"got {self.seconds:g}"
            )
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(
                f"--replicas must be between 1 and {MAX_REPLICAS}, got {self.replicas}"
            )

    # -- timings ----------------------------------------------------------------------

    @property
    def healthy_end(self) -> float:
        """Seconds after ``t0`` at which the service starts failing."""
        return self.seconds * _HEALTHY_SHARE

    @property
    def failing_end(self) -> float:
        """Seconds after ``t0`` at which the service recovers."""
        return self.seconds * (_HEALTHY_SHARE + _FAILING_SHARE)

    @property
    def cooldown(self) -> float:
        """The breaker's OPEN time before a probe: a third of the failing phase."""
        return round(_clamp((self.failing_end - self.healthy_end) / 3, 0.5, 5.0), 2)

    @property
    def dead_ttl(self) -> float:
        """Heartbeat lease of the instance that crashes (it is evicted this long after)."""
        return round(_clamp((self.failing_end - self.healthy_end) / 3, 0.5, 2.0), 2)

    @property
    def wave(self) -> float:
        """Seconds between two new (cold) catalogue keys."""
        return round(_clamp(self.seconds / 16, 0.5, 2.0), 2)

    @property
    def cache_ttl(self) -> float:
        """Catalogue entries stay fresh for the whole run, so each key is cold once."""
        return self.seconds + 60.0

    def phase_at(self, elapsed: float) -> Phase:
        """The phase ``elapsed`` seconds after ``t0``."""
        if elapsed < 0:
            return "starting"
        if elapsed < self.healthy_end:
            return "healthy"
        if elapsed < self.failing_end:
            return "failing"
        if elapsed < self.seconds:
            return "recovering"
        return "done"

    def new_key_allowed(self, elapsed: float, breaker_closed: bool) -> bool:
        """Whether a replica starts a cold-key wave now.

        Never while the service fails, nor in the last moments before it does (a fill
        that straddles the failure would meet a breaker that opened meanwhile), and in
        recovery only once this replica sees the breaker closed again.
        """
        phase = self.phase_at(elapsed)
        if phase == "healthy":
            return elapsed < self.healthy_end - min(0.5, self.wave)
        return phase == "recovering" and breaker_closed

    # -- settings ---------------------------------------------------------------------

    def breaker_config(self) -> CircuitBreakerConfig:
        """The breaker policy every demo process uses for ``order-service``."""
        return CircuitBreakerConfig(
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            timeout=self.cooldown,
            half_open_max_calls=self.half_open_max_calls,
            retry_attempts=1,
            request_timeout=self.call_timeout,
            probe_lease=self.call_timeout,
        )

    def sdk_config(self, *, parent: bool) -> ServiceSDKConfig:
        """SDK settings: the parent health-probes the registry, replicas only call."""
        return ServiceSDKConfig(
            redis_url=self.redis_url,
            key_prefix=self.prefix,
            redis_op_timeout=1.0,
            default_timeout=self.call_timeout,
            default_retry_attempts=1,
            circuit_breaker=self.breaker_config(),
            cache_default_ttl=self.cache_ttl,
            health_check_interval=1.0,
            health_check_timeout=0.5,
            monitor_registered_services=parent,
        )

    # -- transport to the replica processes -------------------------------------------

    def to_json(self) -> str:
        """The plan as one JSON string (a replica's command-line argument)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DemoPlan:
        """The plan back from :meth:`to_json`."""
        return cls(**json.loads(text))
