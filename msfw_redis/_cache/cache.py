"""The shared response cache: one origin call per key across the fleet.

:class:`ResponseCache` keeps entries in Redis, shared by every replica, and changes
them only through the ``lua/cache_*.lua`` scripts. The SDK calls it like this::

    cache = ResponseCache(store, bus, secret=b"32 random bytes from config......")
    key = cache.request_key(service="user-service", method="GET",
                            path="/users/{user_id}", params={"user_id": 7},
                            headers=request.headers)            # None: do not cache
    policy = CachePolicy(ttl=300.0, max_stale=60.0, lease_timeout=35.0)
    result = await cache.get_or_fetch(key, lambda: call_origin(...),
                                      codec=TypeAdapterCodec(User), policy=policy)
    result.value, result.from_cache, result.stale

How one call goes (``get_or_fetch``):

1. **In-process coalescing.** Concurrent calls for one key in one process share one
   resolution: the first (the leader) resolves inline and the others await its
   outcome; only the leader talks to Redis. A cancelled leader frees its lease and
   its followers start over.
2. **Lookup-or-lease, one round trip** (``cache_lookup``). The script answers FRESH
   (serve it), STALE (serve it; exactly one caller fleet-wide also gets a *refresh
   lease*), MISS (this caller got the *fill lease*) or WAIT (another caller holds it).
3. **Fill, fenced.** The lease holder calls the origin and stores the value with
   ``cache_fill``, which accepts it only with the current lease token and generation.
   A holder that will not store (origin failed, response not storable, too large)
   releases the lease with ``cache_release``.
4. **Waiting, not spinning.** A WAIT caller blocks on an ``asyncio`` future that the
   process's one pub/sub connection (:class:`~msfw_redis._events.EventBus`) resolves
   when the fill script publishes ``<digest> F`` (look again) or ``<digest> S`` (the
   filler will not store: call the origin yourself). Scripts publish only when someone
   waits. A waiter also wakes when the lease expires (a crashed filler), looks again
   and may take the lease over. After ``wait_timeout`` it calls the origin itself.
   Without a bus, waiters re-check with back-off (20 ms doubling to 0.5 s).
5. **Stale entries** (within ``max_stale`` after ``ttl``) are served while one refresh
   runs (in the background with ``stale_while_revalidate``), when the origin call
   fails (any exception but a 4xx ``ServiceClientError``), including the breaker's
   ``CircuitOpenError``, and on request through :meth:`ResponseCache.peek`.
6. **Redis unwell.** Every store error makes the call go straight to the origin, with
   no error to the caller, one WARNING per outage and one INFO on recovery.

Negative caching (``cache_on_error``, or the HTTP ``storage`` rules): errors with an
HTTP status are stored for ``error_ttl``, never over a usable stale entry; timeouts and
``CircuitOpenError`` never. A cached error is raised again as a new one.

Clearing: :meth:`ResponseCache.clear` deletes one entry (and voids a fill in flight);
``clear_function`` and ``clear_service`` bump a generation counter, O(1), never a scan.
Clear operations raise :class:`~msfw_redis.StoreError` when Redis is unavailable: an
invalidation that did not happen must not look like one that did.

Followers get a value decoded afresh, so callers may mutate what they get. The parts:
keys (``keys``), envelopes and codecs (``entry``), the fill side (``filling``), RFC 9111
rules (``rules``) and the HTTP path (``http``), the near cache (``near``), script calls
(``store``), waiting (``wakeups``), background refreshes (``background``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, TypeVar

from msfw_redis._cache.background import Background
from msfw_redis._cache.entry import (
    CacheCodec,
    EntryBody,
    ErrorBody,
    HttpResponseCodec,
    TypeAdapterCodec,
    age_seconds,
    decode_envelope,
)
from msfw_redis._cache.filling import (
    Filler,
    Hooks,
    Outcome,
    Served,
    count,
    deliver,
    served_outcome,
    stale_outcome,
)
from msfw_redis._cache.flights import Flights
from msfw_redis._cache.keys import (
    DEFAULT_CREDENTIAL_HEADERS,
    DEFAULT_CREDENTIAL_PARAMS,
    CacheKey,
    credential_fingerprint,
    custom_key,
    function_field,
    request_key,
    variant_key,
)
from msfw_redis._cache.near import DEFAULT_NEAR_MAX_ENTRIES, DEFAULT_NEAR_MAX_STALENESS, NearCache
from msfw_redis._cache.policy import (
    DEFAULT_ERROR_TTL,
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    CacheOutcome,
    CachePolicy,
    CacheResult,
    CacheStats,
    StaleReason,
)
from msfw_redis._cache.store import (
    LOOKUP_MALFORMED,
    LOOKUP_TAKEOVER,
    CacheStore,
    Lookup,
    PeekRequest,
    seconds_to_ms,
)
from msfw_redis._cache.wakeups import (
    POLL_INITIAL,
    POLL_MAX,
    WAKE_DEADLINE,
    WAKE_SKIP,
    FillWakeups,
)
from msfw_redis._exceptions import (
    StoreError,
)
from msfw_redis._store.keys import canonical_service_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from msfw_redis._cache.keys import Params
    from msfw_redis._cache.rules import Storage
    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

# The names the SDK needs, importable from this one module.
__all__ = [
    "DEFAULT_ERROR_TTL",
    "DEFAULT_LEASE_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "CacheCodec",
    "CacheKey",
    "CacheOutcome",
    "CachePolicy",
    "CacheResult",
    "CacheStats",
    "HttpResponseCodec",
    "ResponseCache",
    "StaleReason",
    "TypeAdapterCodec",
]

logger = logging.getLogger("msfw_redis.cache")
_HOT_KEYS = 4096

T = TypeVar("T")


def _open(blob: bytes, codec: CacheCodec[Any], *, unshared: bool) -> tuple[EntryBody, Any]:
    """An entry's body and its value (``None`` for a negative entry); raises if it is bad.

    ``unshared`` hands back the decoded data itself where the codec can (the caller
    keeps no other reference to it).
    """
    decode = getattr(codec, "decode_unshared", codec.decode) if unshared else codec.decode
    body = decode_envelope(blob)
    return body, (None if isinstance(body, ErrorBody) else decode(body))


class ResponseCache:
    """The shared response cache (see the module docstring for the protocol).

    Args:
        store: the started state store.
        bus: the process's event bus, which wakes waiters; ``None`` falls back to
            re-checking with back-off.
        secret: HMAC secret (>= 16 bytes) for credential fingerprints; without it,
            requests carrying Authorization or Cookie are not cached.
        credential_headers: request headers treated as credentials.
        credential_params: query parameters treated as credentials.
        near_max_entries: entries the near cache keeps (LRU), for ``near=True`` calls.
        near_max_staleness: seconds a near copy may be served without Redis.
        now_ms: test hook; integer server-time ms passed to the scripts instead of
            their reading ``TIME``.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus | None = None,
        *,
        secret: bytes | None = None,
        credential_headers: Iterable[str] = DEFAULT_CREDENTIAL_HEADERS,
        credential_params: Iterable[str] = DEFAULT_CREDENTIAL_PARAMS,
        near_max_entries: int = DEFAULT_NEAR_MAX_ENTRIES,
        near_max_staleness: float = DEFAULT_NEAR_MAX_STALENESS,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._redis = CacheStore(store, now_ms)
        self._secret = secret
        self._credential_headers = tuple(h.lower() for h in credential_headers)
        self._credential_params = tuple(p.lower() for p in credential_params)
        self.stats = CacheStats()
        self._flights: Flights[Outcome] = Flights()
        self._near = NearCache(near_max_entries, near_max_staleness)
        self._token_prefix = secrets.token_hex(8) + "."
        # Keys whose last lookup was a fresh hit: they take the one-peek hit path.
        self._hot: OrderedDict[tuple[str, str], PeekRequest] = OrderedDict()
        self._tokens = itertools.count(1)
        self._background = Background(self.stats)
        self._filler = Filler(
            self._redis, self.stats, self._store_failed, self._store_ok, self._background.spawn
        )
        self._wakeups = FillWakeups(
            bus, self._redis.channel, self._near.on_message, self._near.drop_service
        )
        self._degraded = False
        # Validates the secret now, not on the first request that carries a credential.
        credential_fingerprint(None, secret)

    # -- keys ---------------------------------------------------------------------------

    def request_key(
        self,
        *,
        service: str,
        method: str,
        path: str,
        params: Params | None = None,
        vary: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        vary_headers: Iterable[str] = (),
        function: str | None = None,
        extra_credential_headers: Iterable[str] = (),
    ) -> CacheKey | None:
        """A request's key with this cache's secret; ``None`` means do not cache it.

        ``extra_credential_headers`` adds a service's own credential headers.

        See :func:`msfw_redis._cache_keys.request_key` for the arguments.
        """
        return request_key(
            service=service,
            method=method,
            path=path,
            params=params,
            vary=vary,
            headers=headers,
            vary_headers=vary_headers,
            secret=self._secret,
            function=function,
            credential_headers=self._credential_headers + tuple(extra_credential_headers),
            credential_params=self._credential_params,
        )

    def variant_key(
        self,
        key: CacheKey,
        names: Iterable[str],
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        extra_credential_headers: Iterable[str] = (),
    ) -> CacheKey:
        """The key of one ``Vary`` variant of ``key`` (see :func:`~._cache.keys.variant_key`).

        ``extra_credential_headers``: the service's own, as given to :meth:`request_key`,
        so a credential named in ``Vary`` stays keyed by its HMAC alone.
        """
        return variant_key(
            key,
            names,
            headers,
            credential_headers=self._credential_headers + tuple(extra_credential_headers),
        )

    @staticmethod
    def custom_key(*, service: str, key: str, function: str) -> CacheKey:
        """The key for a ``key_func`` string (see :func:`msfw_redis._cache_keys.custom_key`)."""
        return custom_key(service=service, key=key, function=function)

    def entry_key(self, key: CacheKey) -> str:
        """The Redis key of ``key``'s entry hash (for tests and operators)."""
        return self._redis.entry_key(key)

    def generation_key(self, service: str) -> str:
        """The Redis key of ``service``'s generation hash."""
        return self._redis.generation_key(service)

    # -- the call path ------------------------------------------------------------------

    async def get_or_fetch(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[T]],
        *,
        codec: CacheCodec[T],
        policy: CachePolicy,
        force_refresh: bool = False,
        is_error: Callable[[T], bool] | None = None,
        storage: Callable[[T], Storage] | None = None,
        revalidate: Callable[[T], Awaitable[T]] | None = None,
        near: bool = False,
    ) -> CacheResult[T]:
        """The value for ``key``: from the cache, from another caller's fill, or ``fetch()``.

        Args:
            key: the entry's key (from :meth:`request_key` or :meth:`custom_key`).
            fetch: calls the origin; called at most once by this call.
            codec: turns values into entry bodies and back.
            policy: ttl, stale window, lease and wait bounds, size limit, errors.
            force_refresh: skip the entry, call the origin and store the answer; a
                usable entry is still served if the origin fails.
            is_error: marks values that are errors (stored only under
                ``cache_on_error``, for ``error_ttl``; a stale entry is preferred).
            storage: decides per value whether and how long it is stored (the HTTP
                path's RFC 9111 rules); replaces ``ttl`` and ``cache_on_error`` then.
            revalidate: called with the stale value instead of ``fetch`` when an
                entry is refreshed (a conditional request); returns the new value.
            near: serve hot fresh entries from this process's near cache (if the
                cache has one), with no Redis round trip.

        Exceptions from ``fetch`` propagate unless a stale entry stands in for them.
        A cached negative entry raises a new ``ServiceClientError``. Store errors never
        propagate: the call goes to the origin.
        """
        near_cache = self._near if near else None
        if force_refresh:
            hooks = Hooks(is_error, storage, revalidate)
            outcome = await self._resolve(key, fetch, codec, policy, hooks, None, force=True)
            return deliver(outcome, False, codec, self.stats)
        if near_cache is not None:
            hit = near_cache.get(key.service, key.digest)
            if hit is not None:
                try:
                    value = codec.decode(hit.body)
                except Exception as exc:  # same checks as a Redis hit: a miss, never a crash
                    logger.debug("near-cache copy of %s does not decode: %r", key.label, exc)
                    near_cache.discard(key.service, key.digest)
                else:
                    self.stats.near_hits += 1
                    count(self.stats, CacheOutcome.HIT)
                    return CacheResult(value=value, outcome=CacheOutcome.HIT, age=hit.age)
            await self._wakeups.subscribe(key.service)
        flight = (key.service, key.digest)
        peek = self._hot.get(flight)
        if peek is not None and peek.function == key.function and not self._flights.busy(flight):
            # The hit path for keys that were fresh last time: one 'peek' (never leases,
            # never waits), encoded when the key turned hot; no flight or waiter set up.
            # Anything else takes the full path. Inlined (no _lookup or _decode_or_drop
            # coroutine): each coroutine frame and call is a visible share of a hit,
            # whose goal is 1.2 x a bare round trip.
            epoch = near_cache.epoch(key.service) if near_cache is not None else 0
            first: Lookup | None
            try:
                first = await self._redis.peek(peek)
            except StoreError:
                first = None  # the full path meets the error again and bypasses
            else:
                self._store_ok()
                if first.flags:
                    self._note_flags(key, first.flags)
            if first is not None and first.state == "FRESH" and first.value:
                try:
                    body, value = _open(first.value, codec, unshared=near_cache is None)
                except Exception as exc:  # garbage bytes, another schema, a changed model
                    await self._drop_undecodable(key, first, exc)
                else:
                    if not isinstance(body, ErrorBody):  # negative entries: the full path
                        if near_cache is not None:
                            near_cache.put(key.service, key.digest, body, first, epoch)
                        self.stats.hits += 1
                        age = age_seconds(first.stored_at_ms, first.now_ms)
                        return CacheResult(value, CacheOutcome.HIT, age=age)
            self._hot.pop(flight, None)
        hooks = Hooks(is_error, storage, revalidate)
        outcome, follower = await self._flights.run(
            flight, lambda: self._resolve(key, fetch, codec, policy, hooks, near_cache)
        )
        if outcome.kind is CacheOutcome.HIT:
            self._remember_hot(flight, key)
        return deliver(outcome, follower, codec, self.stats)

    def _remember_hot(self, flight: tuple[str, str], key: CacheKey) -> None:
        self._hot[flight] = self._redis.peek_request(key)
        self._hot.move_to_end(flight)
        if len(self._hot) > _HOT_KEYS:
            self._hot.popitem(last=False)

    async def _resolve(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[Any]],
        codec: CacheCodec[Any],
        policy: CachePolicy,
        hooks: Hooks,
        near: NearCache | None,
        *,
        force: bool = False,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.wait_timeout
        waited = False
        retried_corrupt = False
        poll = POLL_INITIAL
        waiter: asyncio.Future[str] | None = None
        try:
            while True:
                if not force:
                    # Armed before the lookup: a wake-up may arrive before its reply.
                    waiter = self._wakeups.arm(key.service, key.digest)
                epoch = near.epoch(key.service) if near is not None else 0
                try:
                    lookup = await self._lookup(key, "force" if force else "get", policy)
                except StoreError as exc:
                    self._store_failed(exc)
                    return await self._origin_only(fetch, CacheOutcome.BYPASS)
                served = await self._decode_or_drop(key, lookup, codec)
                if lookup.value and served is None and not lookup.token:
                    # It did not decode and was dropped: look once more, then give up.
                    if retried_corrupt:
                        return await self._origin_only(fetch, CacheOutcome.MISS)
                    retried_corrupt = True
                    continue
                if lookup.token:
                    if (
                        served is not None
                        and not served.fresh
                        and not force
                        and policy.stale_while_revalidate
                        and served.may_serve_stale
                        and not isinstance(served.body, ErrorBody)
                    ):
                        self._background.refresh(
                            functools.partial(
                                self._filler.fetch_and_fill,
                                key, fetch, codec, policy, hooks, lookup.token, served,
                            ),
                            key.label,
                        )  # fmt: skip
                        return stale_outcome(served, StaleReason.REVALIDATING, None)
                    return await self._filler.fetch_and_fill(
                        key, fetch, codec, policy, hooks, lookup.token, served
                    )
                if served is not None:
                    if served.fresh and near is not None and not isinstance(served.body, ErrorBody):
                        near.put(key.service, key.digest, served.body, lookup, epoch)
                    if waited and (served.fresh or served.may_serve_stale):
                        return served_outcome(served, CacheOutcome.COALESCED)
                    if served.fresh:
                        return served_outcome(served, CacheOutcome.HIT)
                    if not served.may_serve_stale:
                        # Another replica holds the refresh lease and this entry must not be
                        # served unchecked: check it ourselves (conditionally when we can).
                        ask = fetch
                        if hooks.revalidate is not None:
                            ask = functools.partial(hooks.revalidate, served.value)
                        return await self._origin_only(ask, CacheOutcome.MISS)
                    return stale_outcome(served, StaleReason.REVALIDATING, None)
                if lookup.state != "WAIT" or waiter is None:
                    # 'get' never answers MISS without a lease; be safe all the same.
                    return await self._origin_only(fetch, CacheOutcome.MISS)
                waited = True
                wake = await self._wakeups.wait(
                    key.service,
                    waiter,
                    lease_left=lookup.wait_ms / 1000.0,
                    deadline=deadline,
                    poll=poll,
                )
                poll = min(poll * 2.0, POLL_MAX)
                if wake == WAKE_SKIP:
                    return await self._origin_only(fetch, CacheOutcome.MISS)
                if wake == WAKE_DEADLINE:
                    self.stats.wait_timeouts += 1
                    logger.debug("gave up waiting for the fill of %s", key.label)
                    return await self._origin_only(fetch, CacheOutcome.MISS)
        finally:
            self._wakeups.disarm(key.service, key.digest, waiter)

    async def _lookup(self, key: CacheKey, mode: str, policy: CachePolicy | None) -> Lookup:
        # Unique per call without a syscall: a random per-cache prefix and a counter.
        token = f"{self._token_prefix}{next(self._tokens)}" if mode != "peek" else ""
        lease_ms = seconds_to_ms(policy.lease_timeout) if policy is not None else 1
        lookup = await self._redis.lookup(key, mode, token, lease_ms=lease_ms)
        self._store_ok()
        if lookup.flags:
            self._note_flags(key, lookup.flags)
        return lookup

    def _note_flags(self, key: CacheKey, flags: int) -> None:
        if flags & LOOKUP_TAKEOVER:
            self.stats.lease_expiries += 1
            logger.info("took over an expired fill lease for %s", key.label)
        if flags & LOOKUP_MALFORMED:
            self.stats.corrupt_entries += 1
            logger.warning("deleted a malformed cache entry for %s", key.label)

    async def _decode_or_drop(
        self, key: CacheKey, lookup: Lookup, codec: CacheCodec[Any]
    ) -> Served | None:
        """The usable entry decoded, or None after deleting one that does not decode."""
        if not lookup.value:
            return None
        try:
            body, value = _open(lookup.value, codec, unshared=False)
        except Exception as exc:  # garbage bytes, another schema, a changed model
            await self._drop_undecodable(key, lookup, exc)
            return None
        now = lookup.now_ms
        return Served(
            value,
            body,
            lookup.stored_at_ms,
            now < lookup.fresh_until_ms,
            age_seconds(lookup.stored_at_ms, now),
        )

    async def _drop_undecodable(self, key: CacheKey, lookup: Lookup, exc: Exception) -> None:
        """Count and delete an entry that does not decode (if it is still the current one)."""
        self.stats.corrupt_entries += 1
        logger.warning("cache entry for %s does not decode (%s); deleting it", key.label, exc)
        try:
            await self._redis.drop(key, lookup.stored_at_ms)
        except StoreError as store_exc:
            self._store_failed(store_exc)

    async def _origin_only(
        self, fetch: Callable[[], Awaitable[Any]], kind: CacheOutcome
    ) -> Outcome:
        """Call the origin without touching the cache."""
        self.stats.origin_calls += 1
        try:
            value = await fetch()
        except Exception as exc:
            self.stats.origin_errors += 1
            return Outcome(kind, error=exc)
        return Outcome(kind, result=CacheResult(value=value, outcome=kind))

    async def prepare(self, service: str) -> None:
        """Subscribe to ``service``'s cache wake-ups now rather than at the first wait."""
        service = canonical_service_name(service)
        await self._wakeups.subscribe(service)

    # -- breaker-open fallback, clearing, lifecycle --------------------------------------

    async def peek(
        self,
        key: CacheKey,
        *,
        codec: CacheCodec[T],
        reason: StaleReason = StaleReason.BREAKER_OPEN,
    ) -> CacheResult[T] | None:
        """A usable entry (fresh or stale) without leasing or waiting, else ``None``.

        For when the SDK knows the origin cannot be called (its breaker is OPEN): a
        stale result carries ``reason``. Negative entries, decode failures and store
        errors give ``None``.
        """
        try:
            lookup = await self._lookup(key, "peek", None)
        except StoreError as exc:
            self._store_failed(exc)
            return None
        served = await self._decode_or_drop(key, lookup, codec)
        if served is None or isinstance(served.body, ErrorBody):
            return None
        if not served.fresh and not served.may_serve_stale:
            return None
        if served.fresh:
            outcome = served_outcome(served, CacheOutcome.HIT)
        else:
            outcome = stale_outcome(served, reason, None)
        return deliver(outcome, False, codec, self.stats)

    async def clear(self, key: CacheKey) -> bool:
        """Delete one entry and void any fill in flight for it; True if one existed.

        Raises :class:`~msfw_redis.StoreError` when Redis is unavailable.
        """
        return await self._redis.clear(key)

    async def clear_function(self, service: str, function: str) -> int:
        """Invalidate every entry of ``function`` in ``service`` in O(1); the new generation.

        Raises :class:`~msfw_redis.StoreError` when Redis is unavailable.
        """
        return await self._redis.invalidate(service, function_field(function))

    async def clear_service(self, service: str) -> int:
        """Invalidate every entry of ``service`` in O(1); returns the new generation.

        Raises :class:`~msfw_redis.StoreError` when Redis is unavailable.
        """
        return await self._redis.invalidate(service, "_")

    async def drain(self) -> None:
        """Wait until the background refreshes started so far have finished."""
        await self._background.drain()

    def metrics(self) -> dict[str, int]:
        """The counters of :attr:`stats` by name."""
        return self.stats.as_dict()

    def rebind(self) -> None:
        """Forget the tasks, flights and wake-up waiters of a previous (closed) event
        loop; entries, the near cache and the stats stay."""
        self._background.forget()
        self._flights.rebind()
        self._wakeups.rebind()

    async def aclose(self) -> None:
        """Cancel background refreshes and subscriptions (their leases then lapse)."""
        await self._background.aclose()
        await self._wakeups.aclose()

    # -- store health -------------------------------------------------------------------

    def _store_failed(self, exc: StoreError) -> None:
        self.stats.store_errors += 1
        # Invalidations cannot be trusted to arrive now: no near copies until Redis is back.
        self._near.suspend()
        if not self._degraded:
            self._degraded = True
            logger.warning("response cache bypassed, calls go to the origin: %s", exc)

    def _store_ok(self) -> None:
        self._near.resume()
        if self._degraded:
            self._degraded = False
            logger.info("response cache in use again")
