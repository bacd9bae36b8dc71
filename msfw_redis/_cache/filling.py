"""The fill side of the shared cache: calling the origin under a lease and storing.

:class:`Filler` is what a lease holder runs: it calls the origin (or revalidates a
stale entry), applies the storage rules, encodes the envelope within its size limit
and stores it with ``cache_fill`` (fenced by the lease token), or releases the lease
with ``cache_release`` when nothing will be stored. A usable stale entry stands in
for an origin failure. The value types shared with :mod:`msfw_redis._cache.cache`
(:class:`Served`, :class:`Outcome`, :class:`Hooks`) live here too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from msfw_redis._cache.entry import (
    CacheCodec,
    DataBody,
    EntryTooLargeError,
    ErrorBody,
    ResponseBody,
    encode_envelope,
)
from msfw_redis._cache.policy import (
    CacheOutcome,
    CachePolicy,
    CacheResult,
    CacheStats,
    StaleReason,
    is_negative_cacheable,
    stale_reason_for,
)
from msfw_redis._cache.store import CacheStore, seconds_to_ms
from msfw_redis._exceptions import ServiceClientError, StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from msfw_redis._cache.keys import CacheKey
    from msfw_redis._cache.rules import Storage

__all__ = [
    "Filler",
    "Hooks",
    "Outcome",
    "Served",
    "count",
    "deliver",
    "served_outcome",
    "stale_outcome",
]

T = TypeVar("T")

logger = logging.getLogger("msfw_redis.cache")


class Served(NamedTuple):
    """A usable entry, decoded: a value, or a negative entry's error.

    A named tuple because one is built per hit (see :class:`~msfw_redis._cache.store.Lookup`).
    """

    value: Any
    body: DataBody | ResponseBody | ErrorBody
    stored_at_ms: int
    fresh: bool
    age: float

    @property
    def may_serve_stale(self) -> bool:
        """False for an entry that must be revalidated before use (no-cache, max-age=0)."""
        return not (isinstance(self.body, ResponseBody) and self.body.revalidate)


@dataclass(frozen=True, slots=True)
class Hooks:
    """Per-call callables: which values are errors, storage rules, revalidation."""

    is_error: Callable[[Any], bool] | None
    storage: Callable[[Any], Storage] | None
    revalidate: Callable[[Any], Awaitable[Any]] | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a resolution produced, for its caller and for coalesced followers."""

    kind: CacheOutcome
    result: CacheResult[Any] | None = None
    error: BaseException | None = None
    body: DataBody | ResponseBody | ErrorBody | None = None


def served_outcome(served: Served, kind: CacheOutcome) -> Outcome:
    """A hit (or a negative entry) as an outcome."""
    if isinstance(served.body, ErrorBody):
        return Outcome(kind, body=served.body)
    result: CacheResult[Any] = CacheResult(value=served.value, outcome=kind, age=served.age)
    return Outcome(kind, result=result, body=served.body)


def stale_outcome(served: Served, reason: StaleReason, error: BaseException | None) -> Outcome:
    """A stale entry served for ``reason`` as an outcome."""
    result: CacheResult[Any] = CacheResult(
        value=served.value,
        outcome=CacheOutcome.STALE,
        stale_reason=reason,
        error=error,
        age=served.age,
    )
    return Outcome(CacheOutcome.STALE, result=result, body=served.body)


def deliver(
    outcome: Outcome, follower: bool, codec: CacheCodec[T], stats: CacheStats
) -> CacheResult[T]:
    """Count the call and hand back its result (or raise its error)."""
    kind = outcome.kind
    if follower and kind in (CacheOutcome.MISS, CacheOutcome.BYPASS):
        kind = CacheOutcome.COALESCED
    count(stats, kind)
    body = outcome.body
    if isinstance(body, ErrorBody) and outcome.error is None:
        raise body.to_error()
    if outcome.error is not None:
        raise outcome.error
    result = outcome.result
    if result is None:  # pragma: no cover - every outcome without error has a result
        raise RuntimeError("cache resolution produced neither a result nor an error")
    if not follower:
        return result
    value = result.value
    if isinstance(body, (DataBody, ResponseBody)):
        # A follower gets its own copy, so one caller's mutation is not another's.
        try:
            value = codec.decode(body)
        except Exception as exc:  # the leader decoded it; fall back to its value
            logger.debug("re-decoding a coalesced value failed: %r", exc)
    return CacheResult(
        value=value,
        outcome=kind,
        stale_reason=result.stale_reason,
        error=result.error,
        age=result.age,
    )


def count(stats: CacheStats, kind: CacheOutcome) -> None:
    """Count one call in its outcome's counter."""
    if kind is CacheOutcome.HIT:
        stats.hits += 1
    elif kind is CacheOutcome.STALE:
        stats.stale_served += 1
    elif kind is CacheOutcome.MISS:
        stats.misses += 1
    elif kind is CacheOutcome.COALESCED:
        stats.coalesced_waiters += 1
    else:
        stats.bypasses += 1


