"""A breaker's time away from the shared state, and how it comes back.

A breaker leaves the shared state when a write fails for any reason: Redis down or
slow, READONLY (a replica or a demoted primary), NOPERM (an ACL without ``HSET``), OOM.
It then keeps counting on its :class:`~msfw_redis._breaker.machine.LocalBreaker`, which
opens at the same threshold. A read that succeeds proves nothing about writes, so the
breaker rejoins only through a **write** that succeeds: one ``breaker_record`` carrying
the outcomes it counted locally, as a batched report does.

:class:`LocalEpisode` is that bookkeeping: the shared generation the outcomes belong to,
what to carry, and when the next rejoin write is due (a permission error backs off for
long, since only an operator can fix it). :class:`LocalFallback` pairs it with the local
breaker: the one object a breaker holds while it is away, so leaving and rejoining swap
one attribute.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._breaker.machine import BreakerState, LocalBreaker
from msfw_redis._exceptions import StoreError
from msfw_redis._store.errors import is_refusal

if TYPE_CHECKING:
    from msfw_redis._breaker.machine import BreakerParams, Snapshot
    from msfw_redis._store.store import Store

__all__ = ["LocalEpisode", "LocalFallback"]

#: First and longest wait between rejoin writes after an outage or a refusal (s).
_REJOIN_BACKOFF_INITIAL = 0.5
_REJOIN_BACKOFF_MAX = 5.0


@dataclass(slots=True)
class LocalEpisode:
    """Outcomes recorded locally since the breaker left the shared state.

    Attributes:
        gen: the shared generation when the breaker left; carried outcomes are
            recorded against it, so the script ignores them (except in the lifetime
            totals) if the fleet's breaker moved on meanwhile.
        successes: every success counted locally.
        failures: every failure counted locally.
        trailing_failures: failures since the last local success; in consecutive mode
            this is what the shared count must hold after successes are applied first.
        retry_at: monotonic time of the next rejoin write.
        backoff: the current wait between rejoin writes.
        floor: a minimum wait imposed by the last refusal (e.g. 60 s for NOPERM).
    """

    gen: int
    successes: int = 0
    failures: int = 0
    trailing_failures: int = 0
    retry_at: float = 0.0
    backoff: float = _REJOIN_BACKOFF_INITIAL
    floor: float = 0.0

    def note(self, successes: int, failures: int) -> None:
        """Count outcomes recorded locally (successes before failures, as the script does)."""
        self.successes += successes
        self.failures += failures
        if successes:
            self.trailing_failures = 0
        self.trailing_failures += failures

    def carry(self, *, rate_mode: bool) -> tuple[int, int]:
        """The ``(successes, failures)`` one rejoin write records.

        In rate mode every outcome counts in the window. In consecutive mode the
        failures before the last success were already cancelled by it, so only the
        trailing run is sent (the lifetime totals then miss the earlier ones).
        """
        return self.successes, self.failures if rate_mode else self.trailing_failures

    def due(self, now: float | None = None) -> bool:
        """True when a rejoin write may be tried now."""
        return (time.monotonic() if now is None else now) >= self.retry_at

    def defer(self, *, floor: float = 0.0, now: float | None = None) -> float:
        """A rejoin write failed: wait longer before the next one; returns the wait."""
        now = time.monotonic() if now is None else now
        self.floor = max(self.floor, floor)
        wait = max(self.backoff, self.floor)
        self.retry_at = now + wait
        self.backoff = min(self.backoff * 2.0, _REJOIN_BACKOFF_MAX)
        return wait


class LocalFallback:
    """The local breaker a breaker runs while away from the shared state, and its episode.

    Seeded from the breaker's mirror, so it carries on from the fleet's last known state
    and opens at the same threshold.
    """

    __slots__ = ("breaker", "episode")

    def __init__(self, view: Snapshot, params: BreakerParams) -> None:
        self.episode = LocalEpisode(gen=view.gen)
        self.breaker = LocalBreaker(
            params,
            state=view.state,
            gen=view.gen,
            failures=view.failures,
            successes=view.successes,
            opened_at_ms=view.opened_at_ms,
            open_until_ms=view.open_until_ms,
        )

    def defer(self, store: Store, exc: BaseException) -> None:
        """A write failed with ``exc``: put the next rejoin write off."""
        # A refusal (above all NOPERM) is not fixed by retrying every few seconds.
        floor = 0.0
        if isinstance(exc, StoreError) and is_refusal(exc):
            floor = store.refusal_backoff(exc)
        self.episode.defer(floor=floor)

    def due(self) -> bool:
        """True when a rejoin write may be tried now."""
        return self.episode.due()

    def acquire(self, now_ms: int) -> tuple[Snapshot, str]:
        """Admit a call locally: the local breaker's reply and the probe token it holds."""
        local = self.breaker
        # Only a half-open admission needs a probe token; skip the syscall otherwise.
        admitting = local.state in (
            BreakerState.CLOSED,
            BreakerState.FORCED_CLOSED,
            BreakerState.DISABLED,
        )
        token = "" if admitting else os.urandom(8).hex()
        return local.acquire(token, now_ms), token

    def record(self, gen: int, successes: int, failures: int, token: str, now_ms: int) -> Snapshot:
        """Record outcomes on the local breaker and count them for the rejoin write."""
        snap = self.breaker.record(gen, successes, failures, token, now_ms)
        self.episode.note(successes, failures)
        return snap

    def release(self, token: str) -> None:
        """Give a local probe lease back without an outcome."""
        self.breaker.probes.pop(token, None)

    def start_rejoin(self, *, rate_mode: bool) -> tuple[int, int, LocalEpisode]:
        """``(successes, failures, episode)`` one rejoin write carries.

        Counted now: outcomes recorded while the write is in flight start a new tally,
        which :meth:`take_back` adds the sent episode to if the write fails.
        """
        sent = self.episode
        successes, failures = sent.carry(rate_mode=rate_mode)
        self.episode = LocalEpisode(gen=sent.gen, retry_at=sent.retry_at, backoff=sent.backoff)
        return successes, failures, sent

    def take_back(self, sent: LocalEpisode, store: Store, exc: BaseException) -> None:
        """The rejoin write of ``sent`` failed: its outcomes are carried by the next one."""
        self.episode.successes += sent.successes
        self.episode.failures += sent.failures
        self.episode.trailing_failures += sent.trailing_failures
        self.defer(store, exc)
