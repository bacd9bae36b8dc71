"""Which fleet limits apply to a call: per service, from settings and ``get_client``.

The SDK builds one :class:`LimitsPlan` from its ``ServiceSDKConfig``, the application's
``[services.*]`` sections and the ``bulkhead_config`` given to ``get_client``; the call
pipeline asks it, per attempt, for the service's bulkhead, rate limiter and retry
budget. Settings are read once per service and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._limits.config import (
    BulkheadConfig,
    RateLimitConfig,
    bulkhead_from_settings,
    rate_limit_from_settings,
)

if TYPE_CHECKING:
    from msfw_redis._config import ServiceSDKConfig
    from msfw_redis._limits.bulkhead import FleetBulkhead
    from msfw_redis._limits.gate import RetryAfterGate
    from msfw_redis._limits.limits import FleetLimits
    from msfw_redis._limits.ratelimit import FleetRateLimiter
    from msfw_redis._limits.retrybudget import FleetRetryBudget
    from msfw_redis._settings import AppSettings

__all__ = ["LimitsPlan", "MethodLimits"]

_UNSET = object()


class LimitsPlan:
    """The limits of each service's calls (see module docs)."""

    def __init__(self, limits: FleetLimits, config: ServiceSDKConfig, settings: AppSettings):
        self._limits = limits
        self._config = config
        self._settings = settings
        self._bulkheads: dict[str, BulkheadConfig | None] = {}
        self._rates: dict[str, RateLimitConfig | None] = {}
        self._budgets: dict[str, tuple[float | None, float]] = {}

    @property
    def gate(self) -> RetryAfterGate:
        """The fleet's Retry-After gate."""
        return self._limits.gate

    def set_bulkhead(self, service: str, config: BulkheadConfig) -> None:
        """Guard every call to ``service`` with this fleet bulkhead (``get_client``)."""
        self._bulkheads[service] = config

    def bulkhead(self, service: str, instance: str | None) -> FleetBulkhead | None:
        """The bulkhead of ``service`` (of ``instance`` for ``scope="instance"``), if any."""
        cfg = self._bulkheads.get(service, _UNSET)
        if cfg is _UNSET:
            cfg = self._bulkheads[service] = bulkhead_from_settings(
                self._settings.for_service(service)
            )
        if not isinstance(cfg, BulkheadConfig):
            return None
        return self._limits.bulkhead(service, cfg, instance=instance)

    def method_bulkhead(self, name: str, config: BulkheadConfig) -> FleetBulkhead:
        """The bulkhead ``name`` of a ``@bulkhead`` typed method (shared with plain functions)."""
        return self._limits.bulkhead(name, config)

    def method_rate_limiter(self, key: str, config: RateLimitConfig) -> FleetRateLimiter:
        """The rate limit ``key`` of a ``@rate_limited`` typed method (shared likewise)."""
        return self._limits.rate_limiter(key, "call", config)

    def rate_limiter(self, service: str, template: str) -> FleetRateLimiter | None:
        """The rate limiter of ``service`` (per endpoint for ``scope="endpoint"``), if any."""
        cfg = self._rates.get(service, _UNSET)
        if cfg is _UNSET:
            cfg = self._rates[service] = rate_limit_from_settings(
                self._settings.for_service(service)
            )
        if not isinstance(cfg, RateLimitConfig):
            return None
        name = "service" if cfg.scope == "service" else f"endpoint:{template}"
        return self._limits.rate_limiter(service, name, cfg, service=service)

    def retry_budget(self, service: str) -> FleetRetryBudget | None:
        """The retry budget of ``service``; ``None`` when turned off."""
        found = self._budgets.get(service)
        if found is None:
            svc = self._settings.for_service(service)
            ratio = self._config.retry_budget_ratio
            minimum = self._config.retry_budget_min_per_second
            if svc is not None:
                if svc.retry_budget_ratio is not None:
                    ratio = svc.retry_budget_ratio
                if svc.retry_budget_min_per_second is not None:
                    minimum = svc.retry_budget_min_per_second
                if svc.retry_budget_enabled is False:
                    ratio = None
            found = self._budgets[service] = (ratio, minimum)
        return self._limits.retry_budget(service, ratio=found[0], min_per_second=found[1])


@dataclass(frozen=True, slots=True)
class MethodLimits:
    """A typed method's own fleet limits: each a (shared name or key, config) pair."""

    bulkhead: tuple[str, BulkheadConfig] | None = None
    rate_limit: tuple[str, RateLimitConfig] | None = None
