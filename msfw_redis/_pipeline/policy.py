"""Call policies: how one call to a service behaves, derived once per (service, config).

A :class:`CallPolicy` merges four layers, the first that sets a value winning: the
call's own arguments, the client's ``circuit_config``, the ``[services.<name>]``
settings and the SDK's defaults. :class:`PolicyBook` derives the last three once per
(service, circuit config) and keeps the result; a call that overrides nothing reuses it
as is, so the hot path builds no policy, validates nothing and allocates nothing here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msfw_redis._cache.policy import CachePolicy
from msfw_redis._config import CircuitBreakerConfig
from msfw_redis._exceptions import InvalidRequestError
from msfw_redis._pipeline.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from msfw_redis._config import ServiceSDKConfig
    from msfw_redis._settings import AppSettings

__all__ = ["CallPolicy", "PolicyBook"]


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Everything that decides how one call behaves, resolved from all config layers."""

    timeout: float
    retry: RetryPolicy
    breaker_enabled: bool
    breaker_config: CircuitBreakerConfig
    cache_enabled: bool
    cache_ttl: float
    headers: Mapping[str, str]
    base_path: str
    breaker_endpoint: str | None = None
    cache_policy: CachePolicy | None = None


def _check_timeout(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise InvalidRequestError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_attempts(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequestError(f"retry_attempts must be an integer >= 0, got {value!r}")
    return value


def _check_deadline(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise InvalidRequestError(f"deadline must be a positive number of seconds, got {value!r}")
    return float(value)


class PolicyBook:
    """Derives and keeps the policy of each (service, circuit config) pair."""

    __slots__ = ("_breaker_configs", "_config", "_policies", "_settings")

    def __init__(self, config: ServiceSDKConfig, settings: AppSettings) -> None:
        self._config = config
        self._settings = settings
        self._breaker_configs: dict[str, CircuitBreakerConfig] = {}
        # Keyed by the identity of the client's circuit config: configs are built once
        # per client or decorator, and the value keeps the config alive.
        self._policies: dict[tuple[str, int], tuple[CircuitBreakerConfig | None, CallPolicy]] = {}

    def breaker_config(self, service: str) -> CircuitBreakerConfig:
        """The default breaker policy with the service's settings applied, built once."""
        cached = self._breaker_configs.get(service)
        if cached is not None:
            return cached
        base = self._config.circuit_breaker
        svc = self._settings.for_service(service)
        update: dict[str, Any] = {}
        if svc is not None:
            update = {
                "failure_threshold": svc.failure_threshold,
                "success_threshold": svc.success_threshold,
                "timeout": svc.recovery_timeout,
            }
            update = {k: v for k, v in update.items() if v is not None}
        config = CircuitBreakerConfig(**{**base.model_dump(), **update}) if update else base
        self._breaker_configs[service] = config
        return config

    def base(self, service: str, circuit_config: CircuitBreakerConfig | None) -> CallPolicy:
        """The policy of a call that overrides nothing (derived on first use)."""
        slot = (service, id(circuit_config))
        found = self._policies.get(slot)
        if found is not None and found[0] is circuit_config:
            return found[1]
        policy = self._derive(service, circuit_config, {})
        self._policies[slot] = (circuit_config, policy)
        return policy

    def resolve(
        self,
        service: str,
        circuit_config: CircuitBreakerConfig | None,
        overrides: Mapping[str, Any],
    ) -> CallPolicy:
        """The policy of a call with per-call ``overrides`` (``None`` values ignored)."""
        if not any(v is not None for v in overrides.values()):
            return self.base(service, circuit_config)
        return self._derive(service, circuit_config, overrides)

    def _derive(
        self,
        service: str,
        circuit_config: CircuitBreakerConfig | None,
        overrides: Mapping[str, Any],
    ) -> CallPolicy:
        cfg = self._config
        svc = self._settings.for_service(service)
        breaker = circuit_config or self.breaker_config(service)

        def pick(call: Any, client_value: Any, service_value: Any, default: Any) -> Any:
            for value in (call, client_value, service_value):
                if value is not None:
                    return value
            return default

        timeout = _check_timeout(
            pick(
                overrides.get("timeout"),
                circuit_config.request_timeout if circuit_config else None,
                svc.timeout if svc else None,
                cfg.default_timeout,
            )
        )
        attempts = _check_attempts(
            pick(
                overrides.get("retry_attempts"),
                circuit_config.retry_attempts if circuit_config else None,
                svc.retry_attempts if svc else None,
                cfg.default_retry_attempts,
            )
        )
        deadline = overrides.get("deadline")
        deadline = cfg.total_timeout if deadline is None else _check_deadline(deadline)
        non_idempotent = overrides.get("retry_non_idempotent")
        retry = RetryPolicy(
            attempts=max(1, attempts),
            delay=breaker.retry_delay
            if svc is None or svc.retry_delay is None
            else svc.retry_delay,
            backoff=breaker.retry_backoff
            if svc is None or svc.retry_backoff is None
            else svc.retry_backoff,
            max_delay=cfg.retry_max_delay,
            deadline=float(deadline) if deadline is not None else None,
            retry_statuses=cfg.retry_statuses,
            retry_non_idempotent=cfg.retry_non_idempotent
            if non_idempotent is None
            else bool(non_idempotent),
        )
        use_cache = overrides.get("use_cache")
        service_cache = svc.cache_enabled if svc is not None else None
        cache_enabled = cfg.cache_enabled and bool(
            use_cache if use_cache is not None else service_cache
        )
        ttl = overrides.get("cache_ttl") or (
            svc.cache_ttl if svc and svc.cache_ttl else cfg.cache_default_ttl
        )
        breaker_enabled = cfg.default_circuit_breaker_enabled
        if svc is not None and svc.circuit_breaker_enabled is not None:
            breaker_enabled = svc.circuit_breaker_enabled
        policy = CallPolicy(
            timeout=timeout,
            retry=retry,
            breaker_enabled=breaker_enabled,
            breaker_config=breaker,
            cache_enabled=cache_enabled,
            cache_ttl=float(ttl),
            headers={k.lower(): v for k, v in svc.headers.items()} if svc else {},
            base_path=svc.base_path.rstrip("/") if svc else "",
        )
        return with_cache_policy(policy, cfg) if cache_enabled else policy


def with_cache_policy(policy: CallPolicy, cfg: ServiceSDKConfig) -> CallPolicy:
    """``policy`` with the cache policy its HTTP-level cache entries use."""
    lease = max(1.0, min(policy.timeout * policy.retry.attempts + 1.0, 60.0))
    cache_policy = CachePolicy(
        ttl=policy.cache_ttl,
        max_stale=cfg.cache_max_stale,
        lease_timeout=lease,
        wait_timeout=min(lease, 10.0),
        max_entry_bytes=cfg.cache_max_entry_bytes,
    )
    return dataclasses.replace(policy, cache_policy=cache_policy)