class Filler:
    """Runs the origin call of a lease holder and stores (or releases) the result.

    Args:
        redis: the cache's script calls.
        stats: the cache's counters.
        on_error: called with a store error (the cache's outage bookkeeping).
        on_ok: called after a store operation succeeded.
        spawn: runs a coroutine in the background (a cancelled caller's release).
    """

    def __init__(
        self,
        redis: CacheStore,
        stats: CacheStats,
        on_error: Callable[[StoreError], None],
        on_ok: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._redis = redis
        self.stats = stats
        self._on_error = on_error
        self._on_ok = on_ok
        self._spawn = spawn

    async def fetch_and_fill(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[Any]],
        codec: CacheCodec[Any],
        policy: CachePolicy,
        hooks: Hooks,
        token: str,
        served: Served | None,
    ) -> Outcome:
        """Call the origin under a lease, then fill or release the lease."""
        known = served if served is not None and not isinstance(served.body, ErrorBody) else None
        usable = known if known is not None and known.may_serve_stale else None
        is_error = hooks.is_error
        self.stats.origin_calls += 1
        try:
            if known is not None and hooks.revalidate is not None:
                value = await hooks.revalidate(known.value)
            else:
                value = await fetch()
        except asyncio.CancelledError:
            # The caller gave up: free the lease now so others need not wait it out.
            self._spawn(self.release(key, token))
            raise
        except Exception as exc:
            self.stats.origin_errors += 1
            reason = stale_reason_for(exc)
            if usable is not None and reason is not None:
                await self.release(key, token)
                return stale_outcome(usable, reason, exc)
            if (
                policy.cache_on_error
                and isinstance(exc, ServiceClientError)
                and is_negative_cacheable(exc)
            ):
                error_body = ErrorBody.from_error(exc)
                if await self._fill(key, token, error_body, policy.error_ttl, 0.0, policy):
                    self.stats.errors_cached += 1
                return Outcome(CacheOutcome.MISS, error=exc)
            await self.release(key, token)
            return Outcome(CacheOutcome.MISS, error=exc)
        try:
            failed = is_error is not None and is_error(value)
            if failed:
                self.stats.origin_errors += 1
                if usable is not None:
                    await self.release(key, token)
                    return stale_outcome(usable, StaleReason.ORIGIN_ERROR, None)
            stored = False
            body: DataBody | ResponseBody | None = None
            if hooks.storage is not None:
                stored, body = await self._fill_by_rule(
                    key, codec, policy, hooks.storage, token, value
                )
                result = CacheResult(value=value, outcome=CacheOutcome.MISS, stored=stored)
                return Outcome(CacheOutcome.MISS, result=result, body=body)
            if not failed or policy.cache_on_error:
                body = self._encode(key, codec, value)
            if body is None:
                await self.release(key, token)
            elif failed:
                stored = await self._fill(key, token, body, policy.error_ttl, 0.0, policy)
                self.stats.errors_cached += int(stored)
            else:
                stored = await self._fill(key, token, body, policy.ttl, policy.max_stale, policy)
        except BaseException:
            await self.release(key, token)
            raise
        result = CacheResult(value=value, outcome=CacheOutcome.MISS, stored=stored)
        return Outcome(CacheOutcome.MISS, result=result, body=body)

    async def _fill_by_rule(
        self,
        key: CacheKey,
        codec: CacheCodec[Any],
        policy: CachePolicy,
        storage: Callable[[Any], Storage],
        token: str,
        value: Any,
    ) -> tuple[bool, DataBody | ResponseBody | None]:
        """Store ``value`` as the RFC 9111 rules say; (stored, body)."""
        rule = storage(value)
        body = self._encode(key, codec, value) if rule.store else None
        if body is None:
            if not rule.store:
                self.stats.uncacheable_skips += 1
            await self.release(key, token)
            return False, None
        if (rule.ttl <= 0 or not rule.serve_stale) and isinstance(body, ResponseBody):
            body = dataclasses.replace(body, revalidate=True)
        if rule.negative:
            max_stale = 0.0  # a negative entry is never served past its short life
        elif rule.ttl <= 0:
            # Kept only to be revalidated: as long as a good entry would be usable.
            max_stale = max(policy.ttl, policy.max_stale)
        else:
            max_stale = policy.max_stale
        stored = await self._fill(key, token, body, rule.ttl, max_stale, policy)
        if stored and rule.negative:
            self.stats.errors_cached += 1
        return stored, body

    def _encode(
        self, key: CacheKey, codec: CacheCodec[Any], value: Any
    ) -> DataBody | ResponseBody | None:
        try:
            body = codec.encode(value)
        except Exception as exc:  # a codec bug must not fail the call it caches
            self.stats.encode_failures += 1
            logger.warning("cannot encode the value for %s, not caching it: %r", key.label, exc)
            return None
        if body is None:
            self.stats.uncacheable_skips += 1
        return body

    async def _fill(
        self,
        key: CacheKey,
        token: str,
        body: DataBody | ResponseBody | ErrorBody,
        ttl: float,
        max_stale: float,
        policy: CachePolicy,
    ) -> bool:
        """Store ``body`` under the lease ``token``; False (lease released) if not stored."""
        try:
            blob = encode_envelope(body, max_bytes=policy.max_entry_bytes)
        except EntryTooLargeError as exc:
            self.stats.oversize_skips += 1
            logger.debug("not caching %s: %s", key.label, exc)
            await self.release(key, token)
            return False
        except (TypeError, ValueError) as exc:
            self.stats.encode_failures += 1
            logger.warning("cannot pack the value for %s, not caching it: %r", key.label, exc)
            await self.release(key, token)
            return False
        try:
            result = await self._redis.fill(
                key,
                token,
                blob,
                fresh_ms=0 if ttl <= 0 else seconds_to_ms(ttl),
                stale_ms=max(0, round(max_stale * 1000.0)),
                announce=True,
            )
        except StoreError as exc:
            self._on_error(exc)
            return False
        self._on_ok()
        if result == 1:
            self.stats.fills += 1
            return True
        self.stats.fill_rejections += 1
        logger.debug("fill of %s refused (lease lost or generation changed)", key.label)
        return False

    async def release(self, key: CacheKey, token: str) -> None:
        try:
            await self._redis.release(key, token)
        except StoreError as exc:
            # The lease then lapses on its own after lease_timeout.
            self._on_error(exc)
