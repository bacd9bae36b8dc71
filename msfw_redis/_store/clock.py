"""The offset between this process's clock and the Redis server's clock.

Shared deadlines (breaker open-until, cache fresh-until, heartbeat deadlines) are
written in server time by the Lua scripts. To compare one locally without a round
trip, a process adds its measured offset to its own clock. The offset is measured
NTP-style: several ``clock_now`` calls, keeping the one with the shortest round trip
and assuming the server read its clock half-way through it.

The local clock is ``time.monotonic()``, never the wall clock: a host clock step
(NTP, a VM resume, an operator) cannot stretch or shorten an OPEN breaker. The offset
is re-measured every ``RESYNC_INTERVAL`` seconds and after every reconnect, so drift
between the two clocks (and a step of the *server's* clock) is caught up with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["RESYNC_INTERVAL", "ClockSample", "ServerClock"]

#: Seconds between re-measurements of the offset.
RESYNC_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One measurement: the server's ms and the local ms before and after the call."""

    server_ms: int
    local_before_ms: float
    local_after_ms: float

    @property
    def rtt_ms(self) -> float:
        return self.local_after_ms - self.local_before_ms

    @property
    def offset_ms(self) -> float:
        return self.server_ms - (self.local_before_ms + self.local_after_ms) / 2.0


class ServerClock:
    """Estimates Redis server time locally from a measured offset.

    ``now_ms()`` is local monotonic time plus the offset. It is accurate to about half
    the best round trip seen (well under a millisecond on a LAN), which is enough to
    decide locally whether an OPEN breaker's cool-down has passed; the scripts that
    actually change state always read ``TIME`` themselves.
    """

    def __init__(self, local_ms: Callable[[], float] | None = None) -> None:
        self._local_ms = local_ms or (lambda: time.monotonic() * 1000.0)
        self.offset_ms: float = 0.0
        self.best_rtt_ms: float | None = None
        self.synced = False
        #: Monotonic time of the last completed :meth:`sync` (``-inf`` before the first).
        self.synced_at = float("-inf")

    def stale(self, interval: float = RESYNC_INTERVAL) -> bool:
        """True when the offset was last measured more than ``interval`` seconds ago."""
        return time.monotonic() - self.synced_at >= interval

    def invalidate(self) -> None:
        """Ask for a re-measurement at the next opportunity (after a reconnect)."""
        self.synced_at = float("-inf")

    def now_ms(self) -> int:
        """Estimated server time now, in integer milliseconds."""
        return int(self._local_ms() + self.offset_ms)

    def observe(self, sample: ClockSample) -> None:
        """Take a sample into account; a sample with a shorter round trip wins."""
        if self.best_rtt_ms is None or sample.rtt_ms <= self.best_rtt_ms or not self.synced:
            self.best_rtt_ms = sample.rtt_ms
            self.offset_ms = sample.offset_ms
            self.synced = True

    async def sync(self, read_server_ms: Callable[[], Awaitable[int]], *, samples: int = 5) -> None:
        """Measure the offset afresh from ``samples`` calls of ``read_server_ms``."""
        best: ClockSample | None = None
        for _ in range(samples):
            before = self._local_ms()
            server_ms = await read_server_ms()
            after = self._local_ms()
            sample = ClockSample(server_ms, before, after)
            if best is None or sample.rtt_ms < best.rtt_ms:
                best = sample
        if best is not None:
            self.best_rtt_ms = None
            self.synced = False
            self.observe(best)
            self.synced_at = time.monotonic()
