"""The fleet-wide retry budget (Finagle's and Envoy's, shared by every replica).

Requests are counted by the breaker's own report: the call pipeline marks each call's
first admitted attempt (``Permit.count_request(budget.key, budget.window_s)``) and
``breaker_record`` adds it to this budget's per-second request bucket in the same
script that records the outcome, so counting a request costs no round trip, and a
request reaches the fleet's window as soon as its outcome does (failures at once,
successes within the breaker's ``success_flush_interval``). Only calls with no breaker
use :meth:`FleetRetryBudget.record_request`: counted in process and carried with the
next retry decision, or by a background flush once they have waited a second.

Retries are taken from a small local lease of retry tokens: one ``limits_retrybudget_spend``
call adds the pending request count and reserves up to ``_MAX_CHUNK`` retries at once,
counted in the fleet's window as retries when reserved. Later retries spend the lease
with no round trip. The chunk doubles while a lease is used up within its second (a
retry storm, where round trips matter) and falls back to one when a lease lapses
unused, and it never asks for more than a quarter of the room the last reply showed, so
near the budget's edge each retry is decided alone, exactly. A lease lapses at the end of the server
second it was reserved in (measured from before the call was sent), so every retry
lands in the same one-second bucket that counted it: the fleet bound holds exactly as
the script computes it. Unused reserved tokens only make the budget *stricter*.

Because requests reach Redis a little after they are sent (with their outcome), the
budget can only be stricter than the formula for the moment, never looser.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from msfw_redis._exceptions import StoreError
from msfw_redis._limits.budget import budget_args
from msfw_redis._limits.config import RETRY_BUDGET_WINDOW

if TYPE_CHECKING:
    from msfw_redis._limits.store import BudgetReply, LimitsStore

__all__ = ["FleetRetryBudget"]

logger = logging.getLogger("msfw_redis.limits")

#: Seconds request counts may wait in process before a background flush carries them.
_FLUSH_AFTER = 1.0
#: Most retry tokens one round trip reserves (the unused ones make the budget stricter).
_MAX_CHUNK = 8


class FleetRetryBudget:
    """Retries of ``service``, fleet-wide: at most ``ratio * requests + min_per_second * 10``."""

    def __init__(
        self, store: LimitsStore, service: str, *, ratio: float, min_per_second: float
    ) -> None:
        self._store = store
        self.service = service
        #: The budget's bucket hash (the service's hash tag, as the breaker's keys) and
        #: window: what a breaker report needs to count a request into it.
        self.key = store.keys.retry_budget(service)
        self.window_s = RETRY_BUDGET_WINDOW
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._ratio_ppm, self._min_milli = budget_args(ratio, min_per_second)
        self._pending = 0
        self._pending_since = 0.0
        self._flushing: asyncio.Future[None] | None = None
        self.granted = 0
        self.refused = 0
        self.last: BudgetReply | None = None
        self._tokens = 0  # reserved retries not yet made
        self._tokens_until = 0.0  # monotonic end of their server second
        self._chunk = 1

    def record_request(self, n: int = 1) -> None:
        """Count ``n`` first attempts of calls no breaker reports (no I/O here).

        Calls under a breaker are counted by its report instead (see module docs).
        Pending counts older than a second are carried by a background flush, so a
        request is credited at most about a second after it happened.
        """
        now = time.monotonic()
        if not self._pending:
            self._pending_since = now
        self._pending += n
        if now - self._pending_since >= _FLUSH_AFTER and self._flushing is None:
            self._flushing = asyncio.ensure_future(self._background_flush())

    def rebind(self) -> None:
        """Forget a flush of a previous (closed) event loop; counts stay pending."""
        self._flushing = None

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        finally:
            self._flushing = None

    async def allow_retry(self) -> bool:
        """Ask the fleet's budget for one retry; True when granted (and counted).

        A reserved token, if one is left in the current server second, grants it with no
        round trip; otherwise one call reserves the next lease (see module docs).
        When Redis cannot answer, the retry is allowed: the budget is a guard against
        storms, not a reason to fail calls that Redis cannot account for.
        """
        now = time.monotonic()
        if self._tokens and now < self._tokens_until:
            self._tokens -= 1
            self.granted += 1
            return True
        if not self._tokens and now < self._tokens_until:
            self._chunk = min(_MAX_CHUNK, self._chunk * 2)  # used up within its second
        else:
            self._chunk = 1  # lapsed unused, or the first retry in a while: demand is low
        self._tokens = 0
        ask = self._chunk
        last = self.last
        if last is not None:
            # Lease only far from the edge (a quarter of the room left), so a small or
            # nearly spent budget is decided one retry at a time, exactly.
            ask = max(1, min(ask, (last.allowed - last.retries) // 4))
        reply = await self._spend(ask, sent=now)
        if reply is not None and not reply.granted and ask > 1:
            reply = await self._spend(1, sent=now)  # at the budget's edge: one more try
        if reply is None:
            return True
        if reply.granted:
            self._tokens = reply.granted - 1
            self.granted += 1
            return True
        self._chunk = 1
        self.refused += 1
        return False

    async def flush(self) -> None:
        """Carry the pending request count to Redis (no-op when none is pending)."""
        if self._pending:
            await self._spend(0)

    async def _spend(self, retries: int, *, sent: float = 0.0) -> BudgetReply | None:
        pending, self._pending = self._pending, 0
        try:
            reply = await self._store.budget_spend(
                self.service, pending, retries, self._ratio_ppm, self._min_milli,
                self.window_s,
            )  # fmt: skip
        except StoreError as exc:
            self._pending += pending
            logger.debug("retry budget of %s not reached: %r", self.service, exc)
            return None
        self.last = reply
        if reply.granted:
            # The tokens are counted in server second now_ms // 1000; they lapse when it
            # ends, measured from before the call left, so never later than that.
            self._tokens_until = sent + (1000 - reply.now_ms % 1000) / 1000.0
        return reply
