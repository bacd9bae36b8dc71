"""Moving a slot between masters: the harness's ``move_slot``, and what the store does
with a slot caught half-migrated (ASK followed, TRYAGAIN a clean cluster error)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis as redis_sync
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._exceptions import StoreClusterError, StoreError
from msfw_redis._store.replies import reply_list
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisClusterSetup, RedisServer

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

_CFG = CircuitBreakerConfig(
    failure_threshold=2, success_threshold=1, timeout=300.0, success_flush_interval=0.0
)


def _other_master(cluster: RedisClusterSetup, slot: int) -> RedisServer:
    source = cluster.owner_of_slot(slot)
    return next(m for m in cluster.masters() if m is not source)


def _slot_of(service: str) -> int:
    return key_slot(f"{{{service}}}".encode())


def test_move_slot_moves_keys_values_ttls_and_ownership(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """Every key of the slot lands on the target with its value and TTL; every node agrees."""
    tag = f"{{{key_prefix}-move}}"
    slot = key_slot(tag.encode())
    client = SyncRedisCluster(host="127.0.0.1", port=cluster_setup.ports[0])
    try:
        for i in range(25):
            client.set(f"{tag}:k{i}", f"v{i}", ex=600)
        source = cluster_setup.owner_of_slot(slot)
        target = _other_master(cluster_setup, slot)
        moved = cluster_setup.move_slot(slot, target, batch=4)
        assert moved >= 25  # earlier tests' keys in this slot may move too
        assert cluster_setup.owner_of_slot(slot) is target
        for server in cluster_setup.servers:  # every node's own slot table
            with redis_sync.Redis(port=server.port) as node:
                table = node.execute_command("CLUSTER", "SLOTS")
            owners = [int(m[1]) for lo, hi, m, *_ in table if lo <= slot <= hi]
            assert owners == [target.port]
        with redis_sync.Redis(port=source.port) as node:
            assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        with redis_sync.Redis(port=target.port) as node:
            assert node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 25
        for i in range(25):
            assert client.get(f"{tag}:k{i}") == f"v{i}".encode()
            assert 0 < client.ttl(f"{tag}:k{i}") <= 600
    finally:
        client.close()


def test_move_slot_refuses_a_move_to_its_owner_or_to_a_bad_slot(
    cluster_setup: RedisClusterSetup,
) -> None:
    """A move to the slot's own master, or of a slot out of range, is a ValueError."""
    owner = cluster_setup.owner_of_slot(42)
    with pytest.raises(ValueError, match="already served"):
        cluster_setup.move_slot(42, owner)
    with pytest.raises(ValueError, match="invalid slot"):
        cluster_setup.move_slot(16384, owner)
    assert cluster_setup.owner_of_slot(42) is owner


@asynccontextmanager
async def _hub(url: str, prefix: str, op_timeout: float) -> AsyncIterator[BreakerHub]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=op_timeout)
    await store.start()
    hub = BreakerHub(store, None, failure_policy="fail_open")
    try:
        yield hub
    finally:
        await hub.aclose()
        await store.aclose()


def _half_migrate(
    cluster: RedisClusterSetup, slot: int, target: RedisServer, keys: list[str]
) -> RedisServer:
    """Leave ``slot`` migrating to ``target`` with only ``keys`` moved; the source."""
    source = cluster.owner_of_slot(slot)
    with redis_sync.Redis(port=target.port) as node:
        node.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
    with redis_sync.Redis(port=source.port) as node:
        node.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
        node.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    return source


async def test_a_half_migrated_slot_is_followed_or_a_clean_cluster_error(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """Mid-migration: ASK is followed, a script with split keys raises StoreClusterError
    (TRYAGAIN), the other shard is not gated, fail_open keeps callers going, and once
    the move completes the same script sees the same breaker state."""
    service, other = f"mig-{key_prefix}", None
    slot = _slot_of(service)
    for i in range(200):
        candidate = f"calm{i}-{key_prefix}"
        if cluster_setup.owner_of_slot(_slot_of(candidate)) is not cluster_setup.owner_of_slot(
            slot
        ):
            other = candidate
            break
    assert other is not None
    async with _hub(cluster_setup.url, key_prefix, op_timeout=5.0) as hub:
        store = hub.store
        breaker = hub.get(service, config=_CFG)
        for _ in range(_CFG.failure_threshold):  # trip it: the state hash now exists
            await (await breaker.acquire()).failure()
        before = await breaker.refresh()
        assert before.state == "open"
        calm = hub.get(other, config=_CFG)
        await (await calm.acquire()).success()
        state_key = store.keys.key(service, "breaker", "state", breaker.name)
        probes_key = store.keys.key(service, "breaker", "probes", breaker.name)
        calm_key = store.keys.key(other, "breaker", "state", calm.name)
        target = next(
            m
            for m in cluster_setup.masters()
            if m is not cluster_setup.owner_of_slot(slot)
            and m is not cluster_setup.owner_of_slot(_slot_of(other))
        )
        await asyncio.to_thread(_half_migrate, cluster_setup, slot, target, [state_key])
        try:
            # A single-key read: the source answers ASK, redis-py asks the target.
            moved_state = await store.hgetall(state_key)
            assert moved_state  # read from the target through the ASK redirection
            # Both keys, one moved and one absent: the target answers TRYAGAIN until
            # redis-py's redirections run out; the store raises a cluster error.
            with pytest.raises(StoreClusterError, match="being migrated"):
                await store.run("breaker_read", [state_key, probes_key], [0])
            # The other service's shard is not gated by it.
            assert store.available_for(calm_key)
            gated = store.stats.fast_failures
            assert await store.hgetall(calm_key)
            assert store.stats.fast_failures == gated
            # A breaker's first use reads three keys of the slot, none there yet: TRYAGAIN
            # again, and under fail_open the caller gets a permit from a local breaker.
            fresh = hub.get(service, endpoint="/fresh", config=_CFG)
            try:
                permit = await fresh.acquire()
            except StoreError as exc:  # pragma: no cover - the failure this pins
                pytest.fail(f"a store error reached the caller under fail_open: {exc!r}")
            assert fresh.state().local  # the store error was absorbed, not raised
            await permit.success()
        finally:
            await asyncio.to_thread(cluster_setup.move_slot, slot, target)
        assert cluster_setup.owner_of_slot(slot) is target
        # The store's gate for that shard reopens after its back-off window: poll.
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = reply_list(await store.run("breaker_read", [state_key, probes_key], [0]))
                break
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        after = await breaker.refresh()
        assert reply[1] == 1  # OPEN
        assert (after.state, after.generation) == (before.state, before.generation)
