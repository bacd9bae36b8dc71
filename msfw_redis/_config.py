"""The configuration models users write: ``ServiceSDKConfig`` and ``CircuitBreakerConfig``.

Both are pydantic v2 models, keyword-only, frozen, and validated at construction.
Unknown fields are rejected (a typo must not silently fall back to a default), NaN
and ±inf are refused in every duration and count, and every invalid value raises
:class:`~msfw_redis.ConfigurationError` naming the field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._urls import check_url, redact_url
from msfw_redis._validate import header_problem

__all__ = [
    "DEFAULT_CACHE_CREDENTIAL_HEADERS",
    "DEFAULT_CACHE_CREDENTIAL_PARAMS",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_REDIS_OP_TIMEOUT",
    "DEFAULT_RETRY_ATTEMPTS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_FAILURE_STATUS_CODES",
    "BreakerScope",
    "CircuitBreakerConfig",
    "ServiceSDKConfig",
    "StoreFailurePolicy",
    "config_error_from",
    "parse_rate",
]

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_REDIS_OP_TIMEOUT = 0.25

StoreFailurePolicy = Literal["fail_open", "fail_closed"]
BreakerScope = Literal["service", "endpoint", "instance"]
#: Statuses that count as breaker failures by default: every 5xx. 4xx are the caller's fault.
DEFAULT_FAILURE_STATUS_CODES: frozenset[int] = frozenset(range(500, 600))
#: Request headers that carry a caller's identity (cached per credential or not at all).
DEFAULT_CACHE_CREDENTIAL_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
)
#: Query parameters that carry a credential, treated like the headers above.
DEFAULT_CACHE_CREDENTIAL_PARAMS: tuple[str, ...] = (
    "api_key",
    "apikey",
    "access_token",
    "token",
    "key",
    "sig",
    "signature",
)


def config_error_from(exc: ValidationError, model: str) -> ConfigurationError:
    """A ConfigurationError naming every failing field of ``model``."""
    problems = []
    first_field: str | None = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        first_field = first_field or loc
        # The URL check already shows the (redacted) URL; repeating the input would leak
        # its password into the message.
        got = "" if loc == "redis_url" else f" (got {err.get('input')!r})"
        problems.append(f"{model}.{loc}: {err['msg']}{got}")
    return ConfigurationError("invalid configuration: " + "; ".join(problems), field=first_field)


class _ConfigModel(BaseModel):
    # allow_inf_nan=False: NaN and ±inf in any duration or count fail here, naming the
    # field, instead of as an OverflowError at call time.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

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
        failure_rate_threshold: percent (0-100]. When set, the breaker runs in *rate
            mode*: it opens when at least this share of the calls in the last
            ``sliding_window`` seconds failed, counted across every replica, once
            ``minimum_calls`` calls were seen; ``failure_threshold`` is then unused.
        minimum_calls: calls in the window before a rate is judged. Default 10.
        sliding_window: rate-mode window in seconds (10 buckets). Default 60.
        half_open_max_calls: probes admitted at once across the fleet. Default 1.
        probe_lease: seconds a probe holds its slot before another may take it
            (a crashed probe cannot wedge the breaker). Default ``request_timeout``.
        slow_call_threshold: seconds; a call slower than this counts as a failure.
        failure_status_codes: HTTP statuses that count as failures. Default 500-599.
        failure_exceptions: extra exception types that count as failures, besides
            connect errors and timeouts, which always do.
        scope: ``"service"`` (one breaker per service, the default),
            ``"endpoint"`` (one per route template or path) or ``"instance"`` (one per
            service instance; discovery then skips instances whose breaker is OPEN).
        success_flush_interval: seconds successes are batched before one report to
            Redis (0 reports each at once). While batched, another replica's failure
            streak can count past a success this replica has not reported yet, so a
            trip may come up to this long early. Default 0.05.
        max_staleness: seconds after which a local breaker mirror is re-read from
            Redis even if no event arrived (the safety net under pub/sub). Default 5.
        state_ttl: seconds a breaker's state survives in Redis without any write.
            Default 7 days.
    """

    failure_threshold: int = Field(default=DEFAULT_FAILURE_THRESHOLD, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    retry_attempts: int = Field(default=DEFAULT_RETRY_ATTEMPTS, ge=0)
    retry_delay: float = Field(default=1.0, ge=0)
    retry_backoff: float = Field(default=2.0, ge=1.0)
    request_timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)

    # -- policies beyond the seed (Resilience4j / Polly users expect these) ----------
    failure_rate_threshold: float | None = Field(default=None, gt=0, le=100)
    minimum_calls: int = Field(default=10, ge=1)
    sliding_window: float = Field(default=60.0, ge=0.01)
    half_open_max_calls: int = Field(default=1, ge=1)
    probe_lease: float | None = Field(default=None, gt=0)
    slow_call_threshold: float | None = Field(default=None, gt=0)
    failure_status_codes: frozenset[int] = Field(default=DEFAULT_FAILURE_STATUS_CODES)
    failure_exceptions: tuple[type[BaseException], ...] = ()
    scope: BreakerScope = "service"
    success_flush_interval: float = Field(default=0.05, ge=0, le=10)
    max_staleness: float = Field(default=5.0, gt=0)
    state_ttl: float = Field(default=7 * 24 * 3600.0, ge=60)

    @property
    def effective_probe_lease(self) -> float:
        """Seconds a half-open probe holds its slot: ``probe_lease``, else ``request_timeout``."""
        return self.probe_lease if self.probe_lease is not None else self.request_timeout

    @field_validator("failure_status_codes")
    @classmethod
    def _check_failure_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        return _check_statuses(value)


