"""Retry maths and decisions (pure, no I/O)."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from msfw_redis import CircuitOpenError
from msfw_redis._pipeline.retry import (
    RetryPolicy,
    backoff_delay,
    call_with_retries,
    is_idempotent,
    parse_retry_after,
    retryable_exception,
    retryable_response,
)

POLICY = RetryPolicy(attempts=5, delay=1.0, backoff=2.0, max_delay=5.0)


def test_full_jitter_backoff_bounds_and_cap() -> None:
    """Wait n is uniform in [0, min(cap, delay * backoff**(n-1))]."""
    assert backoff_delay(1, POLICY, rand=lambda: 1.0) == 1.0
    assert backoff_delay(2, POLICY, rand=lambda: 1.0) == 2.0
    assert backoff_delay(3, POLICY, rand=lambda: 1.0) == 4.0
    assert backoff_delay(4, POLICY, rand=lambda: 1.0) == 5.0  # capped
    assert backoff_delay(10, POLICY, rand=lambda: 0.5) == 2.5
    assert backoff_delay(3, POLICY, rand=lambda: 0.0) == 0.0


def test_parse_retry_after() -> None:
    """Delta-seconds and HTTP dates parse; junk and negatives do not hurt."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)
    sent = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(date, date=sent) == pytest.approx(20.0)


def test_idempotency_rules() -> None:
    """GET/PUT/DELETE are idempotent; POST only with an Idempotency-Key."""
    assert is_idempotent("get")
    assert is_idempotent("PUT")
    assert not is_idempotent("POST")
    assert is_idempotent("POST", {"Idempotency-Key": "abc"})
    assert not is_idempotent("PATCH", {"X-Other": "1"})


def test_which_exceptions_retry() -> None:
    """Connect errors retry for every method; read errors only for safe ones; refusals never."""
    req = httpx.Request("POST", "http://x")
    p = RetryPolicy()
    assert retryable_exception(httpx.ConnectError("x", request=req), "POST", None, p)
    assert not retryable_exception(httpx.ReadTimeout("x", request=req), "POST", None, p)
    assert retryable_exception(httpx.ReadTimeout("x", request=req), "GET", None, p)
    assert retryable_exception(TimeoutError(), "GET", None, p)
    assert retryable_exception(
        httpx.ReadTimeout("x", request=req), "POST", None, RetryPolicy(retry_non_idempotent=True)
    )
    assert not retryable_exception(CircuitOpenError("open", retry_after=1.0), "GET", None, p)
    assert not retryable_exception(ValueError("bug"), "GET", None, p)


def test_which_statuses_retry() -> None:
    """Only configured statuses retry, and POST not without opting in."""
    p = RetryPolicy()
    for status in (500, 502, 503, 504):
        assert retryable_response(httpx.Response(status), "GET", None, p)
    assert not retryable_response(httpx.Response(501), "GET", None, p)
    assert not retryable_response(httpx.Response(503), "POST", None, p)
    assert not retryable_response(
        httpx.Response(500), "GET", None, RetryPolicy(retry_statuses=frozenset({503}))
    )


def test_429_retries_only_with_a_retry_after_that_fits() -> None:
    """429 is retried when Retry-After says when and the wait is within max_delay."""
    p = RetryPolicy(max_delay=10.0)
    assert retryable_response(httpx.Response(429, headers={"Retry-After": "3"}), "GET", None, p)
    assert not retryable_response(httpx.Response(429), "GET", None, p)
    assert not retryable_response(
        httpx.Response(429, headers={"Retry-After": "60"}), "GET", None, p
    )
    assert not retryable_response(
        httpx.Response(429, headers={"Retry-After": "3"}), "POST", None, p
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def test_loop_returns_last_response_when_attempts_run_out() -> None:
    """After the last attempt the last response is returned, not an exception."""
    clock = Clock()
    calls = 0

    async def attempt() -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    resp = await call_with_retries(
        attempt, RetryPolicy(attempts=3, delay=1.0), method="GET", headers=None,
        sleep=clock.sleep, clock=clock, rand=lambda: 1.0,
    )  # fmt: skip
    assert (resp.status_code, calls) == (503, 3)
    assert clock.waits == [1.0, 2.0]


async def test_loop_reraises_last_exception_and_respects_deadline() -> None:
    """A wait that would overrun the deadline is not started; the last error is raised."""
    clock = Clock()
    calls = 0

    async def attempt() -> httpx.Response:
        nonlocal calls
        calls += 1
        clock.now += 1.0
        raise httpx.ConnectError("refused")

    with pytest.raises(httpx.ConnectError):
        await call_with_retries(
            attempt, RetryPolicy(attempts=10, delay=1.0, deadline=4.0), method="GET",
            headers=None, sleep=clock.sleep, clock=clock, rand=lambda: 1.0,
        )  # fmt: skip
    # t=1 fail, wait 1 -> t=2, attempt -> t=3 fail, wait 2 would end at 5 >= 4: stop.
    assert calls == 2
    assert clock.waits == [1.0]


async def test_retry_after_raises_the_wait() -> None:
    """Retry-After beyond the jittered back-off sets the wait."""
    clock = Clock()
    answers = [httpx.Response(503, headers={"Retry-After": "9"}), httpx.Response(200)]

    async def attempt() -> httpx.Response:
        return answers.pop(0)

    resp = await call_with_retries(
        attempt, RetryPolicy(attempts=3), method="GET", headers=None,
        sleep=clock.sleep, clock=clock, rand=lambda: 0.1,
    )  # fmt: skip
    assert resp.status_code == 200
    assert clock.waits == [9.0]


def test_policy_rejects_zero_attempts() -> None:
    """A policy needs at least one attempt."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
