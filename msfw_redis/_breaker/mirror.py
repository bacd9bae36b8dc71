"""Keeping a breaker's mirror true to the shared state, off the hot path.

The mirror itself (the newest snapshot, when it was last read) stays on
:class:`~msfw_redis._breaker.breaker.DistributedBreaker`, where the CLOSED path reads it
with no indirection. This module owns what turns outside news into snapshots for it:

* a pub/sub transition event (:func:`event_snapshot`);
* a ``breaker_read`` reply that finds the key gone while the mirror knew it OPEN
  (:func:`vanished_while_open`), and the ``breaker_restore`` write-back that keeps such a
  breaker from closing silently (:func:`restore_open`);
* a reply that does not decode, logged once per breaker (:func:`log_corrupt`).

Everything the functions need is passed in; the breaker applies what they return.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from msfw_redis._breaker.machine import BreakerState, Snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from msfw_redis._store.replies import Reply
    from msfw_redis._store.store import Store

__all__ = ["event_snapshot", "log_corrupt", "restore_open", "vanished_while_open"]

logger = logging.getLogger("msfw_redis.breaker")


def event_snapshot(
    view: Snapshot, gen: int, state: BreakerState, opened_at: int, open_until: int, now: int
) -> Snapshot:
    """The snapshot a transition event stands for, given the mirror's current ``view``."""
    # Events do not carry the trip's failure count; OPEN -> HALF_OPEN keeps it.
    fat = (
        view.failures_at_trip
        if state is BreakerState.HALF_OPEN
        and view.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
        else 0
    )
    return Snapshot(0, state, gen, 0, 0, opened_at, open_until, now, failures_at_trip=fat)


def vanished_while_open(view: Snapshot, snap: Snapshot) -> bool:
    """True when ``snap`` reads a breaker as absent that ``view`` knew OPEN, in cool-down."""
    return (
        view.state is BreakerState.OPEN
        and view.gen > 0
        and snap.state is BreakerState.CLOSED
        and snap.now_ms < view.open_until_ms
    )


async def restore_open(
    store: Store,
    keys: Sequence[str],
    channel: str,
    name: str,
    view: Snapshot,
    absent: Snapshot,
    *,
    key_ttl_ms: int,
    label: str,
    decode: Callable[[Reply], Snapshot],
) -> Snapshot:
    """Write back the OPEN state ``view`` holds: the shared key vanished (read as ``absent``).

    Without this an OPEN breaker would close silently after FLUSHALL, a restart
    without persistence or eviction. ``breaker_restore`` re-creates it with the
    generation and cool-down end (server time) the mirror holds, unless another
    replica did first; a replica started after the loss has no mirror to restore.
    """
    m = view
    reply = await store.run(
        "breaker_restore",
        keys,
        [channel, name, m.gen, m.opened_at_ms, m.open_until_ms, m.failures_at_trip, key_ttl_ms],
    )
    snap = decode(reply)
    if snap.code & 1:
        logger.warning(
            "breaker %s: its shared state vanished while OPEN (FLUSHALL, a restart "
            "without persistence or eviction; read at gen %d); written back OPEN at "
            "gen %d until its cool-down ends",
            label, absent.gen, m.gen,
        )  # fmt: skip
    return dataclasses.replace(snap, code=0)


def log_corrupt(label: str, state_key: str) -> None:
    """Say that the stored state at ``state_key`` did not decode (the caller logs once)."""
    logger.warning(
        "breaker %s: the stored state at %s did not decode (another type or an "
        "unknown state); treated as absent and rewritten by the next write",
        label,
        state_key,
    )
