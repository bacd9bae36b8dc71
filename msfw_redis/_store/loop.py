"""Telling a starved event loop from a slow Redis.

An operation times out when its reply is not *processed* within ``op_timeout``. If the
event loop itself was blocked (a CPU-bound callback, dozens of busy tasks), the reply
may have arrived in time and only sat unread. Declaring Redis down then would send every
breaker local for a healthy server.

:class:`LoopLagMonitor` is a self-rescheduling timer (a ``call_later`` chain, no task, so
there is nothing to cancel or to hang on shutdown). Each tick notes how late it ran; the
store asks :meth:`starved_since` whether the loop fell behind by more than a threshold at
any time since an operation started.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from msfw_redis._running import running_loop

if TYPE_CHECKING:
    import asyncio

__all__ = ["LoopLagMonitor"]

#: How often the monitor ticks (s): short enough to see a stall within one op timeout.
_TICK = 0.025


class LoopLagMonitor:
    """Records when the running event loop last fell behind its timers."""

    def __init__(self, *, threshold: float) -> None:
        #: A tick (or a timeout) later than this (s) means the loop was starved.
        self.threshold = threshold
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expected = 0.0
        self._last_stall_end = -1.0
        self.max_lag = 0.0
        self.stalls = 0

    def ensure_running(self) -> None:
        """Start ticking on the running loop (no-op when already ticking there)."""
        loop = running_loop()  # once per Redis operation: no getpid() (see _running)
        if self._loop is loop and self._handle is not None:
            return
        self._loop = loop
        self._expected = time.monotonic() + _TICK
        self._handle = loop.call_later(_TICK, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self.note_lag(now - self._expected, now)
        if self._loop is None or self._loop.is_closed():
            self._handle = None
            return
        self._expected = now + _TICK
        self._handle = self._loop.call_later(_TICK, self._tick)

    def note_lag(self, lag: float, now: float) -> None:
        """Record that a callback due ``lag`` seconds ago ran at ``now``."""
        self.max_lag = max(self.max_lag, lag)
        if lag > self.threshold:
            self.stalls += 1
            self._last_stall_end = now

    def starved_since(self, start: float) -> bool:
        """True when the loop was starved at some point after monotonic time ``start``.

        Call it from the code that handles a timeout: the monitor's overdue tick runs
        before the timeout's cancellation reaches the awaiting task, so a stall that
        covered the deadline has already been recorded.
        """
        return self._last_stall_end >= start

    def stop(self) -> None:
        """Stop ticking."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None
