"""The response cache component on fakeredis and on a real server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import BaseModel

from msfw_redis._cache.cache import (
    CacheOutcome,
    CachePolicy,
    ResponseCache,
    StaleReason,
)
from msfw_redis._cache.entry import HttpResponseCodec, TypeAdapterCodec
from msfw_redis._exceptions import (
    CircuitOpenError,
    ConfigurationError,
    ServiceClientError,
)
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import (
    RedisServer,
    ScriptedService,
    Step,
    find_server_binary,
    free_port,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from msfw_redis._cache.keys import CacheKey

pytestmark = pytest.mark.topologies

SECRET = b"integration-secret-0123456789abcdef"
T0 = 1_700_000_000_000
ANY = TypeAdapterCodec(Any)
POLICY = CachePolicy(ttl=60.0, lease_timeout=10.0, wait_timeout=10.0)


class User(BaseModel):
    id: int
    name: str


class Clock:
    """A settable server clock for the scripts (integer ms)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class Origin:
    """A counting origin; each call returns the next value or raises the next error."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results) or ["v1"]
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        result = self.results[min(self.calls, len(self.results)) - 1]
        if isinstance(result, BaseException):
            raise result
        return result


class Replicas:
    """Several caches on one Redis, each with its own store and event bus (replicas)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.closers: list[Callable[[], Awaitable[None]]] = []

    async def new(self, *, bus: bool = True, clock: Clock | None = None) -> ResponseCache:
        store = Store.from_url(self.url, key_prefix=self.prefix, op_timeout=2.0)
        await store.start()
        events = EventBus(store) if bus else None
        cache = ResponseCache(store, events, secret=SECRET, now_ms=clock)
        self.closers += [cache.aclose, *([events.aclose] if events else []), store.aclose]
        return cache

    async def close(self) -> None:
        for closer in self.closers:
            await closer()


@pytest.fixture
async def replicas(redis_url: str, key_prefix: str) -> AsyncIterator[Replicas]:
    made = Replicas(redis_url, key_prefix)
    try:
        yield made
    finally:
        await made.close()


def user_key(cache: ResponseCache, user_id: int = 1, **kw: Any) -> CacheKey:
    made = cache.request_key(
        service="users", method="GET", path="/users/{id}", params={"id": user_id}, **kw
    )
    assert made is not None
    return made


async def test_miss_fills_then_hits(replicas: Replicas) -> None:
    """The first call fills from the origin; the next is a hit without an origin call."""
    cache = await replicas.new()
    origin = Origin({"id": 1})
    key = user_key(cache)
    first = await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
    assert (first.outcome, first.stored, first.from_cache) == (CacheOutcome.MISS, True, False)
    second = await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
    assert (second.outcome, second.value, second.from_cache) == (CacheOutcome.HIT, {"id": 1}, True)
    assert second.age is not None
    assert origin.calls == 1
    stats = cache.stats
    assert (stats.misses, stats.hits, stats.fills) == (1, 1, 1)


@pytest.mark.parametrize("near", [False, True])
async def test_a_caller_mutating_a_hit_changes_no_later_hit(replicas: Replicas, near: bool) -> None:
    """dict[str, Any] hits are not validated again, yet each caller gets its own value."""
    cache = await replicas.new()
    codec: TypeAdapterCodec[dict[str, Any]] = TypeAdapterCodec(dict[str, Any])
    origin = Origin({"id": 1, "tags": ["a"]})
    key = user_key(cache)
    for _ in range(4):  # miss, then hits through the full and the hot path (and near)
        got = await cache.get_or_fetch(key, origin, codec=codec, policy=POLICY, near=near)
        assert got.value == {"id": 1, "tags": ["a"]}
        got.value["id"] = 2
        got.value["tags"].append("b")
    assert origin.calls == 1


