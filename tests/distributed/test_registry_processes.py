"""The registry and the health monitor across OS processes on one real server."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid

import pytest

from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store
from msfw_redis.testing import ScriptedService, Step, run_in_processes
from tests.distributed._mailboxes import Mailboxes
from tests.distributed._registry_workers import health_replica, registry_replica

pytestmark = pytest.mark.real_redis

SVC = "orders"


async def test_sigkilled_replica_is_evicted_after_its_ttl_and_close_deregisters(
    real_redis_url: str,
) -> None:
    """3 replicas register; the SIGKILLed one is evicted once its server-time deadline
    passes while the other two remain; a graceful close removes its instance at once."""
    ttl = 3.0  # heartbeats every ~1 s: room for a loaded 2-core machine
    prefix = f"t{uuid.uuid4().hex[:12]}"
    ctx = mp.get_context("spawn")
    # A queue per worker: the victim's SIGKILL must not take a queue lock that the
    # others need to report (see _mailboxes; this was a CI flake).
    boxes = Mailboxes(ctx, 3)
    stops = [ctx.Event() for _ in range(3)]
    procs = [
        ctx.Process(
            target=registry_replica,
            args=(real_redis_url, prefix, SVC, 9001 + i, ttl, boxes.box(i), stops[i]),
            daemon=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        proc.start()
    store = Store.from_url(real_redis_url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    observer = ServiceRegistry(store)
    try:
        ids = {}
        for index, proc in enumerate(procs):
            kind, pid, instance_id = await boxes.next(index, procs=procs)
            assert (kind, pid) == ("ready", proc.pid)
            ids[pid] = instance_id
        victim, graceful, survivor = procs
        assert victim.pid is not None
        victim_id = ids[victim.pid]
        listed = await observer.list_service(SVC)
        assert listed.instances is not None
        assert len(listed.instances) == 3

        victim.kill()  # SIGKILL: no deregistration, no more heartbeats
        victim.join(timeout=10)
        killed_at_ms = listed.now_ms
        victim_deadline_ms = 0
        deadline = time.monotonic() + ttl * 5 + 10
        while True:
            listed = await observer.list_service(SVC)
            present = {i.instance_id: i for i in listed.instances or ()}
            if victim_id not in present:
                break
            beat = present[victim_id].last_heartbeat
            assert beat is not None
            victim_deadline_ms = round(beat * 1000) + round(ttl * 1000)
            assert time.monotonic() < deadline, "the killed replica was never evicted"
            await asyncio.sleep(0.02)
        # Evicted by server time, no earlier than its deadline; the others remain.
        assert listed.now_ms >= victim_deadline_ms
        assert listed.now_ms - killed_at_ms <= ttl * 1000 + 10_000
        assert listed.evicted == 1
        assert sorted(present) == sorted(v for v in ids.values() if v != victim_id)

        # A graceful close deregisters at once: removed by deregistration, not expiry.
        assert graceful.pid is not None
        stops[1].set()
        kind, pid, closed_id = await boxes.next(1, procs=procs)
        assert (kind, pid) == ("closed", graceful.pid)
        listed = await observer.list_service(SVC)
        assert survivor.pid is not None
        assert [i.instance_id for i in listed.instances or ()] == [ids[survivor.pid]]
        assert listed.evicted == 0
        tombstones = observer.scripts.keys(SVC).tombstones
        assert await store.client.zscore(tombstones, closed_id) is not None

        stops[2].set()
        assert (await boxes.next(2, procs=procs))[0] == "closed"
    finally:
        for stop in stops:
            stop.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        await store.aclose()
    assert victim.exitcode == -9
    assert graceful.exitcode == 0
    assert survivor.exitcode == 0


async def _register_external(url: str, prefix: str, svc: ScriptedService) -> None:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    try:
        await ServiceRegistry(store).register_external(
            SVC, host=svc.host, port=svc.port, health_check_path="/health"
        )
    finally:
        await store.aclose()


def test_one_replica_probes_each_round_and_every_callback_fires_once(
    real_redis_url: str, http_service: ScriptedService
) -> None:
    """3 replicas monitor one loopback service: each round is probed by one replica only
    (hits at the server == rounds), and every replica's callback fires exactly once when
    the service goes down and once when it comes back."""
    interval = 0.3
    prefix = f"t{uuid.uuid4().hex[:12]}"
    http_service.script("/health", *[Step(200)] * 3, *[Step(500)] * 6, Step(200))
    asyncio.run(_register_external(real_redis_url, prefix, http_service))
    barrier = mp.get_context("spawn").Barrier(3)
    started = time.monotonic()
    results = run_in_processes(
        health_replica,
        [(real_redis_url, prefix, SVC, interval, barrier, 2, 3)] * 3,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    for result in results:
        assert result["events"] == [(SVC, False), (SVC, True)], result
    rounds = [number for result in results for number in result["rounds"]]
    assert len(rounds) == len(set(rounds)), "a round was probed by two replicas"
    assert http_service.hits("/health") == len(rounds)
    # Directional bound: far fewer probes than three replicas each probing every interval.
    assert len(rounds) <= elapsed / interval + 3
