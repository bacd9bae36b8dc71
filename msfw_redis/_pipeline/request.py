"""Request building and the translation of what comes back.

Arguments are checked here before any I/O (method, endpoint, JSON body); responses with a
status of 400 or more become :class:`ServiceClientError`, and transport failures become
the library's errors at this one boundary (as httpx's ``map_httpcore_exceptions`` does).
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from msfw_redis._exceptions import InvalidRequestError, ServiceClientError, ServiceTimeoutError
from msfw_redis._models import HTTPMethod
from msfw_redis._validate import validate_path_segments

__all__ = [
    "UNSET",
    "Middleware",
    "build_request",
    "encode_body",
    "error_for_response",
    "map_exception",
    "parse_body",
    "validate_endpoint",
    "validate_method",
]

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


# Whitespace (Unicode included, as str.isspace) and control characters, DEL included.
_BAD_ENDPOINT_CHAR = re.compile(r"[\s\x00-\x1f\x7f]")


#: Endpoints already found valid: a service calls the same few routes over and over, so
#: the checks below run once per distinct string. Bounded: paths may carry ids.
_VALID_ENDPOINTS: dict[str, None] = {}
_VALID_ENDPOINTS_MAX = 4096


def validate_endpoint(endpoint: str) -> str:
    """An endpoint path such as ``/orders/1?x=2``; absolute URLs and junk are refused."""
    if type(endpoint) is str and endpoint in _VALID_ENDPOINTS:
        return endpoint
    checked = _check_endpoint(endpoint)
    if len(_VALID_ENDPOINTS) >= _VALID_ENDPOINTS_MAX:
        _VALID_ENDPOINTS.clear()  # cheaper than LRU upkeep on every call; refills fast
    _VALID_ENDPOINTS[checked] = None
    return checked


def _check_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str):
        raise InvalidRequestError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if endpoint and not endpoint.startswith("/"):
        raise InvalidRequestError(f"endpoint {endpoint!r} must start with '/'")
    if "://" in endpoint.split("?", 1)[0] or endpoint.startswith("//"):
        raise InvalidRequestError(f"endpoint {endpoint!r} must be a path, not a URL")
    if _BAD_ENDPOINT_CHAR.search(endpoint) is not None:
        raise InvalidRequestError(
            f"endpoint {endpoint!r} contains whitespace or control characters"
        )
    return validate_path_segments(endpoint)


def encode_body(body: Any) -> tuple[bytes, str]:
    """JSON-encode a body (pydantic models included); InvalidRequestError if impossible."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    try:
        raw = jsonlib.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"request body is not JSON-serialisable: {exc}") from None
    return raw, "application/json"


def parse_body(response: httpx.Response, *, content_type: str | None = None) -> Any:
    """Parsed JSON when the body is JSON, else its text; ``None`` for an empty body.

    ``content_type`` is the response's Content-Type when the caller already read it.
    """
    content = response.content
    if not content:
        return None
    if content_type is None:
        content_type = response.headers.get("content-type", "")
    ctype = content_type.lower()
    if "json" in ctype or not ctype:
        try:
            return jsonlib.loads(content)
        except ValueError:
            pass
    try:
        return response.text
    except (LookupError, UnicodeDecodeError):
        return content.decode("utf-8", "replace")


def map_exception(exc: BaseException, service: str, endpoint: str) -> BaseException:
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


def build_request(
    verb: str,
    url: str,
    *,
    params: Any,
    body: bytes | None,
    headers: Mapping[str, str],
    endpoint: str,
) -> httpx.Request:
    """The ``httpx.Request`` of a call; InvalidRequestError when httpx refuses its parts."""
    try:
        return httpx.Request(verb, url, params=params, content=body, headers=headers)
    except (TypeError, ValueError, httpx.InvalidURL) as exc:
        raise InvalidRequestError(f"cannot build request for {endpoint!r}: {exc}") from None
