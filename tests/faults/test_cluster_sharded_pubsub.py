"""Sharded pub/sub on a real cluster: trips reach other processes by SPUBLISH/SSUBSCRIBE,
and a subscriber follows its slot through a failover (then resyncs)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
from typing import Any

import pytest
import redis

from msfw_redis._breaker.breaker import DistributedBreaker
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisClusterSetup, run_in_processes
from tests.distributed import _breaker_workers as w
from tests.distributed import _registry_workers as rw
from tests.faults.test_cluster_faults import _bus_sent

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


def test_a_trip_reaches_other_processes_by_sharded_pubsub_only(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """A trip in one process reaches 3 others (each then rejects locally); the cluster bus
    carried it as sharded publishes only: no classic PUBLISH was broadcast."""
    barrier = mp.get_context("spawn").Barrier(4)
    before = (_bus_sent(cluster_setup, "publish"), _bus_sent(cluster_setup, "publishshard"))
    times = run_in_processes(
        w.propagation, [(cluster_setup.url, key_prefix, i, barrier) for i in range(4)], timeout=90
    )
    classic = _bus_sent(cluster_setup, "publish") - before[0]
    sharded = _bus_sent(cluster_setup, "publishshard") - before[1]
    started, arrivals = times[0], times[1:]
    delays_ms = [(t - started) * 1000 for t in arrivals]
    print(
        f"\ncluster trip propagation ms: median {statistics.median(delays_ms):.2f} "
        f"max {max(delays_ms):.2f}; bus messages: PUBLISH {classic}, SPUBLISH {sharded}"
    )
    assert len(delays_ms) == 3
    assert classic == 0
    assert sharded >= 1


async def test_a_subscriber_follows_a_failover_and_resyncs(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """After its slot's master fails over, the subscriber is on the new owner: the bus
    resubscribed (and resynced), and a later trip in another store still reaches it."""
    keys = Store.from_url("memory://", key_prefix=key_prefix).keys
    key = keys.key(w.SERVICE, "breaker")
    async with w.replica(cluster_setup.url, key_prefix) as listener_hub:
        listener: DistributedBreaker = listener_hub.get(
            w.SERVICE, config=w.config(failure_threshold=1)
        )
        opened = asyncio.Event()
        listener_hub.add_listener(lambda e: opened.set() if e.state == "open" else None)
        await listener.acquire()  # subscribes to the service's breaker channel
        bus = listener_hub.bus
        assert bus is not None
        shard_channels = {
            c.decode() if isinstance(c, bytes) else c for c in bus._pubsub.shard_channels
        }
        assert keys.channel(w.SERVICE, "breaker") in shard_channels
        resubscribed_before = bus.resubscribes
        promoted = cluster_setup.replica_of(key)
        await asyncio.to_thread(cluster_setup.failover_to, promoted)
        async with asyncio.timeout(30):
            while bus.resubscribes == resubscribed_before:
                await asyncio.sleep(0.05)
        # The subscription is on the promoted master itself (the server says so), not on
        # the demoted node, which its new master may not yet count in the shard.
        channel = keys.channel(w.SERVICE, "breaker")
        async with asyncio.timeout(30):
            while await asyncio.to_thread(_shard_subscribers, promoted.port, channel) != 1:
                await asyncio.sleep(0.05)
        async with w.replica(cluster_setup.url, key_prefix) as tripper_hub:
            tripper: DistributedBreaker = tripper_hub.get(
                w.SERVICE, config=w.config(failure_threshold=1)
            )
            await (await tripper.acquire()).failure()
            await asyncio.wait_for(opened.wait(), 10)
        assert (await listener.refresh()).state == "open"


def _shard_subscribers(port: int, channel: str) -> int:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0) as conn:
        reply = conn.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


def test_registry_and_health_events_reach_another_process_by_sharded_pubsub_only(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """A registration and a health flip in one process reach discovery and on_change in
    another; the cluster bus carried them as sharded publishes only (no PUBLISH)."""
    barrier = mp.get_context("spawn").Barrier(2)
    before = (_bus_sent(cluster_setup, "publish"), _bus_sent(cluster_setup, "publishshard"))
    args = (cluster_setup.url, key_prefix, "inventory", barrier)
    (found, changes), flipped = run_in_processes(
        _callee, [("listener", *args), ("registrar", *args)], timeout=120
    )
    classic = _bus_sent(cluster_setup, "publish") - before[0]
    sharded = _bus_sent(cluster_setup, "publishshard") - before[1]
    print(f"\nregistry and health events, bus messages: PUBLISH {classic}, SPUBLISH {sharded}")
    assert flipped is True
    assert found == 1
    assert changes == [("inventory", True)]
    assert classic == 0
    assert sharded >= 2  # the registration's revision and the flip, at least


def _callee(role: str, *args: Any) -> Any:
    """One role of the test above, run in a spawned process."""
    fn: Any = rw.sharded_listener if role == "listener" else rw.sharded_registrar
    return fn(*args)
