"""How the SDK's verbs turn arguments into a body and a call's outcome into a ServiceResult."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import InvalidRequestError, ServiceClientError
from msfw_redis._models import ServiceResult
from msfw_redis._pipeline.request import UNSET, error_for_response, parse_body

if TYPE_CHECKING:
    import httpx

    from msfw_redis._pipeline.pipeline import CallOutcome

__all__ = ["json_or_content", "result_from"]


def json_or_content(data: Any, json: Any) -> dict[str, Any]:
    """The httpx body argument for ``data=`` (JSON unless text or bytes) or ``json=``."""
    if data is not None and json is not UNSET:
        raise InvalidRequestError("pass either data= or json=, not both")
    if json is not UNSET:
        return {"json": json}
    if data is None:
        return {}
    if isinstance(data, (str, bytes)):
        return {"content": data}
    return {"json": data}


def result_from(outcome: CallOutcome, service: str) -> ServiceResult:
    """The ServiceResult of a finished call (never raises)."""
    if outcome.exception is not None:
        exc = outcome.exception
        return ServiceResult(
            success=False,
            error=str(exc) or type(exc).__name__,
            status_code=getattr(exc, "status_code", None),
            attempts=outcome.attempts,
            elapsed=outcome.elapsed,
            exception=exc,
        )
    response = outcome.response
    if response is None:  # pragma: no cover
        return ServiceResult(success=False, error="no response", attempts=outcome.attempts)
    ok = response.status_code < 400
    error_exc: ServiceClientError | None = None
    if not ok:
        error_exc = error_for_response(response, service, outcome.endpoint)
        error_exc.attempts = outcome.attempts
    headers = _headers_dict(response.headers)
    return ServiceResult(
        success=ok,
        data=parse_body(response, content_type=headers.get("content-type", "")),
        error=None if error_exc is None else str(error_exc),
        status_code=response.status_code,
        headers=headers,
        attempts=outcome.attempts,
        elapsed=outcome.elapsed,
        from_cache=outcome.from_cache,
        stale=outcome.stale,
        exception=error_exc,
    )


def _headers_dict(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names to values, repeated names joined with ", " (as ``Headers.items()``
    and ``Headers[name]`` do), in one pass over the raw list: the result's content type
    is read from it too, where ``Headers.get`` would decode and scan the list again."""
    encoding = headers.encoding
    joined: dict[str, str] = {}
    for key, value in headers.raw:
        name = key.decode(encoding).lower()
        text = value.decode(encoding)
        if name in joined:
            joined[name] += f", {text}"
        else:
            joined[name] = text
    return joined
