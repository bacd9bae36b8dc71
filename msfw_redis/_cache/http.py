"""The HTTP side of the shared cache: RFC 9111 rules, ``Vary`` variants, revalidation.

:class:`HttpCache` runs one cacheable request (GET or HEAD) through
:class:`~msfw_redis._cache.cache.ResponseCache`:

* **Storage** follows :func:`msfw_redis._cache.rules.storage_decision` (statuses,
  ``Cache-Control``, ``Set-Cookie``, ``Vary: *``, negative and error TTLs).
* **Vary.** A response stored with ``Vary`` records the request's values of the headers
  it names. It is served only to a request with the same values; any other request is
  sent to that variant's own key (:func:`~msfw_redis._cache.keys.variant_key`), which
  has its own single-flight lease. The names are learnt per key in this process at the
  first mismatch (bounded memo), so later calls go to their variant in one round trip.
* **Revalidation.** A stale entry with an ``ETag`` or ``Last-Modified`` is refreshed
  under the cache's single refresh lease with ``If-None-Match`` / ``If-Modified-Since``.
  A ``304`` turns into the stored response with the 304's headers merged in, which is
  stored again: every replica then serves the renewed entry, and the body is not
  fetched again.
* **Age.** A response served from the cache carries an ``Age`` header (seconds,
  server time).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from msfw_redis._cache.entry import VARY_EXTENSION, HttpResponseCodec, request_vary_values
from msfw_redis._cache.rules import Storage, storage_decision

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._cache.cache import ResponseCache
    from msfw_redis._cache.keys import CacheKey
    from msfw_redis._cache.policy import CachePolicy, CacheResult

__all__ = ["HttpCache", "HttpCacheSettings", "HttpServed"]

_VARY_MEMO_MAX = 4096
# Headers of a 304 that must not replace the stored response's (RFC 9111 4.3.4 keeps
# the stored body, so its framing headers stay).
_NOT_MERGED = frozenset({"content-length", "content-encoding", "transfer-encoding", "age"})


@dataclass(frozen=True, slots=True)
class HttpCacheSettings:
    """How the HTTP cache stores answers (float seconds).

    Attributes:
        negative_ttl: freshness of a 404 or 410.
        error_ttl: freshness of an error stored under ``cache_on_error``.
        cache_on_error: store error answers (never 401, 403, 407).
        near: serve hot entries from the process's near cache.
    """

    negative_ttl: float = 5.0
    error_ttl: float = 5.0
    cache_on_error: bool = False
    near: bool = False


@dataclass(frozen=True, slots=True)
class HttpServed:
    """What the HTTP cache handed back: the response and how it was obtained."""

    response: httpx.Response
    from_cache: bool
    stale: bool
    outcome: str = "miss"


def _vary_matches(response: httpx.Response, request: httpx.Request) -> bool:
    stored = response.extensions.get(VARY_EXTENSION) or ()
    if not stored:
        return True
    names = [name for name, _ in stored]
    return tuple(stored) == request_vary_values(names, request)


def conditional(request: httpx.Request, stale: httpx.Response) -> httpx.Request | None:
    """A copy of ``request`` asking only for a change of ``stale``, or None without validators."""
    etag = stale.headers.get("etag")
    modified = stale.headers.get("last-modified")
    if etag is None and modified is None:
        return None
    headers = httpx.Headers(request.headers)
    if etag is not None:
        headers["if-none-match"] = etag
    if modified is not None:
        headers["if-modified-since"] = modified
    return httpx.Request(
        request.method, request.url, headers=headers, extensions=request.extensions
    )


def merge_not_modified(stale: httpx.Response, answer: httpx.Response) -> httpx.Response:
    """The stored response renewed by a 304: its body, the 304's headers updated."""
    headers = httpx.Headers(stale.headers)
    for name in {n.lower() for n in answer.headers}:
        if name not in _NOT_MERGED:
            headers[name] = ",".join(answer.headers.get_list(name))
    return httpx.Response(
        stale.status_code, headers=headers, content=stale.content, request=answer.request
    )


