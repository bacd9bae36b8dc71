"""The retry step: a call's attempts under its retry policy, total deadline and the
fleet's retry budget.

The first attempt is made inline and, when it is final (a success, a status or error
that is not retried, or a policy of one attempt), returned at once: that is nearly
every call, and it pays for no closure, no loop and no budget bookkeeping beyond the
one request the breaker's report carries. Only a retryable first outcome enters
:func:`~msfw_redis._pipeline.retry.call_with_retries`, which goes on from it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

from msfw_redis._exceptions import ServiceTimeoutError
from msfw_redis._pipeline.retry import (
    call_with_retries,
    retryable_exception,
    retryable_response,
)
from msfw_redis._pipeline.steps import CALL_KEY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._limits.retrybudget import FleetRetryBudget
    from msfw_redis._pipeline.steps import CallContext, CallMetrics

__all__ = ["RetryStep"]


class RetryStep(httpx.AsyncBaseTransport):
    """The retry loop: attempts under the call's retry policy and total deadline."""

    def __init__(
        self,
        next_transport: httpx.AsyncBaseTransport,
        *,
        sleep: Callable[[float], Awaitable[None]],
        metrics: CallMetrics,
        budgets: Callable[[str], FleetRetryBudget | None] | None = None,
    ) -> None:
        self.next_transport = next_transport
        self._sleep = sleep
        self._metrics = metrics
        self._budgets = budgets

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx: CallContext = request.extensions[CALL_KEY]
        retry = ctx.policy.retry
        budget = self._budgets(ctx.service) if self._budgets is not None else None
        if budget is not None:
            # The fleet retry budget counts each call once: by the breaker's report of
            # its first admitted attempt (no round trip of its own), or in process,
            # batched, for a call with no breaker.
            if ctx.policy.breaker_enabled:
                ctx.budget_request = (budget.key, budget.window_s)
            else:
                budget.record_request()
        started = time.monotonic()
        first: httpx.Response | Exception
        try:
            response = await self._attempt(request, ctx)
        except Exception as exc:
            if retry.attempts <= 1 or not retryable_exception(
                exc, request.method, request.headers, retry
            ):
                raise
            first = exc
        else:
            if retry.attempts <= 1 or not retryable_response(
                response, request.method, request.headers, retry
            ):
                return response
            first = response
        return await self._retries(request, ctx, budget, first, started)

    async def _attempt(
        self,
        request: httpx.Request,
        ctx: CallContext,
        budget: FleetRetryBudget | None = None,
    ) -> httpx.Response:
        """One attempt: its timeout (bounded by the deadline), the budget's consent for a
        retry, counted, then sent on."""
        policy = ctx.policy
        timeout = policy.timeout
        if ctx.deadline_at is not None:
            remaining = ctx.deadline_at - time.monotonic()
            if remaining <= 0:
                # An attempt that cannot start within the deadline is not made.
                raise ServiceTimeoutError(
                    f"call to {ctx.service} {request.url.path} ran out of its "
                    f"{policy.retry.deadline}s deadline",
                    service_name=ctx.service,
                    endpoint=request.url.path,
                )
            timeout = min(timeout, remaining)
        if budget is not None and not await budget.allow_retry():
            raise _RetryBudgetRefused
        ctx.attempt_timeout = timeout
        ctx.attempts += 1
        if ctx.attempts > 1:
            self._metrics["retries"] += 1
        return await self.next_transport.handle_async_request(request)

    async def _retries(
        self,
        request: httpx.Request,
        ctx: CallContext,
        budget: FleetRetryBudget | None,
        first: httpx.Response | Exception,
        started: float,
    ) -> httpx.Response:
        """The attempts after a retryable first outcome."""
        metrics = self._metrics
        # The last outcome, for a retry the budget refuses: the call ends with it.
        last: list[httpx.Response | Exception] = [first]

        async def attempt() -> httpx.Response:
            try:
                response = await self._attempt(request, ctx, budget)
            except _RetryBudgetRefused:
                raise
            except Exception as exc:
                last[0] = exc
                raise
            last[0] = response
            return response

        try:
            return await call_with_retries(
                attempt,
                ctx.policy.retry,
                method=request.method,
                headers=request.headers,
                sleep=self._sleep,
                first=first,
                started=started,
            )
        except _RetryBudgetRefused:
            # The refused retry was never made: it is neither an attempt nor a retry.
            metrics["retry_budget_refusals"] += 1
            final = last[0]
            if isinstance(final, BaseException):
                final.add_note(
                    f"msfw_redis: the fleet retry budget of {ctx.service} refused a retry"
                )
                raise final from None
            return final


class _RetryBudgetRefused(Exception):
    """Raised inside the retry loop when the fleet's retry budget refuses a retry."""
