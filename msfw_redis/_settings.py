"""Per-service settings: the application's ``[services.<name>]`` sections.

The source may be a TOML file path, a mapping, or a loaded settings object with a
``services`` attribute. String values may hold ``${VAR}`` or ``${VAR:default}``; they
are interpolated from the environment *before* validation, so ``port = "${PORT:8001}"``
becomes the integer 8001. ``user-service`` and ``user_service`` name the same service.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from msfw_redis._config import config_error_from, parse_rate
from msfw_redis._exceptions import ConfigurationError
from msfw_redis._validate import header_problem

__all__ = ["AppSettings", "ServiceSettings", "interpolate", "load_settings", "normalize_service"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def normalize_service(name: str) -> str:
    """The canonical spelling of a service name: underscores become hyphens.

    The same rule as :func:`msfw_redis._store.keys.canonical_service_name`, which
    every key is built from, so settings and shared state agree on the name.
    """
    return name.replace("_", "-")


def interpolate(value: Any, *, source: str, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:default}`` in every string inside ``value``.

    Raises ConfigurationError naming the variable, the setting and the source when a
    variable is unset and has no default.
    """
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            found = os.environ.get(var)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigurationError(
                f"environment variable {var} is not set and has no default "
                f"(used by {path or 'a setting'} in {source})",
                field=path or None,
            )

        return _VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, source=source, path=f"{path}.{k}" if path else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, source=source, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


class ServiceSettings(BaseModel):
    """Settings of one service, from ``[services.<name>]``.

    Every field but the address is optional; unset fields fall back to the SDK's
    defaults. Unknown keys are rejected so that a typo is caught at start-up.

    Fleet-wide limits: ``max_concurrent_calls`` (a bulkhead across every replica) with
    ``max_wait`` and ``permit_lease`` seconds; ``rate_limit = "100/s"`` (also ``/m``,
    ``/h``) with ``rate_limit_burst``; ``retry_budget_ratio`` and
    ``retry_budget_min_per_second`` (``retry_budget_enabled = false`` turns the budget
    off for the service); ``retry_after_max`` seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    host: str | None = Field(default=None, min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["http", "https"] = "http"
    base_path: str = ""
    timeout: float | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=0)
    retry_delay: float | None = Field(default=None, ge=0)
    retry_backoff: float | None = Field(default=None, ge=1.0)
    circuit_breaker_enabled: bool | None = None
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    recovery_timeout: float | None = Field(default=None, gt=0)
    cache_enabled: bool | None = None
    cache_ttl: float | None = Field(default=None, gt=0)
    #: Credential headers this service adds to the SDK's ``cache_credential_headers``.
    cache_credential_headers: tuple[str, ...] = ()
    #: Keep a per-process near copy of this service's hot cache entries.
    near_cache: bool | None = None
    store_failure_policy: Literal["fail_open", "fail_closed"] | None = None
    panic_routing: bool | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # -- fleet-wide limits (msfw_redis._limits) ------------------------------------------
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    max_wait: float | None = Field(default=None, ge=0)
    permit_lease: float | None = Field(default=None, ge=0.05)
    rate_limit: str | None = None
    rate_limit_burst: int | None = Field(default=None, ge=1)
    retry_budget_ratio: float | None = Field(default=None, ge=0, le=100)
    retry_budget_min_per_second: float | None = Field(default=None, ge=0)
    retry_budget_enabled: bool | None = None
    retry_after_max: float | None = Field(default=None, gt=0)

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # A CR/LF/NUL here would otherwise fail every call to the service at send time.
        for name, text in value.items():
            problem = header_problem(name, text)
            if problem is not None:
                raise ValueError(problem)
        return value

    @functools.cached_property
    def base_url(self) -> str | None:
        """``protocol://host[:port]`` or ``None`` when no host is set."""
        # Cached: the settings are frozen, and every call without discovery reads this.
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}://{host}{port}"


class AppSettings(BaseModel):
    """The application's settings as far as the SDK reads them."""

    model_config = ConfigDict(frozen=True)

    services: dict[str, ServiceSettings] = Field(default_factory=dict)
    source: str = "(none)"

    def for_service(self, name: str) -> ServiceSettings | None:
        """Settings of ``name``, whichever of ``-`` or ``_`` either side spells it with."""
        return self.services.get(normalize_service(name))


def _raw_services(config: Any) -> tuple[Any, str]:
    if config is None:
        return {}, "(none)"
    if isinstance(config, (str, Path)):
        path = Path(config)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigurationError(
                f"settings file {path} does not exist", field="config"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"settings file {path} is not valid TOML: {exc}") from None
        return data.get("services", {}), str(path)
    if isinstance(config, Mapping):
        return config.get("services", {}), "(dict)"
    services = getattr(config, "services", None)
    if services is None and hasattr(config, "model_dump"):
        services = config.model_dump().get("services")
    if services is None:
        raise ConfigurationError(
            f"config of type {type(config).__name__} has no 'services' settings; pass a TOML "
            "path, a dict or a settings object with a 'services' attribute",
            field="config",
        )
    if hasattr(services, "model_dump"):
        services = services.model_dump()
    return services, type(config).__name__


def load_settings(config: Any) -> AppSettings:
    """Read and validate the ``services`` sections of ``config`` (see module docs)."""
    if isinstance(config, AppSettings):
        return config
    raw, source = _raw_services(config)
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"'services' in {source} must be a table", field="services")
    services: dict[str, ServiceSettings] = {}
    for name, section in raw.items():
        key = normalize_service(str(name))
        if key in services:
            raise ConfigurationError(
                f"service {name!r} is configured twice in {source} (as '-' and '_' spellings)",
                field=f"services.{name}",
            )
        if hasattr(section, "model_dump"):
            section = section.model_dump(exclude_none=True)
        if not isinstance(section, Mapping):
            raise ConfigurationError(
                f"services.{name} in {source} must be a table", field=f"services.{name}"
            )
        values = interpolate(section, source=source, path=f"services.{name}")
        try:
            services[key] = ServiceSettings.model_validate(values)
        except ValidationError as exc:
            err = config_error_from(exc, f"services.{name}")
            raise ConfigurationError(f"{err} in {source}", field=err.field) from None
    return AppSettings(services=services, source=source)
