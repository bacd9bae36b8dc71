"""The store's availability gates: which shard is down, and for how long to fail fast.

:class:`ShardGates` owns one gate per shard (one in all on a single node; on Redis
Cluster one per slot master, see :func:`shard_of`). After an outage failure (a
connection error or a timeout) a gate closes: operations on that shard fail at once,
without touching the network, until a growing, jittered back-off window passes, so a
dead Redis costs a caller at most one ``op_timeout`` per window, never one per call.
One WARNING is logged per outage and one INFO on recovery.

It also owns the refusals (READONLY, NOPERM, OOM): Redis answered, so they never close
a gate, and each kind is logged once as a WARNING naming the back-off callers should
use before writing again (:func:`refusal_backoff`).

The gates only decide and count; :class:`msfw_redis._store.store.Store` runs the
operations and reacts to a recovery (clock, listeners).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard, cast

from redis.asyncio.cluster import RedisCluster

from msfw_redis._exceptions import (
    StoreClusterError,
    StoreConnectionError,
    StoreError,
    StorePermissionError,
)

if TYPE_CHECKING:
    from msfw_redis._store.connection import StoreClient

__all__ = [
    "PERMISSION_BACKOFF",
    "REFUSAL_BACKOFF",
    "ShardGates",
    "StoreStats",
    "is_cluster_client",
    "refusal_backoff",
    "shard_of",
]

# The store's logger: these are the store's outage and refusal messages.
logger = logging.getLogger("msfw_redis.store")

#: Back-off between attempts to reach a store (or shard) that is down: first window and
#: cap (s). The cap stays under 1 s so that shared state is back within a second of a
#: failover completing; a fleet probing a dead Redis about once a second is cheap.
_OUTAGE_BACKOFF_INITIAL = 0.2
_OUTAGE_BACKOFF_MAX = 0.8
_ONE_GATE = "*"
#: How long to wait before writing again after a refusal (s): a permission error only
#: goes away when an operator changes the ACL; READONLY and OOM may pass in seconds.
PERMISSION_BACKOFF = 60.0
REFUSAL_BACKOFF = 2.0


@dataclass(slots=True)
class StoreStats:
    """Counters about the store's health, for metrics.

    The gates count outages, recoveries, fast failures and refusals; the store counts
    script reloads and timeouts of a starved event loop.
    """

    outages: int = 0
    recoveries: int = 0
    fast_failures: int = 0
    script_reloads: int = 0
    refusals: int = 0
    starved_timeouts: int = 0


@dataclass(slots=True)
class _Gate:
    """Outage state of one shard (or of the whole store on a single node)."""

    down_since: float | None = None
    retry_at: float = 0.0
    backoff: float = _OUTAGE_BACKOFF_INITIAL


#: client type -> is it a cluster client. RedisCluster's metaclass is typing's
#: _ProtocolMeta (redis-py's command mixins are Protocols), so a plain isinstance()
#: runs Python code: about 5 µs on every keyed operation on a 2-core machine.
_CLUSTER_TYPES: dict[type, bool] = {}


def is_cluster_client(client: object) -> TypeGuard[RedisCluster]:
    """True for a redis-py cluster client, without typing's slow instance check.

    Use it instead of ``isinstance(client, RedisCluster)`` everywhere, so one test
    decides what a cluster client is.
    """
    return _is_cluster(type(client))


def _is_cluster(kind: type) -> bool:
    found = _CLUSTER_TYPES.get(kind)
    if found is None:
        found = _CLUSTER_TYPES[kind] = issubclass(kind, RedisCluster)
    return found


def shard_of(client: StoreClient, key: str | bytes | None) -> str:
    """The gate an operation on ``key`` passes: its slot's master on Cluster.

    Keyless operations and single-node stores share one gate. After a failover the
    cluster client names the promoted replica, whose gate is fresh, so a service's
    state is back as soon as redis-py has refreshed its slot table.
    """
    if key is None or not _is_cluster(type(client)):
        return _ONE_GATE
    try:
        # redis-py hashes the key's encoded form, so bytes are fine (its stub says str).
        node = cast("RedisCluster", client).get_node_from_key(key)  # type: ignore[arg-type]
    except Exception:  # an uninitialised or refreshing slot table
        return _ONE_GATE
    return node.name if node is not None else _ONE_GATE


def refusal_backoff(err: StoreError) -> float:
    """Seconds to wait before writing again after ``err`` refused a write."""
    return PERMISSION_BACKOFF if isinstance(err, StorePermissionError) else REFUSAL_BACKOFF


class ShardGates:
    """The outage gate of every shard, and the refusal log; see the module doc.

    ``label`` names the store in log lines (its URL, redacted); ``stats`` is the store's.
    """

    def __init__(self, stats: StoreStats, *, label: str) -> None:
        self.stats = stats
        self.label = label
        self._gates: dict[str, _Gate] = {}
        self._refusals_logged: set[type[StoreError]] = set()

    @property
    def available(self) -> bool:
        """False while any shard is considered down (inside an outage)."""
        return all(g.down_since is None for g in self._gates.values())

    @property
    def retry_due(self) -> bool:
        """True when an operation would reach Redis (up, or an outage window passed)."""
        now = time.monotonic()
        down = [g for g in self._gates.values() if g.down_since is not None]
        return not down or any(now >= g.retry_at for g in down)

    def available_for(self, shard: str) -> bool:
        """False while ``shard`` is considered down."""
        gate = self._gates.get(shard)
        return gate is None or gate.down_since is None

    def check(self, what: str, shard: str) -> None:
        """Raise :class:`StoreConnectionError` while ``shard``'s outage window runs."""
        gate = self._gates.get(shard)
        if gate is not None and gate.down_since is not None and time.monotonic() < gate.retry_at:
            self.stats.fast_failures += 1
            where = "" if shard == _ONE_GATE else f" (shard {shard})"
            raise StoreConnectionError(
                f"Redis{where} is unavailable (down for "
                f"{time.monotonic() - gate.down_since:.1f}s); {what} skipped"
            )

    def failure(self, err: StoreError, shard: str) -> None:
        """An outage failure on ``shard``: close its gate, or widen its window."""
        now = time.monotonic()
        gate = self._gates.setdefault(shard, _Gate())
        if gate.down_since is None:
            gate.down_since = now
            gate.backoff = _OUTAGE_BACKOFF_INITIAL
            self.stats.outages += 1
            where = "" if shard == _ONE_GATE else f" shard {shard}"
            state = "is failing" if isinstance(err, StoreClusterError) else "is unavailable"
            logger.warning("Redis store %s%s %s: %s", self.label, where, state, err)
        else:
            gate.backoff = min(gate.backoff * 2.0, _OUTAGE_BACKOFF_MAX)
        # Jitter spreads the probes of many replicas after a shared outage.
        gate.retry_at = now + gate.backoff * random.uniform(0.5, 1.0)

    def success(self, shard: str) -> bool:
        """Redis answered on ``shard``; True when that ends an outage (a recovery)."""
        gate = self._gates.get(shard)
        if gate is None or gate.down_since is None:
            return False
        downtime = time.monotonic() - gate.down_since
        gate.down_since = None
        self.stats.recoveries += 1
        logger.info("Redis store %s recovered after %.1fs", self.label, downtime)
        return True

    def note_refusal(self, err: StoreError) -> None:
        """Count a refusal; log its kind the first time it is seen."""
        self.stats.refusals += 1
        kind = type(err)
        if kind in self._refusals_logged:
            return
        self._refusals_logged.add(kind)
        logger.warning(
            "Redis store %s refuses writes: %s; breakers run locally and retry writing "
            "every %.0fs (logged once)",
            self.label,
            err,
            refusal_backoff(err),
        )
