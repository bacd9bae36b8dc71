"""The shared cache through the SDK: the seed's caching examples, HTTP-level caching."""

from __future__ import annotations

import asyncio
from typing import Any, List  # noqa: UP035 - the seed's spelling

import pytest
from pydantic import BaseModel

from msfw_redis import (
    HTTPMethod,
    ServiceClientError,
    cached_service_call,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


class Product(BaseModel):
    id: int
    name: str
    category: str = "tools"


class ProductService:
    """The seed's 'Caching Integration' class, verbatim (a plain class)."""

    @cached_service_call(
        ttl=600.0,  # Cache for 10 minutes
        key_func=lambda self, product_id: f"product:{product_id}",
        cache_on_error=True,  # Cache error responses too
    )
    @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
    async def get_product(self, product_id: int) -> Product:
        pass

    @cached_service_call(ttl=300.0, vary_on=["category", "limit"])
    @service_call("product-service", HTTPMethod.GET, "/products")
    async def list_products(self, category: str, limit: int = 20) -> List[Product]:  # noqa: UP006
        pass


P123 = {"id": 123, "name": "hammer"}


@pytest.fixture
def products(http_service: ScriptedService) -> ScriptedService:
    http_service.script("/products/123", Step(200, json=P123))
    http_service.script("/products", Step(200, json=[P123, {"id": 2, "name": "saw"}]))
    return http_service


async def test_seed_caching_integration(make_sdk: Any, products: ScriptedService) -> None:
    """Seed: cached get, force_refresh, clear one key; models round-trip through the cache."""
    make_sdk(services_for(products, "product-service"))
    product_service = ProductService()

    product = await product_service.get_product(123)
    again = await product_service.get_product(123)
    assert product == again == Product(**P123)
    assert isinstance(again, Product)
    assert products.hits("/products/123") == 1

    product = await product_service.get_product(123, force_refresh=True)
    assert products.hits("/products/123") == 2

    await product_service.clear_cache("product:123")  # type: ignore[attr-defined]
    await product_service.get_product(123)
    assert products.hits("/products/123") == 3


async def test_list_of_models_and_vary_on(make_sdk: Any, products: ScriptedService) -> None:
    """List[Model] round-trips; vary_on args key the entry, others share it."""
    make_sdk(services_for(products, "product-service"))
    svc = ProductService()
    first = await svc.list_products("tools")
    second = await svc.list_products(category="tools", limit=20)
    assert first == second
    assert all(isinstance(p, Product) for p in second)
    assert products.hits("/products") == 1
    await svc.list_products("garden")
    assert products.hits("/products") == 2
    assert [r.query for r in products.requests("/products")] == [
        [("category", "tools"), ("limit", "20")],
        [("category", "garden"), ("limit", "20")],
    ]


async def test_clear_whole_function_is_o1(make_sdk: Any, products: ScriptedService) -> None:
    """clear_cache(function=...) invalidates every entry of that method at once."""
    make_sdk(services_for(products, "product-service"))
    svc = ProductService()
    await svc.list_products("a")
    await svc.list_products("b")
    assert products.hits("/products") == 2
    cleared = await svc.clear_cache(function="list_products")  # type: ignore[attr-defined]
    assert cleared >= 1
    await svc.list_products("a")
    await svc.list_products("b")
    assert products.hits("/products") == 4


async def test_cache_shared_by_two_sdks(make_sdk: Any, products: ScriptedService) -> None:
    """A value cached through one SDK (replica) is served to another."""
    a = make_sdk(services_for(products, "product-service"))
    b = make_sdk(services_for(products, "product-service"))

    @service_interface("product-service")
    class Products:
        @cached_service_call(ttl=60.0)
        @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
        async def get(self, product_id: int) -> Product:
            """Cached lookup."""

    assert (await Products(sdk=a).get(123)).id == 123
    assert (await Products(sdk=b).get(123)).id == 123
    assert products.hits("/products/123") == 1


async def test_concurrent_callers_make_one_origin_call(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Twenty concurrent callers on a cold key: one origin call."""
    http_service.script("/products/7", Step(200, json={"id": 7, "name": "x"}, delay=0.2))
    sdk = make_sdk(services_for(http_service, "product-service"))

    @service_interface("product-service")
    class Products:
        @cached_service_call(ttl=60.0)
        @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
        async def get(self, product_id: int) -> Product:
            """Cached lookup."""

    svc = Products(sdk=sdk)
    results = await asyncio.gather(*(svc.get(7) for _ in range(20)))
    assert {r.id for r in results} == {7}
    assert http_service.hits("/products/7") == 1


async def test_decorator_below_service_call(make_sdk: Any, products: ScriptedService) -> None:
    """@cached_service_call works below @service_call too."""
    make_sdk(services_for(products, "product-service"))

    class Products:
        @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
        @cached_service_call(ttl=60.0, key_func=lambda self, product_id: f"p{product_id}")
        async def get(self, product_id: int) -> Product:
            """Cached lookup, decorators the other way round."""

    svc = Products()
    await svc.get(123)
    await svc.get(123)
    assert products.hits("/products/123") == 1
    await svc.clear_cache("p123")  # type: ignore[attr-defined]
    await svc.get(123)
    assert products.hits("/products/123") == 2


async def test_plain_function_caching(make_sdk: Any) -> None:
    """@cached_service_call on a plain async function, with force_refresh."""
    sdk = make_sdk()
    calls = 0

    @cached_service_call(ttl=60.0, sdk=sdk)
    async def expensive(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"x": x, "calls": calls}

    assert await expensive(1) == {"x": 1, "calls": 1}
    assert await expensive(1) == {"x": 1, "calls": 1}
    assert await expensive(2) == {"x": 2, "calls": 2}
    assert await expensive(1, force_refresh=True) == {"x": 1, "calls": 3}  # type: ignore[call-arg]
    await expensive.clear_cache()  # type: ignore[attr-defined]
    assert (await expensive(2))["calls"] == 4


async def test_http_level_cache_and_credentials(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """GETs of a cache_enabled service are cached; credentials are never shared."""
    http_service.script("/me", Step(200, json={"user": "someone"}))
    settings = services_for(http_service, "accounts", cache_enabled=True, cache_ttl=60.0)
    plain = make_sdk(settings)
    r1 = await plain.call_service("accounts", "/me")
    r2 = await plain.call_service("accounts", "/me")
    assert (r1.from_cache, r2.from_cache) == (False, True)
    assert r2.data == {"user": "someone"}
    assert http_service.hits("/me") == 1
    # Without a secret, requests with credentials are not cached at all.
    for token in ("alice", "alice"):
        await plain.call_service("accounts", "/me", headers={"Authorization": f"Bearer {token}"})
    assert http_service.hits("/me") == 3
    # With a secret, each credential gets its own entry.
    keyed = make_sdk(settings, cache_key_secret="0123456789abcdef-secret")
    for token in ("alice", "bob", "alice", "bob"):
        await keyed.call_service("accounts", "/me", headers={"Authorization": f"Bearer {token}"})
    assert http_service.hits("/me") == 5


async def test_credential_query_parameters_are_never_shared(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """?access_token= (and the other cache_credential_params) is a credential like
    Authorization: not cached without a secret, one entry per value with one, and the
    list is configurable."""
    http_service.script("/me", Step(200, json={"user": "someone"}))
    settings = services_for(http_service, "accounts", cache_enabled=True, cache_ttl=60.0)
    plain = make_sdk(settings)
    for _ in range(2):
        got = await plain.call_service("accounts", "/me", params={"access_token": "alice"})
        assert got.from_cache is False
    assert http_service.hits("/me") == 2
    keyed = make_sdk(settings, cache_key_secret="0123456789abcdef-secret")
    served = []
    for token in ("alice", "bob", "alice", "bob"):
        got = await keyed.call_service("accounts", "/me", params={"Access_Token": token})
        served.append(got.from_cache)
    assert served == [False, False, True, True]
    assert http_service.hits("/me") == 4
    # A name of the service's own: credential only when configured as one.
    custom = make_sdk(settings, cache_credential_params=("session",))
    for _ in range(2):
        await custom.call_service("accounts", "/me", params={"session": "s1"})
    assert http_service.hits("/me") == 6
    for _ in range(2):  # no longer a credential there: an ordinary, shared query value
        await custom.call_service("accounts", "/me", params={"access_token": "carol"})
    assert http_service.hits("/me") == 7


async def test_stale_if_error_and_breaker_open(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Past its TTL a stale entry is served while one refresh runs, when that refresh
    fails, and once the failures have opened the breaker (no origin call then)."""
    http_service.script("/rates", Step(200, json={"eur": 1.1}), Step(503))
    settings = services_for(
        http_service,
        "fx",
        cache_enabled=True,
        cache_ttl=0.05,
        retry_attempts=1,
        failure_threshold=2,
    )
    sdk = make_sdk(settings, cache_max_stale=60.0)
    assert (await sdk.call_service("fx", "/rates")).data == {"eur": 1.1}
    await asyncio.sleep(0.1)
    for expected_hits in (2, 3):
        stale = await sdk.call_service("fx", "/rates")
        assert (stale.success, stale.data, stale.stale) == (True, {"eur": 1.1}, True)
        await sdk._cache.drain()  # the background refresh (503) has run
        assert http_service.hits("/rates") == expected_hits
    assert sdk._hub.get("fx").state().state == "open"
    while_open = await sdk.call_service("fx", "/rates")
    await sdk._cache.drain()
    assert (while_open.data, while_open.stale) == ({"eur": 1.1}, True)
    assert http_service.hits("/rates") == 3  # the open breaker kept the origin untouched


async def test_negative_caching(make_sdk: Any, http_service: ScriptedService) -> None:
    """cache_on_error stores an error answer briefly: the next caller gets it from the cache."""
    http_service.script("/products/404", Step(404, json={"detail": "gone"}))
    make_sdk(services_for(http_service, "product-service"))
    svc = ProductService()
    for _ in range(2):
        with pytest.raises(ServiceClientError) as info:
            await svc.get_product(404)
        assert info.value.status_code == 404
    assert http_service.hits("/products/404") == 1


async def test_near_cache_opt_in_by_decorator(make_sdk: Any, products: ScriptedService) -> None:
    """@cached_service_call(near_cache=True) serves hot fresh entries from this process;
    the same method without it always reads Redis."""
    sdk = make_sdk(services_for(products, "product-service"))

    @service_interface("product-service")
    class Products:
        @cached_service_call(ttl=60.0, near_cache=True)
        @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
        async def near(self, product_id: int) -> Product:
            """Near-cached lookup."""

        @cached_service_call(ttl=60.0, key_func=lambda self, product_id: f"far:{product_id}")
        @service_call("product-service", HTTPMethod.GET, "/products/{product_id}")
        async def far(self, product_id: int) -> Product:
            """Shared-cache-only lookup."""

    svc = Products(sdk=sdk)
    for _ in range(20):
        assert (await svc.far(123)).id == 123
    assert sdk._cache.stats.near_hits == 0
    # A copy is kept at a Redis hit; this process's own fill message, arriving a moment
    # later, may drop the first one (invalidations are never skipped), so keep calling.
    for _ in range(50):
        assert (await svc.near(123)).id == 123
        if sdk._cache.stats.near_hits >= 3:
            break
        await asyncio.sleep(0)
    assert sdk._cache.stats.near_hits >= 3
    assert products.hits("/products/123") == 2  # one fill per key, no more


async def test_near_cache_opt_in_by_toml(
    make_sdk: Any, http_service: ScriptedService, tmp_path: Any
) -> None:
    """A service's `near_cache = true` in the settings file turns it on for its HTTP
    cache, with the SDK's `near_cache_max_entries` as its bound."""
    http_service.script("/rates", Step(200, json={"eur": 1.1}))
    path = tmp_path / "settings.toml"
    path.write_text(
        "[services.fx]\n"
        'host = "127.0.0.1"\n'
        f"port = {http_service.port}\n"
        "cache_enabled = true\n"
        "cache_ttl = 60\n"
        "near_cache = true\n"
    )
    sdk = make_sdk(str(path), near_cache_max_entries=5)
    for _ in range(50):  # see test_near_cache_opt_in_by_decorator
        got = await sdk.call_service("fx", "/rates")
        assert got.data == {"eur": 1.1}
        if sdk._cache.stats.near_hits >= 3:
            break
        await asyncio.sleep(0)
    assert sdk._cache.stats.near_hits >= 3
    assert http_service.hits("/rates") == 1
    assert sdk._cache._near.max_entries == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("near_cache_max_entries", 0), ("near_cache_max_staleness", 0.0)],
)
def test_near_cache_limits_are_checked_naming_the_field(field: str, value: object) -> None:
    """A near cache of no entries or no staleness bound fails at construction."""
    from msfw_redis import ServiceSDKConfig

    with pytest.raises(Exception, match=field):
        ServiceSDKConfig(**{field: value})
