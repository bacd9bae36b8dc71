"""The near cache: a bounded per-process copy of hot, fresh shared-cache entries.

Opt-in per call (``near=True``, from ``@cached_service_call(near_cache=True)`` or a
service's ``near_cache = true``). A near hit makes no Redis round trip. What keeps a
copy honest:

* **Invalidation by pub/sub.** Every fill, clear, drop and generation bump publishes on
  the service's cache channel (``lua/cache_*.lua``); :meth:`NearCache.on_message` drops
  the copy (or the whole service on a bump or a resubscription).
* **A hard staleness bound.** A copy is served at most ``max_staleness`` seconds after
  it was read from Redis (monotonic clock), and never past the entry's own
  fresh-until (server time, estimated from the lookup's ``now_ms``). This is the safety
  net for a lost message: with pub/sub gone, no copy older than the bound is served.
* **Epochs.** Each service has a counter bumped by every invalidation. A copy read from
  Redis is kept only if no invalidation arrived while the read was in flight, so a
  reply overtaken by a newer fill's message cannot be cached as current.
* **Off during a Redis outage.** :meth:`suspend` empties it and turns it off until
  :meth:`resume`, so it never serves past its bound while invalidations cannot arrive.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._cache.entry import DataBody, ResponseBody
    from msfw_redis._cache.store import Lookup

__all__ = ["DEFAULT_NEAR_MAX_ENTRIES", "DEFAULT_NEAR_MAX_STALENESS", "NearCache", "NearHit"]

#: Entries kept per process (LRU).
DEFAULT_NEAR_MAX_ENTRIES = 1000
#: Seconds a copy may be served without Redis.
DEFAULT_NEAR_MAX_STALENESS = 1.0


@dataclass(frozen=True, slots=True)
class NearHit:
    """A near-cache copy: the entry body and its age in seconds."""

    body: DataBody | ResponseBody
    age: float


@dataclass(frozen=True, slots=True)
class _Copy:
    body: DataBody | ResponseBody
    read_at: float  # monotonic seconds when Redis answered
    server_ms: int  # the server's time in that answer
    stored_at_ms: int
    fresh_until_ms: int


class NearCache:
    """An LRU of fresh entries per ``(service, digest)`` (see the module docstring).

    Args:
        max_entries: copies kept (>= 1); the least recently used goes first.
        max_staleness: seconds (> 0) a copy may be served after its Redis read.
        clock: monotonic seconds (a test hook).
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_NEAR_MAX_ENTRIES,
        max_staleness: float = DEFAULT_NEAR_MAX_STALENESS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"near cache max_entries must be >= 1, got {max_entries}")
        if not max_staleness > 0:
            raise ValueError(f"near cache max_staleness must be > 0 s, got {max_staleness}")
        self.max_entries = max_entries
        self.max_staleness = max_staleness
        self._clock = clock
        self._copies: OrderedDict[tuple[str, str], _Copy] = OrderedDict()
        self._epochs: dict[str, int] = {}
        self._suspended = False

    def __len__(self) -> int:
        return len(self._copies)

    def epoch(self, service: str) -> int:
        """The service's invalidation counter; pass it back to :meth:`put`."""
        return self._epochs.get(service, 0)

    def get(self, service: str, digest: str) -> NearHit | None:
        """A copy still within both bounds, else ``None`` (and the copy is dropped)."""
        copy = self._copies.get((service, digest))
        if copy is None:
            return None
        elapsed = self._clock() - copy.read_at
        # Rounded up: the estimate errs towards older, never towards fresher.
        server_now = copy.server_ms + math.ceil(elapsed * 1000.0)
        if elapsed >= self.max_staleness or server_now >= copy.fresh_until_ms:
            del self._copies[(service, digest)]
            return None
        self._copies.move_to_end((service, digest))
        return NearHit(copy.body, max(0, server_now - copy.stored_at_ms) / 1000.0)

    def put(
        self,
        service: str,
        digest: str,
        body: DataBody | ResponseBody,
        lookup: Lookup,
        epoch: int,
    ) -> None:
        """Keep a fresh entry read with ``lookup``, unless invalidated since ``epoch``."""
        if self._suspended or self._epochs.get(service, 0) != epoch:
            return
        self._copies[(service, digest)] = _Copy(
            body, self._clock(), lookup.now_ms, lookup.stored_at_ms, lookup.fresh_until_ms
        )
        self._copies.move_to_end((service, digest))
        while len(self._copies) > self.max_entries:
            self._copies.popitem(last=False)

    def discard(self, service: str, digest: str) -> None:
        """Drop one copy."""
        self._copies.pop((service, digest), None)

    def on_message(self, service: str, digest: str, kind: str) -> None:
        """A cache-channel message: drop the copy, or the service's on a generation bump."""
        self._epochs[service] = self._epochs.get(service, 0) + 1
        if kind == "G":
            self.drop_service(service)
        else:
            self._copies.pop((service, digest), None)

    def drop_service(self, service: str) -> None:
        """Drop every copy of ``service`` (a bump, or messages may have been lost)."""
        self._epochs[service] = self._epochs.get(service, 0) + 1
        for name in [k for k in self._copies if k[0] == service]:
            del self._copies[name]

    def suspend(self) -> None:
        """Empty the cache and keep it off (Redis is unavailable)."""
        self._suspended = True
        self._copies.clear()
        for service in self._epochs:
            self._epochs[service] += 1

    def resume(self) -> None:
        """Turn it back on (Redis answers again)."""
        self._suspended = False