async def test_pydantic_models_and_lists_round_trip(replicas: Replicas) -> None:
    """A model and a List[Model] come back from Redis as validated model instances."""
    cache = await replicas.new()
    one = user_key(cache, 1)
    many = cache.custom_key(service="users", key="all", function="list_users")
    model_codec = TypeAdapterCodec(User)
    list_codec = TypeAdapterCodec(list[User])
    users = [User(id=1, name="a"), User(id=2, name="b")]
    await cache.get_or_fetch(one, Origin(users[0]), codec=model_codec, policy=POLICY)
    await cache.get_or_fetch(many, Origin(users), codec=list_codec, policy=POLICY)
    got_one = await cache.get_or_fetch(one, Origin(), codec=model_codec, policy=POLICY)
    got_many = await cache.get_or_fetch(many, Origin(), codec=list_codec, policy=POLICY)
    assert got_one.outcome is CacheOutcome.HIT
    assert isinstance(got_one.value, User)
    assert got_one.value == users[0]
    assert got_many.value == users
    assert all(isinstance(u, User) for u in got_many.value)


async def test_concurrent_callers_in_one_process_share_one_origin_call(
    replicas: Replicas,
) -> None:
    """Ten concurrent callers: one origin call, nine coalesced, each with its own copy."""
    cache = await replicas.new()
    origin = Origin(User(id=1, name="a"))
    origin.gate = asyncio.Event()
    key = user_key(cache)
    codec = TypeAdapterCodec(User)
    calls = [
        asyncio.ensure_future(cache.get_or_fetch(key, origin, codec=codec, policy=POLICY))
        for _ in range(10)
    ]
    await asyncio.wait_for(origin.entered.wait(), 5)
    origin.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert origin.calls == 1
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count(CacheOutcome.MISS) == 1
    assert outcomes.count(CacheOutcome.COALESCED) == 9
    assert len({id(r.value) for r in results}) == 10
    assert cache.stats.coalesced_waiters == 9


async def test_cancelled_leader_hands_over_to_its_followers(replicas: Replicas) -> None:
    """A leader cancelled mid-fetch frees its lease; its follower starts over at once."""
    cache = await replicas.new()
    policy = CachePolicy(ttl=60.0, lease_timeout=30.0, wait_timeout=30.0)
    key = user_key(cache)
    stuck = Origin("never")
    stuck.gate = asyncio.Event()
    leader = asyncio.ensure_future(cache.get_or_fetch(key, stuck, codec=ANY, policy=policy))
    await asyncio.wait_for(stuck.entered.wait(), 5)
    second = Origin("second")
    follower = asyncio.ensure_future(cache.get_or_fetch(key, second, codec=ANY, policy=policy))
    await asyncio.sleep(0.01)
    leader.cancel()
    result = await asyncio.wait_for(follower, 10)  # no hang: the 30 s lease was released
    assert (result.value, result.outcome) == ("second", CacheOutcome.MISS)
    assert second.calls == 1
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_waiters_in_other_replicas_are_woken_by_the_fill(replicas: Replicas) -> None:
    """A caller in another replica WAITs and is woken by pub/sub, long before the lease ends."""
    filler, waiter = await replicas.new(), await replicas.new()
    await waiter.prepare("users")
    origin = Origin("filled")
    origin.gate = asyncio.Event()
    policy = CachePolicy(ttl=60.0, lease_timeout=30.0, wait_timeout=30.0)
    key = user_key(filler)
    leading = asyncio.ensure_future(filler.get_or_fetch(key, origin, codec=ANY, policy=policy))
    await asyncio.wait_for(origin.entered.wait(), 5)
    other_origin = Origin("never")
    waiting = asyncio.ensure_future(
        waiter.get_or_fetch(key, other_origin, codec=ANY, policy=policy)
    )
    await asyncio.sleep(0.05)
    assert not waiting.done()
    origin.gate.set()
    result = await asyncio.wait_for(waiting, 10)  # no hang: 30 s lease, woken by the fill
    assert (result.outcome, result.value) == (CacheOutcome.COALESCED, "filled")
    assert other_origin.calls == 0
    assert (await leading).outcome is CacheOutcome.MISS


