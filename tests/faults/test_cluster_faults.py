"""Cluster faults under load from 3 processes: a master killed or hung, and a reshard."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from typing import Any

import pytest
import redis as redis_sync
import redis.asyncio.cluster as redis_cluster
from redis.crc import key_slot

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._breaker.views import CircuitState
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisClusterSetup, ScriptedService, Step, run_in_processes
from tests.faults._cluster_workers import call_through_fault

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

_SECONDS = 7.0


def _two_shards(cluster: RedisClusterSetup, prefix: str) -> tuple[str, str]:
    keys = Store.from_url("memory://", key_prefix=prefix).keys
    master = cluster.master_of(keys.key("sick0", "breaker"))
    for i in range(200):
        if cluster.master_of(keys.key(f"healthy{i}", "breaker")) is not master:
            return "sick0", f"healthy{i}"
    raise AssertionError("no two services on different shards")


def _figures(
    kind: str, results: list[dict[str, Any]], fault_at: float, sick: str, healthy: str
) -> dict[str, Any]:
    failed = [t for r in results for t in r["sick_failed_at"] if t >= fault_at]
    figures = {
        "fault": kind,
        "caller_errors": sum(sum(r["caller_errors"].values()) for r in results),
        "calls": sum(sum(r["calls"].values()) for r in results),
        "healthy_gated": sum(r["gated"][healthy] for r in results),
        "healthy_read_errors": sum(r["read_errors"][healthy] for r in results),
        "healthy_reads": sum(r["reads"][healthy] for r in results),
        "sick_read_errors": sum(r["read_errors"][sick] for r in results),
        "sick_back_after_s": round(max(failed) - fault_at, 2) if failed else 0.0,
    }
    print(f"\ncluster fault figures: {figures}")
    return figures


def _run(
    cluster: RedisClusterSetup,
    prefix: str,
    fault: Any,
    *,
    services: tuple[str, str] | None = None,
    tripped: str | None = None,
) -> tuple[list[dict[str, Any]], float, str, str]:
    sick, healthy = services or _two_shards(cluster, prefix)
    with ScriptedService() as svc:
        svc.script("/ok", Step(200, json={"ok": True}))
        fault_at: list[float] = []

        ready = mp.get_context("spawn").Barrier(4)

        def inject() -> None:
            ready.wait(60)
            time.sleep(1.0)
            fault_at.append(time.time())
            fault(
                cluster.master_of(
                    Store.from_url("memory://", key_prefix=prefix).keys.key(sick, "breaker")
                )
            )

        thread = threading.Thread(target=inject)
        thread.start()
        try:
            results = run_in_processes(
                call_through_fault,
                [(cluster.url, prefix, svc.host, svc.port, sick, healthy, _SECONDS, ready, tripped)]
                * 3,
                timeout=90,
            )
        finally:
            thread.join()
    return results, fault_at[0], sick, healthy


def _recover(cluster: RedisClusterSetup) -> None:
    for server in cluster.servers:
        if not server.running:
            server.start()
    cluster.wait_ok(60)


async def test_sigkill_of_a_master_costs_no_caller_errors(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """SIGKILL of a service's master: 0 caller errors, 0 gated reads on another shard."""
    try:
        results, at, sick, healthy = await asyncio.to_thread(
            _run, cluster_setup, key_prefix, lambda server: server.kill()
        )
    finally:
        await asyncio.to_thread(_recover, cluster_setup)
    figures = _figures("sigkill", results, at, sick, healthy)
    assert figures["caller_errors"] == 0
    assert figures["healthy_gated"] == 0
    assert figures["healthy_read_errors"] == 0
    assert figures["sick_read_errors"] > 0  # the fault did hit the sick shard


