"""Coalescing concurrent calls for one key within one process ("single flight").

The first caller for a key (the leader) runs the work inline, with no task on the hot
path; callers that arrive meanwhile (followers) await its result. If the leader is
cancelled or fails unexpectedly, its followers are told :class:`LeaderGone` and start
over, one of them becoming the new leader, so a caller's timeout never becomes
another caller's error.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable

__all__ = ["Flights", "LeaderGone"]

R = TypeVar("R")


class LeaderGone(Exception):
    """The leader of a flight ended without a result; followers start over."""


class Flights(Generic[R]):
    """At most one running ``work`` per key; everyone else shares its result."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[R]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def busy(self, key: Hashable) -> bool:
        """True while a flight for ``key`` is running (a caller would follow it)."""
        return key in self._flights

    def rebind(self) -> None:
        """Forget flights of a previous (closed) event loop: their futures belong to it."""
        self._flights.clear()

    async def run(self, key: Hashable, work: Callable[[], Awaitable[R]]) -> tuple[R, bool]:
        """``work()``'s result for ``key`` and whether this caller was a follower."""
        while (flight := self._flights.get(key)) is not None:
            try:
                # Shielded: a follower giving up must not cancel the shared future.
                return await asyncio.shield(flight), True
            except LeaderGone:
                continue
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = await work()
        except BaseException:
            flight.set_exception(LeaderGone())
            flight.exception()  # retrieved here, so an unfollowed flight logs nothing
            raise
        else:
            flight.set_result(result)
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
        return result, False
