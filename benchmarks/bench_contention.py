"""Contention: P processes x T tasks recording failures on one breaker vs on 100 breakers.

Every recorded failure is one EVALSHA that may trip the breaker; the breakers never trip
here (a huge threshold), so the exact count of failures each holds afterwards can be
checked against what was sent: lost updates must be 0. The same load is also sent as
raw EVALSHA of ``breaker_record`` (no Python breaker around it) for comparison.

Each peer then runs the same load through its own API and Redis storage, in workers
spawned once per peer (``benchmarks/_fleet.py``). Where a peer keeps a shared failure
counter, that counter is read back and compared with what was sent; interlock-cb keeps
its failure window per replica, so it has none to check.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

from benchmarks._common import (
    Context,
    Result,
    command_counts,
    command_delta,
    ratio,
    spread,
    stats,
)
from benchmarks._fleet import Fleet, step
from benchmarks._peers import NOT_INSTALLED, PEERS, Options, Subject, fail, guarded, noop, subject
from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.events import EventBus
from msfw_redis._store.replies import reply_list
from msfw_redis._store.store import Store
from msfw_redis.testing import run_in_processes

THRESHOLD = 10**9


async def worker(
    url: str,
    prefix: str,
    index: int,
    tasks: int,
    per_task: int,
    n_breakers: int,
    raw: bool,
    barrier: Any,
) -> tuple[float, float, int]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=10.0)
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    cfg = CircuitBreakerConfig(failure_threshold=THRESHOLD, success_flush_interval=0)
    services = [f"svc{(index * tasks + t) % n_breakers}" for t in range(tasks)]
    for svc in set(services):
        await hub.get(svc, config=cfg).acquire()  # warm the mirrors outside the timing

    async def sdk_task(svc: str) -> None:
        breaker = hub.get(svc, config=cfg)
        for _ in range(per_task):
            permit = await breaker.acquire()
            await permit.failure()

    async def raw_task(svc: str) -> None:
        keys = [store.keys.key(svc, "breaker", p, "*") for p in ("state", "probes", "window")]
        channel = store.keys.channel(svc, "breaker")
        args = [channel, "*", 0, 0, 1, "", THRESHOLD, 2, 60_000, 0, 10, 60_000, 3_600_000, 0]
        for _ in range(per_task):
            await store.run("breaker_record", keys, args)

    await asyncio.to_thread(barrier.wait, 60)
    start = time.time()
    await asyncio.gather(*((raw_task if raw else sdk_task)(s) for s in services))
    end = time.time()
    await hub.aclose()
    await bus.aclose()
    await store.aclose()
    return start, end, tasks * per_task


#: Positions in breaker_read's reply (see the header of lua/breaker_read.lua).
_FAILURES = 3
_TOTAL_FAILURES = 9


async def _totals(url: str, prefix: str, n_breakers: int) -> tuple[int, int]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=10.0)
    await store.start()
    total_failures = consecutive = 0
    try:
        for i in range(n_breakers):
            keys = [store.keys.key(f"svc{i}", "breaker", p, "*") for p in ("state", "probes")]
            snap = [int(v) for v in reply_list(await store.run("breaker_read", keys, [0]))]
            # breaker_read's reply: {0, state, gen, failures, successes, opened_at,
            # open_until, now, failures_at_trip, total_failures, ...}
            consecutive += snap[_FAILURES]
            total_failures += snap[_TOTAL_FAILURES]
    finally:
        await store.aclose()
    return total_failures, consecutive


def _one_run(
    ctx: Context, procs: int, tasks: int, per_task: int, n_breakers: int, raw: bool
) -> dict[str, float]:
    prefix = f"cont{time.monotonic_ns()}"
    barrier = mp.get_context("spawn").Barrier(procs)
    before = command_counts(ctx.redis_url)
    out = run_in_processes(
        worker,
        [
            (ctx.redis_url, prefix, i, tasks, per_task, n_breakers, raw, barrier)
            for i in range(procs)
        ],
        timeout=600,
    )
    after = command_counts(ctx.redis_url)
    wall = max(o[1] for o in out) - min(o[0] for o in out)
    sent = sum(o[2] for o in out)
    total_failures, consecutive = asyncio.run(_totals(ctx.redis_url, prefix, n_breakers))
    return {
        "decisions_s": sent / wall,
        "ops_s": command_delta(before, after) / wall,
        "evalsha_s": (after.get("evalsha", 0) - before.get("evalsha", 0)) / wall,
        "sent": sent,
        "counted": total_failures,
        "lost": sent - consecutive,
    }


async def peer_worker(
    key: str,
    url: str,
    prefix: str,
    index: int,
    tasks: int,
    per_task: int,
    plan: list[int],
    barrier: Any,
) -> list[tuple[float, float, int]]:
    """One process of a peer's runs: for each round, T tasks record failures."""
    peer = subject(key)
    out = []
    for rnd, n_breakers in enumerate(plan):
        names = [f"svc{(index * tasks + t) % n_breakers}" for t in range(tasks)]
        handles = {
            name: await peer.open(
                url, f"{prefix}r{rnd}", name, Options(threshold=THRESHOLD, cooldown=3600.0)
            )
            for name in sorted(set(names))
        }
        for handle in handles.values():
            await guarded(handle, noop)  # connect and create the breaker outside the timing

        async def task(name: str, handles: dict[str, Any] = handles) -> None:
            handle = handles[name]
            for _ in range(per_task):
                await guarded(handle, fail)

        await step(barrier)  # ready: the parent snapshots INFO commandstats
        await step(barrier)  # go
        start = time.time()
        await asyncio.gather(*(task(name) for name in names))
        end = time.time()
        await step(barrier)  # done
        for handle in handles.values():
            await handle.aclose()
        out.append((start, end, tasks * per_task))
    return out


