"""lua/clock_now.lua, called directly."""

from __future__ import annotations

import time

from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store


async def test_clock_now_returns_server_milliseconds(store: Store) -> None:
    """clock_now answers the server's TIME in ms, close to this machine's clock."""
    now = reply_int(await store.run("clock_now", [], []))
    assert abs(now - time.time() * 1000) < 5_000
    raw = await store.client.time()
    assert abs(now - (raw[0] * 1000 + raw[1] // 1000)) < 1_000


async def test_clock_offset_is_measured(store: Store) -> None:
    """After start(), the store knows its offset to server time."""
    assert store.clock.synced
    assert abs(store.clock.now_ms() - reply_int(await store.run("clock_now", [], []))) < 1_000
