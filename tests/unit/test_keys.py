"""Key construction and service-name validation."""

from __future__ import annotations

import pytest

from msfw_redis._store.keys import KeySchema, validate_service_name

HOSTILE = [
    "",
    " ",
    "user service",
    "user\tservice",
    "user\nservice",
    "user{service}",
    "{user}",
    "}",
    "user\x00service",
    "user\x1bservice",
    "user\u2028service",
    "user\u200bservice",
    "a" * 201,
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_service_names_are_rejected(name: str) -> None:
    """A bad service name raises ValueError naming the value."""
    with pytest.raises(ValueError, match="invalid service name"):
        validate_service_name(name)


@pytest.mark.parametrize("name", [None, 42, b"svc"])
def test_non_string_names_are_rejected(name: object) -> None:
    """Only strings are service names."""
    with pytest.raises(ValueError, match="expected a string"):
        validate_service_name(name)


@pytest.mark.parametrize(
    "name", ["user-service", "user_service", "a", "a" * 200, "svc.v2:eu", "ünï"]
)
def test_good_names_pass(name: str) -> None:
    """Ordinary names, up to 200 characters, are accepted unchanged."""
    assert validate_service_name(name) == name


def test_key_layout_and_hash_tag() -> None:
    """Keys follow <prefix>:v1:{<service>}:<component>:<rest> and share the tag."""
    keys = KeySchema("msfw")
    a = keys.key("orders", "breaker", "state")
    b = keys.key("orders", "breaker", "window", "/x/{id}")
    assert a == "msfw:v1:{orders}:breaker:state"
    assert keys.service_from_key(a) == keys.service_from_key(b) == "orders"
    assert keys.global_key("registry", "services") == "msfw:v1:global:registry:services"
    assert "{" not in keys.global_key("registry", "services")


def test_key_rejects_bad_service_and_prefix() -> None:
    """Building a key validates the service name; the schema validates its prefix."""
    with pytest.raises(ValueError, match="invalid service name"):
        KeySchema().key("bad name", "breaker")
    with pytest.raises(ValueError, match="key_prefix"):
        KeySchema("has space")
    with pytest.raises(ValueError, match="key_prefix"):
        KeySchema("")


def test_underscore_and_hyphen_build_the_same_key() -> None:
    """order_service and order-service name one service: every key is built hyphenated."""
    from msfw_redis._store.keys import KeySchema, canonical_service_name

    schema = KeySchema()
    assert canonical_service_name("order_service") == "order-service"
    assert schema.key("order_service", "breaker", "state") == schema.key(
        "order-service", "breaker", "state"
    )
    assert "{order-service}" in schema.channel("order_service", "breaker")


def test_limits_keys_share_the_service_hash_tag() -> None:
    """Every limits key and channel of a service carries its {service} hash tag."""
    from msfw_redis._store.keys import KeySchema

    ks = KeySchema("p")
    names = [
        ks.bulkhead_permits("svc"),
        ks.bulkhead_permits("svc", "i-1"),
        ks.rate_limit("svc", "endpoint:/a"),
        ks.retry_after_gate("svc"),
        ks.retry_budget("svc"),
        ks.limits_channel("svc"),
    ]
    assert all(n.startswith("p:v1:{svc}:limits:") for n in names)
    assert len(set(names)) == len(names)
