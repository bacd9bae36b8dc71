"""Request input refused before any I/O: header names and values, path segments, seconds.

Everything here raises :class:`~msfw_redis.InvalidRequestError`, which the pipeline
re-raises before the breaker or the wire sees the call: a caller's bad input is never
counted as a failure of the service.

* Header names and values must not contain CR, LF or NUL (header injection); names
  must also be non-empty HTTP tokens.
* ``.`` and ``..`` path segments are **refused** (not percent-encoded), in endpoints
  and in typed path parameters alike: a call always stays inside its base path.
* Per-call seconds (``timeout``, ``deadline``) must be finite and positive.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import InvalidRequestError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "header_problem",
    "validate_headers",
    "validate_path_segments",
    "validate_seconds",
]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN = ("\r", "\n", "\x00")


def header_problem(name: object, value: object) -> str | None:
    """Why ``name: value`` cannot be sent as a header, or ``None`` when it can."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        return f"header name {name!r} is not a valid HTTP token"
    text = value if isinstance(value, str) else str(value)
    if any(ch in text for ch in _FORBIDDEN):
        return f"header {name!r} has a CR, LF or NUL character in its value"
    return None


def validate_headers(headers: Mapping[str, Any] | None) -> None:
    """Raise InvalidRequestError for the first header that cannot be sent safely."""
    if not headers:
        return
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            raise InvalidRequestError(problem)


def validate_path_segments(path: str) -> str:
    """``path`` unchanged, or InvalidRequestError when a segment is ``.`` or ``..``.

    Percent-encoded dots (``%2e``) count too: many servers decode them before routing.
    """
    route = path.split("?", 1)[0].split("#", 1)[0]
    for segment in route.split("/"):
        if segment.lower().replace("%2e", ".") in (".", ".."):
            raise InvalidRequestError(
                f"path {path!r} has a {segment!r} segment; '.' and '..' segments are "
                "refused so that a call stays inside its base path"
            )
    return path


def validate_seconds(name: str, value: object) -> float:
    """``value`` as float seconds if it is a finite number > 0, else InvalidRequestError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidRequestError(
            f"{name} must be a finite, positive number of seconds, got {value!r}"
        )
    return float(value)