def _check_statuses(value: frozenset[int]) -> frozenset[int]:
    bad = sorted(code for code in value if not 100 <= code <= 599)
    if bad:
        raise ValueError(f"HTTP status codes must be within 100-599, got {bad}")
    return value


def _check_names(value: tuple[str, ...]) -> tuple[str, ...]:
    """Header or parameter names, lower-cased; blank names are refused."""
    bad = [name for name in value if not name.strip() or name != name.strip()]
    if bad:
        raise ValueError(f"names must be non-empty without surrounding spaces, got {bad}")
    return tuple(dict.fromkeys(name.lower() for name in value))


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
        circuit_breaker: the default breaker policy (and its ``retry_delay``,
            ``retry_backoff`` and ``request_timeout`` as call defaults' fallbacks).
        retry_max_delay: cap on one back-off wait, seconds. Default 30.
        retry_statuses: statuses retried for idempotent calls. Default 500, 502, 503,
            504. A 429 is retried only when its ``Retry-After`` fits the call.
        retry_non_idempotent: also retry POST/PATCH on any retryable outcome.
        total_timeout: seconds for all attempts and waits of one call together;
            ``None`` (default) bounds a call only by its attempts.
        max_response_bytes: responses larger than this fail. Default 10 MiB.
        cache_default_ttl: seconds a cached response stays fresh. Default 60.
        cache_max_stale: seconds past its TTL a cached entry may still be served while
            it is refreshed, when the origin fails or when the breaker is open. Default 60.
        cache_max_entry_bytes: larger entries are not stored (and are counted). 1 MiB.
        cache_key_secret: HMAC key (16+ characters) for keying cached responses of
            requests with credentials; without it such responses are not cached.
        cache_credential_headers: request headers that carry a caller's identity:
            requests with one are cached per credential (HMAC fingerprint) or not at
            all. Default Authorization, Proxy-Authorization, Cookie, X-Api-Key,
            X-Auth-Token; a service's ``cache_credential_headers`` add to it.
        cache_credential_params: query parameters treated the same way. Default
            api_key, apikey, access_token, token, key, sig, signature.
        cache_negative_ttl: seconds a cacheable 404 or 410 answer stays fresh (they
            are stored only as negative entries). Default 5.
        cache_error_ttl: seconds an error answer stored under ``cache_on_error``
            stays fresh (capped by its ``Retry-After``). Default 5.
        near_cache_max_entries: entries each process's near cache keeps (LRU), for
            services or functions that turn the near cache on. Default 1000.
        near_cache_max_staleness: seconds a near-cache copy may be served without
            Redis; the bound when an invalidation message is lost. Default 1.0.
        user_agent: the User-Agent header sent with every call.
        load_balancing_strategy: how discovery picks an instance: ``round_robin``
            (default), ``random``, ``weighted`` or ``least_outstanding``.
        instance_ttl: heartbeat lease of ``register_current_service`` instances, seconds
            (heartbeats every ~ttl/3). Default 30.
        health_check_timeout: seconds one health probe may take. Default 5.
        health_failure_threshold: consecutive failed probes that make an instance
            unhealthy. Default 3.
        health_success_threshold: consecutive good probes that make it healthy again.
        monitor_registered_services: health-probe every service in the registry, not
            only those enrolled with ``@health_check``. Default on.
        panic_threshold: share (0-1) of a service's registered instances that must be
            unhealthy before calls are routed across all of them (as Envoy does).
            Default 0.5; every instance unhealthy always panics.
        panic_routing: route across all registered instances in panic (default on);
            off raises ``ServiceClientError`` naming the unhealthy instances. While the
            registry knows instances of a service, calls never go to its settings address.
        retry_budget_ratio: fleet-wide retry budget: over 10 s, retries of a service
            across every replica stay within this share of its requests (plus the
            minimum). Default 0.2; ``None`` turns the budget off.
        retry_budget_min_per_second: retries per second the budget always allows, fleet-
            wide, on top of the ratio. Default 10.
        retry_after_max: cap, in seconds, on the window that a 429 (or 503 with
            ``Retry-After``) closes an endpoint for the fleet. Default 300.
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

    # -- beyond the seed ---------------------------------------------------------------
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=lambda: CircuitBreakerConfig())
    retry_max_delay: float = Field(default=30.0, gt=0)
    retry_statuses: frozenset[int] = Field(default=frozenset({500, 502, 503, 504}))
    retry_non_idempotent: bool = False
    total_timeout: float | None = Field(default=None, gt=0)
    max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    cache_default_ttl: float = Field(default=60.0, gt=0)
    cache_max_stale: float = Field(default=60.0, ge=0)
    cache_max_entry_bytes: int = Field(default=1024 * 1024, ge=1)
    cache_key_secret: str | None = Field(default=None, min_length=16, repr=False)
    cache_credential_headers: tuple[str, ...] = DEFAULT_CACHE_CREDENTIAL_HEADERS
    cache_credential_params: tuple[str, ...] = DEFAULT_CACHE_CREDENTIAL_PARAMS
    cache_negative_ttl: float = Field(default=5.0, gt=0)
    cache_error_ttl: float = Field(default=5.0, gt=0)
    near_cache_max_entries: int = Field(default=1000, ge=1)
    near_cache_max_staleness: float = Field(default=1.0, gt=0, le=60)
    user_agent: str = "msfw-redis"
    load_balancing_strategy: Literal["round_robin", "random", "weighted", "least_outstanding"] = (
        "round_robin"
    )
    instance_ttl: float = Field(default=30.0, ge=0.1)
    health_check_timeout: float = Field(default=5.0, gt=0)
    health_failure_threshold: int = Field(default=3, ge=1)
    health_success_threshold: int = Field(default=2, ge=1)
    monitor_registered_services: bool = True
    panic_threshold: float = Field(default=0.5, ge=0, le=1)
    panic_routing: bool = True
    retry_budget_ratio: float | None = Field(default=0.2, ge=0, le=100)
    retry_budget_min_per_second: float = Field(default=10.0, ge=0, le=1_000_000)
    retry_after_max: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_url(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    def __repr_args__(self) -> Any:
        # The store URL may carry a password: show it redacted, as every log does.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "redis_url" and value else value)

    @field_validator("user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        # Checked here, once: the pipeline sends it with every call unchecked.
        problem = header_problem("user-agent", value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("cache_credential_headers", "cache_credential_params")
    @classmethod
    def _check_credential_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(value)

    @field_validator("retry_statuses")
    @classmethod
    def _check_retry_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        return _check_statuses(value)


# -- rates ("100/s"), for fleet rate limits; here so that settings can check them --------

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[float, float]:
    """``"100/s"``, ``"30/m"``, ``"5/h"`` (also ``"10/5s"``) as ``(rate, per_seconds)``.

    Raises ``ValueError`` naming the text when it is not of that form.
    """
    match = _RATE.match(text.lower()) if isinstance(text, str) else None
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(
            f"invalid rate {text!r}: expected '<count>/<unit>' with unit s, m or h "
            "(for example '100/s')"
        )
    rate = float(match.group(1))
    per = float(match.group(2) or 1.0) * _UNITS[match.group(3)]
    if rate <= 0 or per <= 0:
        raise ValueError(f"invalid rate {text!r}: count and period must be > 0")
    return rate, per
