"""The steps of a call, each an ``httpx.AsyncBaseTransport`` wrapping the next.

As in hishel, a step holds ``next_transport`` and the collaborators it needs, given when
it is built (see :mod:`msfw_redis._pipeline.pipeline` for the order). What one call
carries from step to step lives in a :class:`CallContext` in the request's extensions
under :data:`CALL_KEY`; steps never reach into the SDK or into one another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from msfw_redis._cache.cache import HttpResponseCodec
from msfw_redis._cache.http import HttpCache, HttpCacheSettings
from msfw_redis._deadline import bounded
from msfw_redis._exceptions import CircuitOpenError
from msfw_redis._pipeline.body import read_decoded
from msfw_redis._pipeline.observe import AttemptRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from msfw_redis._breaker.hub import BreakerHub
    from msfw_redis._cache.cache import CacheKey, ResponseCache
    from msfw_redis._cache.policy import CachePolicy
    from msfw_redis._limits.plan import MethodLimits
    from msfw_redis._pipeline.observe import CallObserver, CallRecord
    from msfw_redis._pipeline.policy import CallPolicy
    from msfw_redis._pipeline.request import Middleware
    from msfw_redis._registry.balancing import LoadBalancer
    from msfw_redis._registry.instance import ServiceInstance

    Resolved = tuple[str, str | None, ServiceInstance | None]
    Resolver = Callable[[str, str | None], Awaitable[Resolved]]

__all__ = [
    "CALL_KEY",
    "AttemptTimeoutStep",
    "BreakerStep",
    "CacheStep",
    "CallContext",
    "CallMetrics",
    "FunctionCache",
    "InstanceStep",
    "MiddlewareStep",
    "Observers",
    "SendStep",
    "notify",
]

logger = logging.getLogger("msfw_redis.pipeline")

#: The request extension holding the call's :class:`CallContext`.
CALL_KEY = "msfw_redis.call"


class CallMetrics(Counter[str]):
    """In-process counters; writes are dropped when metrics are disabled."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def __setitem__(self, key: str, value: int) -> None:
        if self.enabled:
            super().__setitem__(key, value)


