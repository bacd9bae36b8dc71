"""Values handed back to callers: call results and HTTP methods."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HTTPMethod", "ServiceResult"]


class HTTPMethod(enum.StrEnum):
    """HTTP methods accepted by service calls and typed interfaces."""

    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"


@dataclass(slots=True)
class ServiceResult:
    """What a call (or one item of a batch) came to. Never raised; always returned.

    Attributes:
        success: True for a 2xx/3xx response (or a batch item that returned).
        data: the parsed JSON body, else the body as text (``None`` when empty).
        error: a message saying what went wrong, or ``None``.
        status_code: the final HTTP status, or ``None`` when no response came back.
        headers: the final response's headers (lower-case names).
        attempts: how many attempts were made.
        elapsed: seconds from the call's start to its end, waits included.
        from_cache: True when the data came from the shared cache.
        stale: True when a stale cache entry was served (stale-if-error or
            stale-while-revalidate).
        exception: the exception behind ``error``, when there was one.
    """

    success: bool
    data: Any = None
    error: str | None = None
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    elapsed: float = 0.0
    from_cache: bool = False
    stale: bool = False
    exception: BaseException | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return self.success
