"""Errors that name their cause, refused writes, redaction and a busy event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis import exceptions as rexc

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._exceptions import (
    StoreClientError,
    StoreClusterError,
    StoreConnectionError,
    StoreError,
    StoreOutOfMemoryError,
    StorePermissionError,
    StoreReadOnlyError,
    StoreTimeoutError,
)
from msfw_redis._store.errors import redact, translate_error
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, find_server_binary, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)
PASSWORD = "S3cr3t-Passw0rd"
PREFIX = "refusals"
CFG = CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_flush_interval=0.0)


# -- translation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (rexc.ReadOnlyError("You can't write against a read only replica."), StoreReadOnlyError,
         "read-only replica"),
        (rexc.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
         StoreOutOfMemoryError, "out of memory"),
        (rexc.ClusterDownError("CLUSTERDOWN The cluster is down"), StoreClusterError,
         "CLUSTERDOWN"),
        (rexc.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
         StoreClusterError, "TRYAGAIN"),
        (rexc.MasterDownError("MASTERDOWN Link with MASTER is down"), StoreClusterError,
         "MASTERDOWN"),
        (rexc.ClusterError("no slots"), StoreClusterError, "Cluster"),
        (AttributeError("'NoneType' object has no attribute 'readline'"), StoreClientError,
         "AttributeError"),
        (rexc.ConnectionError("Connection refused"), StoreConnectionError, "connection failed"),
        (TimeoutError(), StoreTimeoutError, "in time"),
    ],
)  # fmt: skip
def test_each_redis_error_names_its_cause(
    exc: BaseException, kind: type[StoreError], words: str
) -> None:
    """Every redis-py error becomes the StoreError subclass for its cause, named in the text."""
    err = translate_error(exc, what="script breaker_record")
    assert type(err) is kind
    assert words in str(err)
    if kind not in (StoreConnectionError, StoreTimeoutError):
        assert "unavailable" not in str(err)


def test_noperm_names_command_and_key_pattern() -> None:
    """NOPERM names the refused command and the key pattern the library needs."""
    exc = rexc.NoPermissionError("this user has no permissions to run the 'hset' command")
    err = translate_error(exc, what="HSET", key_pattern="msfw:*")
    assert isinstance(err, StorePermissionError)
    assert err.command == "hset"
    assert "HSET" in str(err)
    assert "~msfw:*" in str(err)


def test_redact_masks_every_password() -> None:
    """Any scheme://user:password@ in a text is masked; a URL without one is unchanged."""
    text = f"failed redis://:{PASSWORD}@h:1/0 and rediss://bob:{PASSWORD}@h:2"
    assert PASSWORD not in redact(text)
    assert "redis://:***@h:1/0" in redact(text)
    assert "rediss://bob:***@h:2" in redact(text)
    assert redact("redis://h:1/0") == "redis://h:1/0"


