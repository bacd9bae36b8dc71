"""What a breaker shows outside itself: its state, its transitions and its refusals.

Plain values and pure functions of a :class:`~msfw_redis._breaker.machine.Snapshot`, kept
apart from :class:`~msfw_redis._breaker.breaker.DistributedBreaker` so that callers
(the SDK, the CLI, the exporters) can name these types without importing the breaker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from msfw_redis._breaker.machine import BreakerState, Snapshot
from msfw_redis._exceptions import CircuitOpenError

__all__ = [
    "SERVICE_SCOPE",
    "CircuitState",
    "TransitionEvent",
    "TransitionListener",
    "circuit_state",
    "refusal",
    "reopens_at",
    "unreachable_refusal",
]

#: The name part of a breaker that covers a whole service.
SERVICE_SCOPE = "*"


@dataclass(frozen=True, slots=True)
class CircuitState:
    """A breaker's state as this replica sees it.

    Attributes:
        state: ``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"``,
            ``"forced_closed"`` or ``"disabled"``.
        failure_count: consecutive failures recorded (CLOSED).
        success_count: successful probes so far (HALF_OPEN).
        generation: bumped by every transition, fleet-wide.
        opened_at: Unix time (server clock, seconds) of the last opening, or ``None``.
        retry_after: seconds until calls are admitted again (0 when admitting);
            ``None`` for a breaker forced open without a TTL, which never lapses.
        service: the service the breaker guards.
        endpoint: the endpoint, or ``None`` for a service-wide breaker.
        local: True while Redis is unreachable and this replica runs a local breaker.
        total_failures, total_successes: every outcome ever recorded fleet-wide, stale
            ones included (from :meth:`DistributedBreaker.refresh`; ``None`` from the
            local mirror, which does not track them).
        trips: CLOSED -> OPEN transitions so far (same source).
        active_probes: half-open probe leases currently held (same source).
        failures_at_trip: the failure count that tripped the breaker, kept while it is
            OPEN or HALF_OPEN (``failure_count`` restarts at 0 on every transition):
            consecutive failures, the window's failures in rate mode, or the failed
            probe(s) that re-opened it from HALF_OPEN. 0 in every other state.
    """

    state: str
    failure_count: int
    success_count: int
    generation: int
    opened_at: float | None
    retry_after: float | None
    service: str
    endpoint: str | None
    local: bool = False
    total_failures: int | None = None
    total_successes: int | None = None
    trips: int | None = None
    active_probes: int | None = None
    failures_at_trip: int = 0


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """Handed to transition listeners, in every replica, once per transition.

    ``state`` (also ``to_state``) is the new state; ``from_state`` the state this
    replica's mirror held before, or ``None`` when it had not seen the breaker yet;
    ``at`` the Redis server time of the transition (Unix seconds).
    """

    service: str
    endpoint: str | None
    state: str
    generation: int
    opened_at: float | None
    retry_after: float
    from_state: str | None = None
    at: float | None = None

    @property
    def to_state(self) -> str:
        """The new state (the same as ``state``)."""
        return self.state


TransitionListener = Callable[[TransitionEvent], Awaitable[None] | None]


def circuit_state(
    snap: Snapshot, *, service: str, endpoint: str | None, now_ms: int, local: bool
) -> CircuitState:
    """``snap`` as a caller sees it, with ``retry_after`` counted from ``now_ms``."""
    state, gen, fails, succ = snap.state, snap.gen, snap.failures, snap.successes
    opened, until = snap.opened_at_ms, snap.open_until_ms
    # breaker_read replies carry lifetime totals: {tf, ts, trips, active probes}.
    totals = snap.extra if len(snap.extra) >= 4 else None
    retry_after: float | None = 0.0
    if state is BreakerState.OPEN or (state is BreakerState.FORCED_OPEN and until > 0):
        retry_after = max(0.0, (until - now_ms) / 1000.0)
    elif state is BreakerState.FORCED_OPEN:
        retry_after = None  # forced open until reset: it never lapses by itself
    return CircuitState(
        state=state.label,
        failure_count=fails,
        success_count=succ,
        generation=gen,
        opened_at=opened / 1000.0 if opened else None,
        retry_after=retry_after,
        service=service,
        endpoint=endpoint,
        local=local,
        total_failures=totals[0] if totals else None,
        total_successes=totals[1] if totals else None,
        trips=totals[2] if totals else None,
        active_probes=totals[3] if totals else None,
        failures_at_trip=snap.failures_at_trip,
    )


def reopens_at(snap: Snapshot) -> int:
    """Server ms at which a rejected caller may try again: the end of the cool-down, or
    for a full half-open breaker the earliest probe lease's expiry (reply extra 1)."""
    if snap.state is BreakerState.HALF_OPEN:
        return snap.extra[1] if len(snap.extra) > 1 and snap.extra[1] else snap.now_ms
    return snap.open_until_ms


def refusal(
    label: str,
    service: str,
    endpoint: str | None,
    state: BreakerState,
    open_until_ms: int,
    now_ms: int,
    opened_at_ms: int,
) -> CircuitOpenError:
    """The error for a call the breaker rejects in ``state`` until ``open_until_ms``."""
    if state is BreakerState.FORCED_OPEN and open_until_ms <= 0:
        # Forced open without a TTL never lapses: promise no time at all.
        return CircuitOpenError(
            f"circuit breaker {label} is forced open until reset (msfw-redis breaker reset)",
            retry_after=None,
            breaker=label,
            service_name=service,
            endpoint=endpoint,
        )
    retry_after = max(0.0, (open_until_ms - now_ms) / 1000.0)
    if state is BreakerState.OPEN and 0 < opened_at_ms < open_until_ms:
        # The local estimate of server time can lag by up to half a round trip;
        # never promise a wait longer than the cool-down itself.
        retry_after = min(retry_after, (open_until_ms - opened_at_ms) / 1000.0)
    return CircuitOpenError(
        f"circuit breaker {label} is {state.label}; retry after {retry_after:.2f}s",
        retry_after=retry_after,
        breaker=label,
        service_name=service,
        endpoint=endpoint,
    )


def unreachable_refusal(label: str, service: str, endpoint: str | None) -> CircuitOpenError:
    """The error for a call refused because the shared state is unreachable (fail_closed)."""
    return CircuitOpenError(
        f"circuit breaker {label} cannot reach its shared state and "
        "store_failure_policy is fail_closed",
        retry_after=1.0,
        breaker=label,
        service_name=service,
        endpoint=endpoint,
    )
