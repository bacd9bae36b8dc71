"""Typed service interfaces: ``@service_interface`` on a class, ``@service_call`` on methods.

A ``@service_call`` method's body never runs; calling it makes the HTTP call:

* path parameters (``{user_id}`` in the template) come from the arguments of the same
  name and are percent-encoded (a ``/`` inside a value stays inside the segment);
* a pydantic model argument (or, for POST/PUT/PATCH, a ``dict``/``list`` argument)
  becomes the JSON body;
* the remaining arguments become query parameters: ``None`` is left out, lists repeat
  the key, booleans are ``true``/``false``;
* every argument is validated against its annotation with pydantic *before* any I/O
  (wrong types raise :class:`~msfw_redis.InvalidRequestError`);
* the response is validated against the return annotation with a ``TypeAdapter``
  (``Model``, ``List[Model]``, ``Optional[...]``, ``dict``, primitives); a mismatch
  raises pydantic's ``ValidationError``; ``-> None`` accepts any body, empty included.

Calls go through the SDK pipeline (middleware, cache, breaker, retries) of the instance's
SDK: ``UserService(sdk=sdk)``, or the default SDK for ``UserService()``.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter, ValidationError

from msfw_redis._exceptions import InvalidRequestError
from msfw_redis._interfaces.cached import _CachedMethod
from msfw_redis._interfaces.decorators import meta_of, sdk_of
from msfw_redis._interfaces.limits import method_limits
from msfw_redis._pipeline.request import UNSET, parse_body, validate_method
from msfw_redis._store.keys import validate_service_name

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._models import HTTPMethod
    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = [
    "INTERFACE_ATTR",
    "InterfaceInfo",
    "ServiceCallInfo",
    "ServiceInterface",
    "service_call",
    "service_interface",
]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
INTERFACE_ATTR = "__msfw_interface__"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """What ``@service_interface`` recorded on a class."""

    service_name: str
    base_path: str
    version: str | None


@dataclass(frozen=True, slots=True)
class ServiceCallInfo:
    """What ``@service_call`` recorded on a method."""

    service_name: str
    method: str
    path_template: str
    qualname: str


class ServiceInterface:
    """Optional base class for typed interfaces: declares ``__init__(sdk=None)`` for type
    checkers (``@service_interface`` adds the same to any class at run time)."""

    _msfw_sdk: ServiceSDK | None

    def __init__(self, sdk: ServiceSDK | None = None) -> None:
        self._msfw_sdk = sdk


def service_interface(
    service_name: str, base_path: str = "", version: str | None = None
) -> Callable[[type[T]], type[T]]:
    """Class decorator: the service a typed interface talks to.

    Args:
        service_name: the logical service (registry name or ``[services.*]`` key).
        base_path: a prefix for every method's path template (``"/api/v1"``).
        version: route only to instances registered with this version.
    """
    validate_service_name(service_name)
    if base_path and not base_path.startswith("/"):
        raise InvalidRequestError(f"base_path {base_path!r} must start with '/'")

    def decorate(cls: type[T]) -> type[T]:
        setattr(cls, INTERFACE_ATTR, InterfaceInfo(service_name, base_path.rstrip("/"), version))
        original = cls.__init__

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, sdk: ServiceSDK | None = None, **kwargs: Any) -> None:
            self._msfw_sdk = sdk
            if original is not object.__init__:
                if "sdk" in inspect.signature(original).parameters:
                    kwargs["sdk"] = sdk
                original(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        return cls

    return decorate


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_query_value(v) for v in value]
    return value


def _path_value(value: Any) -> str:
    value = _query_value(value)
    return quote(str(value), safe="")


def service_call(
    service_name: str,
    method: HTTPMethod | str,
    path_template: str,
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[R]]], Callable[Concatenate[S, P], Awaitable[R]]
]:
    """Method decorator: make this method an HTTP call to ``service_name``.

    See the module documentation for how arguments map to the request and how the
    response is validated.
    """
    validate_service_name(service_name)
    verb = validate_method(method)
    if not path_template.startswith("/"):
        raise InvalidRequestError(f"path template {path_template!r} must start with '/'")
    path_params = _PATH_PARAM.findall(path_template)

    def decorate(
        fn: Callable[Concatenate[S, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, P], Awaitable[R]]:
        signature = inspect.signature(fn)
        is_method = _is_method(fn, signature)
        skip = 1 if is_method else 0
        params = list(signature.parameters.values())[skip:]  # drop self
        names = {p.name for p in params}
        missing = [p for p in path_params if p not in names]
        if missing:
            raise InvalidRequestError(
                f"{fn.__qualname__}: path template {path_template!r} names {missing} "
                "which are not parameters of the method"
            )
        hints = typing.get_type_hints(fn)
        adapters = {p.name: TypeAdapter(hints[p.name]) for p in params if p.name in hints}
        returns = hints.get("return", Any)
        return_adapter = None if returns in (None, type(None)) else TypeAdapter(returns)
        info = ServiceCallInfo(service_name, verb, path_template, fn.__qualname__)

        def build(bound: inspect.BoundArguments) -> tuple[str, dict[str, Any], Any]:
            path = path_template
            query: dict[str, Any] = {}
            body: Any = UNSET
            for name, value in list(bound.arguments.items())[skip:]:
                if name in adapters:
                    try:
                        value = adapters[name].validate_python(value)
                    except ValidationError as exc:
                        raise InvalidRequestError(
                            f"{fn.__qualname__}: argument {name!r} is invalid: "
                            f"{exc.errors()[0]['msg']} (got {value!r})"
                        ) from None
                if name in path_params:
                    if value is None:
                        raise InvalidRequestError(
                            f"{fn.__qualname__}: path parameter {name!r} is None"
                        )
                    path = path.replace("{" + name + "}", _path_value(value))
                elif isinstance(value, BaseModel) or (
                    verb in _BODY_METHODS and isinstance(value, (dict, list)) and body is UNSET
                ):
                    if body is not UNSET:
                        raise InvalidRequestError(f"{fn.__qualname__}: more than one body argument")
                    body = value
                elif value is not None:
                    query[name] = _query_value(value)
            return path, query, body

        @functools.wraps(fn)
        async def wrapper(*all_args: Any, **kwargs: Any) -> R:
            force_refresh = bool(kwargs.pop("force_refresh", False))
            # A plain function has no `self`: its first argument is a real argument.
            self: Any = all_args[0] if is_method and all_args else None
            try:
                bound = signature.bind(*all_args, **kwargs)
            except TypeError as exc:
                raise InvalidRequestError(f"{fn.__qualname__}: {exc}") from None
            bound.apply_defaults()
            path, query, body = build(bound)
            interface: InterfaceInfo | None = (
                getattr(type(self), INTERFACE_ATTR, None) if is_method else None
            )
            base = interface.base_path if interface is not None else ""
            version = interface.version if interface is not None else None
            sdk = sdk_of(self)
            meta = meta_of(wrapper)
            circuit = meta.get("circuit")
            owner = type(self).__name__ if is_method else fn.__module__
            client = sdk.get_client(service_name, circuit_config=circuit, version=version)
            cache = meta.get("cache")
            function_cache = None
            if cache is not None:
                function_cache = cache.for_call(
                    sdk, service_name, verb, base + path_template, bound, skip_first=is_method
                )
            response = await client.request(
                verb,
                base + path,
                params=query or None,
                json=body,
                endpoint_template=base + path_template,
                retry_policy=meta.get("retry"),
                breaker_endpoint=f"{owner}.{fn.__name__}" if circuit is not None else None,
                function_cache=function_cache,
                force_refresh=force_refresh and function_cache is not None,
                method_limits=method_limits(meta),
            )
            data = parse_body(response)
            if return_adapter is None:
                return None  # type: ignore[return-value]
            result: R = return_adapter.validate_python(data)
            return result

        meta_of(wrapper).update(meta_of(fn))
        meta_of(wrapper)["service_call"] = info
        meta_of(wrapper)["return_adapter"] = return_adapter
        meta_of(wrapper)["returns"] = returns
        cached = meta_of(wrapper).get("cache")
        if cached is not None:
            # @cached_service_call sat below @service_call: it saw a plain function, so
            # name its entries after this method and service instead.
            cached.service = ""
            cached.function = fn.__qualname__
            return typing.cast("Callable[Concatenate[S, P], Awaitable[R]]", _CachedMethod(wrapper))
        # functools.wraps names the first parameter `self`; the callable type is the same.
        return typing.cast("Callable[Concatenate[S, P], Awaitable[R]]", wrapper)

    return decorate


def _is_method(fn: Callable[..., Any], signature: inspect.Signature) -> bool:
    """Whether ``fn`` is defined in a class (its first parameter is then ``self``).

    A module-level or nested ``async def`` is a plain function, as MSFW's own tests
    use it: no ``self``, its first argument is a real argument.
    """
    params = list(signature.parameters)
    if params and params[0] == "self":
        return True
    parts = fn.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"
