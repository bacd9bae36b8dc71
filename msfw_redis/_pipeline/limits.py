"""The fleet-limits step: Retry-After gate, rate limit and bulkhead, before the breaker.

The service's limits (settings, ``get_client(bulkhead_config=)``) apply first, then the
method's own (``@rate_limited`` / ``@bulkhead`` on a ``@service_call`` method, carried
as :class:`MethodLimits`), which are the same fleet limits a decorated plain function
uses: the same name or key shares one limit whichever way it is reached.

It sits after instance choice (so a bulkhead may be per instance) and before breaker
admission, so a refusal (:class:`RateLimitedError`, :class:`BulkheadFullError`) sends
nothing and never reaches the breaker as a failure. It is not retried: the retry loop
retries transient network errors and statuses only. After the attempt, a 429 (or 503
with ``Retry-After``) closes the endpoint for the fleet through the gate.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from msfw_redis._exceptions import BulkheadFullError, RateLimitedError
from msfw_redis._limits.plan import MethodLimits
from msfw_redis._pipeline.steps import CALL_KEY, CallContext, CallMetrics

if TYPE_CHECKING:
    from msfw_redis._limits.bulkhead import FleetBulkhead, Permit
    from msfw_redis._limits.plan import LimitsPlan

__all__ = ["LimitsStep", "MethodLimits"]  # MethodLimits lives in _limits.plan


#: Request extension set when this call's own response closed the Retry-After gate.
_CLOSED_BY_THIS_CALL = "msfw_redis.limits.closed_gate"


class LimitsStep(httpx.AsyncBaseTransport):
    """Fleet limits of each attempt (see module docs)."""

    def __init__(
        self, next_transport: httpx.AsyncBaseTransport, *, plan: LimitsPlan, metrics: CallMetrics
    ) -> None:
        self.next_transport = next_transport
        self._plan = plan
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx: CallContext = request.extensions[CALL_KEY]
        plan = self._plan
        try:
            # The call whose own response closed the gate already waits out Retry-After in
            # its retry loop; its retry is not refused by the window it set itself.
            if not request.extensions.get(_CLOSED_BY_THIS_CALL):
                gate = plan.gate
                if not gate.check_now(ctx.service, ctx.template):  # first use: load it
                    await gate.check(ctx.service, ctx.template)
            limiter = plan.rate_limiter(ctx.service, ctx.template)
            if limiter is not None:
                await limiter.acquire()
            own = ctx.method_limits
            if own is not None and own.rate_limit is not None:
                await plan.method_rate_limiter(*own.rate_limit).acquire()
        except (BulkheadFullError, RateLimitedError):
            self._metrics["limit_rejections"] += 1
            raise
        bulkhead = plan.bulkhead(ctx.service, ctx.instance)
        if bulkhead is None and (own is None or own.bulkhead is None):
            response = await self.next_transport.handle_async_request(request)
        else:
            response = await self._within_bulkheads(request, bulkhead, own)
        if response.status_code in (429, 503):
            window = await plan.gate.observe(
                ctx.service, ctx.template, response.status_code, response.headers
            )
            if window is not None:
                request.extensions[_CLOSED_BY_THIS_CALL] = True
        return response

    async def _within_bulkheads(
        self,
        request: httpx.Request,
        bulkhead: FleetBulkhead | None,
        own: MethodLimits | None,
    ) -> httpx.Response:
        permits: list[Permit] = []
        try:
            try:
                if bulkhead is not None:
                    permits.append(await bulkhead.acquire())
                if own is not None and own.bulkhead is not None:
                    permits.append(await self._plan.method_bulkhead(*own.bulkhead).acquire())
            except (BulkheadFullError, RateLimitedError):
                self._metrics["limit_rejections"] += 1
                raise
            return await self.next_transport.handle_async_request(request)
        finally:
            # Also on a refusal by the method's bulkhead: the service permit goes back.
            for permit in permits:
                await asyncio.shield(permit.release())
