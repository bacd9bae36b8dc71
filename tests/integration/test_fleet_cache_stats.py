"""Fleet-wide cache hit counts: flushed by each SDK, read by the dashboard and the exporter."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from msfw_redis._cache.stats import CacheStatsFlusher, CacheStatsReader, stats_key
from msfw_redis._cli.dashboard import run_dashboard
from msfw_redis._cli.exporter import render_text
from msfw_redis._store.store import Store
from msfw_redis.testing import ScriptedService, Step, run_in_processes
from tests.integration import _cache_stats_workers as w
from tests.integration.test_fleet_exporter import _reader, _samples

RESULTS = {
    "hit": "cache_hits",
    "miss": "cache_misses",
    "stale": "cache_stale",
    "coalesced": "cache_coalesced",
    "bypass": "cache_bypasses",
}


@pytest.fixture(params=["fakeredis", pytest.param("real", marks=pytest.mark.real_redis)])
def shared_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store several OS processes can share: fakeredis's TCP server, or a real server."""
    if request.param == "real":
        yield request.getfixturevalue("real_redis_url")
        return
    import fakeredis

    server = fakeredis.TcpFakeServer(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def _dashboard_view(store: Store) -> tuple[dict[str, Any], str]:
    ports: list[int] = []
    task = asyncio.create_task(
        run_dashboard(store, _reader(store), "127.0.0.1", 0, started=ports.append)
    )
    try:
        async with asyncio.timeout(30):
            while not ports and not task.done():
                await asyncio.sleep(0.01)
        assert ports, "the dashboard did not start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as client:
            view = (await client.get("/api/fleet")).json()
            page = (await client.get("/")).text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return view, page


async def test_two_processes_sum_exactly(shared_url: str, http_service: ScriptedService) -> None:
    """Cache calls in 2 OS processes: the fleet counts equal the sum of both processes' own."""
    for i in range(4):
        http_service.script(f"/item/{i}", Step(200, json=i))
    prefix = f"s{uuid.uuid4().hex[:10]}"
    paths_a = ["/item/0", "/item/0", "/item/1", "/item/0"]
    paths_b = ["/item/2", "/item/2", "/item/3", "/item/1", "/item/1"]
    args = [
        (shared_url, prefix, http_service.host, http_service.port, paths)
        for paths in (paths_a, paths_b)
    ]
    own = await asyncio.to_thread(run_in_processes, w.cached_calls, args, timeout=120)
    expected = {r: own[0][c] + own[1][c] for r, c in RESULTS.items()}
    assert sum(expected.values()) == len(paths_a) + len(paths_b)
    assert expected["hit"] >= 4  # repeats of a path already cached fleet-wide

    store = Store.from_url(shared_url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    try:
        [counts] = await CacheStatsReader(store).read(["cat"])
        fleet = await _reader(store).read()
        view, page = await _dashboard_view(store)
    finally:
        await store.aclose()
    assert counts.counts() == expected
    ratio = (expected["hit"] + expected["stale"] + expected["coalesced"]) / sum(expected.values())
    [cache] = fleet.caches
    assert (cache.service, cache.window_minutes, cache.counts) == ("cat", 15, expected)
    assert cache.hit_ratio == round(ratio, 4)
    assert view["caches"] == [
        {"service": "cat", "window_minutes": 15, "hit_ratio": round(ratio, 4), "counts": expected}
    ]
    assert "cache hit ratio " in page and "data-cache" in page
    got = _samples(render_text(fleet))
    for result, value in expected.items():
        labels = frozenset({("service", "cat"), ("result", result), ("window", "15m")})
        assert got[("msfw_fleet_cache_requests", labels)] == value
    labels = frozenset({("service", "cat"), ("window", "15m")})
    assert got[("msfw_fleet_cache_hit_ratio", labels)] == round(ratio, 4)


async def test_timer_flushes_only_deltas(store: Store) -> None:
    """The timer sends changes only; counts that did not move cost no script call."""
    counts = {"a": {"hit": 2, "miss": 1}, "b": {"hit": 0}}
    flusher = CacheStatsFlusher(store, lambda: counts, interval=0.05)
    flusher.start()
    reader = CacheStatsReader(store)
    try:
        async with asyncio.timeout(30):
            while not await reader.read(["a"]):
                await asyncio.sleep(0.05)
        counts["a"] = {"hit": 5, "miss": 1}
        async with asyncio.timeout(30):
            while (await reader.read(["a"]))[0].hit != 5:
                await asyncio.sleep(0.05)
    finally:
        await flusher.aclose()
    [a] = await reader.read(["a", "b"])
    assert (a.hit, a.miss, a.total) == (5, 1, 6)
    assert await flusher.flush() == 0  # nothing pending


async def test_a_corrupt_hash_shows_no_ratio(store: Store) -> None:
    """A stats hash with a non-integer count reads as no data in the fleet view, no crash."""
    flusher = CacheStatsFlusher(store, lambda: {"cat": {"hit": 3, "miss": 1}})
    assert await flusher.flush() == 1
    assert [c.service for c in (await _reader(store).read()).caches] == []  # not indexed
    reader = CacheStatsReader(store)
    assert (await reader.read(["cat"]))[0].hit == 3
    key = stats_key(store, "cat")
    for field in await store.client.hkeys(key):
        if field.endswith(b":hit"):
            await store.client.hset(key, field, "NaN?")
    assert await reader.read(["cat"]) == []


async def test_redis_down_keeps_deltas_and_close_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis unreachable a flush sends nothing, keeps the deltas and close returns."""
    import socket

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        store = Store.from_url(f"redis://127.0.0.1:{port}/0", op_timeout=0.5)
        flusher = CacheStatsFlusher(store, lambda: {"cat": {"hit": 1}})
        caplog.set_level(logging.DEBUG, logger="msfw_redis.cache")
        assert await flusher.flush() == 0
        async with asyncio.timeout(30):
            await flusher.aclose()
        await store.aclose()
    assert "cache stats flush deferred" in caplog.text


async def test_deltas_kept_through_an_outage_are_sent_once(store: Store) -> None:
    """A flush that fails keeps its deltas; the next one sends them, exactly once."""
    from msfw_redis._exceptions import StoreConnectionError

    class Flaky:
        """The real store, refusing its first script call as an outage would."""

        keys = store.keys
        failures = 1

        async def run(self, name: str, keys: list[str], args: list[object]) -> Any:
            if self.failures:
                self.failures -= 1
                raise StoreConnectionError("down")
            return await store.run(name, keys, args)

    counts = {"cat": {"hit": 4, "miss": 2}}
    flusher = CacheStatsFlusher(Flaky(), lambda: counts)  # type: ignore[arg-type]
    assert await flusher.flush() == 0
    counts["cat"] = {"hit": 5, "miss": 2}
    assert await flusher.flush() == 1
    assert await flusher.flush() == 0
    [cat] = await CacheStatsReader(store).read(["cat"])
    assert (cat.hit, cat.miss) == (5, 2)


async def test_a_close_during_an_in_flight_flush_counts_it_once(store: Store) -> None:
    """Closing while the timer's flush waits for its reply never sends those deltas twice."""
    counts = {"a": {"hit": 3, "miss": 1}}
    flusher = CacheStatsFlusher(store, lambda: counts, interval=0.01)
    applied = asyncio.Event()
    release = asyncio.Event()
    real_run = store.run

    async def slow_reply(name: str, keys: list[str], args: list[Any]) -> Any:
        reply = await real_run(name, keys, args)
        if name == "cache_stats_add" and not applied.is_set():
            applied.set()  # Redis has added the deltas; the reply is still on its way
            await release.wait()
        return reply

    store.run = slow_reply  # type: ignore[method-assign]
    try:
        flusher.start()
        async with asyncio.timeout(30):
            await applied.wait()
        closing = asyncio.create_task(flusher.aclose())
        await asyncio.sleep(0.05)  # the close has cancelled the timer by now
        release.set()
        async with asyncio.timeout(30):
            await closing
    finally:
        store.run = real_run  # type: ignore[method-assign]
    [a] = await CacheStatsReader(store).read(["a"])
    assert (a.hit, a.miss) == (3, 1)
