"""User-facing configuration of fleet-wide limits: ``BulkheadConfig`` and ``RateLimitConfig``.

Pydantic v2 models like the rest of the configuration: keyword-only, frozen, validated
at construction, with every invalid value raising
:class:`~msfw_redis.ConfigurationError` naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from msfw_redis._config import _ConfigModel
from msfw_redis._limits.gcra import GcraParams, parse_rate

if TYPE_CHECKING:
    from msfw_redis._settings import ServiceSettings

__all__ = [
    "DEFAULT_PERMIT_LEASE",
    "DEFAULT_RETRY_AFTER_MAX",
    "DEFAULT_RETRY_BUDGET_MIN_PER_SECOND",
    "DEFAULT_RETRY_BUDGET_RATIO",
    "RETRY_BUDGET_WINDOW",
    "BulkheadConfig",
    "BulkheadScope",
    "RateLimitConfig",
    "bulkhead_from_settings",
    "rate_limit_from_settings",
]

DEFAULT_PERMIT_LEASE = 30.0
DEFAULT_RETRY_BUDGET_RATIO = 0.2
DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = 10.0
DEFAULT_RETRY_AFTER_MAX = 300.0
#: The retry budget's window in seconds (Finagle's default TTL).
RETRY_BUDGET_WINDOW = 10

BulkheadScope = Literal["service", "instance"]


class BulkheadConfig(_ConfigModel):
    """A fleet-wide bulkhead: at most ``max_concurrent_calls`` calls in flight across replicas.

    Attributes:
        max_concurrent_calls: permits the whole fleet holds at once (>= 1).
        max_wait: seconds a caller may wait for a permit; ``0.0`` (default) fails at once
            with :class:`~msfw_redis.BulkheadFullError`. Waiters are woken by pub/sub
            when a permit frees, never by polling.
        permit_lease: seconds a permit lasts in Redis unless renewed; a crashed holder's
            permits come back within this. Calls longer than a third of it renew their
            lease. Default 30.
        scope: ``"service"`` (one bulkhead per service, the default) or ``"instance"``
            (one per service instance).
    """

    max_concurrent_calls: int = Field(ge=1, le=1_000_000)
    max_wait: float = Field(default=0.0, ge=0, le=3600)
    permit_lease: float = Field(default=DEFAULT_PERMIT_LEASE, ge=0.05, le=86_400)
    scope: BulkheadScope = "service"


class RateLimitConfig(_ConfigModel):
    """A fleet-wide rate limit: ``rate`` requests per ``per`` seconds (GCRA on server time).

    Attributes:
        rate: requests per period (> 0).
        per: the period in seconds. Default 1.0.
        burst: requests admitted at once from idle; default ``ceil(rate)``.
        max_wait: seconds a refused caller may sleep until its slot; ``0.0`` (default)
            raises :class:`~msfw_redis.RateLimitedError` at once.
        scope: ``"service"`` (one limit per service, the default) or ``"endpoint"``.
    """

    rate: float = Field(gt=0, le=1e9)
    per: float = Field(default=1.0, gt=0, le=86_400 * 365)
    burst: int | None = Field(default=None, ge=1, le=10_000_000)
    max_wait: float = Field(default=0.0, ge=0, le=3600)
    scope: Literal["service", "endpoint"] = "service"

    @model_validator(mode="after")
    def _check_emission(self) -> RateLimitConfig:
        if self.per * 1_000_000 / self.rate < 1:
            raise ValueError("rate / per exceeds 1,000,000 requests per second")
        return self

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> RateLimitConfig:
        """A config from TOML's ``rate_limit = "100/s"`` (also ``/m``, ``/h``)."""
        rate, per = parse_rate(text)
        return cls(rate=rate, per=per, **kwargs)

    @property
    def params(self) -> GcraParams:
        """The integer GCRA parameters the script takes."""
        return GcraParams.of(self.rate, self.per, self.burst)


def bulkhead_from_settings(settings: ServiceSettings | None) -> BulkheadConfig | None:
    """The bulkhead a ``[services.<name>]`` section asks for, or ``None``."""
    if settings is None or settings.max_concurrent_calls is None:
        return None
    extra: dict[str, Any] = {}
    if settings.max_wait is not None:
        extra["max_wait"] = settings.max_wait
    if settings.permit_lease is not None:
        extra["permit_lease"] = settings.permit_lease
    return BulkheadConfig(max_concurrent_calls=settings.max_concurrent_calls, **extra)


def rate_limit_from_settings(settings: ServiceSettings | None) -> RateLimitConfig | None:
    """The rate limit a ``[services.<name>]`` section asks for (``rate_limit``), or ``None``."""
    if settings is None or settings.rate_limit is None:
        return None
    return RateLimitConfig.parse(settings.rate_limit, burst=settings.rate_limit_burst)
