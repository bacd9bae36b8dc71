"""The store boundary on each backend: scripts, NOSCRIPT reload, errors, events."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from msfw_redis._exceptions import StoreError
from msfw_redis._store.errors import translate_error
from msfw_redis._store.events import EventBus
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    import pytest


async def test_script_flush_is_survived(store: Store) -> None:
    """After SCRIPT FLUSH, the next call reloads the script and succeeds."""
    await store.client.script_flush()
    before = store.stats.script_reloads
    assert reply_int(await store.run("clock_now", [], [])) > 0
    assert store.stats.script_reloads == before + 1
    # Loaded again, so no second reload.
    await store.run("clock_now", [], [])
    assert store.stats.script_reloads == before + 1


async def test_start_loads_every_script_with_matching_sha(store: Store) -> None:
    """start() loaded every script; Redis knows each local SHA."""
    shas = [s.sha for s in store.scripts.values()]
    exists = await store.client.script_exists(*shas)
    assert all(exists)


def test_response_errors_with_msfw_code_become_script_errors() -> None:
    """A script's MSFW_<CODE> error reply becomes ScriptError carrying the code."""
    from redis.exceptions import ResponseError

    from msfw_redis._exceptions import ScriptError

    err = translate_error(ResponseError("MSFW_BADARG threshold must be >= 1"), what="x")
    assert isinstance(err, ScriptError)
    assert err.code == "MSFW_BADARG"
    other = translate_error(ResponseError("WRONGTYPE nope"), what="x")
    assert type(other) is StoreError


async def test_reads_and_publish(store: Store) -> None:
    """The read helpers return what is stored; publish reports receivers."""
    key = store.keys.key("svc", "test", "k")
    await store.client.set(key, b"v", px=10_000)
    assert await store.get(key) == b"v"
    assert await store.get(key + "missing") is None
    assert await store.publish(store.keys.channel("svc", "test"), b"x") == 0
    assert await store.ping()


async def test_event_bus_delivers_and_confirms(store: Store) -> None:
    """A subscribed handler receives a published message; subscribe waits for confirmation."""
    bus = EventBus(store)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    channel = store.keys.channel("svc", "breaker")
    try:
        await bus.subscribe(channel, got.put_nowait)
        assert bus.connected
        receivers = await bus.publish(channel, b"hello")
        assert receivers >= 1
        assert await asyncio.wait_for(got.get(), 5) == b"hello"
        # A second channel subscribed later on the same connection works too.
        other = store.keys.channel("svc2", "breaker")
        got2: asyncio.Queue[bytes] = asyncio.Queue()
        await bus.subscribe(other, got2.put_nowait)
        await bus.publish(other, b"again")
        assert await asyncio.wait_for(got2.get(), 5) == b"again"
    finally:
        await bus.aclose()


async def test_a_channel_added_while_the_reader_connects_is_subscribed(store: Store) -> None:
    """A subscribe that lands while the reader is still sending its first SUBSCRIBEs (so
    it sees no connection and leaves the SUBSCRIBE to the reader) is not left out until
    a reconnect: its messages arrive."""
    bus = EventBus(store)
    first = store.keys.channel("svc", "breaker")
    late = store.keys.channel("svc2", "breaker")
    got: asyncio.Queue[bytes] = asyncio.Queue()
    send_initial = bus._subscribe_all
    added = False

    async def initial_then_a_late_subscriber(channels: list[str]) -> None:
        nonlocal added
        await send_initial(channels)
        if not added:
            added = True
            assert not bus.connected
            await bus.subscribe(late, got.put_nowait, wait=False)

    bus._subscribe_all = initial_then_a_late_subscriber  # type: ignore[method-assign]
    try:
        await bus.subscribe(first, lambda _: None)
        assert added and bus.connected
        async with asyncio.timeout(10):
            while True:  # the late channel's SUBSCRIBE is confirmed asynchronously
                await bus.publish(late, b"late")
                try:
                    assert await asyncio.wait_for(got.get(), 0.2) == b"late"
                    break
                except TimeoutError:
                    continue
        assert bus.reconnects == 0
    finally:
        await bus.aclose()


async def test_handler_errors_do_not_stop_the_bus(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing handler is logged; later messages still arrive."""
    bus = EventBus(store)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    channel = store.keys.channel("svc", "x")

    def bad(_: bytes) -> None:
        raise RuntimeError("boom")

    try:
        await bus.subscribe(channel, bad)
        await bus.subscribe(channel, got.put_nowait)
        await bus.publish(channel, b"1")
        assert await asyncio.wait_for(got.get(), 5) == b"1"
        assert "boom" in caplog.text
    finally:
        await bus.aclose()