class Observers:
    """The SDK's observers; steps read :attr:`items` (a tuple, so one truth test)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: tuple[CallObserver, ...] = ()

    def add(self, observer: CallObserver) -> None:
        if observer not in self.items:
            self.items = (*self.items, observer)

    def remove(self, observer: CallObserver) -> None:
        self.items = tuple(o for o in self.items if o is not observer)


def notify(observers: Sequence[CallObserver], hook: str, *args: Any) -> None:
    """Call ``hook`` on every observer; one that raises is logged and ignored."""
    for observer in observers:
        try:
            getattr(observer, hook)(*args)
        except Exception:
            logger.exception("call observer %r raised in %s; ignored", observer, hook)


@dataclass(frozen=True, slots=True)
class FunctionCache:
    """A ``@cached_service_call`` entry for this call, keyed after middleware ran.

    ``key`` gets the outgoing headers (credentials included) and returns the entry's
    key, or ``None`` when the response must not be shared.
    """

    key: Callable[[httpx.Headers], CacheKey | None]
    policy: CachePolicy
    near: bool = False


@dataclass(slots=True)
class CallContext:
    """What one call carries from step to step."""

    service: str
    endpoint: str
    template: str
    policy: CallPolicy
    version: str | None = None
    force_refresh: bool = False
    function_cache: FunctionCache | None = None
    method_limits: MethodLimits | None = None
    attempts: int = 0
    attempt_timeout: float = 0.0
    instance: str | None = None
    target: ServiceInstance | None = None
    from_cache: bool = False
    stale: bool = False
    cache: str | None = None  # the CacheOutcome's value when the cache step answered
    deadline_at: float | None = None
    record: CallRecord | None = None
    observers: tuple[CallObserver, ...] = ()
    #: (budget hash key, window s) the breaker's report counts this call's request into,
    #: set by the retry step and cleared by the breaker step once its permit carries it.
    budget_request: tuple[str, int] | None = None


def _context(request: httpx.Request) -> CallContext:
    ctx: CallContext = request.extensions[CALL_KEY]
    return ctx


class MiddlewareStep(httpx.AsyncBaseTransport):
    """Runs the ``@sdk.middleware`` chain, in registration order, around the rest."""

    def __init__(self, next_transport: httpx.AsyncBaseTransport, middlewares: list[Middleware]):
        self.next_transport = next_transport
        self._middlewares = middlewares  # the SDK's list: middleware added later count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._middlewares:
            return await self.next_transport.handle_async_request(request)
        ctx = _context(request)
        nxt = self.next_transport

        async def terminal(req: httpx.Request) -> httpx.Response:
            # A middleware may hand on a new request; the call's context goes with it.
            req.extensions.setdefault(CALL_KEY, ctx)
            return await nxt.handle_async_request(req)

        handler: Callable[[httpx.Request], Awaitable[httpx.Response]] = terminal
        for mw in reversed(self._middlewares):
            handler = _bind(mw, handler)
        return await handler(request)


def _bind(
    mw: Middleware, nxt: Callable[[httpx.Request], Awaitable[httpx.Response]]
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    async def run(request: httpx.Request) -> httpx.Response:
        return await mw(request, nxt)

    return run


def _server_error(response: httpx.Response) -> bool:
    return response.status_code >= 500


def _any_error(response: httpx.Response) -> bool:
    return response.status_code >= 400


class CacheStep(httpx.AsyncBaseTransport):
    """The shared cache: HTTP-level for cacheable GETs and ``@cached_service_call``.

    It sits after middleware, so the headers a middleware set (credentials above all)
    are in the key: a response is shared only between callers with the same
    credentials, and never when credentials are present without ``cache_key_secret``.
    """

    _codec = HttpResponseCodec()

    def __init__(
        self,
        next_transport: httpx.AsyncBaseTransport,
        cache: ResponseCache,
        http_settings: Callable[[str], tuple[HttpCacheSettings, tuple[str, ...]]] | None = None,
    ) -> None:
        self.next_transport = next_transport
        self._cache = cache
        # The HTTP path follows RFC 9111 (statuses, Cache-Control, Vary, revalidation).
        self._http = HttpCache(cache)
        self._http_settings = http_settings

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _context(request)
        nxt = self.next_transport
        function = ctx.function_cache
        policy = ctx.policy
        if function is not None:
            key = function.key(request.headers)
            cache_policy = function.policy
            is_error = _any_error
        elif policy.cache_policy is not None and request.method in ("GET", "HEAD"):
            settings, extra = (
                self._http_settings(ctx.service)
                if self._http_settings is not None
                else (HttpCacheSettings(), ())
            )
            http_key = self._cache.request_key(
                service=ctx.service,
                method=request.method,
                path=request.url.path,
                params=list(request.url.params.multi_items()),
                headers=request.headers,
                extra_credential_headers=extra,
            )
            if http_key is None:  # credentials without a secret: never shared
                return await nxt.handle_async_request(request)
            served = await self._http.serve(
                http_key,
                request,
                nxt.handle_async_request,
                policy.cache_policy,
                settings,
                force_refresh=ctx.force_refresh,
                extra_credential_headers=tuple(extra),
            )
            ctx.from_cache, ctx.stale = served.from_cache, served.stale
            ctx.cache = str(served.outcome)
            if ctx.record is not None:
                ctx.record.cache = ctx.cache
            return served.response
        else:
            return await nxt.handle_async_request(request)
        if key is None:  # credentials without a secret: never shared
            return await nxt.handle_async_request(request)
        result = await self._cache.get_or_fetch(
            key,
            lambda: nxt.handle_async_request(request),
            codec=self._codec,
            policy=cache_policy,
            force_refresh=ctx.force_refresh,
            is_error=is_error,
            near=function.near,
        )
        ctx.from_cache, ctx.stale = result.from_cache, result.stale
        ctx.cache = str(result.outcome)
        if ctx.record is not None:
            ctx.record.cache = ctx.cache
        response: httpx.Response = result.value
        return response


class InstanceStep(httpx.AsyncBaseTransport):
    """Instance choice: a retry may go to another instance; in-flight calls are counted.

    The first attempt goes where the request was built to go (the instance chosen when
    the call entered); with discovery on, each retry asks the registry again.
    """

    def __init__(
        self,
        next_transport: httpx.AsyncBaseTransport,
        *,
        resolve: Resolver | None,
        balancer: LoadBalancer | None,
    ) -> None:
        self.next_transport = next_transport
        self._resolve = resolve
        self._balancer = balancer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _context(request)
        if ctx.attempts > 1 and self._resolve is not None:
            await self._reroute(request, ctx, self._resolve)
        target = ctx.target
        if ctx.record is not None:
            ctx.record.instance = ctx.instance
        if target is None or self._balancer is None:
            return await self.next_transport.handle_async_request(request)
        with self._balancer.track(target):
            return await self.next_transport.handle_async_request(request)

    @staticmethod
    async def _reroute(request: httpx.Request, ctx: CallContext, resolve: Resolver) -> None:
        base_url, instance, ctx.target = await resolve(ctx.service, ctx.version)
        target = httpx.URL(base_url)
        if (target.scheme, target.host, target.port) != (
            request.url.scheme,
            request.url.host,
            request.url.port,
        ):
            request.url = request.url.copy_with(
                scheme=target.scheme, host=target.host, port=target.port
            )
            request.headers["host"] = request.url.netloc.decode("ascii")
            ctx.instance = instance


# Fleet limits (bulkhead, rate limiter, Retry-After gate) slot in here: after the
# instance is chosen (so they may be per instance) and before breaker admission. The
# step is msfw_redis._pipeline.limits.LimitsStep.


class BreakerStep(httpx.AsyncBaseTransport):
    """Breaker admission, then the outcome of the attempt reported to the breaker."""

    def __init__(
        self, next_transport: httpx.AsyncBaseTransport, *, hub: BreakerHub, metrics: CallMetrics
    ) -> None:
        self.next_transport = next_transport
        self._hub = hub
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _context(request)
        policy = ctx.policy
        if not policy.breaker_enabled:
            return await self.next_transport.handle_async_request(request)
        config = policy.breaker_config
        named = policy.breaker_endpoint
        if named is None:
            if config.scope == "instance":
                named = f"instance:{ctx.instance}"
            elif config.scope == "endpoint":
                named = ctx.template
        breaker = self._hub.get(ctx.service, named, config)
        try:
            permit = await breaker.acquire()
        except CircuitOpenError:
            self._metrics["breaker_rejections"] += 1
            if ctx.record is not None:
                ctx.record.breaker_state = breaker.state().state
            raise
        if ctx.record is not None:
            ctx.record.breaker_state = breaker.state().state
        if ctx.budget_request is not None:
            # The call's one request for the retry budget goes with this attempt's report.
            permit.count_request(*ctx.budget_request)
            ctx.budget_request = None
        try:
            response = await self.next_transport.handle_async_request(request)
        except asyncio.CancelledError:
            await asyncio.shield(permit.release())
            raise
        except BaseException as exc:
            await (permit.failure() if breaker.classify_exception(exc) else permit.success())
            raise
        failed = breaker.classify_status(response.status_code)
        await (permit.failure() if failed else permit.success())
        return response


class AttemptTimeoutStep(httpx.AsyncBaseTransport):
    """Bounds the send by the attempt's timeout; observers see each attempt here."""

    def __init__(self, next_transport: httpx.AsyncBaseTransport) -> None:
        self.next_transport = next_transport
        # httpx.Timeout(...).as_dict() per timeout value, built once: a call's policy has
        # one or two timeouts, so this stays tiny; each request gets its own copy.
        self._timeouts: dict[float, dict[str, float | None]] = {}

    def _timeout_extension(self, timeout: float) -> dict[str, float | None]:
        built = self._timeouts.get(timeout)
        if built is None:
            built = httpx.Timeout(timeout).as_dict()
            if len(self._timeouts) < 64:
                self._timeouts[timeout] = built
        return dict(built)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _context(request)
        timeout = ctx.attempt_timeout or ctx.policy.timeout
        request.extensions["timeout"] = self._timeout_extension(timeout)
        observers = ctx.observers
        call = ctx.record
        if not observers or call is None:
            return await bounded(self.next_transport.handle_async_request(request), timeout)
        call.attempts = ctx.attempts
        attempt = AttemptRecord(number=ctx.attempts, request=request, started=time.monotonic())
        notify(observers, "attempt_started", call, attempt)
        try:
            response = await bounded(self.next_transport.handle_async_request(request), timeout)
        except BaseException as exc:
            attempt.error = exc
            notify(observers, "attempt_ended", call, attempt)
            raise
        attempt.response = response
        notify(observers, "attempt_ended", call, attempt)
        return response


