"""HTTP cache regressions through the SDK on each backend (issue 13, items 4 to 6)."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import msgpack
import pytest

from msfw_redis._pipeline.body import ResponseTooLargeError
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for

SECRET = "integration-http-cache-secret"


def cached(svc: ScriptedService) -> dict[str, Any]:
    return services_for(svc, "api", cache_enabled=True)


async def two_replicas(make_sdk: Any, svc: ScriptedService, **config: Any) -> tuple[Any, Any]:
    config.setdefault("cache_key_secret", SECRET)
    config.setdefault("default_circuit_breaker_enabled", False)
    config.setdefault("default_retry_attempts", 1)
    return make_sdk(cached(svc), **config), make_sdk(cached(svc), **config)


async def get(sdk: Any, path: str) -> Any:
    return await sdk.call_service("api", path)


async def test_429_with_retry_after_is_not_served_to_another_replica(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A 429 (Retry-After: 1) is never stored: replica B's call 1.5 s later reaches the origin.

    Within the Retry-After second the fleet gate refuses calls to the endpoint (see the
    limits tests); past it, what B gets must come from the origin, not from a stored 429.
    """
    http_service.script(
        "/limited",
        Step(429, json={"e": 1}, headers={"retry-after": "1"}),
        Step(200, json={"ok": 1}),
    )
    a, b = await two_replicas(make_sdk, http_service)
    first = await get(a, "/limited")
    await asyncio.sleep(1.5)  # the issue's reproduction: B calls after the 429's window
    second = await get(b, "/limited")
    assert first.status_code == 429
    assert second.status_code == 200
    assert http_service.hits("/limited") == 2


@pytest.mark.parametrize("status", [401, 403, 408, 302, 500])
async def test_uncacheable_statuses_are_not_stored(
    make_sdk: Any, http_service: ScriptedService, status: int
) -> None:
    """401, 403, 408, 302 and 5xx answers are not stored: the next call reaches the origin."""
    headers = {"location": "/elsewhere"} if status == 302 else {}
    http_service.script(
        "/s", Step(status, json={"n": 1}, headers=headers), Step(200, json={"n": 2})
    )
    a, b = await two_replicas(make_sdk, http_service)
    assert (await get(a, "/s")).status_code == status
    assert (await get(b, "/s")).status_code == 200
    assert http_service.hits("/s") == 2


async def test_404_is_a_negative_entry_under_the_negative_ttl(
    make_sdk: Any, http_service: ScriptedService, redis_url: str, key_prefix: str
) -> None:
    """A 404 is served from the cache, but its entry lives only the negative TTL, not the TTL."""
    http_service.script("/gone", Step(404, json={"missing": True}))
    a, b = await two_replicas(make_sdk, http_service, cache_negative_ttl=2.0)
    assert (await get(a, "/gone")).status_code == 404
    again = await get(b, "/gone")
    assert again.status_code == 404 and again.from_cache
    assert http_service.hits("/gone") == 1
    key = a._cache.request_key(service="api", method="GET", path="/gone")
    pttl = (
        await a._store.run_raw("PTTL", a._cache.entry_key(key))
        if hasattr(a._store, "run_raw")
        else None
    )
    if pttl is not None:
        assert 0 < int(pttl) <= 2000