class HttpCache:
    """Runs cacheable requests through a :class:`ResponseCache` (see the module docstring)."""

    _codec = HttpResponseCodec()

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache
        self._vary: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()

    def _rule(
        self, policy: CachePolicy, settings: HttpCacheSettings
    ) -> Callable[[httpx.Response], Storage]:
        def decide(response: httpx.Response) -> Storage:
            headers = response.headers
            return storage_decision(
                response.status_code,
                cache_control=headers.get_list("cache-control"),
                vary=headers.get_list("vary"),
                set_cookie="set-cookie" in headers,
                has_validator="etag" in headers or "last-modified" in headers,
                retry_after=headers.get("retry-after"),
                ttl=policy.ttl,
                negative_ttl=settings.negative_ttl,
                error_ttl=settings.error_ttl,
                cache_on_error=settings.cache_on_error,
            )

        return decide

    async def _run(
        self,
        key: CacheKey,
        request: httpx.Request,
        send: Callable[[httpx.Request], Awaitable[httpx.Response]],
        policy: CachePolicy,
        settings: HttpCacheSettings,
        force_refresh: bool,
    ) -> CacheResult[httpx.Response]:
        stats = self._cache.stats

        async def revalidate(stale: httpx.Response) -> httpx.Response:
            asked = conditional(request, stale)
            if asked is None:
                return await send(request)
            stats.revalidations += 1
            answer = await send(asked)
            if answer.status_code != 304:
                return answer
            stats.not_modified += 1
            return merge_not_modified(stale, answer)

        decide = self._rule(policy, settings)

        return await self._cache.get_or_fetch(
            key,
            lambda: send(request),
            codec=self._codec,
            policy=policy,
            force_refresh=force_refresh,
            is_error=lambda r: r.status_code >= 500,
            storage=decide,
            revalidate=revalidate,
            near=settings.near,
        )

    def _learn(self, key: CacheKey, names: tuple[str, ...]) -> None:
        memo = (key.service, key.digest)
        self._vary[memo] = names
        self._vary.move_to_end(memo)
        while len(self._vary) > _VARY_MEMO_MAX:
            self._vary.popitem(last=False)

    async def serve(
        self,
        key: CacheKey,
        request: httpx.Request,
        send: Callable[[httpx.Request], Awaitable[httpx.Response]],
        policy: CachePolicy,
        settings: HttpCacheSettings,
        *,
        force_refresh: bool = False,
        extra_credential_headers: tuple[str, ...] = (),
    ) -> HttpServed:
        """The response for ``request``, from the cache or from ``send``.

        ``extra_credential_headers``: the service's own, as ``key`` was made with.
        """
        names = self._vary.get((key.service, key.digest))
        base = key
        extra = extra_credential_headers
        if names:
            key = self._cache.variant_key(base, names, request.headers, extra)
        result = await self._run(key, request, send, policy, settings, force_refresh)
        if result.from_cache and not _vary_matches(result.value, request):
            stored = [n for n, _ in result.value.extensions.get(VARY_EXTENSION) or ()]
            if key is base:
                # The base entry is another variant: this request has its own key.
                self._learn(base, tuple(stored))
                key = self._cache.variant_key(base, stored, request.headers, extra)
                result = await self._run(key, request, send, policy, settings, force_refresh)
            if result.from_cache and not _vary_matches(result.value, request):
                # The origin changed what it varies on; answer from the origin itself.
                self._learn(base, tuple(stored))
                response = await send(request)
                return HttpServed(response, False, False, "miss")
        response = result.value
        if result.from_cache:
            response.headers["age"] = str(int(result.age or 0.0))
            response.request = request
        return HttpServed(response, result.from_cache, result.stale, str(result.outcome))
