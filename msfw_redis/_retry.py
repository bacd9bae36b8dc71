"""Retry policy: which outcomes are retried, how long to wait, when to stop.

The maths and the decisions are pure functions; :func:`retrying` assembles them into a
``tenacity.AsyncRetrying`` (a well-kept library beats a hand-written loop) whose sleep
can be replaced in tests.

Back-off is exponential with **full jitter** and a cap (the AWS architecture blog's
formula): before retry ``n`` (1-based) the wait is
``uniform(0, min(max_delay, delay * backoff ** (n - 1)))``. A ``Retry-After`` header on
a 429/503 response raises the wait to at least what the server asked. A total deadline
covers every attempt and every wait: no retry starts that could not finish a wait
within it.

Safety: idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) retry on connect errors,
timeouts, dropped connections and the configured statuses (502, 503, 504 by default).
POST and PATCH retry only when the request cannot have reached the server (a connect
error), when it carries an ``Idempotency-Key`` header, or when the caller opts in.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, RetryCallState

from msfw_redis._exceptions import CircuitOpenError, ServiceNotFoundError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "RetryPolicy",
    "backoff_delay",
    "is_idempotent",
    "parse_retry_after",
    "retryable_exception",
    "retryable_response",
    "retrying",
]

DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one call retries.

    Attributes:
        attempts: attempts in total, the first included (at least 1).
        delay: seconds, the base of the back-off.
        backoff: multiplier per retry.
        max_delay: cap on one wait, seconds.
        deadline: seconds for all attempts and waits together, or ``None``.
        retry_statuses: response statuses that are retried.
        retry_non_idempotent: also retry POST/PATCH on any retryable outcome.
    """

    attempts: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 30.0
    deadline: float | None = None
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    retry_non_idempotent: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")


def backoff_delay(
    retry_number: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Full-jitter wait before retry ``retry_number`` (1 = the first retry)."""
    ceiling = min(policy.max_delay, policy.delay * policy.backoff ** max(0, retry_number - 1))
    return ceiling * rand()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def is_idempotent(method: str, headers: Mapping[str, str] | httpx.Headers | None = None) -> bool:
    """True for RFC 9110 idempotent methods, or any request with an Idempotency-Key."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return headers is not None and "idempotency-key" in {k.lower() for k in headers}


def retryable_exception(
    exc: BaseException,
    method: str,
    headers: Mapping[str, str] | httpx.Headers | None,
    policy: RetryPolicy,
) -> bool:
    """Whether an attempt that raised ``exc`` may be retried."""
    if isinstance(exc, (CircuitOpenError, ServiceNotFoundError)):
        return False  # the breaker said no; hammering it again helps nobody
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True  # the request never left: safe for every method
    transient = isinstance(
        exc, (httpx.TimeoutException, TimeoutError, httpx.NetworkError, httpx.RemoteProtocolError)
    )
    if not transient:
        return False
    return policy.retry_non_idempotent or is_idempotent(method, headers)


def retryable_response(
    response: httpx.Response,
    method: str,
    headers: Mapping[str, str] | httpx.Headers | None,
    policy: RetryPolicy,
) -> bool:
    """Whether a response with this status may be retried."""
    if response.status_code not in policy.retry_statuses:
        return False
    return policy.retry_non_idempotent or is_idempotent(method, headers)


def retrying(
    policy: RetryPolicy,
    *,
    method: str,
    headers: Mapping[str, str] | httpx.Headers | None,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> AsyncRetrying:
    """A tenacity controller for one call under ``policy``.

    Attempts return an ``httpx.Response`` or raise. When attempts or the deadline run
    out, the last response is returned or the last exception re-raised (never a
    tenacity ``RetryError``).
    """
    started = clock()

    def should_retry(state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            exc = outcome.exception()
            return exc is not None and retryable_exception(exc, method, headers, policy)
        result = outcome.result()
        return isinstance(result, httpx.Response) and retryable_response(
            result, method, headers, policy
        )

    def wait(state: RetryCallState) -> float:
        delay = backoff_delay(state.attempt_number, policy, rand)
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
            if isinstance(result, httpx.Response):
                asked = parse_retry_after(result.headers.get("retry-after"))
                if asked is not None:
                    delay = max(delay, asked)
        return delay

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        if policy.deadline is None:
            return False
        upcoming = state.upcoming_sleep or 0.0
        return clock() - started + upcoming >= policy.deadline

    def give_up(state: RetryCallState) -> Any:
        outcome = state.outcome
        if outcome is None:  # pragma: no cover - tenacity always sets it here
            raise RuntimeError("retry stopped without an outcome")
        return outcome.result()  # the last response, or the last exception re-raised

    return AsyncRetrying(
        retry=should_retry,
        wait=wait,
        stop=stop,
        sleep=sleep,
        retry_error_callback=give_up,
        reraise=True,
    )
