"""The fleet-wide limits of one SDK: bulkheads, rate limiters, retry budgets, the gate.

:class:`FleetLimits` is what the SDK builds once and hands to the call pipeline and the
decorators. It creates each limit on first use, keyed by what it guards, and reports
them as :class:`LimitsState` status objects (the ``CircuitState`` of limits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msfw_redis._limits.bulkhead import FleetBulkhead
from msfw_redis._limits.config import (
    DEFAULT_RETRY_AFTER_MAX,
    DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
    DEFAULT_RETRY_BUDGET_RATIO,
)
from msfw_redis._limits.gate import RetryAfterGate
from msfw_redis._limits.ratelimit import FleetRateLimiter
from msfw_redis._limits.retrybudget import FleetRetryBudget
from msfw_redis._limits.store import LimitsStore
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from msfw_redis._config import StoreFailurePolicy
    from msfw_redis._limits.config import BulkheadConfig, RateLimitConfig
    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

__all__ = ["FleetLimits", "LimitsState"]


@dataclass(frozen=True, slots=True)
class LimitsState:
    """What one service's limits look like from this replica.

    Attributes:
        service: the service.
        bulkhead_limit: ``max_concurrent_calls``, or ``None`` without a bulkhead.
        bulkhead_in_flight: permits held fleet-wide at this replica's last acquire.
        bulkhead_held_here: permits this replica holds now.
        bulkhead_rejected: calls this replica refused with ``BulkheadFullError``.
        rate_limits: rate limit key -> (admitted, refused) counts in this replica.
        retry_after: endpoint -> seconds it stays closed by a Retry-After.
        retry_budget_granted: retries the fleet budget granted this replica.
        retry_budget_refused: retries it refused.
    """

    service: str
    bulkhead_limit: int | None = None
    bulkhead_in_flight: int = 0
    bulkhead_held_here: int = 0
    bulkhead_rejected: int = 0
    rate_limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    retry_after: dict[str, float] = field(default_factory=dict)
    retry_budget_granted: int = 0
    retry_budget_refused: int = 0


class FleetLimits:
    """Builds and keeps every fleet-wide limit of one SDK."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        failure_policy: StoreFailurePolicy = "fail_open",
        retry_after_max: float = DEFAULT_RETRY_AFTER_MAX,
    ) -> None:
        self.store = LimitsStore(store)
        self._bus = bus
        self._policy = failure_policy
        self.gate = RetryAfterGate(self.store, bus, retry_after_max=retry_after_max)
        self._bulkheads: dict[tuple[str, str | None], FleetBulkhead] = {}
        self._rates: dict[tuple[str, str], FleetRateLimiter] = {}
        self._budgets: dict[str, FleetRetryBudget] = {}

    def rebind(self) -> None:
        """Forget loop-bound waiters and tasks of a previous (closed) event loop."""
        for bulkhead in self._bulkheads.values():
            bulkhead.rebind()
        for budget in self._budgets.values():
            budget.rebind()

    def bulkhead(
        self, service: str, config: BulkheadConfig, *, instance: str | None = None
    ) -> FleetBulkhead:
        """The bulkhead of ``service`` (or of one instance of it, for ``scope="instance"``)."""
        key = (service, instance if config.scope == "instance" else None)
        found = self._bulkheads.get(key)
        if found is None or found.config != config:
            found = FleetBulkhead(
                self.store, self._bus, service, config, instance=key[1],
                failure_policy=self._policy,
            )  # fmt: skip
            self._bulkheads[key] = found
        return found

    def rate_limiter(
        self, tag: str, name: str, config: RateLimitConfig, *, service: str | None = None
    ) -> FleetRateLimiter:
        """The rate limit ``name`` (hash tag ``tag``): a service, an endpoint or a custom key."""
        key = (tag, name)
        found = self._rates.get(key)
        if found is None or found.config != config:
            found = FleetRateLimiter(
                self.store, tag, name, config, failure_policy=self._policy, service_name=service
            )
            self._rates[key] = found
        return found

    def retry_budget(
        self,
        service: str,
        *,
        ratio: float | None = DEFAULT_RETRY_BUDGET_RATIO,
        min_per_second: float = DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
    ) -> FleetRetryBudget | None:
        """The retry budget of ``service``; ``None`` when ``ratio`` is ``None`` (turned off)."""
        if ratio is None:
            return None
        found = self._budgets.get(service)
        if found is None or (found.ratio, found.min_per_second) != (ratio, min_per_second):
            found = FleetRetryBudget(
                self.store, service, ratio=ratio, min_per_second=min_per_second
            )
            self._budgets[service] = found
        return found

    async def flush(self) -> None:
        """Carry every pending retry-budget request count to Redis."""
        for budget in list(self._budgets.values()):
            await budget.flush()

    def state(self, service: str) -> LimitsState:
        """The status of ``service``'s limits as this replica sees them (no I/O)."""
        bulkheads = [b for (svc, _), b in self._bulkheads.items() if svc == service]
        rates = {
            name: (r.stats.admitted, r.stats.refused)
            for (_tag, name), r in self._rates.items()
            if r.tag == service or r.service_name == service
        }
        budget = self._budgets.get(service)
        return LimitsState(
            service=service,
            bulkhead_limit=bulkheads[0].config.max_concurrent_calls if bulkheads else None,
            bulkhead_in_flight=max((b.last_in_flight for b in bulkheads), default=0),
            bulkhead_held_here=sum(b.held for b in bulkheads),
            bulkhead_rejected=sum(b.stats.rejected for b in bulkheads),
            rate_limits=rates,
            retry_after=self.gate.open_windows(service),
            retry_budget_granted=budget.granted if budget else 0,
            retry_budget_refused=budget.refused if budget else 0,
        )

    def services(self) -> list[str]:
        """Services with any limit in use here."""
        names = {svc for svc, _ in self._bulkheads} | set(self._budgets)
        names |= {r.tag for r in self._rates.values()}
        return sorted(names)

    async def aclose(self) -> None:
        """Release held permits and flush pending counts."""
        for bulkhead in list(self._bulkheads.values()):
            with logged("bulkhead close"):
                await bulkhead.aclose()
        with logged("retry budget flush"):
            await self.flush()