async def test_sigstop_of_a_master_costs_no_caller_errors(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """A hung (SIGSTOPped) master: 0 caller errors, 0 gated reads on another shard."""
    paused: list[Any] = []

    def hang(server: Any) -> None:
        server.pause()
        paused.append(server)

    try:
        results, at, sick, healthy = await asyncio.to_thread(_run, cluster_setup, key_prefix, hang)
    finally:
        for server in paused:
            server.resume()
        await asyncio.to_thread(_recover, cluster_setup)
    figures = _figures("sigstop", results, at, sick, healthy)
    assert figures["caller_errors"] == 0
    assert figures["healthy_gated"] == 0
    assert figures["healthy_read_errors"] == 0
    assert figures["sick_read_errors"] > 0


_TRIP_CFG = CircuitBreakerConfig(failure_threshold=2, timeout=300.0, success_flush_interval=0.0)


async def _trip(url: str, prefix: str, service: str, endpoint: str) -> CircuitState:
    """Trip one breaker of ``service`` (OPEN for 300 s) and return its shared state."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    hub = BreakerHub(store, None)
    try:
        breaker = hub.get(service, endpoint=endpoint, config=_TRIP_CFG)
        for _ in range(_TRIP_CFG.failure_threshold):
            await (await breaker.acquire()).failure()
        return await breaker.refresh()
    finally:
        await hub.aclose()
        await store.aclose()


async def test_reshard_of_a_slot_costs_no_caller_errors_and_loses_no_breaker_state(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """Moving a service's slot to another master under load: 0 caller errors, 0 gated or
    failed ops on the other shard (the one it moves to), nothing raw escapes the store,
    and a breaker tripped before is OPEN with the same generation after, in every process."""
    sick, healthy = _two_shards(cluster_setup, key_prefix)
    keys = Store.from_url("memory://", key_prefix=key_prefix).keys
    sick_key, healthy_key = keys.key(sick, "breaker"), keys.key(healthy, "breaker")
    slot = key_slot(sick_key.encode())
    source = cluster_setup.master_of(sick_key)
    # Moved to the healthy service's own shard: the strictest "other shard" there is.
    target = cluster_setup.master_of(healthy_key)
    tripped = await _trip(cluster_setup.url, key_prefix, sick, "/tripped")
    assert tripped.state == "open"
    # Filler keys make the migration take a while (batches of 5, 0.1 s apart), so the
    # workers meet the half-migrated slot: ASK for single keys, TRYAGAIN for scripts.
    with redis_sync.Redis(port=source.port) as node:
        for i in range(60):
            node.set(keys.key(sick, "filler", str(i)), "x", ex=600)
    moved: list[int] = []
    done_at: list[float] = []

    def reshard(_server: Any) -> None:
        moved.append(cluster_setup.move_slot(slot, target, batch=5, pause=0.1))
        done_at.append(time.time())

    results, at, _, _ = await asyncio.to_thread(
        _run,
        cluster_setup,
        key_prefix,
        reshard,
        services=(sick, healthy),
        tripped="/tripped",
    )
    figures = _figures("reshard", results, at, sick, healthy)
    figures["keys_moved"] = moved[0]
    figures["migration_s"] = round(done_at[0] - at, 2)
    figures["seen_after"] = [r["tripped_seen"] for r in results]
    print(f"reshard figures: {figures}")
    assert cluster_setup.owner_of_slot(slot) is target
    assert moved[0] >= 60
    assert [r["escaped"] for r in results] == [[], [], []]
    assert figures["caller_errors"] == 0
    assert figures["healthy_gated"] == 0
    assert figures["healthy_read_errors"] == 0
    # No breaker state lost: every process reads it OPEN with the generation it had.
    assert figures["seen_after"] == [("open", tripped.generation)] * 3
    with redis_sync.Redis(port=target.port) as node:
        state_key = keys.key(sick, "breaker", "state", "/tripped")
        assert node.exists(state_key) == 1  # on the new owner itself, not restored


def _bus_sent(cluster: RedisClusterSetup, field: str) -> int:
    """Sum of one ``cluster_stats_messages_*_sent`` counter over every node."""
    total = 0
    for port in cluster.ports:
        with redis_sync.Redis(port=port) as node:
            # redis-py parses CLUSTER INFO into a dict; a counter still at 0 is absent.
            info = node.cluster("INFO")
        total += int(info.get(f"cluster_stats_messages_{field}_sent", 0))
    return total


async def test_spublish_inside_a_script_reaches_a_sharded_subscriber(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """The mechanism for per-service sharded pub/sub, pinned on the installed server.

    SPUBLISH is allowed inside a script whose keys share the channel's slot, redis-py's
    async ClusterPubSub hears it with SSUBSCRIBE, and it costs far fewer cluster-bus
    messages than a classic PUBLISH (which goes to every node).
    """
    keys = Store.from_url("memory://", key_prefix=key_prefix).keys
    channel = keys.channel("svc0", "breaker")
    key = keys.key("svc0", "breaker")
    client = redis_cluster.RedisCluster(host="127.0.0.1", port=cluster_setup.ports[0])
    try:
        await client.initialize()
        pubsub = client.pubsub()
        await pubsub.ssubscribe(channel)
        got: list[Any] = []
        async with asyncio.timeout(10):
            while not got:
                message = await pubsub.get_sharded_message(timeout=0.5)
                if message is None:
                    await client.eval(
                        "return redis.call('SPUBLISH', ARGV[1], 'x')", 1, key, channel
                    )
                elif message.get("type") == "smessage":
                    got.append(message)
        assert got[0]["data"] == b"x"
        before = (_bus_sent(cluster_setup, "publish"), _bus_sent(cluster_setup, "publishshard"))
        for _ in range(200):
            await client.eval("return redis.call('PUBLISH', ARGV[1], 'x')", 1, key, channel)
            await client.eval("return redis.call('SPUBLISH', ARGV[1], 'x')", 1, key, channel)
        classic = _bus_sent(cluster_setup, "publish") - before[0]
        sharded = _bus_sent(cluster_setup, "publishshard") - before[1]
        print(f"\ncluster-bus messages for 200 publishes: PUBLISH {classic}, SPUBLISH {sharded}")
        assert classic >= 200 * (len(cluster_setup.ports) - 1)
        assert sharded <= 200  # one replica per master: the shard only, not the cluster
        await pubsub.aclose()
    finally:
        await client.aclose()