async def test_waiters_call_the_origin_when_the_filler_will_not_store(
    replicas: Replicas,
) -> None:
    """When the filler's value is not storable it releases, and waiters call the origin."""
    filler, waiter = await replicas.new(), await replicas.new()
    await waiter.prepare("users")
    origin = Origin(httpx.Response(200, headers={"cache-control": "no-store"}, content=b"x"))
    origin.gate = asyncio.Event()
    policy = CachePolicy(ttl=60.0, lease_timeout=30.0, wait_timeout=30.0)
    key = user_key(filler)
    codec = HttpResponseCodec()
    leading = asyncio.ensure_future(filler.get_or_fetch(key, origin, codec=codec, policy=policy))
    await asyncio.wait_for(origin.entered.wait(), 5)
    own = Origin(httpx.Response(200, content=b"mine"))
    waiting = asyncio.ensure_future(waiter.get_or_fetch(key, own, codec=codec, policy=policy))
    await asyncio.sleep(0.05)
    origin.gate.set()
    result = await asyncio.wait_for(waiting, 10)
    assert result.outcome is CacheOutcome.MISS
    assert own.calls == 1
    assert (await leading).stored is False
    assert filler.stats.uncacheable_skips == 1


async def test_crashed_filler_lease_is_taken_over_after_it_expires(
    replicas: Replicas, store: Store
) -> None:
    """A lease whose holder never fills blocks others only until it expires; then one takes over."""
    cache = await replicas.new()
    key = user_key(cache)
    # A filler that takes a 300 ms lease and dies: the lease is taken by a direct call.
    await store.run(
        "cache_lookup",
        [cache.entry_key(key), cache.generation_key("users")],
        ["get", "dead-filler", 300, key.function_field, 0],
    )
    origin = Origin("fresh")
    started = time.monotonic()
    result = await asyncio.wait_for(cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY), 10)
    elapsed = time.monotonic() - started
    assert result.outcome is CacheOutcome.MISS
    assert result.stored
    assert origin.calls == 1
    assert cache.stats.lease_expiries == 1
    assert elapsed < 5  # bounded by the 300 ms lease, not by wait_timeout


async def test_wait_is_bounded_by_wait_timeout(replicas: Replicas, store: Store) -> None:
    """A caller waits at most wait_timeout for someone else's fill, then calls the origin."""
    cache = await replicas.new()
    key = user_key(cache)
    await store.run(
        "cache_lookup",
        [cache.entry_key(key), cache.generation_key("users")],
        ["get", "slow-filler", 60_000, key.function_field, 0],
    )
    origin = Origin("mine")
    policy = CachePolicy(ttl=60.0, lease_timeout=60.0, wait_timeout=0.2)
    result = await asyncio.wait_for(cache.get_or_fetch(key, origin, codec=ANY, policy=policy), 10)
    assert (result.outcome, result.stored) == (CacheOutcome.MISS, False)
    assert cache.stats.wait_timeouts == 1


async def test_waiting_without_a_bus_falls_back_to_rechecks(replicas: Replicas) -> None:
    """Without an event bus, a waiter still gets the other replica's fill by re-checking."""
    filler, waiter = await replicas.new(bus=False), await replicas.new(bus=False)
    origin = Origin("filled")
    origin.gate = asyncio.Event()
    key = user_key(filler)
    leading = asyncio.ensure_future(filler.get_or_fetch(key, origin, codec=ANY, policy=POLICY))
    await asyncio.wait_for(origin.entered.wait(), 5)
    waiting = asyncio.ensure_future(waiter.get_or_fetch(key, Origin(), codec=ANY, policy=POLICY))
    await asyncio.sleep(0.05)
    origin.gate.set()
    result = await asyncio.wait_for(waiting, 10)
    assert (result.outcome, result.value) == (CacheOutcome.COALESCED, "filled")
    await leading


