"""The configuration models users write: ``ServiceSDKConfig`` and ``CircuitBreakerConfig``.

Both are pydantic v2 models, keyword-only, frozen, and validated at construction.
Unknown fields are rejected (a typo must not silently fall back to a default), and
every invalid value raises :class:`~msfw_redis.ConfigurationError` naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from msfw_redis._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_REDIS_OP_TIMEOUT",
    "DEFAULT_RETRY_ATTEMPTS",
    "DEFAULT_TIMEOUT",
    "CircuitBreakerConfig",
    "ServiceSDKConfig",
    "StoreFailurePolicy",
    "config_error_from",
]

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_REDIS_OP_TIMEOUT = 0.25

StoreFailurePolicy = Literal["fail_open", "fail_closed"]


def config_error_from(exc: ValidationError, model: str) -> ConfigurationError:
    """A ConfigurationError naming every failing field of ``model``."""
    problems = []
    first_field: str | None = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        first_field = first_field or loc
        problems.append(f"{model}.{loc}: {err['msg']} (got {err.get('input')!r})")
    return ConfigurationError("invalid configuration: " + "; ".join(problems), field=first_field)


class _ConfigModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error_from(exc, type(self).__name__) from None


class CircuitBreakerConfig(_ConfigModel):
    """How a circuit breaker (and the calls it guards) behaves.

    Attributes:
        failure_threshold: consecutive failures, counted across every replica, that
            open the breaker. Default 5.
        success_threshold: successful half-open probes that close it again. Default 2.
        timeout: seconds the breaker stays OPEN before admitting probes. Default 60.
        retry_attempts: attempts per call, the first included (``0`` and ``1`` both
            mean a single attempt). Default 3.
        retry_delay: seconds before the first retry. Default 1.0.
        retry_backoff: multiplier applied to the delay after each retry. Default 2.0.
        request_timeout: seconds one attempt may take. Default 30.
    """

    failure_threshold: int = Field(default=DEFAULT_FAILURE_THRESHOLD, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    retry_attempts: int = Field(default=DEFAULT_RETRY_ATTEMPTS, ge=0)
    retry_delay: float = Field(default=1.0, ge=0)
    retry_backoff: float = Field(default=2.0, ge=1.0)
    request_timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)


class ServiceSDKConfig(_ConfigModel):
    """Settings of one :class:`~msfw_redis.ServiceSDK`.

    Attributes:
        default_timeout: seconds one attempt of a call may take, unless the service or
            call says otherwise. Default 30.
        default_retry_attempts: attempts per call, the first included. Default 3.
        default_circuit_breaker_enabled: guard calls with a shared breaker. Default on.
        service_discovery_enabled: find services in the shared registry before the
            ``[services.*]`` settings. Default on.
        health_check_interval: seconds between health probes of monitored services.
        cache_enabled: allow the shared response cache. Default on.
        metrics_enabled: keep in-process counters. Default on.
        redis_url: the store. ``None`` means ``$MSFW_REDIS_URL``, else ``memory://``.
        key_prefix: first part of every Redis key. Default ``"msfw"``.
        redis_op_timeout: seconds any one Redis operation may take. Default 0.25.
        store_failure_policy: what calls do while Redis is down: ``"fail_open"``
            (default; breakers fall back to local state, the cache is bypassed) or
            ``"fail_closed"`` (calls are refused).
    """

    default_timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    default_retry_attempts: int = Field(default=DEFAULT_RETRY_ATTEMPTS, ge=0)
    default_circuit_breaker_enabled: bool = True
    service_discovery_enabled: bool = True
    health_check_interval: float = Field(default=30.0, gt=0)
    cache_enabled: bool = True
    metrics_enabled: bool = True
    redis_url: str | None = None
    key_prefix: str = Field(default="msfw", min_length=1, pattern=r"^[^{}\s]+$")
    redis_op_timeout: float = Field(default=DEFAULT_REDIS_OP_TIMEOUT, gt=0, le=60)
    store_failure_policy: StoreFailurePolicy = "fail_open"
