"""Bad input is refused before any I/O and never reaches the breaker."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from msfw_redis import (
    CircuitBreakerConfig,
    ConfigurationError,
    HTTPMethod,
    InvalidRequestError,
    ServiceSDK,
    ServiceSDKConfig,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


async def test_crlf_in_a_header_value_is_refused_and_not_a_failure(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A CRLF header value raises InvalidRequestError, sends nothing, and trips no breaker."""
    http_service.script("/x", Step(200, json={"ok": True}))
    sdk = make_sdk(
        services_for(http_service, "svc"),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=1),
    )
    for bad in ({"x-a": "1\r\nx-b: 2"}, {"x-a": "nul\x00"}, {"x\r\nb": "1"}):
        with pytest.raises(InvalidRequestError):
            await sdk.call_service("svc", "/x", headers=bad)
    assert http_service.hits() == 0
    result = await sdk.call_service("svc", "/x")
    assert result.success
    assert sdk.get_client("svc").get_circuit_state()["svc"].state == "closed"


def test_crlf_in_a_toml_header_section_fails_at_load(tmp_path: Path) -> None:
    """A TOML [services.x.headers] value with CRLF fails at load, naming the field."""
    path = tmp_path / "settings.toml"
    path.write_text('[services.svc]\nhost = "h"\n[services.svc.headers]\nx-a = "1\\r\\nx-b: 2"\n')
    with pytest.raises(ConfigurationError) as info:
        ServiceSDK(config=str(path))
    assert "services.svc.headers" in str(info.value)


@pytest.mark.parametrize("endpoint", ["/api/../admin", "/./x", "/a/..", "/a/%2e%2e/b"])
async def test_dot_segments_in_endpoints_are_refused(
    make_sdk: Any, http_service: ScriptedService, endpoint: str
) -> None:
    """'.' and '..' segments (percent-encoded too) are refused before any I/O."""
    sdk = make_sdk(services_for(http_service, "svc"))
    with pytest.raises(InvalidRequestError, match="segment"):
        await sdk.call_service("svc", endpoint)
    assert http_service.hits() == 0


async def test_dot_segments_in_path_parameters_are_refused(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """profile(user_id='..') is refused instead of reaching the parent path."""
    sdk = make_sdk(services_for(http_service, "user-service"))

    @service_interface("user-service", "/api/v1")
    class Users:
        @service_call("user-service", HTTPMethod.GET, "/profile/{user_id}")
        async def profile(self, user_id: str) -> dict[str, Any]:
            """A profile."""
            raise NotImplementedError

    for bad in ("..", "."):
        with pytest.raises(InvalidRequestError):
            await Users(sdk=sdk).profile(bad)
    assert http_service.hits() == 0


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    ("model", "field"),
    [
        (CircuitBreakerConfig, "timeout"),
        (CircuitBreakerConfig, "state_ttl"),
        (CircuitBreakerConfig, "request_timeout"),
        (ServiceSDKConfig, "instance_ttl"),
        (ServiceSDKConfig, "default_timeout"),
        (ServiceSDKConfig, "health_check_interval"),
    ],
)
def test_non_finite_config_values_are_refused(model: Any, field: str, value: float) -> None:
    """NaN and ±inf are refused at construction, naming the field."""
    with pytest.raises(ConfigurationError) as info:
        model(**{field: value})
    assert info.value.field == field


def test_non_finite_service_settings_are_refused() -> None:
    """A TOML-style service timeout of inf fails at load, naming the field."""
    with pytest.raises(ConfigurationError, match="timeout"):
        ServiceSDK(config={"services": {"svc": {"host": "h", "timeout": math.inf}}})


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 0, -1])
async def test_non_finite_per_call_timeout_raises(
    make_sdk: Any, http_service: ScriptedService, timeout: float
) -> None:
    """A per-call NaN (or inf, or non-positive) timeout raises InvalidRequestError."""
    sdk = make_sdk(services_for(http_service, "svc"))
    with pytest.raises(InvalidRequestError, match="timeout"):
        await sdk.call_service("svc", "/x", timeout=timeout)
    assert http_service.hits() == 0
