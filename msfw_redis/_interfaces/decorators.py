"""Resilience decorators: ``circuit_breaker``, ``retry_on_failure`` and ``health_check``.

On a plain ``async def`` each decorator wraps the function:

* ``@circuit_breaker`` guards it with a fleet-wide breaker named after the function
  (``module.qualname``, never Python's ``hash()``), shared through Redis by every
  replica; any exception counts as a failure unless listed in ``exclude``.
* ``@retry_on_failure`` retries it with capped exponential back-off and full jitter.

On a typed-interface method (``@service_call``) the decorators do not wrap: they record
their settings on the method, and the call pipeline applies them (the breaker becomes
that method's endpoint breaker, the retry settings become the call's retry policy), so
retries are never multiplied by stacking. The order of stacking does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from msfw_redis._config import CircuitBreakerConfig
from msfw_redis._exceptions import BulkheadFullError, CircuitOpenError, RateLimitedError
from msfw_redis._pipeline.retry import RetryPolicy, backoff_delay
from msfw_redis._registry.enrollment import ENROLLMENTS, HealthEnrollment

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = [
    "META_ATTR",
    "circuit_breaker",
    "function_name",
    "health_check",
    "meta_of",
    "retry_on_failure",
    "sdk_of",
]

P = ParamSpec("P")
R = TypeVar("R")
META_ATTR = "__msfw_meta__"


def meta_of(fn: Any) -> dict[str, Any]:
    """The resilience settings recorded on ``fn`` (created empty on first use)."""
    meta = getattr(fn, META_ATTR, None)
    if meta is None:
        meta = {}
        with contextlib.suppress(AttributeError, TypeError):
            setattr(fn, META_ATTR, meta)
    return meta


def function_name(fn: Callable[..., Any]) -> str:
    """A stable, fleet-wide name for ``fn``: ``module.qualname``, without whitespace."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return "".join("_" if ch.isspace() or ch in "{}" else ch for ch in name)[:200]


def _is_service_call(fn: Any) -> bool:
    return bool(meta_of(fn).get("service_call"))


def _sdk_for(explicit: ServiceSDK | None) -> ServiceSDK:
    from msfw_redis._sdk.sdk import get_default_sdk

    return explicit if explicit is not None else get_default_sdk()


def sdk_of(obj: Any) -> ServiceSDK:
    """The SDK a typed-interface object was built with, or the default SDK."""
    from msfw_redis._sdk.sdk import get_default_sdk

    sdk: ServiceSDK | None = getattr(obj, "_msfw_sdk", None)
    return sdk if sdk is not None else get_default_sdk()


def _copy_meta(src: Any, dst: Any) -> None:
    setattr(dst, META_ATTR, meta_of(src))


