"""The fleet-wide retry budget (Finagle's and Envoy's, shared by every replica).

Requests are counted in process and carried to Redis with the next retry decision, or
by a background flush once they have waited a second, so counting a request costs the
caller no round trip. A retry asks ``limits_retrybudget_spend`` once: that one
call adds the pending request count and takes the retry if the window allows it.

Because pending requests reach Redis a little late, the budget can only be *stricter*
than the formula for the moment, never looser.
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


class FleetRetryBudget:
    """Retries of ``service``, fleet-wide: at most ``ratio * requests + min_per_second * 10``."""

    def __init__(
        self, store: LimitsStore, service: str, *, ratio: float, min_per_second: float
    ) -> None:
        self._store = store
        self.service = service
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._ratio_ppm, self._min_milli = budget_args(ratio, min_per_second)
        self._pending = 0
        self._pending_since = 0.0
        self._flushing: asyncio.Future[None] | None = None
        self.granted = 0
        self.refused = 0
        self.last: BudgetReply | None = None

    def record_request(self, n: int = 1) -> None:
        """Count ``n`` first attempts (no I/O on the caller's path).

        Pending counts older than a second are carried by a background flush, so a
        request is credited at most about a second after it happened.
        """
        now = time.monotonic()
        if not self._pending:
            self._pending_since = now
        self._pending += n
        if now - self._pending_since >= _FLUSH_AFTER and self._flushing is None:
            self._flushing = asyncio.ensure_future(self._background_flush())

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        finally:
            self._flushing = None

    async def allow_retry(self) -> bool:
        """Ask the fleet's budget for one retry; True when granted (and counted).

        When Redis cannot answer, the retry is allowed: the budget is a guard against
        storms, not a reason to fail calls that Redis cannot account for.
        """
        reply = await self._spend(1)
        if reply is None:
            return True
        if reply.granted:
            self.granted += 1
            return True
        self.refused += 1
        return False

    async def flush(self) -> None:
        """Carry the pending request count to Redis (no-op when none is pending)."""
        if self._pending:
            await self._spend(0)

    async def _spend(self, retries: int) -> BudgetReply | None:
        pending, self._pending = self._pending, 0
        try:
            reply = await self._store.budget_spend(
                self.service, pending, retries, self._ratio_ppm, self._min_milli,
                RETRY_BUDGET_WINDOW,
            )  # fmt: skip
        except StoreError as exc:
            self._pending += pending
            logger.debug("retry budget of %s not reached: %r", self.service, exc)
            return None
        self.last = reply
        return reply
