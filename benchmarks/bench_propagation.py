"""Trip propagation: from a trip in one process until every other process rejects.

Five processes share one breaker per subject and round. Four observers make a
successful no-op call through it every millisecond; process 0 makes a failing call
(threshold 1), stamping the moment its protected call fails, and repeats that until its
own breaker rejects (a trip that a concurrent success wiped out must be retried). Each
observer stamps its first rejection. The latency of a round is the slowest observer:
until then some replica still sends traffic to the failing dependency.

How a trip travels differs by design: msfw-redis PUBLISHes every transition from the
Lua script and each process updates its mirror from pub/sub (no round trip per call);
pybreaker, purgatory and aiobreaker-redis read the shared state with GETs on every call
(see the hot path for what that costs); interlock-cb refreshes its view of the shared
state by polling, every ``poll_interval`` (1 s by default, used here).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks._common import Context, Result, percentile, ratio
from benchmarks._fleet import Fleet, step
from benchmarks._peers import BREAKERS, NOT_INSTALLED, BenchFailure, Options, guarded, noop, subject

PROCESSES = 5
LIMIT = 3.0  # seconds an observer waits for the trip before giving up on the round
POLL = 0.001
HOW = {
    "msfw-redis": "pub/sub from the transition script",
    "pybreaker": "GETs on every call",
    "purgatory": "GETs on every call",
    "aiobreaker-redis": "GET on every call",
    "interlock-cb": "polling (poll_interval 1 s)",
}


async def worker(
    url: str, prefix: str, index: int, keys: list[str], rounds: int, barrier: Any
) -> dict[str, list[tuple[float | None, int]]]:
    """Process 0 trips; the others observe. Returns (timestamp, attempts) per round."""
    out: dict[str, list[tuple[float | None, int]]] = {}
    for key in keys:
        peer = subject(key)
        out[key] = []
        for rnd in range(rounds):
            handle = await peer.open(
                url, f"{prefix}-{key}", f"prop{rnd}", Options(threshold=1, cooldown=30.0)
            )
            await guarded(handle, noop)
            await step(barrier)  # A: every replica uses the CLOSED breaker
            if index == 0:
                await asyncio.sleep(0.05)  # the observers are polling by now
                stamps: list[float] = []

                async def failing(stamps: list[float] = stamps) -> None:
                    stamps.append(time.time())
                    raise BenchFailure("the dependency fails")

                attempts = 0
                while attempts < 50:
                    attempts += 1
                    await guarded(handle, failing)
                    if await guarded(handle, noop) == "rejected":
                        break
                    await asyncio.sleep(0.01)
                out[key].append((stamps[0] if stamps else None, attempts))
            else:
                deadline = time.time() + LIMIT
                seen: float | None = None
                while time.time() < deadline:
                    if await guarded(handle, noop) == "rejected":
                        seen = time.time()
                        break
                    await asyncio.sleep(POLL)
                out[key].append((seen, 0))
            await step(barrier)  # B: round over
            await handle.aclose()
    return out


def run(ctx: Context) -> Result:
    rounds = ctx.scale(20, 5)
    result = Result(
        "propagation",
        f"Trip propagation: 1 process trips, {PROCESSES - 1} others call every 1 ms; "
        f"ms until all reject, {rounds} rounds",
        [
            "breaker",
            "how the trip travels",
            "all reject p50 ms",
            "all reject p99 ms",
            "each observer p50 ms",
            f"rounds not propagated in {LIMIT:.0f} s",
            "trip attempts (max)",
            "vs msfw-redis p50",
        ],
    )
    keys = [s.key for s in BREAKERS if s.installed()]
    prefix = f"prop{time.monotonic_ns()}"
    args = [(ctx.redis_url, prefix, i, keys, rounds) for i in range(PROCESSES)]
    ctx.progress(f"[propagation] starting {PROCESSES} processes")
    with Fleet(worker, args, timeout=60 + rounds * len(keys) * (LIMIT + 5)) as fleet:
        for key in keys:
            for rnd in range(rounds):
                ctx.progress(f"[propagation] {subject(key).label}: round {rnd + 1}/{rounds}")
                fleet.sync()
                fleet.sync()
        results = fleet.results()
    figures: dict[str, dict[str, Any]] = {}
    for key in keys:
        all_reject: list[float] = []
        each: list[float] = []
        missed = 0
        attempts = 0
        for rnd in range(rounds):
            t0, tries = results[0][key][rnd]
            attempts = max(attempts, tries)
            seen = [r[key][rnd][0] for r in results[1:]]
            if t0 is None or any(s is None for s in seen):
                missed += 1
                continue
            lat = [(s - t0) * 1000 for s in seen if s is not None]
            each += lat
            all_reject.append(max(lat))
        figures[key] = {"all": all_reject, "each": each, "missed": missed, "attempts": attempts}
    ours = figures.get("msfw-redis", {}).get("all")
    ours_p50 = statistics.median(ours) if ours else None
    for s in BREAKERS:
        if s.key not in figures:
            result.add(breaker=s.title, **{"how the trip travels": NOT_INSTALLED})
            continue
        f = figures[s.key]
        p50 = statistics.median(f["all"]) if f["all"] else None
        result.add(
            **{
                "breaker": s.label,
                "how the trip travels": HOW[s.key],
                "all reject p50 ms": "-" if p50 is None else p50,
                "all reject p99 ms": percentile(f["all"], 0.99) if f["all"] else "-",
                "each observer p50 ms": statistics.median(f["each"]) if f["each"] else "-",
                f"rounds not propagated in {LIMIT:.0f} s": f"{f['missed']}/{rounds}",
                "trip attempts (max)": f["attempts"],
                "vs msfw-redis p50": ratio(p50, ours_p50),
            }
        )
    result.notes.append(
        f"server: {ctx.server_kind}; latency = first rejection in each observer minus the "
        "moment the tripping call failed in process 0 (same machine clock); 2 cores are "
        f"shared by {PROCESSES} processes and Redis"
    )
    result.notes.append(
        "trip attempts: failing calls process 0 needed before its own breaker rejected "
        "(more than 1 means a concurrent success undid the trip)"
    )
    return result