def circuit_breaker(
    failure_threshold: int = 5,
    recovery_timeout: float = 60.0,
    *,
    success_threshold: int = 1,
    name: str | None = None,
    exclude: tuple[type[BaseException], ...] = (),
    sdk: ServiceSDK | None = None,
    **config: Any,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Guard an async function with a fleet-wide circuit breaker.

    Args:
        failure_threshold: consecutive failures (fleet-wide) that open it.
        recovery_timeout: seconds it stays open before a probe.
        success_threshold: successful probes that close it again.
        name: the breaker's shared name; default ``module.qualname`` of the function.
        exclude: exception types that are *not* failures (they pass through).
        sdk: the SDK whose store holds the breaker; default the default SDK.
        **config: further :class:`CircuitBreakerConfig` fields
            (``half_open_max_calls``, ``failure_rate_threshold``, ...).

    Raises :class:`CircuitOpenError` (with ``retry_after``) while the breaker is open.
    """
    cfg = CircuitBreakerConfig(
        failure_threshold=failure_threshold,
        timeout=recovery_timeout,
        success_threshold=success_threshold,
        **config,
    )

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if _is_service_call(fn):
            meta_of(fn)["circuit"] = cfg
            return fn
        breaker_name = name or function_name(fn)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            breaker = _sdk_for(sdk).components.hub.get(breaker_name, None, cfg)
            permit = await breaker.acquire()
            try:
                result = await fn(*args, **kwargs)
            except (asyncio.CancelledError, BulkheadFullError, RateLimitedError):
                # Cancelled, or refused by a fleet limit stacked inside: nothing was sent,
                # so there is no outcome to record.
                await asyncio.shield(permit.release())
                raise
            except BaseException as exc:
                failed = isinstance(exc, Exception) and not isinstance(exc, exclude)
                await (permit.failure() if failed else permit.success())
                raise
            await permit.success()
            return result

        _copy_meta(fn, wrapper)
        meta_of(wrapper)["circuit"] = cfg
        return wrapper

    return decorate


def retry_on_failure(
    max_attempts: int = 3,
    delay: float = 1.0,
    backoff: float = 2.0,
    *,
    max_delay: float = 30.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    sdk: ServiceSDK | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Retry an async function on failure.

    Attempt ``n`` (counting from 1) that fails with one of ``retry_on`` is followed by
    a wait of ``uniform(0, min(max_delay, delay * backoff ** (n - 1)))`` seconds, until
    ``max_attempts`` attempts were made; then the last exception is raised with a note
    giving the attempt count. :class:`CircuitOpenError`, :class:`BulkheadFullError` and
    :class:`RateLimitedError` are never retried (refusals that sent nothing). Waits use the
    SDK's sleep, so tests that give the SDK a fake sleep never wait.

    On a ``@service_call`` method this opts the method in to retries whatever its verb
    (a POST included): the decorator says the call is safe to repeat.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if delay < 0 or backoff < 1 or max_delay <= 0:
        raise ValueError("delay must be >= 0, backoff >= 1 and max_delay > 0")
    policy = RetryPolicy(
        attempts=max_attempts,
        delay=delay,
        backoff=backoff,
        max_delay=max_delay,
        retry_non_idempotent=True,  # an explicit decorator opts the method in
    )

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if _is_service_call(fn):
            meta_of(fn)["retry"] = policy
            return fn

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            attempt = 0
            while True:
                attempt += 1
                try:
                    return await fn(*args, **kwargs)
                except (CircuitOpenError, BulkheadFullError, RateLimitedError):
                    # Refusals sent nothing; a rate limit's in-max_wait slot is already
                    # waited for by the limiter itself.
                    raise
                except retry_on as exc:
                    if attempt >= policy.attempts:
                        exc.add_note(f"msfw_redis: gave up after {attempt} attempts")
                        raise
                await _sdk_for(sdk).components.sleep(backoff_delay(attempt, policy, random.random))

        _copy_meta(fn, wrapper)
        meta_of(wrapper)["retry"] = policy
        return wrapper

    return decorate


def health_check(
    interval: float = 30.0,
    timeout: float = 5.0,
    failure_threshold: int = 3,
    *,
    service: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Enrol a service in fleet-wide health monitoring with these settings.

    On a ``@service_call`` method the service is the method's; on a plain ``async def``
    pass ``service=``. The monitor probes the service's instances' health endpoints
    every ``interval`` seconds (one replica per round), each probe bounded by
    ``timeout``; ``failure_threshold`` consecutive failures mark an instance unhealthy.
    The decorated function itself is returned unchanged: monitoring never calls it.
    """
    if interval <= 0 or timeout <= 0 or failure_threshold < 1:
        raise ValueError("interval and timeout must be > 0 seconds and failure_threshold >= 1")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        call = meta_of(fn).get("service_call")
        name = service or (call.service_name if call is not None else None)
        if name is None:
            raise TypeError(
                f"@health_check on {fn.__qualname__}: it does not know which service to "
                "monitor; pass service='<name>' or put it above @service_call(...)"
            )
        from msfw_redis._store.keys import canonical_service_name

        enrollment = HealthEnrollment(
            canonical_service_name(name), interval, timeout, failure_threshold
        )
        meta_of(fn)["health_check"] = enrollment
        ENROLLMENTS.enroll(enrollment)
        return fn

    return decorate
