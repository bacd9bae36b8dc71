"""Cache keys: what they cover, what keeps them apart, and their bounded length."""

from __future__ import annotations

import enum
import subprocess
import sys
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from msfw_redis._cache.keys import (
    KEY_DIGEST_CHARS,
    canonical_json,
    credential_fingerprint,
    custom_key,
    function_field,
    request_key,
)
from msfw_redis._store.keys import KeySchema

SECRET = b"s" * 32


def key(**kw: Any) -> str:
    base: dict[str, Any] = {"service": "users", "method": "GET", "path": "/users/{id}"}
    base.update(kw)
    made = request_key(**base)
    assert made is not None
    return made.digest


class Color(enum.Enum):
    RED = "red"


class Filter(BaseModel):
    name: str
    tags: list[str] = []


def test_key_covers_service_method_path_params_and_vary() -> None:
    """Changing any covered part changes the digest."""
    base = key(params={"id": 1})
    assert key(params={"id": 1}) == base
    assert key(service="orders", params={"id": 1}) != base
    assert key(method="HEAD", params={"id": 1}) != base
    assert key(path="/accounts/{id}", params={"id": 1}) != base
    assert key(params={"id": 2}) != base
    assert key(params={"id": 1}, vary={"tenant": "a"}) != base
    assert key(params={"id": 1}, vary={"tenant": "a"}) != key(
        params={"id": 1}, vary={"tenant": "b"}
    )


def test_method_is_case_insensitive_and_params_are_sorted() -> None:
    """'get' equals 'GET'; argument order does not matter."""
    assert key(method="get", params={"a": 1, "b": 2}) == key(params={"b": 2, "a": 1})
    assert key(params=[("a", 1), ("b", 2)]) == key(params=[("b", 2), ("a", 1)])


def test_repeated_query_names_keep_their_order() -> None:
    """?a=1&a=2 and ?a=2&a=1 may differ, so they get different keys."""
    assert key(params=[("a", "1"), ("a", "2")]) != key(params=[("a", "2"), ("a", "1")])


def test_values_keep_their_types() -> None:
    """1, '1', True and 1.5 are different arguments."""
    digests = {key(params={"x": v}) for v in (1, "1", True, 1.5, None, [1], {"1": 1})}
    assert len(digests) == 7


def test_models_enums_sets_and_nested_mappings_are_canonical() -> None:
    """Models, enums, sets and dicts canonicalise the same way however they are built."""
    assert key(params={"f": Filter(name="a", tags=["x"])}) == key(
        params={"f": {"tags": ["x"], "name": "a"}}
    )
    assert key(params={"c": Color.RED}) == key(params={"c": "red"})
    assert key(params={"s": {"b", "a", "c"}}) == key(params={"s": {"c", "a", "b"}})
    assert key(params={"s": {"b", "a"}}) != key(params={"s": ["a", "b"]})


