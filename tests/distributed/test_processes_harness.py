"""The multi-process harness against one real server."""

from __future__ import annotations

from msfw_redis._store.store import Store, reply_int
from msfw_redis.testing import run_in_processes


async def _read_server_clock(url: str) -> int:
    store = Store.from_url(url, op_timeout=2.0)
    await store.start()
    try:
        return reply_int(await store.run("clock_now", [], []))
    finally:
        await store.aclose()


def test_processes_share_one_server_clock(real_redis_url: str) -> None:
    """Four processes read one server clock; readings agree within a few seconds."""
    readings = run_in_processes(_read_server_clock, [(real_redis_url,)] * 4, timeout=60)
    assert len(readings) == 4
    assert max(readings) - min(readings) < 10_000