async def test_stale_while_revalidate(replicas: Replicas) -> None:
    """Past ttl, within max_stale: served stale at once while one background refresh runs."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    policy = CachePolicy(ttl=1.0, max_stale=30.0)
    key = user_key(cache)
    origin = Origin("v1", "v2")
    await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    clock.advance(2)
    stale = await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    assert (stale.outcome, stale.value, stale.stale) == (CacheOutcome.STALE, "v1", True)
    assert stale.stale_reason is StaleReason.REVALIDATING
    await cache.drain()
    assert origin.calls == 2
    fresh = await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    assert (fresh.outcome, fresh.value) == (CacheOutcome.HIT, "v2")
    assert cache.stats.refreshes == 1
    # Past the stale window the entry is gone: a plain miss.
    clock.advance(100)
    assert (await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)).outcome is (
        CacheOutcome.MISS
    )


async def test_only_one_refresh_runs_while_others_get_stale(replicas: Replicas) -> None:
    """While one replica refreshes, another replica is served the stale entry, no origin call."""
    clock = Clock()
    a, b = await replicas.new(clock=clock), await replicas.new(clock=clock)
    policy = CachePolicy(ttl=1.0, max_stale=30.0, stale_while_revalidate=False)
    key = user_key(a)
    await a.get_or_fetch(key, Origin("v1"), codec=ANY, policy=policy)
    clock.advance(2)
    slow = Origin("v2")
    slow.gate = asyncio.Event()
    refreshing = asyncio.ensure_future(a.get_or_fetch(key, slow, codec=ANY, policy=policy))
    await asyncio.wait_for(slow.entered.wait(), 5)
    other = Origin("never")
    meanwhile = await b.get_or_fetch(key, other, codec=ANY, policy=policy)
    assert (meanwhile.outcome, meanwhile.value) == (CacheOutcome.STALE, "v1")
    assert other.calls == 0
    slow.gate.set()
    refreshed = await refreshing
    assert (refreshed.outcome, refreshed.value, refreshed.stored) == (CacheOutcome.MISS, "v2", True)


async def test_stale_if_error(replicas: Replicas) -> None:
    """When the origin fails, a stale entry is served, marked stale with the error."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    policy = CachePolicy(ttl=1.0, max_stale=30.0, stale_while_revalidate=False)
    key = user_key(cache)
    boom = ServiceClientError("unavailable", status_code=503)
    origin = Origin("v1", boom)
    await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    clock.advance(2)
    result = await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    assert (result.outcome, result.value) == (CacheOutcome.STALE, "v1")
    assert result.stale_reason is StaleReason.ORIGIN_ERROR
    assert result.error is boom
    # The entry survives for the next failure too.
    again = await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    assert (again.outcome, again.value) == (CacheOutcome.STALE, "v1")


async def test_stale_when_the_breaker_is_open(replicas: Replicas) -> None:
    """A CircuitOpenError from the origin path serves stale with reason BREAKER_OPEN; so does peek."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    policy = CachePolicy(ttl=1.0, max_stale=30.0, stale_while_revalidate=False)
    key = user_key(cache)
    await cache.get_or_fetch(key, Origin("v1"), codec=ANY, policy=policy)
    clock.advance(2)
    refused = Origin(CircuitOpenError("open", retry_after=5.0))
    result = await cache.get_or_fetch(key, refused, codec=ANY, policy=policy)
    assert (result.outcome, result.value, result.stale_reason) == (
        CacheOutcome.STALE,
        "v1",
        StaleReason.BREAKER_OPEN,
    )
    peeked = await cache.peek(key, codec=ANY)
    assert peeked is not None
    assert (peeked.value, peeked.stale, peeked.stale_reason) == (
        "v1",
        True,
        StaleReason.BREAKER_OPEN,
    )
    assert await cache.peek(user_key(cache, 99), codec=ANY) is None
    clock.advance(100)
    assert await cache.peek(key, codec=ANY) is None


async def test_client_errors_are_not_hidden_by_stale_entries(replicas: Replicas) -> None:
    """A 4xx from the origin is its answer: it propagates even when a stale entry exists."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    policy = CachePolicy(ttl=1.0, max_stale=30.0, stale_while_revalidate=False)
    key = user_key(cache)
    await cache.get_or_fetch(key, Origin("v1"), codec=ANY, policy=policy)
    clock.advance(2)
    with pytest.raises(ServiceClientError) as info:
        await cache.get_or_fetch(
            key, Origin(ServiceClientError("gone", status_code=404)), codec=ANY, policy=policy
        )
    assert info.value.status_code == 404