def test_canonical_json_is_stable_across_hash_seeds() -> None:
    """Set order does not depend on PYTHONHASHSEED: two processes agree on the key."""
    code = (
        "from msfw_redis._cache.keys import request_key;"
        "print(request_key(service='s', method='GET', path='/p',"
        " params={'s': {'alpha', 'beta', 'gamma', 'delta'}}).digest)"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1


def test_unserialisable_values_raise_type_error_naming_them() -> None:
    """An argument that cannot be serialised raises TypeError naming it."""
    with pytest.raises(TypeError, match="'conn'"):
        key(params={"conn": object()})


def test_credentials_without_secret_are_not_cacheable() -> None:
    """A request with Authorization or Cookie and no secret gets no key at all."""
    for name in ("Authorization", "Cookie", "Proxy-Authorization"):
        assert request_key(service="s", method="GET", path="/p", headers={name: "Bearer a"}) is None
    # Other headers do not count as credentials.
    assert request_key(service="s", method="GET", path="/p", headers={"Accept": "x"}) is not None


def test_credentials_are_keyed_by_hmac_fingerprint() -> None:
    """Two credentials never share a key; the same credential does; the key hides it."""
    alice = key(headers={"Authorization": "Bearer alice"}, secret=SECRET)
    bob = key(headers={"Authorization": "Bearer bob"}, secret=SECRET)
    anon = key(secret=SECRET)
    assert len({alice, bob, anon}) == 3
    assert key(headers={"authorization": "Bearer alice"}, secret=SECRET) == alice
    assert key(headers=httpx.Headers({"Authorization": "Bearer alice"}), secret=SECRET) == alice
    assert key(headers={"Cookie": "sid=1"}, secret=SECRET) != key(
        headers={"Cookie": "sid=2"}, secret=SECRET
    )
    # Another secret gives other fingerprints, so keys cannot be precomputed.
    assert key(headers={"Authorization": "Bearer alice"}, secret=b"t" * 32) != alice


@pytest.mark.parametrize(
    "name", ["api_key", "apikey", "access_token", "token", "key", "sig", "signature", "API_KEY"]
)
def test_credential_query_parameters_are_credentials(name: str) -> None:
    """Each default credential parameter (any case) makes a request uncacheable without a
    secret and is keyed by its HMAC with one, like a credential header."""
    params = {"q": "1", name: "alice"}
    assert request_key(service="s", method="GET", path="/p", params=params) is None
    alice = key(params=params, secret=SECRET)
    assert alice != key(params={"q": "1", name: "bob"}, secret=SECRET)
    assert alice == key(params=[(name, "alice"), ("q", "1")], secret=SECRET)
    assert alice != key(params={"q": "1"}, secret=SECRET)
    # Configured away, it is an ordinary parameter again.
    assert key(params=params, credential_params=("session",)) != key(
        params={"q": "1", name: "bob"}, credential_params=("session",)
    )


def test_fingerprint_is_hmac_sha256() -> None:
    """The fingerprint is HMAC-SHA256 over name NUL value NUL, sorted by header name."""
    import hashlib
    import hmac

    ok, fp = credential_fingerprint({"Cookie": "c", "Authorization": "a"}, SECRET)
    expected = hmac.new(SECRET, b"authorization\x00a\x00cookie\x00c\x00", hashlib.sha256)
    assert ok
    assert fp == expected.hexdigest()
    assert credential_fingerprint({"Accept": "x"}, None) == (True, None)


def test_short_or_wrong_secrets_are_rejected() -> None:
    """A secret must be bytes of at least 16."""
    with pytest.raises(ValueError, match="at least 16"):
        request_key(service="s", method="GET", path="/", secret=b"short")
    with pytest.raises(ValueError, match="expected bytes"):
        request_key(service="s", method="GET", path="/", secret="text" * 8)  # type: ignore[arg-type]


def test_vary_headers_are_keyed_by_value() -> None:
    """Headers named in vary_headers split the key by their value."""
    en = key(headers={"Accept-Language": "en"}, vary_headers=["accept-language"])
    de = key(headers={"Accept-Language": "de"}, vary_headers=["Accept-Language"])
    assert en != de
    assert key(headers={"Accept-Language": "en"}) == key()


def test_credential_headers_in_vary_headers_are_keyed_by_fingerprint_only() -> None:
    """Listing Authorization in vary_headers adds nothing beyond its HMAC fingerprint."""
    headers = {"Authorization": "Bearer alice"}
    assert key(headers=headers, secret=SECRET, vary_headers=["authorization"]) == key(
        headers=headers, secret=SECRET
    )


def test_default_function_scope_and_label() -> None:
    """The scope defaults to 'METHOD path'; the label never carries argument values."""
    made = request_key(service="s", method="get", path="/u/{id}", params={"id": 12345})
    assert made is not None
    assert made.function == "GET /u/{id}"
    assert "12345" not in made.label
    assert made.function_field == function_field("GET /u/{id}")
    assert made.function_field.startswith("f")
    assert len(made.function_field) == 25


def test_custom_keys_depend_only_on_service_and_string() -> None:
    """key_func keys are found by their string alone, whichever function wrote them."""
    a = custom_key(service="products", key="product:123", function="get_product")
    b = custom_key(service="products", key="product:123", function="other")
    assert a.digest == b.digest
    assert a.function_field != b.function_field
    assert custom_key(service="x", key="product:123", function="f").digest != a.digest
    assert "123" not in a.label
    with pytest.raises(ValueError, match="non-empty"):
        custom_key(service="products", key="", function="f")


def test_invalid_service_names_are_rejected() -> None:
    """Service names are validated as everywhere else (braces would break the hash tag)."""
    with pytest.raises(ValueError, match="service"):
        request_key(service="a{b}", method="GET", path="/")


@given(
    path=st.text(max_size=5000),
    params=st.dictionaries(st.text(max_size=300), st.text(max_size=3000), max_size=5),
)
def test_digests_have_bounded_length(path: str, params: dict[str, str]) -> None:
    """Whatever the input, the digest is 32 hex characters and the Redis key is bounded."""
    made = request_key(service="svc", method="GET", path=path, params=params)
    assert made is not None
    assert len(made.digest) == KEY_DIGEST_CHARS
    int(made.digest, 16)
    assert len(made.label) <= 120
    full = KeySchema().key("svc", "cache", "e", made.digest)
    assert len(full) < 80


def test_canonical_json_examples() -> None:
    """canonical_json sorts mappings and sets and marks bytes."""
    assert canonical_json({"b": 1, "a": 2}) == '{"__map__":[["a",2],["b",1]]}'
    assert canonical_json({3, 1, 2}) == '{"__set__":[1,2,3]}'
    assert canonical_json(b"\x00\xff") == '{"__bytes__":"00ff"}'
