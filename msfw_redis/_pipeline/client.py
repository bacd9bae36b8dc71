"""The call pipeline: middleware -> cache -> (retry -> breaker -> timeout -> httpx).

:class:`ServiceClient` makes calls to one service. Every call goes through the same
steps:

1. arguments are checked before any I/O (method, endpoint, JSON body);
2. the request is built against an instance of the service (registry or settings);
3. middleware run in registration order around everything that follows; a middleware
   may change the request or return a response of its own;
4. cacheable GETs go through the shared cache (one origin call per key fleet-wide);
5. the retry controller makes attempts; each attempt passes the breaker, may go to
   another instance, and is bounded by the attempt timeout and the total deadline;
6. httpx sends it; the body is read and decoded up to ``max_response_bytes``
   (``_pipeline/body.py``).

Failures after retries are handed once to the SDK's error handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json as jsonlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from msfw_redis._exceptions import (
    CircuitOpenError,
    InvalidRequestError,
    ServiceClientError,
    ServiceTimeoutError,
)
from msfw_redis._models import HTTPMethod
from msfw_redis._pipeline.body import read_decoded
from msfw_redis._pipeline.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from msfw_redis._breaker.hub import CircuitState, DistributedBreaker, Permit
    from msfw_redis._config import CircuitBreakerConfig
    from msfw_redis._registry.instance import ServiceInstance
    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = [
    "UNSET",
    "CallOutcome",
    "CallPolicy",
    "Middleware",
    "ServiceClient",
    "encode_body",
    "parse_body",
    "validate_endpoint",
    "validate_method",
]

logger = logging.getLogger("msfw_redis.client")

Middleware = Callable[
    [httpx.Request, Callable[[httpx.Request], Awaitable[httpx.Response]]],
    Awaitable[httpx.Response],
]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
_METHODS = frozenset(m.value for m in HTTPMethod)


def validate_method(method: str | HTTPMethod) -> str:
    """The upper-case method name, or InvalidRequestError for an unknown method."""
    name = method.value if isinstance(method, HTTPMethod) else str(method).upper()
    if name not in _METHODS:
        raise InvalidRequestError(
            f"unknown HTTP method {method!r}; expected one of {', '.join(sorted(_METHODS))}"
        )
    return name


def validate_endpoint(endpoint: str) -> str:
    """An endpoint path such as ``/orders/1?x=2``; absolute URLs and junk are refused."""
    if not isinstance(endpoint, str):
        raise InvalidRequestError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if endpoint and not endpoint.startswith("/"):
        raise InvalidRequestError(f"endpoint {endpoint!r} must start with '/'")
    if "://" in endpoint.split("?", 1)[0] or endpoint.startswith("//"):
        raise InvalidRequestError(f"endpoint {endpoint!r} must be a path, not a URL")
    bad = [ch for ch in endpoint if ch.isspace() or ord(ch) < 32 or ord(ch) == 127]
    if bad:
        raise InvalidRequestError(
            f"endpoint {endpoint!r} contains whitespace or control characters"
        )
    return endpoint


def encode_body(body: Any) -> tuple[bytes, str]:
    """JSON-encode a body (pydantic models included); InvalidRequestError if impossible."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    try:
        raw = jsonlib.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"request body is not JSON-serialisable: {exc}") from None
    return raw, "application/json"


