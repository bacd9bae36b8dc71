"""Where the shared cache meets the SDK: cacheable GETs and ``@cached_service_call``.

* **HTTP level.** A GET (or HEAD) of a service whose settings say ``cache_enabled`` (or
  a call with ``use_cache=True``) goes through :class:`~msfw_redis._cache.ResponseCache`
  keyed on method, service, path and sorted query, plus a credential fingerprint.
  5xx answers are not stored (unless ``cache_on_error``) and a stale entry stands in
  for them within ``cache_max_stale``, as it does when the breaker is open.
* **Decorator.** ``@cached_service_call(ttl=, key_func=, cache_on_error=, vary_on=)`` on a
  typed-interface method, or on any ``async def``. On a typed method the pipeline's cache
  step (the same step as the HTTP cache, after middleware) stores the response, and the
  method validates it against its return annotation on every read; on a plain function
  the value is stored as data (pydantic models dumped to JSON-able data). The method
  accepts ``force_refresh=True``; its owner gains
  ``await obj.clear_cache(key=None, *, function=None)``.

Keys: with ``key_func``, the string it returns (per service); otherwise the service,
method, path template and the call's arguments (only those named in ``vary_on`` when
given), sorted. Function names are ``Class.method`` (``module.qualname`` for plain
functions), never Python's ``hash()``, so every replica computes the same keys.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from msfw_redis._cache.cache import CacheKey, CachePolicy, TypeAdapterCodec
from msfw_redis._cache.keys import credential_fingerprint
from msfw_redis._interfaces.decorators import function_name, meta_of, sdk_of
from msfw_redis._pipeline.steps import FunctionCache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import httpx

    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["cached_service_call"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class _CachedCall:
    """The settings of one ``@cached_service_call`` and the logic shared by both uses."""

    ttl: float
    key_func: Callable[..., str] | None
    cache_on_error: bool
    vary_on: Sequence[str] | None
    max_stale: float | None
    function: str = ""
    service: str = ""
    codecs: dict[int, TypeAdapterCodec[Any]] = field(default_factory=dict)

    def policy(self, sdk: ServiceSDK) -> CachePolicy:
        max_stale = sdk.config.cache_max_stale if self.max_stale is None else self.max_stale
        return CachePolicy(
            ttl=self.ttl,
            max_stale=max_stale,
            cache_on_error=self.cache_on_error,
            max_entry_bytes=sdk.config.cache_max_entry_bytes,
        )

    def key(
        self,
        sdk: ServiceSDK,
        service: str,
        method: str,
        path: str,
        bound: inspect.BoundArguments,
        skip_first: bool,
    ) -> CacheKey | None:
        args = list(bound.arguments.items())
        if self.key_func is not None:
            return sdk.components.cache.custom_key(
                service=service,
                key=self.key_func(*bound.args, **bound.kwargs),
                function=self.function,
            )
        values = dict(args[1:] if skip_first else args)
        if self.vary_on is not None:
            values = {name: values[name] for name in self.vary_on if name in values}
        params = {k: _plain(v) for k, v in values.items()}
        return sdk.components.cache.request_key(
            service=service, method=method, path=path, params=params, function=self.function
        )

    def codec(self, annotation: Any) -> TypeAdapterCodec[Any]:
        codec = self.codecs.get(id(annotation))
        if codec is None:
            codec = self.codecs[id(annotation)] = TypeAdapterCodec(annotation)
        return codec

    def for_call(
        self,
        sdk: ServiceSDK,
        service: str,
        method: str,
        path: str,
        bound: inspect.BoundArguments,
    ) -> FunctionCache:
        """For ``@service_call`` methods: the cache step's entry for this call.

        The key is made inside the pipeline's cache step, after middleware ran, from
        the headers about to be sent: a credential a middleware set is fingerprinted
        into it (and without ``cache_key_secret`` such a response is never shared). A
        ``key_func`` key names one shared value, so credentialed calls bypass it.
        """
        cache = sdk.components.cache
        if self.key_func is not None:
            custom = cache.custom_key(
                service=service,
                key=self.key_func(*bound.args, **bound.kwargs),
                function=self.function,
            )

            def custom_for(headers: httpx.Headers) -> CacheKey | None:
                shareable, _ = credential_fingerprint(headers, None)
                return custom if shareable else None

            return FunctionCache(key=custom_for, policy=self.policy(sdk))
        values = dict(list(bound.arguments.items())[1:])
        if self.vary_on is not None:
            values = {name: values[name] for name in self.vary_on if name in values}
        params = {k: _plain(v) for k, v in values.items()}
        function = self.function

        def key_for(headers: httpx.Headers) -> CacheKey | None:
            return cache.request_key(
                service=service,
                method=method,
                path=path,
                params=params,
                headers=headers,
                function=function,
            )

        return FunctionCache(key=key_for, policy=self.policy(sdk))


def _plain(value: Any) -> Any:
    """JSON-able form of an argument for the cache key (models by their data)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _CachedMethod:
    """The class attribute left by ``@cached_service_call``: it binds like a function and,
    through ``__set_name__``, gives its owner a ``clear_cache`` coroutine method."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn

    def __set_name__(self, owner: type, name: str) -> None:
        registry: list[Any] = owner.__dict__.get("__msfw_cached__") or []
        registry.append(self)
        owner.__msfw_cached__ = registry  # type: ignore[attr-defined]
        if "clear_cache" not in owner.__dict__:
            owner.clear_cache = _clear_cache  # type: ignore[attr-defined]

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else types.MethodType(self._fn, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    async def clear_cache(self, key: str | None = None, *, sdk: ServiceSDK | None = None) -> int:
        """For plain functions: clear one ``key_func`` key, or every entry of the function."""
        return await _clear(self, None, key, sdk)


async def _clear(method: Any, owner: Any, key: str | None, sdk: ServiceSDK | None) -> int:
    from msfw_redis._sdk.sdk import get_default_sdk

    chosen = sdk or (sdk_of(owner) if owner is not None else get_default_sdk())
    await chosen.start()
    cache = chosen.components.cache
    cached: _CachedCall = meta_of(method)["cache"]
    service = cached.service or meta_of(method)["service_call"].service_name
    if key is not None:
        cleared = await cache.clear(
            cache.custom_key(service=service, key=key, function=cached.function)
        )
        return int(cleared)
    return int(await cache.clear_function(service, cached.function))


async def _clear_cache(self: Any, key: str | None = None, *, function: str | None = None) -> int:
    """Clear this object's cached calls.

    ``clear_cache("product:123")`` deletes the entry a ``key_func`` returned that string
    for; ``clear_cache()`` clears every cached method of the class (O(1) per method, by
    generation); ``clear_cache(function="get_product")`` clears one method. Returns the
    number of entries or methods cleared.
    """
    total = 0
    for method in type(self).__dict__.get("__msfw_cached__", []):
        if function is not None and method.__name__ != function:
            continue
        if key is not None and meta_of(method)["cache"].key_func is None:
            continue
        total += await _clear(method, self, key, None)
    return total


def cached_service_call(
    ttl: float = 300.0,
    key_func: Callable[..., str] | None = None,
    cache_on_error: bool = False,
    vary_on: Sequence[str] | None = None,
    *,
    max_stale: float | None = None,
    sdk: ServiceSDK | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache a call's result in the shared cache, one origin call per key fleet-wide.

    Args:
        ttl: seconds an entry is fresh.
        key_func: called with the method's arguments (``self`` included); returns the
            entry's key string (the seed's ``lambda self, product_id: f"product:{product_id}"``).
        cache_on_error: also store error results, for a short error TTL (5 s).
        vary_on: argument names the key depends on (default: all arguments).
        max_stale: seconds after ``ttl`` a stale entry may stand in when the origin
            fails or the breaker is open (default ``cache_max_stale`` of the SDK).
        sdk: for plain functions, the SDK whose store holds the cache.

    The decorated callable accepts ``force_refresh=True`` to skip a fresh entry.
    """
    if ttl <= 0:
        raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
    if max_stale is not None and max_stale < 0:
        raise ValueError(f"max_stale must be >= 0 seconds, got {max_stale}")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        settings = _CachedCall(
            ttl, key_func, cache_on_error, list(vary_on) if vary_on else None, max_stale
        )
        signature = inspect.signature(fn)
        if vary_on:
            unknown = [n for n in vary_on if n not in signature.parameters]
            if unknown:
                raise ValueError(f"vary_on names {unknown} that {fn.__qualname__} does not take")
        call_info = meta_of(fn).get("service_call")
        settings.function = fn.__qualname__ if call_info is not None else function_name(fn)
        if call_info is not None:
            meta_of(fn)["cache"] = settings
            return typing.cast("Callable[P, Awaitable[R]]", _CachedMethod(fn))
        settings.service = _function_service(fn)
        hints = typing.get_type_hints(fn)
        annotation = hints.get("return", Any)
        params = list(signature.parameters)
        skip_first = bool(params) and params[0] in ("self", "cls")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            from msfw_redis._sdk.sdk import get_default_sdk

            force_refresh = bool(kwargs.pop("force_refresh", False))
            chosen = sdk or get_default_sdk()
            await chosen.start()
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = settings.key(
                chosen, settings.service, "CALL", settings.function, bound, skip_first
            )
            if key is None:
                return await fn(*args, **kwargs)
            result = await chosen.components.cache.get_or_fetch(
                key,
                lambda: fn(*args, **kwargs),
                codec=settings.codec(annotation),
                policy=settings.policy(chosen),
                force_refresh=force_refresh,
            )
            value: R = result.value
            return value

        meta_of(wrapper).update(meta_of(fn))
        meta_of(wrapper)["cache"] = settings
        return typing.cast("Callable[P, Awaitable[R]]", _CachedMethod(wrapper))

    return decorate


def _function_service(fn: Callable[..., Any]) -> str:
    """The 'service' (hash tag) under which a plain function's entries live."""
    return "fn." + function_name(fn)[:190]