async def test_negative_caching(replicas: Replicas) -> None:
    """cache_on_error keeps an error for error_ttl and raises it again without an origin call."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    policy = CachePolicy(ttl=60.0, cache_on_error=True, error_ttl=5.0)
    key = user_key(cache)
    origin = Origin(ServiceClientError("no such user", status_code=404), "found")
    with pytest.raises(ServiceClientError):
        await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    with pytest.raises(ServiceClientError) as info:
        await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
    assert info.value.status_code == 404
    assert any("negative entry" in n for n in info.value.__notes__)
    assert origin.calls == 1
    assert cache.stats.errors_cached == 1
    clock.advance(6)
    assert (await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)).value == "found"


async def test_errors_are_not_cached_by_default(replicas: Replicas) -> None:
    """Without cache_on_error, every call after an error goes to the origin again."""
    cache = await replicas.new()
    key = user_key(cache)
    origin = Origin(ServiceClientError("no", status_code=404), "ok")
    with pytest.raises(ServiceClientError):
        await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
    assert (await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)).value == "ok"
    assert origin.calls == 2


async def test_error_values_use_error_ttl(replicas: Replicas) -> None:
    """A value marked by is_error is stored only under cache_on_error, for error_ttl."""
    clock = Clock()
    cache = await replicas.new(clock=clock)
    codec = HttpResponseCodec()
    key = user_key(cache)
    policy = CachePolicy(ttl=60.0, cache_on_error=True, error_ttl=2.0)
    origin = Origin(httpx.Response(503, content=b"down"), httpx.Response(200, content=b"up"))

    def is_error(r: httpx.Response) -> bool:
        return r.status_code >= 500

    for _ in range(2):
        got = await cache.get_or_fetch(key, origin, codec=codec, policy=policy, is_error=is_error)
        assert got.value.status_code == 503
    assert origin.calls == 1
    clock.advance(3)
    got = await cache.get_or_fetch(key, origin, codec=codec, policy=policy, is_error=is_error)
    assert got.value.status_code == 200


async def test_force_refresh(replicas: Replicas) -> None:
    """force_refresh calls the origin and stores; if the origin fails, the entry stands in."""
    cache = await replicas.new()
    key = user_key(cache)
    origin = Origin("v1", "v2", ServiceClientError("down", status_code=500))
    await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
    forced = await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY, force_refresh=True)
    assert (forced.outcome, forced.value, forced.stored) == (CacheOutcome.MISS, "v2", True)
    assert (await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)).value == "v2"
    failed = await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY, force_refresh=True)
    assert (failed.outcome, failed.value) == (CacheOutcome.STALE, "v2")
    assert failed.stale_reason is StaleReason.ORIGIN_ERROR
    assert origin.calls == 3


async def test_clear_one_key(replicas: Replicas) -> None:
    """clear() deletes one entry; the next call misses; other keys stay."""
    cache = await replicas.new()
    a, b = user_key(cache, 1), user_key(cache, 2)
    for k in (a, b):
        await cache.get_or_fetch(k, Origin("x"), codec=ANY, policy=POLICY)
    assert await cache.clear(a) is True
    assert await cache.clear(a) is False
    assert (await cache.get_or_fetch(a, Origin("y"), codec=ANY, policy=POLICY)).value == "y"
    assert (await cache.get_or_fetch(b, Origin("z"), codec=ANY, policy=POLICY)).value == "x"


async def test_custom_key_func_and_clear_by_its_string(replicas: Replicas) -> None:
    """The seed's key_func keys: `product:123` is cleared by that string alone."""
    cache = await replicas.new()

    def key_func(_self: object, product_id: int) -> str:
        return f"product:{product_id}"

    key = cache.custom_key(
        service="product-service", key=key_func(None, 123), function="ProductService.get_product"
    )
    await cache.get_or_fetch(key, Origin({"id": 123}), codec=ANY, policy=POLICY)
    hit = await cache.get_or_fetch(key, Origin(), codec=ANY, policy=POLICY)
    assert hit.outcome is CacheOutcome.HIT
    # clear_cache("product:123") from the owner, which does not know the function.
    again = cache.custom_key(service="product-service", key="product:123", function="any")
    assert await cache.clear(again) is True
    miss = await cache.get_or_fetch(key, Origin({"id": 123}), codec=ANY, policy=POLICY)
    assert miss.outcome is CacheOutcome.MISS


