"""The near cache's bounds, with an injected clock: staleness, freshness, epochs, LRU."""

from __future__ import annotations

from msfw_redis._cache.entry import DataBody
from msfw_redis._cache.near import NearCache
from msfw_redis._cache.store import Lookup


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lookup(now_ms: int = 1_000_000, fresh_for_ms: int = 60_000) -> Lookup:
    return Lookup(
        "FRESH", "", b"x", now_ms - 10, now_ms + fresh_for_ms, now_ms + fresh_for_ms, 0, 0, now_ms
    )


def test_never_served_past_max_staleness_without_any_message() -> None:
    """With no invalidation at all (pub/sub gone), a copy is not served at max_staleness."""
    clock = Clock()
    near = NearCache(10, 1.0, clock=clock)
    near.put("s", "d", DataBody(1), lookup(), near.epoch("s"))
    clock.now += 0.999
    assert near.get("s", "d") is not None
    clock.now += 0.001
    assert near.get("s", "d") is None


def test_never_served_past_the_entrys_fresh_until() -> None:
    """A copy is not served past the entry's own server-time freshness."""
    clock = Clock()
    near = NearCache(10, 30.0, clock=clock)
    near.put("s", "d", DataBody(1), lookup(fresh_for_ms=200), near.epoch("s"))
    clock.now += 0.1
    assert near.get("s", "d") is not None
    clock.now += 0.1
    assert near.get("s", "d") is None


def test_invalidations_drop_copies_and_fence_reads_in_flight() -> None:
    """A fill message drops the copy; a read started before a message is not kept."""
    near = NearCache(10, 30.0, clock=Clock())
    near.put("s", "d", DataBody(1), lookup(), near.epoch("s"))
    near.on_message("s", "d", "F")
    assert near.get("s", "d") is None
    epoch = near.epoch("s")
    near.on_message("s", "other", "C")
    near.put("s", "d", DataBody(2), lookup(), epoch)
    assert near.get("s", "d") is None


def test_generation_bump_and_outage_empty_it() -> None:
    """A bump drops the whole service; a Redis outage empties and disables it."""
    near = NearCache(10, 30.0, clock=Clock())
    for digest in ("a", "b"):
        near.put("s", digest, DataBody(1), lookup(), near.epoch("s"))
    near.put("t", "a", DataBody(1), lookup(), near.epoch("t"))
    near.on_message("s", "fabc", "G")
    assert near.get("s", "a") is None and near.get("s", "b") is None
    assert near.get("t", "a") is not None
    near.suspend()
    assert len(near) == 0
    near.put("t", "a", DataBody(1), lookup(), near.epoch("t"))
    assert near.get("t", "a") is None
    near.resume()
    near.put("t", "a", DataBody(1), lookup(), near.epoch("t"))
    assert near.get("t", "a") is not None


def test_lru_bound() -> None:
    """Past max_entries the least recently used copy goes first."""
    near = NearCache(2, 30.0, clock=Clock())
    near.put("s", "a", DataBody(1), lookup(), 0)
    near.put("s", "b", DataBody(2), lookup(), 0)
    assert near.get("s", "a") is not None
    near.put("s", "c", DataBody(3), lookup(), 0)
    assert near.get("s", "b") is None
    assert near.get("s", "a") is not None and near.get("s", "c") is not None
