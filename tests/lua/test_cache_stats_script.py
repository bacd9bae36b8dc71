"""lua/cache_stats_add.lua called directly, with a fixed now_ms, on fakeredis and a real server."""

from __future__ import annotations

import pytest

from msfw_redis._cache.stats import CacheStatsReader, stats_key
from msfw_redis._exceptions import ScriptError, StoreError
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store

MINUTE = 60_000
NOW = 1_700_000_000_000 // MINUTE * MINUTE  # the start of a minute
TTL = 3_600_000


async def add(store: Store, *deltas: int, now: int = NOW, ttl: int = TTL) -> int:
    key = stats_key(store, "svc")
    return reply_int(await store.run("cache_stats_add", [key], [now, ttl, *deltas]))


async def fields(store: Store) -> dict[str, str]:
    raw = await store.hgetall(stats_key(store, "svc"))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_adds_into_the_minute_slot_with_an_expiry(store: Store) -> None:
    """Deltas land in '<minute mod 60>:<result>' and the hash gets the given expiry."""
    minute = NOW // MINUTE
    assert await add(store, 3, 1, 0, 2, 0) == minute
    assert await add(store, 1, 0, 4, 0, 5, now=NOW + 59_999) == minute
    slot = minute % 60
    assert await fields(store) == {
        f"m{slot}": str(minute),
        f"{slot}:hit": "4",
        f"{slot}:miss": "1",
        f"{slot}:stale": "4",
        f"{slot}:coalesced": "2",
        f"{slot}:bypass": "5",
    }
    ttl = await store.client.pttl(stats_key(store, "svc"))
    assert 0 < ttl <= TTL


async def test_a_slot_an_hour_later_starts_over(store: Store) -> None:
    """The ring reuses a slot after 60 minutes: the old minute's counts are dropped."""
    await add(store, 7, 7, 7, 7, 7)
    later = NOW + 60 * MINUTE
    await add(store, 1, 0, 0, 0, 0, now=later)
    slot = (later // MINUTE) % 60
    assert await fields(store) == {f"m{slot}": str(later // MINUTE), f"{slot}:hit": "1"}


async def test_the_hash_never_grows_past_the_ring(store: Store) -> None:
    """Two hours of minutes leave at most 60 slots (360 fields)."""
    for i in range(120):
        await add(store, 1, 1, 1, 1, 1, now=NOW + i * MINUTE)
    assert len(await fields(store)) == 360


async def test_corrupt_values_are_replaced(store: Store) -> None:
    """A non-integer count restarts at the delta; a foreign type is replaced by a hash."""
    key = stats_key(store, "svc")
    slot = (NOW // MINUTE) % 60
    await add(store, 1, 0, 0, 0, 0)
    await store.client.hset(key, f"{slot}:hit", "x")
    await add(store, 2, 0, 0, 0, 0)
    assert (await fields(store))[f"{slot}:hit"] == "2"
    await store.client.delete(key)
    await store.client.set(key, "junk")
    await add(store, 0, 3, 0, 0, 0)
    assert (await fields(store))[f"{slot}:miss"] == "3"


@pytest.mark.parametrize(
    ("args", "name"),
    [((-1, 0, 0, 0, 0), "hit"), ((0, 0, 0, 0, 1.5), "bypass"), ((0, 0, 0, 0), "bypass")],
)
async def test_bad_deltas_are_refused(store: Store, args: tuple[float, ...], name: str) -> None:
    """A negative, fractional or missing delta is MSFW_BADARG naming the result."""
    with pytest.raises((ScriptError, StoreError), match=f"MSFW_BADARG {name}"):
        await store.run("cache_stats_add", [stats_key(store, "svc")], [NOW, TTL, *args])


async def test_reader_sums_the_window_and_skips_corrupt_hashes(store: Store) -> None:
    """The reader sums the last N minutes as of server time; a corrupt hash is no data."""
    now = store.clock.now_ms()
    await add(store, 5, 1, 0, 0, 0, now=now)
    await add(store, 2, 2, 0, 0, 0, now=now - 3 * MINUTE)
    await add(store, 100, 0, 0, 0, 0, now=now - 30 * MINUTE)
    reader = CacheStatsReader(store)
    [counts] = await reader.read(["svc", "other"], window_minutes=15)
    assert (counts.service, counts.hit, counts.miss, counts.total) == ("svc", 7, 3, 10)
    assert counts.hit_ratio == 0.7
    [wide] = await reader.read(["svc"], window_minutes=60)
    assert wide.hit == 107
    slot = (now // MINUTE) % 60
    await store.client.hset(stats_key(store, "svc"), f"{slot}:miss", "garbage")
    assert await reader.read(["svc"]) == []
    await store.client.delete(stats_key(store, "svc"))
    await store.client.set(stats_key(store, "svc"), "not a hash")
    assert await reader.read(["svc"]) == []
