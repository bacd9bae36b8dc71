"""The admission of one call through a breaker, which reports that call's outcome.

A :class:`Permit` is handed out by :meth:`DistributedBreaker.acquire` and hands its
outcome back to the same breaker, which it knows only as :class:`Outcomes` (the breaker
imports this module, never the other way round).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Outcomes", "Permit"]


class Outcomes(Protocol):
    """Where a permit reports: the breaker that admitted it."""

    async def record(self, permit: Permit, *, ok: bool) -> None:
        """Record the call's outcome."""

    async def release(self, permit: Permit) -> None:
        """Give a permit back without an outcome."""


class Permit:
    """Admission of one call; report its outcome exactly once."""

    __slots__ = ("breaker", "budget", "done", "gen", "local", "started", "token")

    def __init__(self, breaker: Outcomes, gen: int, token: str, local: bool) -> None:
        self.breaker = breaker
        self.gen = gen
        self.token = token
        self.local = local
        self.started = time.monotonic()
        self.done = False
        #: (budget hash key, window in s) this call counts one request into, or None.
        self.budget: tuple[str, int] | None = None

    def count_request(self, budget_key: str, window_s: int) -> None:
        """Count this call as one request of the retry budget at ``budget_key``.

        The request goes with the report of this permit's outcome (the key must share
        the breaker's ``{service}`` hash tag); a permit released without an outcome
        (a cancelled call) counts none, which only makes the budget stricter.
        """
        self.budget = (budget_key, window_s)

    @property
    def probe(self) -> bool:
        """True when this call is a half-open probe holding a lease."""
        return bool(self.token)

    async def success(self) -> None:
        """Report success (a slow call counts as a failure when configured)."""
        await self.breaker.record(self, ok=True)

    async def failure(self) -> None:
        """Report failure."""
        await self.breaker.record(self, ok=False)

    async def release(self) -> None:
        """Give the permit back without an outcome (the call was cancelled)."""
        await self.breaker.release(self)