class SendStep(httpx.AsyncBaseTransport):
    """Sends the request and reads the body, at most ``max_response_bytes`` of it."""

    def __init__(
        self,
        send: Callable[[httpx.Request], Awaitable[httpx.Response]],
        *,
        max_response_bytes: int,
    ) -> None:
        self._send = send
        self._limit = max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _context(request)
        response = await self._send(request)
        original = response.headers
        # One pass over the raw headers: httpx's `in` and `get` each decode and scan the
        # whole list, and a miss raises (and catches) a KeyError.
        length: bytes | None = None
        coded = False
        for key, value in original.raw:
            name = key.lower()
            if name == b"content-length":
                length = value
            elif name == b"content-encoding" or name == b"transfer-encoding":
                coded = True
        if length is not None and not coded and length.isdigit() and int(length) <= self._limit:
            # Common case: an identity body of a declared size within the limit. The
            # HTTP framing stops the read at that size, so read it in place and hand
            # back this response: no second Response, no header filtering pass.
            # (A custom inner transport may not enforce the framing: read_decoded then
            # refuses an over-long body already in memory, as for any read response.)
            await response.aread()
            if len(response.content) > self._limit:
                await read_decoded(
                    response, self._limit, service=ctx.service, endpoint=request.url.path
                )
            return response
        try:
            # The limit bounds the DECODED body: body.py inflates within it (gzip bombs).
            content = await read_decoded(
                response, self._limit, service=ctx.service, endpoint=request.url.path
            )
        finally:
            await response.aclose()
        headers: httpx.Headers | list[tuple[str, str]]
        if not coded and (length is None or length == str(len(content)).encode()):
            # Common case: identity body whose length header (if any) is already right,
            # so the headers are reused as they are (no per-call filtering pass).
            headers = original
        else:
            headers = [
                (k, v)
                for k, v in original.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
        )