def _peer_runs(
    ctx: Context, peer: Subject, procs: int, tasks: int, per_task: int, plan: list[int]
) -> list[dict[str, float]]:
    prefix = f"pc{time.monotonic_ns()}"
    commands = []
    args = [(peer.key, ctx.redis_url, prefix, i, tasks, per_task, plan) for i in range(procs)]
    with Fleet(peer_worker, args, timeout=600) as fleet:
        for rnd, n_breakers in enumerate(plan):
            ctx.progress(
                f"[contention] {peer.label}: run {rnd + 1}/{len(plan)}, {n_breakers} breaker(s)"
            )
            fleet.sync()
            before = command_counts(ctx.redis_url)
            fleet.sync()
            fleet.sync()
            commands.append(command_delta(before, command_counts(ctx.redis_url)))
        results = fleet.results()
    runs = []
    for rnd, n_breakers in enumerate(plan):
        per_proc = [r[rnd] for r in results]
        wall = max(o[1] for o in per_proc) - min(o[0] for o in per_proc)
        sent = sum(o[2] for o in per_proc)
        counts = [
            asyncio.run(peer.shared_failures(ctx.redis_url, f"{prefix}r{rnd}", f"svc{i}"))
            for i in range(n_breakers)
        ]
        counted = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
        runs.append(
            {
                "n_breakers": n_breakers,
                "decisions_s": sent / wall,
                "ops_s": commands[rnd] / wall,
                "sent": sent,
                "counted": counted,
            }
        )
    return runs


def run(ctx: Context) -> Result:
    procs, tasks = 4, 25
    per_task = ctx.scale(200, 40)
    repeats = ctx.scale(5, 2)
    result = Result(
        "contention",
        f"Contention: {procs} processes x {tasks} tasks, {per_task} failures each; median [min-max] of {repeats} runs",
        [
            "target",
            "path",
            "decisions/s",
            "min-max",
            "EVALSHA/s",
            "Redis cmds/s",
            "sent",
            "counted",
            "lost updates",
            "vs msfw-redis breaker",
        ],
    )
    peer_runs: dict[str, list[dict[str, Any]]] = {}
    for peer in PEERS:
        if peer.installed():
            peer_runs[peer.key] = _peer_runs(ctx, peer, procs, tasks, per_task, [1, 100] * repeats)
    for n_breakers in (1, 100):
        for raw in (False, True):
            label = (
                "raw EVALSHA breaker_record" if raw else "msfw-redis breaker (acquire + failure)"
            )
            ctx.progress(f"[contention] {n_breakers} breaker(s), {label}")
            runs = [_one_run(ctx, procs, tasks, per_task, n_breakers, raw) for _ in range(repeats)]
            d = stats([r["decisions_s"] for r in runs])
            result.add(
                **{
                    "target": f"{n_breakers} breaker{'s' if n_breakers > 1 else ''}",
                    "path": label,
                    "decisions/s": d["median"],
                    "min-max": f"{d['min']:,.0f}-{d['max']:,.0f}",
                    "EVALSHA/s": stats([r["evalsha_s"] for r in runs])["median"],
                    "Redis cmds/s": stats([r["ops_s"] for r in runs])["median"],
                    "sent": int(runs[-1]["sent"]),
                    "counted": int(runs[-1]["counted"]),
                    "lost updates": int(max(r["lost"] for r in runs)),
                }
            )
        ours = result.rows[-2]["decisions/s"]
        result.rows[-2]["vs msfw-redis breaker"] = ratio(ours, ours)
        result.rows[-1]["vs msfw-redis breaker"] = ratio(result.rows[-1]["decisions/s"], ours)
        target = f"{n_breakers} breaker{'s' if n_breakers > 1 else ''}"
        for peer in PEERS:
            if peer.key not in peer_runs:
                result.add(target=target, path=peer.title, **{"decisions/s": NOT_INSTALLED})
                continue
            runs = [r for r in peer_runs[peer.key] if r["n_breakers"] == n_breakers]
            d = stats([r["decisions_s"] for r in runs])
            counted = [r["counted"] for r in runs]
            if peer.no_shared_count or any(c is None for c in counted):
                shown: Any = peer.no_shared_count or "cannot: no shared counter"
                lost: Any = "cannot"
            else:
                shown = int(counted[-1])
                lost = int(max(r["sent"] - r["counted"] for r in runs))
            result.add(
                **{
                    "target": target,
                    "path": f"{peer.label} (call + failure)",
                    "decisions/s": d["median"],
                    "min-max": spread([r["decisions_s"] for r in runs]),
                    "EVALSHA/s": "-",
                    "Redis cmds/s": stats([r["ops_s"] for r in runs])["median"],
                    "sent": int(runs[-1]["sent"]),
                    "counted": shown,
                    "lost updates": lost,
                    "vs msfw-redis breaker": ratio(d["median"], ours),
                }
            )
    result.notes.append(
        f"server: {ctx.server_kind}; the machine has 2 cores shared by the 4 workers and Redis"
    )
    result.notes.append(
        "counted = failures the shared state holds afterwards (summed over the breakers), "
        "lost updates = sent - counted (worst run); pybreaker, purgatory and "
        "aiobreaker-redis count failures with INCR, which is atomic; interlock-cb keeps its "
        "failure window in each replica and shares only OPEN/HALF_OPEN, so there is no "
        "fleet-wide count to check; pybreaker's sync client serialises the tasks of each process"
    )
    return result
