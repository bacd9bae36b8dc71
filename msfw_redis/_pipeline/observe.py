"""Call observers: the pipeline's one hook for instrumentation (tracing, metrics).

An observer sees a call start and end, and each attempt start and end. The pipeline keeps
a tuple of observers and calls them only when it is non-empty, so an SDK without
instrumentation pays one truth test per step and nothing else.

Observers must be quick and must not raise: an exception from an observer is logged and
dropped, never allowed to change the call. An observer may add headers to the request in
:meth:`CallObserver.attempt_started` (trace propagation does this) before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

__all__ = ["AttemptRecord", "CallObserver", "CallRecord"]


@dataclass(slots=True)
class CallRecord:
    """One call as observers see it; ``data`` is scratch space keyed by observer.

    Attributes:
        service: the canonical service name.
        method: the HTTP method.
        endpoint: the path template the breaker and cache are named after.
        started: ``time.monotonic()`` at the start of the call.
        breaker_state: the breaker's state at the last admission (``closed``, ...), if any.
        cache: ``hit``, ``stale``, ``miss``, ``coalesced`` or ``bypass`` once known, else None.
        instance: the instance id chosen for the last attempt, if discovery chose one.
        attempts: attempts made so far.
        status_code: the final status, once the call ended with a response.
        error: the final exception, once the call ended with one.
    """

    service: str
    method: str
    endpoint: str
    started: float
    breaker_state: str | None = None
    cache: str | None = None
    instance: str | None = None
    attempts: int = 0
    status_code: int | None = None
    error: BaseException | None = None
    data: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AttemptRecord:
    """One attempt: its 1-based number, the request as sent, and how it ended."""

    number: int
    request: httpx.Request
    started: float
    response: httpx.Response | None = None
    error: BaseException | None = None
    data: dict[int, Any] = field(default_factory=dict)


class CallObserver(Protocol):
    """What an instrumentation plugs into the pipeline (``ServiceSDK.add_observer``)."""

    def call_started(self, call: CallRecord) -> None:
        """The call entered the pipeline (before middleware)."""

    def attempt_started(self, call: CallRecord, attempt: AttemptRecord) -> None:
        """An attempt passed the breaker and is about to be sent; headers may be added."""

    def attempt_ended(self, call: CallRecord, attempt: AttemptRecord) -> None:
        """The attempt got a response (``attempt.response``) or failed (``attempt.error``)."""

    def call_ended(self, call: CallRecord) -> None:
        """The call ended; ``call.status_code`` or ``call.error`` says how."""
