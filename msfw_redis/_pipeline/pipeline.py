"""The pipeline: the order of a call's steps, in one place.

Read top to bottom, a call goes::

    call_started (observers)
    middleware            MiddlewareStep      @sdk.middleware, registration order
    cache                 CacheStep           HTTP cache and @cached_service_call
    retry loop            RetryStep           attempts, back-off, total deadline
    instance choice       InstanceStep        reroute on retry, in-flight counts
    fleet limits          LimitsStep          Retry-After gate, rate limit, bulkhead
    breaker admission     BreakerStep         fleet breaker, outcome reported
    attempt timeout       AttemptTimeoutStep  per-attempt bound, attempt observers
    send                  SendStep            httpx, max_response_bytes
    call_ended (observers), error handlers, metrics

Each step is an ``httpx.AsyncBaseTransport`` holding the next one (hishel's
``next_transport``) and the collaborators it was built with. :class:`Pipeline` builds the
chain once per SDK; :meth:`Pipeline.transport` builds the same chain without middleware
and discovery around any inner transport (``ResilientTransport``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msfw_redis._callbacks import call_logged
from msfw_redis._exceptions import InvalidRequestError, ServiceClientError
from msfw_redis._pipeline.limits import LimitsStep, MethodLimits
from msfw_redis._pipeline.observe import CallRecord
from msfw_redis._pipeline.policy import with_cache_policy
from msfw_redis._pipeline.request import (
    UNSET,
    build_request,
    encode_body,
    error_for_response,
    map_exception,
    validate_endpoint,
    validate_method,
)
from msfw_redis._pipeline.retry_loop import RetryStep
from msfw_redis._pipeline.steps import (
    CALL_KEY,
    AttemptTimeoutStep,
    BreakerStep,
    CacheStep,
    CallContext,
    CallMetrics,
    FunctionCache,
    InstanceStep,
    MiddlewareStep,
    Observers,
    SendStep,
    notify,
)
from msfw_redis._validate import validate_headers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    import httpx

    from msfw_redis._breaker.hub import BreakerHub
    from msfw_redis._cache.cache import ResponseCache
    from msfw_redis._config import CircuitBreakerConfig, ServiceSDKConfig
    from msfw_redis._limits.plan import LimitsPlan
    from msfw_redis._models import HTTPMethod
    from msfw_redis._pipeline.policy import CallPolicy, PolicyBook
    from msfw_redis._pipeline.request import Middleware
    from msfw_redis._pipeline.retry import RetryPolicy
    from msfw_redis._pipeline.steps import Resolver
    from msfw_redis._registry.balancing import LoadBalancer

    ErrorHandler = Callable[[BaseException, dict[str, Any]], Awaitable[None] | None]

__all__ = ["CallOutcome", "Pipeline"]

logger = logging.getLogger("msfw_redis.client")


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
    #: hit, stale, miss, coalesced or bypass when the cache step answered, else None.
    cache: str | None = None
    #: the breaker's slow_call_threshold for this call (None: no breaker or no threshold).
    slow_after: float | None = None

    @property
    def ok(self) -> bool:
        """True for a response with a status below 400."""
        return (
            self.exception is None and self.response is not None and self.response.status_code < 400
        )


class Pipeline:
    """The composed steps of a call and the collaborators they were built with."""

    def __init__(
        self,
        *,
        config: ServiceSDKConfig,
        policies: PolicyBook,
        hub: BreakerHub,
        cache: ResponseCache,
        http: httpx.AsyncClient,
        resolve: Resolver,
        balancer: LoadBalancer | None,
        middlewares: list[Middleware],
        error_handlers: list[ErrorHandler],
        sleep: Callable[[float], Awaitable[None]],
        start: Callable[[], Awaitable[None]],
        limits: LimitsPlan | None = None,
        record_outcome: Callable[[str, str, CallOutcome], None] | None = None,
    ) -> None:
        self.policies = policies
        self._record_outcome = record_outcome
        self.hub = hub
        self.metrics = CallMetrics(config.metrics_enabled)
        self.observers = Observers()
        self._cache = cache
        self._sleep = sleep
        self._start = start
        self._resolve = resolve
        self._error_handlers = error_handlers
        self._user_agent = config.user_agent
        self._max_response_bytes = config.max_response_bytes
        self._config = config
        self._limits = limits
        self._http = http

        async def send(request: httpx.Request) -> httpx.Response:
            return await self._http.send(request, stream=True)

        self._head = MiddlewareStep(
            self._resilience(
                send,
                resolve=resolve if config.service_discovery_enabled else None,
                balancer=balancer,
            ),
            middlewares,
        )

    def use_http(self, http: httpx.AsyncClient) -> None:
        """Send through ``http`` from now on (the SDK made it for a new event loop)."""
        self._http = http

    def _resilience(
        self,
        send: Callable[[httpx.Request], Awaitable[httpx.Response]],
        *,
        resolve: Resolver | None,
        balancer: LoadBalancer | None,
    ) -> httpx.AsyncBaseTransport:
        """cache -> retry -> instance -> limits -> breaker -> timeout -> send, inside out."""
        step: httpx.AsyncBaseTransport = SendStep(send, max_response_bytes=self._max_response_bytes)
        step = AttemptTimeoutStep(step)
        step = BreakerStep(step, hub=self.hub, metrics=self.metrics)
        budgets = None
        if self._limits is not None:
            step = LimitsStep(step, plan=self._limits, metrics=self.metrics)
            budgets = self._limits.retry_budget
        step = InstanceStep(step, resolve=resolve, balancer=balancer)
        step = RetryStep(step, sleep=self._sleep, metrics=self.metrics, budgets=budgets)
        return CacheStep(step, self._cache, self.policies.http_cache_settings)

    def transport(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        """The chain after middleware, sending through ``inner`` to the URL it is given."""
        return self._resilience(inner.handle_async_request, resolve=None, balancer=None)

    async def start(self) -> None:
        """Start the SDK behind the pipeline (done for you on the first call)."""
        await self._start()

    def context(self, service: str, request: httpx.Request, policy: CallPolicy) -> CallContext:
        """A fresh context for a request entering :meth:`transport`'s chain."""
        path = request.url.path
        ctx = CallContext(service=service, endpoint=path, template=path, policy=policy)
        if policy.retry.deadline is not None:
            ctx.deadline_at = time.monotonic() + policy.retry.deadline
        return ctx

    def policy(
        self,
        service: str,
        circuit_config: CircuitBreakerConfig | None,
        overrides: Mapping[str, Any],
    ) -> CallPolicy:
        """The call policy for ``service`` (see :class:`PolicyBook`)."""
        return self.policies.resolve(service, circuit_config, overrides)

    async def execute(
        self,
        service: str,
        method: str | HTTPMethod,
        path: str,
        *,
        circuit_config: CircuitBreakerConfig | None = None,
        version: str | None = None,
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
        function_cache: FunctionCache | None = None,
        method_limits: MethodLimits | None = None,
    ) -> CallOutcome:
        """Run one call through every step; never raises for HTTP, network or breaker
        failures. ``service`` must already be validated (clients validate it once).

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
        if (
            timeout is None
            and retry_attempts is None
            and deadline is None
            and retry_non_idempotent is None
            and use_cache is None
            and cache_ttl is None
        ):
            policy = self.policies.base(service, circuit_config)
        else:
            policy = self.policies.resolve(
                service,
                circuit_config,
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
            policy = _with_retry(policy, retry_policy, self._config)
        if breaker_endpoint is not None:
            policy = dataclasses.replace(policy, breaker_endpoint=breaker_endpoint)
        await self._start()
        started = time.monotonic()
        template = endpoint_template or endpoint.split("?", 1)[0]
        ctx = CallContext(
            service=service,
            endpoint=endpoint,
            template=template,
            policy=policy,
            version=version,
            force_refresh=force_refresh,
            function_cache=function_cache,
            method_limits=method_limits,
        )
        if policy.retry.deadline is not None:
            ctx.deadline_at = started + policy.retry.deadline
        observers = self.observers.items
        if observers:
            ctx.observers = observers
            ctx.record = CallRecord(
                service=service, method=verb, endpoint=template, started=started
            )
            notify(observers, "call_started", ctx.record)
        try:
            base_url, ctx.instance, ctx.target = await self._resolve(service, version)
            request = self._build_request(
                verb, base_url, policy, endpoint, params, body, content_type, headers
            )
            request.extensions[CALL_KEY] = ctx
            response = await self._head.handle_async_request(request)
            outcome = CallOutcome(
                response=response,
                exception=None,
                attempts=max(1, ctx.attempts),
                elapsed=time.monotonic() - started,
                instance=ctx.instance,
                endpoint=endpoint,
                from_cache=ctx.from_cache,
                stale=ctx.stale,
                cache=ctx.cache,
            )
        except asyncio.CancelledError:
            raise
        except InvalidRequestError:
            raise
        except Exception as exc:
            mapped = map_exception(exc, service, endpoint)
            if isinstance(mapped, ServiceClientError):
                mapped.attempts = max(1, ctx.attempts)
                if ctx.attempts > 1:
                    mapped.add_note(f"after {ctx.attempts} attempts")
            outcome = CallOutcome(
                response=None,
                exception=mapped,
                attempts=max(1, ctx.attempts),
                elapsed=time.monotonic() - started,
                instance=ctx.instance,
                endpoint=endpoint,
                cache=ctx.cache,
            )
        if self._record_outcome is not None:
            if ctx.policy.breaker_enabled:
                outcome.slow_after = ctx.policy.breaker_config.slow_call_threshold
            # The per-service call counters live with the SDK (``_sdk/metrics.py``).
            self._record_outcome(service, verb, outcome)
        if ctx.record is not None:
            record = ctx.record
            record.attempts = ctx.attempts  # 0 when the cache answered
            record.instance = outcome.instance
            if outcome.response is not None:
                record.status_code = outcome.response.status_code
            record.error = outcome.exception
            notify(observers, "call_ended", record)
        if not outcome.ok and self._error_handlers:
            await self._handle_error(service, verb, outcome)
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
        merged: dict[str, str] = {"user-agent": self._user_agent}
        if policy.headers:
            merged.update(policy.headers)
        if headers:
            # Only the caller's headers need checking here, before the breaker and the
            # wire (the caller's fault): the User-Agent and each service's headers were
            # checked when the config and settings were.
            validate_headers(headers)
            merged.update({k.lower(): str(v) for k, v in headers.items()})
        if content_type and "content-type" not in merged:
            merged["content-type"] = content_type
        url = base_url.rstrip("/") + policy.base_path + endpoint
        return build_request(verb, url, params=params, body=body, headers=merged, endpoint=endpoint)

    async def _handle_error(self, service: str, method: str, outcome: CallOutcome) -> None:
        error: BaseException
        status = None
        if outcome.exception is not None:
            error = outcome.exception
            status = getattr(error, "status_code", None)
        elif outcome.response is not None:
            error = error_for_response(outcome.response, service, outcome.endpoint)
            error.attempts = outcome.attempts
            status = outcome.response.status_code
        else:  # pragma: no cover - an outcome has one or the other
            return
        context = {
            "service_name": service,
            "endpoint": outcome.endpoint,
            "method": method,
            "attempts": outcome.attempts,
            "instance": outcome.instance,
            "status_code": status,
        }
        for handler in list(self._error_handlers):
            # A handler that raises is logged; the original error stands.
            await call_logged(handler, error, dict(context), log=logger, what="error handler")


def _with_retry(policy: CallPolicy, retry: RetryPolicy, cfg: ServiceSDKConfig) -> CallPolicy:
    """``policy`` with a decorator's attempts and back-off (its deadline stays)."""
    replaced = dataclasses.replace(
        policy,
        retry=dataclasses.replace(
            policy.retry,
            attempts=retry.attempts,
            delay=retry.delay,
            backoff=retry.backoff,
            max_delay=retry.max_delay,
            # An explicit @retry_on_failure opts the method in, whatever its verb.
            retry_non_idempotent=retry.retry_non_idempotent or policy.retry.retry_non_idempotent,
        ),
    )
    return with_cache_policy(replaced, cfg) if replaced.cache_enabled else replaced