def parse_body(response: httpx.Response) -> Any:
    """Parsed JSON when the body is JSON, else its text; ``None`` for an empty body."""
    content = response.content
    if not content:
        return None
    ctype = response.headers.get("content-type", "").lower()
    if "json" in ctype or not ctype:
        try:
            return jsonlib.loads(content)
        except ValueError:
            pass
    try:
        return response.text
    except (LookupError, UnicodeDecodeError):
        return content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Everything that decides how one call behaves, resolved from all config layers."""

    timeout: float
    retry: RetryPolicy
    breaker_enabled: bool
    breaker_config: CircuitBreakerConfig
    cache_enabled: bool
    cache_ttl: float
    headers: Mapping[str, str]
    base_path: str
    breaker_endpoint: str | None = None


@dataclass(slots=True)
class CallOutcome:
    """The end of a call: a response or an exception, with its bookkeeping."""

    response: httpx.Response | None
    exception: BaseException | None
    attempts: int
    elapsed: float
    instance: str | None
    endpoint: str
    from_cache: bool = False
    stale: bool = False

    @property
    def ok(self) -> bool:
        return (
            self.exception is None and self.response is not None and self.response.status_code < 400
        )


def _map_exception(exc: BaseException, service: str, endpoint: str) -> BaseException:
    """Library errors for transport failures; everything else passes through."""
    if isinstance(exc, ServiceClientError):
        return exc
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        err: ServiceClientError = ServiceTimeoutError(
            f"call to {service} {endpoint} timed out", service_name=service, endpoint=endpoint
        )
    elif isinstance(exc, httpx.TransportError):
        err = ServiceClientError(
            f"call to {service} {endpoint} failed: {type(exc).__name__}: {exc}",
            service_name=service,
            endpoint=endpoint,
        )
    else:
        return exc
    err.__cause__ = exc
    return err


def error_for_response(response: httpx.Response, service: str, endpoint: str) -> ServiceClientError:
    """The ServiceClientError for a response with status >= 400."""
    body = parse_body(response)
    detail = (
        body if isinstance(body, str) else jsonlib.dumps(body)[:200] if body is not None else ""
    )
    return ServiceClientError(
        f"{service} {endpoint} answered {response.status_code}"
        + (f": {detail[:200]}" if detail else ""),
        status_code=response.status_code,
        service_name=service,
        endpoint=endpoint,
        response_body=body,
    )


class ServiceClient:
    """Calls to one service through the resilience pipeline.

    Get one from :meth:`ServiceSDK.get_client` or ``async with sdk.service_client(name)``.
    The verbs take httpx-style arguments and return an ``httpx.Response`` for statuses
    below 400; they raise :class:`ServiceClientError` (``.status_code`` set) for the
    rest, :class:`ServiceTimeoutError` on timeouts and :class:`CircuitOpenError` when
    the breaker refuses.
    """

    def __init__(
        self,
        sdk: ServiceSDK,
        service_name: str,
        *,
        circuit_config: CircuitBreakerConfig | None = None,
        version: str | None = None,
    ) -> None:
        from msfw_redis._store.keys import validate_service_name

        self.sdk = sdk
        self.service_name = validate_service_name(service_name)
        self.circuit_config = circuit_config
        self.version = version
        self._endpoints_used: set[str | None] = set()

    # -- verbs -------------------------------------------------------------------------------

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``path``. Keyword arguments as for :meth:`request`."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST ``path`` (not retried unless safe; see the README)."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        """PUT ``path``."""
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        """PATCH ``path`` (not retried unless safe)."""
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """DELETE ``path``."""
        return await self.request("DELETE", path, **kwargs)

    async def head(self, path: str, **kwargs: Any) -> httpx.Response:
        """HEAD ``path``."""
        return await self.request("HEAD", path, **kwargs)

    async def options(self, path: str, **kwargs: Any) -> httpx.Response:
        """OPTIONS ``path``."""
        return await self.request("OPTIONS", path, **kwargs)

    async def request(self, method: str | HTTPMethod, path: str, **kwargs: Any) -> httpx.Response:
        """Make a call and return its response, raising for failures (see class docs).

        Keyword arguments: ``params``, ``json``, ``content``, ``headers``, ``timeout``
        (seconds per attempt), ``retry_attempts``, ``deadline`` (seconds for the whole
        call), ``retry_non_idempotent``, ``endpoint_template`` (breaker/cache name of
        the route), ``use_cache``, ``force_refresh`` and ``cache_ttl``.
        """
        outcome = await self.execute(method, path, **kwargs)
        if outcome.exception is not None:
            raise outcome.exception
        if outcome.response is None:  # pragma: no cover - execute always sets one
            raise ServiceClientError("no response", service_name=self.service_name, endpoint=path)
        if outcome.response.status_code >= 400:
            err = error_for_response(outcome.response, self.service_name, outcome.endpoint)
            err.attempts = outcome.attempts
            raise err
        return outcome.response

    # -- state -----------------------------------------------------------------------------------

    def get_circuit_state(self) -> dict[str, CircuitState]:
        """``{endpoint: CircuitState}`` for this service's breakers, from the local mirror.

        A service-wide breaker is listed under the service's name.
        """
        states: dict[str, CircuitState] = {}
        hub = self.sdk._hub
        for breaker in hub.breakers():
            if breaker.service == self.service_name:
                states[breaker.endpoint or self.service_name] = breaker.state()
        if not states:
            breaker = self._breaker(None, self._policy({}).breaker_config)
            states[self.service_name] = breaker.state()
        return states

    async def aclose(self) -> None:
        """Flush this service's batched breaker reports. The SDK owns the connection pool."""
        for breaker in self.sdk._hub.breakers():
            if breaker.service == self.service_name:
                await breaker.flush()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the pipeline -------------------------------------------------------------------------

    def _policy(self, overrides: Mapping[str, Any]) -> CallPolicy:
        return self.sdk._call_policy(self.service_name, self.circuit_config, overrides)

    def _breaker(
        self, template: str | None, config: CircuitBreakerConfig, named: str | None = None
    ) -> DistributedBreaker:
        endpoint = named if named is not None else template if config.scope == "endpoint" else None
        return self.sdk._hub.get(self.service_name, endpoint, config)

    async def execute(
        self,
        method: str | HTTPMethod,
        path: str,
        *,
        params: Any = None,
        json: Any = UNSET,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry_attempts: int | None = None,
        deadline: float | None = None,
        retry_non_idempotent: bool | None = None,
        endpoint_template: str | None = None,
        use_cache: bool | None = None,
        force_refresh: bool = False,
        cache_ttl: float | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker_endpoint: str | None = None,
    ) -> CallOutcome:
        """Run the pipeline; never raises for HTTP, network or breaker failures.

        ``retry_policy`` replaces the resolved attempts and back-off (the deadline
        still applies); ``breaker_endpoint`` names the breaker this call uses (typed
        interfaces name it after the interface and method).

        Invalid arguments raise :class:`InvalidRequestError` before any I/O.
        """
        verb = validate_method(method)
        endpoint = validate_endpoint(path)
        body: bytes | None = None
        content_type: str | None = None
        if json is not UNSET and content is not None:
            raise InvalidRequestError("pass either json= or content=, not both")
        if json is not UNSET:
            body, content_type = encode_body(json)
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        policy = self.sdk._call_policy(
            self.service_name,
            self.circuit_config,
            {
                "timeout": timeout,
                "retry_attempts": retry_attempts,
                "deadline": deadline,
                "retry_non_idempotent": retry_non_idempotent,
                "use_cache": use_cache,
                "cache_ttl": cache_ttl,
            },
        )
        if retry_policy is not None:
            policy = dataclasses.replace(
                policy,
                retry=dataclasses.replace(
                    policy.retry,
                    attempts=retry_policy.attempts,
                    delay=retry_policy.delay,
                    backoff=retry_policy.backoff,
                    max_delay=retry_policy.max_delay,
                ),
            )
        if breaker_endpoint is not None:
            policy = dataclasses.replace(policy, breaker_endpoint=breaker_endpoint)
        await self.sdk._ensure_started()
        started = time.monotonic()
        template = endpoint_template or endpoint.split("?", 1)[0]
        state = _CallState(endpoint=endpoint)
        if policy.retry.deadline is not None:
            state.deadline_at = started + policy.retry.deadline
        try:
            base_url, instance, state.target = await self.sdk._resolve(
                self.service_name, self.version
            )
            state.instance = instance
            request = self._build_request(
                verb, base_url, policy, endpoint, params, body, content_type, headers
            )
            terminal = self._terminal(policy, template, state, force_refresh)
            response = await self.sdk._run_middleware(request, terminal)
            outcome = CallOutcome(
                response=response,
                exception=None,
                attempts=max(1, state.attempts),
                elapsed=time.monotonic() - started,
                instance=state.instance,
                endpoint=endpoint,
                from_cache=state.from_cache,
                stale=state.stale,
            )
        except asyncio.CancelledError:
            raise
        except InvalidRequestError:
            raise
        except Exception as exc:
            mapped = _map_exception(exc, self.service_name, endpoint)
            if isinstance(mapped, ServiceClientError):
                mapped.attempts = max(1, state.attempts)
                if state.attempts > 1:
                    mapped.add_note(f"after {state.attempts} attempts")
            outcome = CallOutcome(
                response=None,
                exception=mapped,
                attempts=max(1, state.attempts),
                elapsed=time.monotonic() - started,
                instance=state.instance,
                endpoint=endpoint,
            )
        self.sdk._count_outcome(self.service_name, outcome)
        if not outcome.ok:
            await self.sdk._handle_error(self.service_name, verb, outcome)
        return outcome

    def _build_request(
        self,
        verb: str,
        base_url: str,
        policy: CallPolicy,
        endpoint: str,
        params: Any,
        body: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        merged: dict[str, str] = {"user-agent": self.sdk.config.user_agent}
        merged.update({k.lower(): v for k, v in policy.headers.items()})
        if headers:
            merged.update({k.lower(): str(v) for k, v in headers.items()})
        if content_type and "content-type" not in merged:
            merged["content-type"] = content_type
        url = base_url.rstrip("/") + policy.base_path.rstrip("/") + endpoint
        try:
            return httpx.Request(verb, url, params=params, content=body, headers=merged)
        except (TypeError, ValueError, httpx.InvalidURL) as exc:
            raise InvalidRequestError(f"cannot build request for {endpoint!r}: {exc}") from None

    def _terminal(
        self, policy: CallPolicy, template: str, state: _CallState, force_refresh: bool
    ) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
        async def send_with_retries(request: httpx.Request) -> httpx.Response:

            async def attempt() -> httpx.Response:
                timeout = policy.timeout
                if state.deadline_at is not None:
                    remaining = state.deadline_at - time.monotonic()
                    if remaining <= 0:
                        # An attempt that cannot start within the deadline is not made.
                        raise self._deadline_error(request, policy)
                    timeout = min(timeout, remaining)
                state.attempts += 1
                if state.attempts > 1:
                    self.sdk._metrics["retries"] += 1
                    await self._reroute(request, state)
                named = policy.breaker_endpoint
                if named is None and policy.breaker_config.scope == "instance":
                    named = f"instance:{state.instance}"
                if state.target is None:
                    return await self._attempt(request, policy, template, timeout, named)
                with self.sdk._registry.balancer.track(state.target):
                    return await self._attempt(request, policy, template, timeout, named)

            return await call_with_retries(
                attempt,
                policy.retry,
                method=request.method,
                headers=request.headers,
                sleep=self.sdk._sleep,
            )

        async def terminal(request: httpx.Request) -> httpx.Response:
            cache = self.sdk._cache_for(self.service_name, request, policy)
            if cache is None:
                return await send_with_retries(request)
            result = await cache(request, send_with_retries, template, force_refresh)
            state.from_cache, state.stale = result.from_cache, result.stale
            cached: httpx.Response = result.response
            return cached

        return terminal

    def _deadline_error(self, request: httpx.Request, policy: CallPolicy) -> ServiceTimeoutError:
        return ServiceTimeoutError(
            f"call to {self.service_name} {request.url.path} ran out of its "
            f"{policy.retry.deadline}s deadline",
            service_name=self.service_name,
            endpoint=request.url.path,
        )

    async def _reroute(self, request: httpx.Request, state: _CallState) -> None:
        """With discovery, a retry may go to another instance of the service."""
        if not self.sdk._discovery_active(self.service_name):
            return
        base_url, instance, state.target = await self.sdk._resolve(self.service_name, self.version)
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
            state.instance = instance

    async def _attempt(
        self,
        request: httpx.Request,
        policy: CallPolicy,
        template: str,
        timeout: float,
        breaker_name: str | None = None,
    ) -> httpx.Response:
        """One attempt: breaker admission, then the send bounded by ``timeout`` seconds."""
        permit: Permit | None = None
        breaker: DistributedBreaker | None = None
        if policy.breaker_enabled:
            breaker = self._breaker(template, policy.breaker_config, breaker_name)
            try:
                permit = await breaker.acquire()
            except CircuitOpenError:
                self.sdk._metrics["breaker_rejections"] += 1
                raise
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            async with asyncio.timeout(timeout):
                response = await self._send(request)
        except asyncio.CancelledError:
            if permit is not None:
                await asyncio.shield(permit.release())
            raise
        except BaseException as exc:
            if permit is not None and breaker is not None:
                await (permit.failure() if breaker.classify_exception(exc) else permit.success())
            raise
        if permit is not None and breaker is not None:
            failed = breaker.classify_status(response.status_code)
            await (permit.failure() if failed else permit.success())
        return response

    async def _send(self, request: httpx.Request) -> httpx.Response:
        limit = self.sdk.config.max_response_bytes
        response: httpx.Response = await self.sdk._http.send(request, stream=True)
        try:
            # The limit bounds the DECODED body: body.py inflates within it (gzip bombs).
            content = await read_decoded(
                response, limit, service=self.service_name, endpoint=request.url.path
            )
        finally:
            await response.aclose()
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
        )


@dataclass(slots=True)
class _CallState:
    endpoint: str
    attempts: int = 0
    instance: str | None = None
    from_cache: bool = False
    stale: bool = False
    deadline_at: float | None = None
    target: ServiceInstance | None = None