async def test_no_password_in_logs_errors_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    """An outage of a password-protected store leaks the password nowhere."""
    caplog.set_level(logging.DEBUG)
    store = Store.from_url(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", op_timeout=0.1)
    with pytest.raises(StoreConnectionError) as info:
        await store.get("k")
    texts = [repr(store), str(info.value), *(r.getMessage() for r in caplog.records)]
    assert any("unavailable" in t for t in texts)
    assert all(PASSWORD not in t for t in texts)
    await store.aclose()


# -- real servers --------------------------------------------------------------------------


@asynccontextmanager
async def hub_on(url: str, *, op_timeout: float = 0.5) -> AsyncIterator[BreakerHub]:
    store = Store.from_url(url, op_timeout=op_timeout, key_prefix=PREFIX)
    await store.start()
    hub = BreakerHub(store, None)
    try:
        yield hub
    finally:
        await hub.aclose()
        await store.aclose()


async def _fail(hub: BreakerHub) -> bool:
    """One failing call; False when the breaker refused it."""
    try:
        permit = await hub.get("orders", config=CFG).acquire()
    except CircuitOpenError:
        return False
    await permit.failure()
    return True


def _shared_state(url: str) -> dict[bytes, bytes]:
    admin = redis.Redis.from_url(url)
    keys = admin.keys(f"{PREFIX}:*breaker:state:*")
    return admin.hgetall(keys[0]) if keys else {}


@pytest.mark.real_redis
@needs_binary
async def test_readonly_replica_opens_locally_then_carries_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """READONLY: the breaker opens at exactly the threshold; the shared state gets the failures."""
    caplog.set_level(logging.INFO)
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        async with hub_on(server.url) as hub:
            breaker = hub.get("orders", config=CFG)
            await breaker.acquire()  # loaded while writable
            # Demote: a replica of a primary that does not exist refuses every write.
            admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
            admitted = [await _fail(hub) for _ in range(30)]
            assert admitted == [True] * 3 + [False] * 27
            assert breaker.state().local
            assert breaker.state().state == "open"
            warnings = [r for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            assert "read-only replica" in warnings[0].getMessage()
            assert _shared_state(server.url).get(b"st", b"closed") == b"closed"
            admin.execute_command("REPLICAOF", "NO", "ONE")
            deadline = time.monotonic() + 20
            while breaker.state().local and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                with suppress(CircuitOpenError):
                    await breaker.acquire()
            assert not breaker.state().local
            state = _shared_state(server.url)
            assert state[b"st"] == b"open"
            assert int(state[b"tf"]) == 3


@pytest.mark.real_redis
@needs_binary
async def test_acl_without_hset_opens_at_threshold_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """NOPERM: one WARNING naming HSET and the long back-off; the breaker opens at 3."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command(
            "ACL", "SETUSER", "nohset", "on", f">{PASSWORD}", f"~{PREFIX}:*", "&*", "+@all",
            "-hset",
        )  # fmt: skip
        url = f"redis://nohset:{PASSWORD}@127.0.0.1:{server.port}/0"
        async with hub_on(url) as hub:
            admitted = [await _fail(hub) for _ in range(30)]
            assert admitted == [True] * 3 + [False] * 27
            breaker = hub.get("orders", config=CFG)
            assert breaker.state().local
            assert hub.store.available  # a refusal is not an outage
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            assert "HSET" in warnings[0] and "60s" in warnings[0]
            assert all(PASSWORD not in r.getMessage() for r in caplog.records)


@pytest.mark.real_redis
@needs_binary
async def test_busy_loop_does_not_mark_redis_down() -> None:
    """A 300 ms CPU stall in the process during operations leaves the outage gate open."""
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.25, key_prefix=PREFIX)
        await store.start()
        loop = asyncio.get_running_loop()
        messages: list[str] = []
        for _ in range(5):
            loop.call_soon(time.sleep, 0.3)  # blocks the loop once the op is in flight
            try:
                await store.get(f"{PREFIX}:k")
            except StoreTimeoutError as exc:
                messages.append(str(exc))
            assert store.available
        assert all("event loop was blocked" in m for m in messages)
        timeouts = len(messages)
        assert store.stats.outages == 0
        assert timeouts == store.stats.starved_timeouts
        assert await store.get(f"{PREFIX}:k") is None
        await store.aclose()


async def _stall_after_writes(store: Store, seconds: float) -> list[int]:
    """Make the store's connections block the event loop for ``seconds`` right after
    writing a command while the returned flag is set: the reply then arrives during
    the stall and sits unread, as behind a CPU-bound stretch of an application."""
    flag = [0]
    pool = store.client.connection_pool
    base = pool.connection_class

    class Stalling(base):  # type: ignore[valid-type,misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            await super().send_packed_command(command, check_health)
            if flag[0]:
                flag[0] -= 1
                time.sleep(seconds)

    await pool.disconnect()
    pool.reset()  # new connections from now on, of the stalling class
    pool.connection_class = Stalling
    return flag


@pytest.mark.real_redis
@needs_binary
async def test_a_reply_that_arrives_during_a_loop_stall_is_read_not_timed_out() -> None:
    """The loop blocks for longer than the op timeout right after a GET is written: the
    reply, which arrived meanwhile, is returned. Before the stall grace every one of
    these timed out: the late deadline (and redis-py's read timeout) discarded it."""
    with RedisServer() as server:
        store = Store.from_url(server.url, op_timeout=0.25, key_prefix=PREFIX)
        await store.start()
        admin = redis.Redis.from_url(server.url)
        admin.set(f"{PREFIX}:k", b"v")
        stall = await _stall_after_writes(store, 0.4)
        for _ in range(5):
            stall[0] = 1
            assert await store.get(f"{PREFIX}:k") == b"v"
            assert stall[0] == 0  # the stall did happen
        assert store.stats.starved_timeouts == 0
        assert store.stats.outages == 0
        await store.aclose()
        admin.close()


@pytest.mark.real_redis
@needs_binary
async def test_batched_successes_sent_during_a_loop_stall_keep_the_breaker_shared() -> None:
    """A flush in flight while the application blocks its loop for longer than the op
    timeout: the breaker stays on the shared state (it went local for seconds before,
    a 30 µs-per-call slowdown in the overhead benchmark) and its batch is delivered."""
    batched = CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_flush_interval=0.01)
    with RedisServer() as server:
        async with hub_on(server.url, op_timeout=0.25) as hub:
            breaker = hub.get("orders", config=batched)
            await breaker.refresh()
            stall = await _stall_after_writes(hub.store, 0.4)
            for _ in range(5):
                permit = await breaker.acquire()
                await permit.success()
                stall[0] = 1  # the next write is the batch's breaker_record
                while breaker.has_pending or breaker.flush_due:
                    await asyncio.sleep(0.01)
                await hub.drain()
                assert stall[0] == 0
                assert not breaker.state().local
            assert hub.store.stats.starved_timeouts == 0
            assert (await breaker.refresh()).total_successes == 5


class _StallingClient:
    """A stand-in client whose GET blocks the event loop, then never answers."""

    def __init__(self, stall: float) -> None:
        self.stall = stall

    async def get(self, key: str) -> bytes | None:
        time.sleep(self.stall)  # the process's own CPU stall, not Redis
        await asyncio.sleep(10)
        return None


@pytest.mark.parametrize(("stall", "marked_down"), [(0.3, False), (0.0, True)])
async def test_timeout_during_a_stall_is_not_an_outage(stall: float, marked_down: bool) -> None:
    """A timeout that a 300 ms loop stall caused keeps the gate open; a plain one closes it."""
    store = Store.from_client(_StallingClient(stall), op_timeout=0.1)  # type: ignore[arg-type]
    with pytest.raises(StoreTimeoutError) as info:
        await store.get("k")
    assert store.available is not marked_down
    assert store.stats.outages == (1 if marked_down else 0)
    assert ("event loop was blocked" in str(info.value)) is not marked_down
    await store.aclose()


# -- corrupt values ------------------------------------------------------------------------


@pytest.mark.parametrize("corruption", ["unknown state", "wrong type"])
async def test_corrupt_breaker_hash_is_a_miss_and_repaired(
    redis_url: str, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A breaker hash that does not decode: calls succeed, one WARNING, the next write repairs."""
    store = Store.from_url(redis_url, key_prefix=f"{PREFIX}-{corruption.replace(' ', '')}")
    await store.start()
    hub = BreakerHub(store, None)
    breaker = hub.get("orders", config=CFG)
    key = store.keys.key("orders", "breaker", "state", "*")
    await store.client.delete(key)
    if corruption == "unknown state":
        await store.client.hset(key, mapping={"st": "bogus", "gen": "x"})
    else:
        await store.client.set(key, "not a hash")  # and no TTL
    for _ in range(20):
        permit = await breaker.acquire()
        await permit.success()
    await (await breaker.acquire()).failure()  # a write: repairs the key
    assert not breaker.state().local
    assert breaker.state().failure_count == 1
    assert await store.client.type(key) in (b"hash", "hash")
    assert (await store.client.hget(key, "st")) in (b"closed", "closed")
    assert await store.client.pttl(key) > 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "did not decode" in warnings[0].getMessage()
    await hub.aclose()
    await store.client.delete(key)
    await store.aclose()