async def test_max_age_zero_without_validator_is_not_stored(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Cache-Control: max-age=0 (no ETag) is never served from the cache."""
    http_service.script("/zero", Step(200, json={"n": 1}, headers={"cache-control": "max-age=0"}))
    a, b = await two_replicas(make_sdk, http_service)
    await get(a, "/zero")
    second = await get(b, "/zero")
    assert not second.from_cache
    assert http_service.hits("/zero") == 2


async def test_served_entry_carries_age(make_sdk: Any, http_service: ScriptedService) -> None:
    """A response served from the cache has an Age header (whole seconds)."""
    http_service.script("/aged", Step(200, json={"n": 1}))
    a, b = await two_replicas(make_sdk, http_service)
    first = await get(a, "/aged")
    second = await get(b, "/aged")
    assert "age" not in first.headers
    assert second.from_cache and second.headers["age"].isdigit()


async def test_status_minus_one_envelope_is_a_miss(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A stored envelope with status -1 is corrupt: a miss (origin called), never a success."""
    http_service.script("/neg", Step(200, json={"real": True}))
    a, _ = await two_replicas(make_sdk, http_service)
    await get(a, "/neg")
    key = a._cache.request_key(service="api", method="GET", path="/neg")
    bad = msgpack.packb(
        {"v": 1, "k": "r", "s": -1, "h": [], "b": b'{"fake": 1}'}, use_bin_type=True
    )
    assert key is not None
    await a._store.client.hset(a._cache.entry_key(key), "v", bad)
    result = await get(a, "/neg")
    assert result.success and result.data == {"real": True}
    assert http_service.hits("/neg") == 2
    assert a._cache.metrics()["corrupt_entries"] == 1


async def test_gzip_bomb_fails_cleanly_without_tripping_the_breaker(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A gzip body inflating past max_response_bytes fails with a clear error; the breaker stays closed."""
    bomb = gzip.compress(bytes(4 << 20))
    http_service.script("/bomb", Step(200, body=bomb, headers={"content-encoding": "gzip"}))
    sdk = make_sdk(
        services_for(http_service, "api"), max_response_bytes=1 << 20, default_retry_attempts=1
    )
    client = sdk.get_client("api")
    for _ in range(6):
        with pytest.raises(
            ResponseTooLargeError, match="decoded response exceeds max_response_bytes"
        ):
            await client.get("/bomb")
    states = client.get_circuit_state()
    assert all(state.state != "open" for state in states.values())


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_brotli_and_zstd_bombs_fail_cleanly_without_tripping_the_breaker(
    make_sdk: Any, http_service: ScriptedService, encoding: str
) -> None:
    """A br or zstd body inflating past max_response_bytes fails clearly; the breaker stays closed."""
    if encoding == "br":
        bomb = pytest.importorskip("brotli").compress(bytes(4 << 20))
    else:
        bomb = pytest.importorskip("zstandard").ZstdCompressor().compress(bytes(4 << 20))
    http_service.script(
        f"/bomb-{encoding}", Step(200, body=bomb, headers={"content-encoding": encoding})
    )
    sdk = make_sdk(
        services_for(http_service, "api"), max_response_bytes=1 << 20, default_retry_attempts=1
    )
    client = sdk.get_client("api")
    for _ in range(6):
        with pytest.raises(
            ResponseTooLargeError, match="decoded response exceeds max_response_bytes"
        ):
            await client.get(f"/bomb-{encoding}")
    states = client.get_circuit_state()
    assert all(state.state != "open" for state in states.values())


async def test_a_services_credential_header_named_in_vary_stays_fingerprinted(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A credential header a service adds (X-Svc-Token) and the origin names in Vary is
    left out of the variant's key by value, as the SDK-wide ones are: the base key
    already carries its HMAC, and an unsalted hash of it in a key name would let anyone
    who can list keys test guesses."""
    http_service.script(
        "/v", Step(200, json={"n": 1}, headers={"Vary": "Accept-Language, X-Svc-Token"})
    )
    settings = services_for(
        http_service, "api", cache_enabled=True, cache_credential_headers=["X-Svc-Token"]
    )
    sdk = make_sdk(settings, cache_key_secret=SECRET, default_retry_attempts=1)
    english = {"Accept-Language": "en", "X-Svc-Token": "alice"}
    french = {"Accept-Language": "fr", "X-Svc-Token": "alice"}
    await sdk.call_service("api", "/v", headers=english)
    await sdk.call_service("api", "/v", headers=french)  # another variant of one base key
    again = await sdk.call_service("api", "/v", headers=french)
    assert again.from_cache and http_service.hits("/v") == 2
    base = sdk._cache.request_key(
        service="api",
        method="GET",
        path="/v",
        params=[],
        headers=french,
        extra_credential_headers=("X-Svc-Token",),
    )
    assert base is not None
    names = ["accept-language", "x-svc-token"]
    fingerprinted = sdk._cache.variant_key(base, names, french, ("X-Svc-Token",))
    by_value = sdk._cache.variant_key(base, names, french)
    assert fingerprinted.digest != by_value.digest
    assert await sdk._store.client.exists(sdk._cache.entry_key(fingerprinted)) == 1
    assert await sdk._store.client.exists(sdk._cache.entry_key(by_value)) == 0