async def test_hot_key_path_keeps_each_function_scope(replicas: Replicas) -> None:
    """Two functions sharing a key string share its digest, not its generation.

    The hot-key path keeps each key's encoded 'peek' by digest; one made for
    function a must not stand in for function b after b was cleared.
    """
    cache = await replicas.new()
    a = cache.custom_key(service="products", key="product:1", function="a")
    b = cache.custom_key(service="products", key="product:1", function="b")
    assert a.digest == b.digest
    await cache.get_or_fetch(a, Origin({"id": 1}), codec=ANY, policy=POLICY)
    for _ in range(2):  # the second hit is served by the hot path, made for a
        hit = await cache.get_or_fetch(a, Origin(), codec=ANY, policy=POLICY)
        assert hit.outcome is CacheOutcome.HIT
    assert await cache.clear_function("products", "b") == 1
    origin = Origin({"id": 2})
    got = await cache.get_or_fetch(b, origin, codec=ANY, policy=POLICY)
    assert (got.outcome, got.value, origin.calls) == (CacheOutcome.MISS, {"id": 2}, 1)


async def test_vary_on_values_split_entries(replicas: Replicas) -> None:
    """vary_on values are part of the key: different values, different entries."""
    cache = await replicas.new()

    def listing(category: str) -> CacheKey:
        made = cache.request_key(
            service="products",
            method="GET",
            path="/products",
            params={"category": category, "limit": 20},
            vary={"category": category, "limit": 20},
        )
        assert made is not None
        return made

    await cache.get_or_fetch(listing("books"), Origin(["b"]), codec=ANY, policy=POLICY)
    games = await cache.get_or_fetch(listing("games"), Origin(["g"]), codec=ANY, policy=POLICY)
    assert (games.outcome, games.value) == (CacheOutcome.MISS, ["g"])
    books = await cache.get_or_fetch(listing("books"), Origin(), codec=ANY, policy=POLICY)
    assert (books.outcome, books.value) == (CacheOutcome.HIT, ["b"])


async def test_clear_function_and_service_in_o1(replicas: Replicas, store: Store) -> None:
    """A generation bump hides every entry of a function (or service) with one call."""
    cache = await replicas.new()
    get_user = [user_key(cache, i, function="get_user") for i in range(20)]
    other = cache.request_key(service="users", method="GET", path="/me", function="me")
    assert other is not None
    for k in [*get_user, other]:
        await cache.get_or_fetch(k, Origin("old"), codec=ANY, policy=POLICY)
    real = not (store.url or "").startswith("memory://")  # fakeredis has no INFO
    before = await store.client.info("commandstats") if real else {}
    assert await cache.clear_function("users", "get_user") == 1
    if real:
        # One script call, whatever the number of entries: HINCRBY, PTTL, PEXPIRE, TYPE.
        after = await store.client.info("commandstats")
        calls = {
            name: stat["calls"] - before.get(name, {"calls": 0})["calls"]
            for name, stat in after.items()
        }
        calls.pop("cmdstat_info", None)
        assert sum(calls.values()) <= 6, calls
    for k in get_user[:3]:
        got = await cache.get_or_fetch(k, Origin("new"), codec=ANY, policy=POLICY)
        assert (got.outcome, got.value) == (CacheOutcome.MISS, "new")
    assert (await cache.get_or_fetch(other, Origin(), codec=ANY, policy=POLICY)).value == "old"
    assert await cache.clear_service("users") == 1
    got = await cache.get_or_fetch(other, Origin("newer"), codec=ANY, policy=POLICY)
    assert (got.outcome, got.value) == (CacheOutcome.MISS, "newer")


async def test_clear_during_a_fill_voids_it(replicas: Replicas) -> None:
    """Data fetched before a clear is not stored after it; the caller still gets its value."""
    cache = await replicas.new()
    key = user_key(cache, function="get_user")
    origin = Origin("pre-clear")
    origin.gate = asyncio.Event()
    call = asyncio.ensure_future(cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY))
    await asyncio.wait_for(origin.entered.wait(), 5)
    await cache.clear_function("users", "get_user")
    origin.gate.set()
    result = await call
    assert (result.value, result.stored) == ("pre-clear", False)
    assert cache.stats.fill_rejections == 1
    after = await cache.get_or_fetch(key, Origin("post"), codec=ANY, policy=POLICY)
    assert (after.outcome, after.value) == (CacheOutcome.MISS, "post")


