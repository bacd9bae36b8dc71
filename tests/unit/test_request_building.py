"""Argument checks and body handling that happen before any I/O."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from msfw_redis import HTTPMethod, InvalidRequestError
from msfw_redis._pipeline.request import encode_body, parse_body, validate_endpoint, validate_method


def test_methods() -> None:
    """Known methods in any case pass; others fail naming the method."""
    assert validate_method("get") == "GET"
    assert validate_method(HTTPMethod.PATCH) == "PATCH"
    with pytest.raises(InvalidRequestError, match="FETCH"):
        validate_method("FETCH")


@pytest.mark.parametrize(
    "endpoint", ["orders", "http://x/y", "//host/x", "/a b", "/a\nb", "/a\x00"]
)
def test_bad_endpoints(endpoint: str) -> None:
    """Relative paths, URLs and control characters are refused."""
    with pytest.raises(InvalidRequestError):
        validate_endpoint(endpoint)


def test_good_endpoints() -> None:
    """Paths with queries and encoded characters pass unchanged."""
    assert validate_endpoint("/orders/1?x=2") == "/orders/1?x=2"
    assert validate_endpoint("") == ""


def test_bodies() -> None:
    """Models and plain data encode to JSON; impossible bodies fail clearly."""

    class M(BaseModel):
        name: str

    assert encode_body(M(name="a")) == (b'{"name":"a"}', "application/json")
    assert encode_body([1, {"a": None}])[0] == b'[1,{"a":null}]'
    with pytest.raises(InvalidRequestError, match="JSON"):
        encode_body({1, 2})


def test_parse_body_variants() -> None:
    """JSON parses; text stays text; empty is None; broken JSON comes back as text."""
    assert parse_body(httpx.Response(200, json={"a": 1})) == {"a": 1}
    assert (
        parse_body(httpx.Response(200, text="hi", headers={"content-type": "text/plain"})) == "hi"
    )
    assert parse_body(httpx.Response(204)) is None
    assert (
        parse_body(httpx.Response(200, content=b"{x", headers={"content-type": "application/json"}))
        == "{x"
    )
    assert parse_body(httpx.Response(200, content=b"[1]")) == [1]


def test_a_remembered_valid_endpoint_does_not_let_invalid_ones_through() -> None:
    """The cache of valid endpoints answers only for the exact strings it holds."""
    assert validate_endpoint("/orders/1") == "/orders/1"
    assert validate_endpoint("/orders/1") == "/orders/1"
    for bad in ("/orders/../admin", "orders/1", "http://x/orders", "/orders/1 2"):
        with pytest.raises(InvalidRequestError):
            validate_endpoint(bad)
    with pytest.raises(InvalidRequestError):
        validate_endpoint(["/orders/1"])  # type: ignore[arg-type]
