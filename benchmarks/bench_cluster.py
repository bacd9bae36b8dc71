"""Pub/sub on Redis Cluster: trip propagation and cluster-bus messages per publish.

Starts its own 3-master, 3-replica cluster (``msfw_redis.testing.RedisClusterSetup``),
so ``--redis-url`` is not used.

* **Trip propagation.** 3 processes share one breaker per round; process 0 trips it
  (threshold 1) and the 2 others stamp the arrival of the ``open`` event on their
  listener. Events go by SPUBLISH from the transition script to the shard of the
  service's slot, and each process SSUBSCRIBEs there.
* **Bus messages per publish.** The same event script (``limits_retryafter_close``)
  run N times with the mode flag ``publish`` (classic pub/sub, what the library did
  before) and ``spublish`` (now), counting ``cluster_stats_messages_publish[shard]_sent``
  summed over every node.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

import redis as redis_sync

from benchmarks._common import Context, Result, percentile
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisClusterSetup, run_in_processes

PROCESSES = 3


async def _step(barrier: Any) -> None:
    await asyncio.to_thread(barrier.wait, 60)


async def worker(url: str, prefix: str, index: int, rounds: int, barrier: Any) -> list[float]:
    """Process 0 trips one breaker per round; the others stamp each open event."""
    from msfw_redis import CircuitBreakerConfig

    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    opened: dict[str, float] = {}
    hub.add_listener(
        lambda e: opened.setdefault(e.service, time.time()) if e.state == "open" else None
    )
    stamps: list[float] = []
    try:
        for rnd in range(rounds):
            name = f"svc{rnd}"
            breaker = hub.get(name, config=CircuitBreakerConfig(failure_threshold=1, timeout=30.0))
            await (await breaker.acquire()).success()  # subscribed to its channel
            await _step(barrier)
            if index == 0:
                await asyncio.sleep(0.05)
                stamps.append(time.time())
                await (await breaker.acquire()).failure()
            else:
                deadline = time.monotonic() + 10
                while name not in opened and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                stamps.append(opened.get(name, float("nan")))
            await _step(barrier)
    finally:
        await hub.aclose()
        await bus.aclose()
        await store.aclose()
    return stamps


def _bus_sent(cluster: RedisClusterSetup, field: str) -> int:
    total = 0
    for port in cluster.ports:
        with redis_sync.Redis(port=port) as node:
            total += int(node.cluster("INFO").get(f"cluster_stats_messages_{field}_sent", 0))
    return total


async def _bus_messages(cluster: RedisClusterSetup, prefix: str, n: int) -> dict[str, float]:
    store = Store.from_url(cluster.url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    try:
        script = store.scripts["limits_retryafter_close"]
        key = store.keys.retry_after_gate("svc0")
        channel = store.keys.limits_channel("svc0")
        out: dict[str, float] = {}
        for mode in ("publish", "spublish"):
            before = _bus_sent(cluster, "publish") + _bus_sent(cluster, "publishshard")
            for _ in range(n):
                await store.client.evalsha(script.sha, 1, key, channel, "/x", 1, 10, 0, mode)
            after = _bus_sent(cluster, "publish") + _bus_sent(cluster, "publishshard")
            out[mode] = (after - before) / n
        return out
    finally:
        await store.aclose()


def run(ctx: Context) -> Result:
    rounds = ctx.scale(40, 10)
    n = ctx.scale(200, 50)
    result = Result(
        "cluster",
        "Pub/sub on Redis Cluster (3 masters, 3 replicas, loopback)",
        ["figure", "value"],
    )
    with RedisClusterSetup() as cluster:
        ctx.progress(f"[cluster] trip propagation, {rounds} rounds x {PROCESSES} processes")
        barrier = mp.get_context("spawn").Barrier(PROCESSES)
        prefix = f"bench-cluster-{time.time_ns()}"
        stamps = run_in_processes(
            worker,
            [(cluster.url, prefix, i, rounds, barrier) for i in range(PROCESSES)],
            timeout=60 + rounds * 5,
        )
        delays = [
            (arrived - stamps[0][r]) * 1000
            for other in stamps[1:]
            for r, arrived in enumerate(other)
            if arrived == arrived  # NaN: the event never came
        ]
        lost = rounds * (PROCESSES - 1) - len(delays)
        ctx.progress(f"[cluster] bus messages, {n} publishes per mode")
        per = asyncio.run(_bus_messages(cluster, prefix, n))
    result.add(figure="trip propagation p50 (ms)", value=round(percentile(delays, 0.5), 2))
    result.add(figure="trip propagation p99 (ms)", value=round(percentile(delays, 0.99), 2))
    result.add(figure="trip events never received", value=lost)
    result.add(figure="bus messages per PUBLISH (before)", value=per["publish"])
    result.add(figure="bus messages per SPUBLISH (now)", value=per["spublish"])
    result.notes.append(
        f"{rounds} trips, each heard by {PROCESSES - 1} other processes; bus messages are "
        f"cluster_stats_messages_publish[shard]_sent summed over all 6 nodes, {n} publishes"
    )
    return result