async def test_credentials_are_never_shared(replicas: Replicas, store: Store) -> None:
    """The same path with two Authorization headers is never served across them."""
    cache = await replicas.new()
    alice = user_key(cache, headers={"Authorization": "Bearer alice"})
    bob = user_key(cache, headers={"Authorization": "Bearer bob"})
    assert alice.digest != bob.digest
    await cache.get_or_fetch(alice, Origin("alice's"), codec=ANY, policy=POLICY)
    got = await cache.get_or_fetch(bob, Origin("bob's"), codec=ANY, policy=POLICY)
    assert (got.outcome, got.value) == (CacheOutcome.MISS, "bob's")
    got = await cache.get_or_fetch(alice, Origin(), codec=ANY, policy=POLICY)
    assert (got.outcome, got.value) == (CacheOutcome.HIT, "alice's")
    no_secret = ResponseCache(store, None)
    assert (
        no_secret.request_key(
            service="users", method="GET", path="/u", headers={"Authorization": "Bearer a"}
        )
        is None
    )


async def test_corrupt_entry_is_a_miss_deleted_and_counted(
    replicas: Replicas, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage bytes under the key: a miss, the entry replaced, a warning, a count."""
    cache = await replicas.new()
    key = user_key(cache)
    await cache.get_or_fetch(key, Origin("good"), codec=ANY, policy=POLICY)
    await store.client.hset(cache.entry_key(key), "v", b"\xc1garbage\x00\xff")
    result = await cache.get_or_fetch(key, Origin("refetched"), codec=ANY, policy=POLICY)
    assert (result.outcome, result.value) == (CacheOutcome.MISS, "refetched")
    assert cache.stats.corrupt_entries == 1
    assert "does not decode" in caplog.text
    assert (await cache.get_or_fetch(key, Origin(), codec=ANY, policy=POLICY)).value == "refetched"
    # A key overwritten with a plain string is deleted by the script and refilled too.
    await store.client.set(cache.entry_key(key), b"not a hash", px=60_000)
    result = await cache.get_or_fetch(key, Origin("again"), codec=ANY, policy=POLICY)
    assert (result.outcome, result.value) == (CacheOutcome.MISS, "again")
    assert cache.stats.corrupt_entries == 2


async def test_entry_that_no_longer_validates_is_corrupt(replicas: Replicas) -> None:
    """An entry that fails the return annotation (a changed model) is dropped and refetched."""
    cache = await replicas.new()
    key = user_key(cache)
    await cache.get_or_fetch(key, Origin({"id": "x"}), codec=ANY, policy=POLICY)
    got = await cache.get_or_fetch(
        key, Origin(User(id=1, name="a")), codec=TypeAdapterCodec(User), policy=POLICY
    )
    assert (got.outcome, got.value) == (CacheOutcome.MISS, User(id=1, name="a"))
    assert cache.stats.corrupt_entries == 1


async def test_oversize_values_are_skipped_and_counted(replicas: Replicas) -> None:
    """A value above max_entry_bytes is returned but not stored."""
    cache = await replicas.new()
    key = user_key(cache)
    policy = CachePolicy(ttl=60.0, max_entry_bytes=1_000)
    origin = Origin("x" * 5_000)
    for _ in range(2):
        got = await cache.get_or_fetch(key, origin, codec=ANY, policy=policy)
        assert (got.outcome, got.stored) == (CacheOutcome.MISS, False)
    assert origin.calls == 2
    assert cache.stats.oversize_skips == 2


async def test_http_responses_over_loopback(
    replicas: Replicas, http_service: ScriptedService
) -> None:
    """Real loopback responses are cached, except no-store/private ones."""
    cache = await replicas.new()
    http_service.script("/cached", Step(200, json={"n": 1}))
    http_service.script("/private", Step(200, json={"n": 2}, headers={"Cache-Control": "private"}))
    codec = HttpResponseCodec()
    async with httpx.AsyncClient(base_url=http_service.url) as client:
        for path in ("/cached", "/private"):
            made = cache.request_key(service="svc", method="GET", path=path)
            assert made is not None
            key: CacheKey = made

            async def fetch(p: str = path) -> httpx.Response:
                response = await client.get(p)
                await response.aread()
                return response

            for _ in range(3):
                got = await cache.get_or_fetch(key, fetch, codec=codec, policy=POLICY)
                assert got.value.json()["n"] in (1, 2)
    assert http_service.hits("/cached") == 1
    assert http_service.hits("/private") == 3


async def test_metrics_name_every_counter(replicas: Replicas) -> None:
    """metrics() reports the issue's counters by name."""
    cache = await replicas.new()
    names = set(cache.metrics())
    assert {
        "hits",
        "misses",
        "stale_served",
        "coalesced_waiters",
        "fills",
        "lease_expiries",
        "oversize_skips",
        "corrupt_entries",
    } <= names


def test_policy_validation_names_the_field() -> None:
    """Bad policy values raise ConfigurationError naming the field."""
    for kwargs, name in (
        ({"ttl": 0}, "ttl"),
        ({"ttl": 1, "max_stale": -1}, "max_stale"),
        ({"ttl": 1, "lease_timeout": 0}, "lease_timeout"),
        ({"ttl": 1, "wait_timeout": float("nan")}, "wait_timeout"),
        ({"ttl": 1, "error_ttl": 0}, "error_ttl"),
        ({"ttl": 1, "max_entry_bytes": 0}, "max_entry_bytes"),
        ({"ttl": 1, "max_entry_bytes": 1.5}, "max_entry_bytes"),
    ):
        with pytest.raises(ConfigurationError) as info:
            CachePolicy(**kwargs)
        assert info.value.field == name


async def test_redis_down_bypasses_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable every call goes to the origin, without error, one WARNING."""
    caplog.set_level(logging.INFO, logger="msfw_redis.cache")
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", op_timeout=0.1)
    cache = ResponseCache(store, EventBus(store), secret=SECRET)
    key = user_key(cache)
    origin = Origin("direct")
    try:
        for _ in range(10):
            got = await asyncio.wait_for(
                cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY), 5
            )
            assert (got.outcome, got.value, got.from_cache) == (
                CacheOutcome.BYPASS,
                "direct",
                False,
            )
        assert origin.calls == 10
        assert cache.stats.bypasses == 10
        warnings = [
            r for r in caplog.records if r.name == "msfw_redis.cache" and r.levelname == "WARNING"
        ]
        assert len(warnings) == 1
        assert await cache.peek(key, codec=ANY) is None
    finally:
        await cache.aclose()
        await store.aclose()


@pytest.mark.real_redis
@pytest.mark.skipif(find_server_binary() is None, reason="needs a redis-server binary")
async def test_redis_restart_bypasses_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    """Redis killed: calls bypass with one WARNING; restarted: the cache is used again (INFO)."""
    caplog.set_level(logging.INFO, logger="msfw_redis.cache")
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.3)
        await store.start()
        cache = ResponseCache(store, None, secret=SECRET)
        key = user_key(cache)
        origin = Origin("v")
        try:
            await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
            server.kill()
            for _ in range(5):
                got = await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)
                assert got.outcome is CacheOutcome.BYPASS
            server.start()
            deadline = time.monotonic() + 20
            outcome = CacheOutcome.BYPASS
            while outcome is CacheOutcome.BYPASS and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the store's outage back-off decides when to retry
                outcome = (await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)).outcome
            assert outcome is CacheOutcome.MISS  # the restarted server is empty: refilled
            assert (await cache.get_or_fetch(key, origin, codec=ANY, policy=POLICY)).outcome is (
                CacheOutcome.HIT
            )
        finally:
            await store.aclose()
    records = [r for r in caplog.records if r.name == "msfw_redis.cache"]
    assert [r.levelname for r in records if "bypassed" in r.getMessage()] == ["WARNING"]
    assert any(r.levelname == "INFO" and "in use again" in r.getMessage() for r in records)
