"""Half-open herd: 16 processes released together on an OPEN breaker whose cool-down passed.

Each round, for each subject, on a fresh breaker:

1. every process makes one successful call (the breaker is CLOSED and known to all);
2. process 0 makes one failing call, which trips it (threshold 1);
3. everyone waits out the cool-down (plus 50 ms), then all 16 are released at once;
4. for ``WINDOW`` seconds each process tries a call every 20 ms until one is admitted.
   An admitted call is a probe that reaches the recovering dependency: it stays in
   flight until the window ends and then fails, so no verdict closes the breaker while
   the others are still trying.

The figure is how many of the 16 processes got a call through per round: what a
recovering dependency receives at once. msfw-redis leases at most
``half_open_max_calls`` (1) probes fleet-wide; interlock-cb leases
``permitted_calls_in_half_open`` (set to 1) through its Redis script once its poll has
moved the shared state to HALF_OPEN; pybreaker, purgatory and aiobreaker-redis decide
HALF_OPEN in each process from values read with plain GETs.

Cool-downs: 0.5 s, except aiobreaker-redis (1 s: it stores OPEN with a whole-second
``EX`` and ``EX 0`` is an error) and interlock-cb (0.6 s, with its documented
``poll_interval`` knob at 0.25 s instead of 1 s, so that every replica has polled the
trip before the release, as it would with a real cool-down of tens of seconds).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks._common import (
    Context,
    Result,
    command_counts,
    command_delta,
    ratio,
    spread,
    tidy,
)
from benchmarks._fleet import Fleet, step
from benchmarks._peers import (
    BREAKERS,
    NOT_INSTALLED,
    BenchFailure,
    Options,
    guarded,
    noop,
    subject,
)

PROCESSES = 16
WINDOW = 0.6
RETRY_EVERY = 0.02
SETTLE = 0.05

#: subject key -> (cool-down s, interlock poll interval s or None)
SETTINGS: dict[str, tuple[float, float | None]] = {
    "msfw-redis": (0.5, None),
    "pybreaker": (0.5, None),
    "purgatory": (0.5, None),
    "aiobreaker-redis": (1.0, None),
    "interlock-cb": (0.6, 0.25),
}


async def worker(
    url: str, prefix: str, index: int, keys: list[str], rounds: int, barrier: Any
) -> dict[str, list[int]]:
    """One replica: for each subject and round, trip (process 0), wait, rush."""
    loop = asyncio.get_running_loop()
    admitted: dict[str, list[int]] = {}
    for key in keys:
        peer = subject(key)
        cooldown, poll = SETTINGS[key]
        opts = Options(threshold=1, cooldown=cooldown, poll_interval=poll, probe_lease=30.0)
        admitted[key] = []
        for rnd in range(rounds):
            handle = await peer.open(url, f"{prefix}-{key}", f"herd{rnd}", opts)
            await guarded(handle, noop)
            await step(barrier)  # A: every replica knows the CLOSED breaker
            if index == 0:
                await guarded(handle, fail_once)
            await step(barrier)  # B: tripped
            await asyncio.sleep(cooldown + SETTLE)
            await step(barrier)  # C: release
            deadline = loop.time() + WINDOW

            async def probe(deadline: float = deadline) -> None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                raise BenchFailure("still failing")

            got = 0
            while loop.time() < deadline:
                if await guarded(handle, probe) != "rejected":
                    got = 1
                    break
                await asyncio.sleep(RETRY_EVERY)
            await step(barrier)  # D: round over
            admitted[key].append(got)
            await handle.aclose()
    return admitted


async def fail_once() -> None:
    raise BenchFailure("the dependency fails")


def run(ctx: Context) -> Result:
    rounds = ctx.scale(20, 3)
    result = Result(
        "herd",
        f"Half-open herd: {PROCESSES} processes released on an elapsed OPEN breaker, "
        f"{rounds} rounds{' (--quick; the full run does 20)' if ctx.quick else ''}",
        [
            "breaker",
            "probes admitted per round (median)",
            "min-max",
            "rounds with > 1 probe",
            "Redis cmds per round",
            "cool-down s",
            "vs msfw-redis",
        ],
    )
    keys = [s.key for s in BREAKERS if s.installed()]
    prefix = f"herd{time.monotonic_ns()}"
    commands: dict[str, list[int]] = {k: [] for k in keys}
    args = [(ctx.redis_url, prefix, i, keys, rounds) for i in range(PROCESSES)]
    ctx.progress(f"[herd] starting {PROCESSES} processes")
    with Fleet(worker, args, timeout=60 + rounds * len(keys) * 10) as fleet:
        for key in keys:
            for rnd in range(rounds):
                ctx.progress(f"[herd] {subject(key).label}: round {rnd + 1}/{rounds}")
                fleet.sync()  # A
                fleet.sync()  # B
                fleet.sync()  # C
                before = command_counts(ctx.redis_url)
                fleet.sync()  # D
                commands[key].append(command_delta(before, command_counts(ctx.redis_url)))
        results = fleet.results()
    per_round = {k: [sum(r[k][i] for r in results) for i in range(rounds)] for k in keys}
    ours = statistics.median(per_round["msfw-redis"]) if "msfw-redis" in per_round else None
    for s in BREAKERS:
        if s.key not in per_round:
            result.add(breaker=s.title, **{"probes admitted per round (median)": NOT_INSTALLED})
            continue
        probes = per_round[s.key]
        median = statistics.median(probes)
        result.add(
            **{
                "breaker": s.label,
                "probes admitted per round (median)": tidy(median),
                "min-max": spread(probes),
                "rounds with > 1 probe": f"{sum(p > 1 for p in probes)}/{rounds}",
                "Redis cmds per round": tidy(statistics.median(commands[s.key])),
                "cool-down s": SETTINGS[s.key][0],
                "vs msfw-redis": ratio(median, ours),
            }
        )
    result.notes.append(
        f"server: {ctx.server_kind}; each process retries every {RETRY_EVERY * 1000:.0f} ms "
        f"for {WINDOW} s after the release; an admitted call stays in flight until then"
    )
    result.notes.append(
        "msfw-redis and interlock-cb: half_open_max_calls / permitted_calls_in_half_open = 1; "
        "interlock-cb poll_interval 0.25 s (its default is 1 s); Redis cmds per round are "
        "counted from the release to the end of the window"
    )
    return result
