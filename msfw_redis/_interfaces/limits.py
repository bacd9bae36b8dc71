"""Fleet-wide limit decorators: ``@bulkhead`` and ``@rate_limited``.

On a plain ``async def`` each wraps the function: the limit is checked (one round
trip) before the function runs, and a refusal raises without running it. The
bulkhead's name is the function's ``module.qualname`` unless given; the rate limit's
key likewise, unless ``key=`` names another (an API account, say): every function
using the same key shares one limit across the fleet.

They compose with the other decorators in any order: wrapping only adds a check
before the call, and each wrapper carries the settings the others recorded. On a
typed-interface method (``@service_call``), above or below it, they do not wrap: they
record their settings (and shared name or key) on the method, and the call pipeline's
limits step applies them to every attempt, after the service's own limits and before
the breaker. There the SDK is the interface object's, so ``sdk=`` is not used.

Refusals (:class:`BulkheadFullError`, :class:`RateLimitedError`) sent nothing, so
they are never breaker failures: a ``@circuit_breaker`` stacked outside a limit
releases its permit on a refusal instead of recording an outcome.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from msfw_redis._interfaces.decorators import META_ATTR, function_name, meta_of
from msfw_redis._limits.config import DEFAULT_PERMIT_LEASE, BulkheadConfig, RateLimitConfig
from msfw_redis._pipeline.limits import MethodLimits
from msfw_redis._store.keys import validate_service_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["bulkhead", "method_limits", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")


def _sdk_for(explicit: ServiceSDK | None) -> ServiceSDK:
    from msfw_redis._sdk.sdk import get_default_sdk

    return explicit if explicit is not None else get_default_sdk()


def _is_service_call(fn: object) -> bool:
    return bool(meta_of(fn).get("service_call"))


def method_limits(meta: dict[str, object]) -> MethodLimits | None:
    """The fleet limits recorded on a typed method's settings, for its calls; ``None`` if none."""
    held = meta.get("bulkhead")
    rate = meta.get("rate_limit")
    if held is None and rate is None:
        return None
    return MethodLimits(
        bulkhead=(str(meta["bulkhead_name"]), held) if isinstance(held, BulkheadConfig) else None,
        rate_limit=(str(meta["rate_limit_key"]), rate)
        if isinstance(rate, RateLimitConfig)
        else None,
    )


def bulkhead(
    max_concurrent_calls: int,
    max_wait: float = 0.0,
    *,
    permit_lease: float | None = None,
    name: str | None = None,
    sdk: ServiceSDK | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Allow at most ``max_concurrent_calls`` runs of the function at once, fleet-wide.

    Args:
        max_concurrent_calls: permits shared by every replica (>= 1).
        max_wait: seconds to wait for a permit (woken by pub/sub); ``0.0`` (default)
            raises :class:`~msfw_redis.BulkheadFullError` at once.
        permit_lease: seconds a permit lasts unless renewed (default 30); a crashed
            holder's permits return within it.
        name: the bulkhead's shared name; default ``module.qualname``.
        sdk: the SDK whose store holds it; default the default SDK.
    """
    cfg = BulkheadConfig(
        max_concurrent_calls=max_concurrent_calls,
        max_wait=max_wait,
        permit_lease=DEFAULT_PERMIT_LEASE if permit_lease is None else permit_lease,
    )

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        shared = validate_service_name(name or function_name(fn), what="bulkhead name")
        if _is_service_call(fn):
            meta_of(fn).update(bulkhead=cfg, bulkhead_name=shared)
            return fn

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            owner = _sdk_for(sdk)
            await owner.start()
            async with await owner.limits.bulkhead(shared, cfg).acquire():
                return await fn(*args, **kwargs)

        setattr(wrapper, META_ATTR, meta_of(fn))
        meta_of(wrapper).update(bulkhead=cfg, bulkhead_name=shared)
        return wrapper

    return decorate


def rate_limited(
    rate: float,
    per: float = 1.0,
    burst: int | None = None,
    max_wait: float = 0.0,
    key: str | None = None,
    *,
    sdk: ServiceSDK | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Allow ``rate`` runs per ``per`` seconds of the function, fleet-wide (GCRA on server time).

    Args:
        rate: runs per period (> 0).
        per: the period in seconds. Default 1.0.
        burst: runs admitted at once from idle; default ``ceil(rate)``.
        max_wait: seconds a refused call may sleep until its slot; ``0.0`` (default)
            raises :class:`~msfw_redis.RateLimitedError` (with ``retry_after``) at once.
        key: the limit's shared key; default ``module.qualname``. Functions (and
            replicas) passing the same key share one limit.
        sdk: the SDK whose store holds it; default the default SDK.
    """
    cfg = RateLimitConfig(rate=rate, per=per, burst=burst, max_wait=max_wait)

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        shared = validate_service_name(key or function_name(fn), what="rate limit key")
        if _is_service_call(fn):
            meta_of(fn).update(rate_limit=cfg, rate_limit_key=shared)
            return fn

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            owner = _sdk_for(sdk)
            await owner.start()
            await owner.limits.rate_limiter(shared, "call", cfg).acquire()
            return await fn(*args, **kwargs)

        setattr(wrapper, META_ATTR, meta_of(fn))
        meta_of(wrapper).update(rate_limit=cfg, rate_limit_key=shared)
        return wrapper

    return decorate
