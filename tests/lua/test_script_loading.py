"""Scripts assembled from lua/lib helpers load and run on both backends under our SHA."""

from __future__ import annotations

import hashlib

import pytest

from msfw_redis._store.replies import reply_int
from msfw_redis._store.scripts import load_scripts, lua_dir
from msfw_redis._store.store import Store

SCRIPTS = load_scripts()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_redis_agrees_on_the_assembled_sha(store: Store, name: str) -> None:
    """SCRIPT LOAD of the assembled text answers our SHA, and Redis holds that script."""
    script = SCRIPTS[name]
    got = await store.client.script_load(script.source)
    assert (got.decode() if isinstance(got, bytes) else got) == script.sha
    assert await store.client.script_exists(script.sha) == [True]


async def test_included_helpers_run_inside_redis(store: Store) -> None:
    """clock_now is all helper (server_time_ms): run by SHA it answers server milliseconds."""
    script = SCRIPTS["clock_now"]
    assert script.includes == ("lib/server_time_ms.lua",)
    raw = lua_dir().joinpath("clock_now.lua").read_text(encoding="utf-8")
    assert script.sha != hashlib.sha1(raw.encode()).hexdigest()
    now = reply_int(await store.client.evalsha(script.sha, 0))
    seconds, micros = await store.client.time()
    assert abs(now - (seconds * 1000 + micros // 1000)) < 60_000
