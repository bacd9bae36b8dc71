"""Configuration models and per-service TOML settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from msfw_redis import CircuitBreakerConfig, ConfigurationError, ServiceSDKConfig
from msfw_redis._settings import load_settings
from msfw_redis._store.connection import resolve_url

if TYPE_CHECKING:
    from pathlib import Path


def test_defaults_match_the_seed() -> None:
    """The seed's documented defaults hold."""
    cb = CircuitBreakerConfig()
    assert (cb.failure_threshold, cb.success_threshold, cb.timeout) == (5, 2, 60.0)
    cfg = ServiceSDKConfig()
    assert cfg.redis_op_timeout == 0.25
    assert cfg.store_failure_policy == "fail_open"
    assert cfg.key_prefix == "msfw"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": -1}, "success_threshold"),
        ({"timeout": 0}, "timeout"),
        ({"retry_backoff": 0.5}, "retry_backoff"),
        ({"request_timeout": "soon"}, "request_timeout"),
        ({"failure_treshold": 3}, "failure_treshold"),
    ],
)
def test_breaker_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """An invalid or unknown breaker setting fails at construction, naming the field."""
    with pytest.raises(ConfigurationError, match=field) as info:
        CircuitBreakerConfig(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"redis_op_timeout": 0}, "redis_op_timeout"),
        ({"store_failure_policy": "explode"}, "store_failure_policy"),
        ({"key_prefix": "a b"}, "key_prefix"),
        ({"default_timeout": -1}, "default_timeout"),
        ({"cache_enabled": "maybe"}, "cache_enabled"),
    ],
)
def test_sdk_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """An invalid SDK setting fails at construction, naming the field."""
    with pytest.raises(ConfigurationError, match=field):
        ServiceSDKConfig(**kwargs)


def test_config_is_frozen() -> None:
    """Config objects cannot be changed after validation."""
    cfg = CircuitBreakerConfig()
    with pytest.raises(Exception, match="frozen"):
        cfg.failure_threshold = 1  # type: ignore[misc]


def test_env_overrides_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """MSFW_REDIS_URL replaces the memory:// default; an explicit URL wins over both."""
    monkeypatch.delenv("MSFW_REDIS_URL", raising=False)
    assert resolve_url(None) == "memory://"
    monkeypatch.setenv("MSFW_REDIS_URL", "redis://10.0.0.1:6380/2")
    assert resolve_url(None) == "redis://10.0.0.1:6380/2"
    assert resolve_url("unix:///tmp/r.sock") == "unix:///tmp/r.sock"
    with pytest.raises(ConfigurationError, match="redis_url"):
        resolve_url("http://nope")


SETTINGS = """
[services.user_service]
host = "${USER_SERVICE_HOST:localhost}"
port = "${USER_SERVICE_PORT:8001}"
timeout = "${USER_SERVICE_TIMEOUT:30.0}"
circuit_breaker_enabled = true
retry_attempts = 3

[services.payment_service]
host = "${PAYMENT_SERVICE_HOST:payments.example.com}"
port = 443
protocol = "https"
timeout = 60.0
circuit_breaker_enabled = true
failure_threshold = 3
"""


def test_seed_toml_loads_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's settings.toml loads; interpolated strings are coerced to their types."""
    for var in ("USER_SERVICE_HOST", "USER_SERVICE_PORT", "USER_SERVICE_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS)
    settings = load_settings(path)
    user = settings.for_service("user-service")
    assert user is not None
    assert user.host == "localhost"
    assert user.port == 8001
    assert user.timeout == 30.0
    assert settings.for_service("user_service") is user
    payment = settings.for_service("payment-service")
    assert payment is not None
    assert payment.base_url == "https://payments.example.com:443"
    assert payment.failure_threshold == 3


def test_env_values_are_interpolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set variables replace the defaults."""
    monkeypatch.setenv("USER_SERVICE_PORT", "9100")
    monkeypatch.setenv("USER_SERVICE_HOST", "users.internal")
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS)
    user = load_settings(path).for_service("user-service")
    assert user is not None
    assert (user.host, user.port) == ("users.internal", 9100)


def test_missing_variable_names_variable_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${VAR} with no default and no value is an error naming the variable and file."""
    monkeypatch.delenv("NO_SUCH_VAR_XYZ", raising=False)
    path = tmp_path / "s.toml"
    path.write_text('[services.a]\nhost = "${NO_SUCH_VAR_XYZ}"\n')
    with pytest.raises(ConfigurationError, match="NO_SUCH_VAR_XYZ") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_bad_interpolated_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable holding a non-number for port fails naming services.<name>.port."""
    monkeypatch.setenv("PORT_X", "eighty")
    with pytest.raises(ConfigurationError, match=r"services\.svc\.port"):
        load_settings({"services": {"svc": {"host": "h", "port": "${PORT_X}"}}})


def test_unknown_service_key_and_duplicates_are_errors() -> None:
    """Typos and the same service under both spellings are rejected."""
    with pytest.raises(ConfigurationError, match="prot"):
        load_settings({"services": {"svc": {"host": "h", "prot": 1}}})
    with pytest.raises(ConfigurationError, match="twice"):
        load_settings({"services": {"a-b": {"host": "h"}, "a_b": {"host": "h"}}})


def test_settings_sources(tmp_path: Path) -> None:
    """Missing files, bad TOML and objects without services give clear errors."""
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[services\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigurationError, match="no 'services'"):
        load_settings(object())

    class Loaded:
        def __init__(self) -> None:
            self.services = {"inventory": {"host": "inv", "port": 81}}

    inv = load_settings(Loaded()).for_service("inventory")
    assert inv is not None
    assert inv.base_url == "http://inv:81"
    assert load_settings(None).services == {}


def test_a_user_agent_with_a_line_break_fails_at_construction_naming_the_field() -> None:
    """The User-Agent is sent with every call unchecked, so the config checks it once."""
    with pytest.raises(ConfigurationError, match="user_agent"):
        ServiceSDKConfig(user_agent="msfw\r\nX-Injected: 1")
