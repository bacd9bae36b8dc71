"""Redis down: per-call latency, and whether the breaker still opens, with Redis refusing or hung.

Three ways for Redis to be down: *refusing* is a loopback port with nothing listening
(``free_port()``: every connect is refused at once), *hanging* is a ``SilentServer``
that accepts connections and never answers, and *killed* is a real server that the
subject used for a few calls before it was SIGKILLed (the subject's connections break
and reconnects are refused). Against each, every subject:

1. starts up (constructor plus any documented initialisation; for *killed*, also five
   successful calls, then the kill);
2. makes ``CALLS`` sequential no-op calls: the latency of the first and of the rest,
   and what each call returned (admitted, rejected, or an error raised into the caller);
3. makes ``THRESHOLD`` failing calls, then one more call: if that one is rejected, the
   breaker still opens without Redis.

msfw-redis runs with its defaults (``redis_op_timeout`` 0.25 s, ``fail_open``). Each
peer runs twice: with its Redis client as its docs build it (redis-py's defaults: no
socket timeout), and with ``socket_timeout=0.25`` (purgatory builds its own client
from the URL, so there the timeout goes into the URL's query string).

Every subject runs in its own process and every step there is watched from outside the
event loop: a step that makes no progress for ``LIMIT`` seconds is reported as
"hung >LIMIT s" and the subject is abandoned there (its process is killed at the end),
so a hung peer cannot hang the suite. *killed* and *refusing* run one subject at a time;
*hanging*, whose figures are timeouts rather than CPU time, runs every subject at once. Logging is silenced in these processes (pybreaker
logs a traceback for every failed Redis command).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from typing import Any

from benchmarks._common import Context, Result, ratio
from benchmarks._fleet import Fleet
from benchmarks._peers import BREAKERS, NOT_INSTALLED, Options, Rejected, fail, noop, subject
from msfw_redis.testing import RedisServer, SilentServer, free_port

LIMIT = 3.0
THRESHOLD = 5
TIMEOUT_VARIANT = 0.25
STEP_TIMEOUT = 120.0


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, Rejected):
        return "rejected"
    return type(exc).__name__


async def _scenario(
    state: dict[str, Any],
    key: str,
    socket_timeout: float | None,
    url: str,
    calls: int,
    kill: RedisServer | None,
) -> None:
    res: dict[str, Any] = state["result"]

    def mark(step: str) -> None:
        state["step"], state["t"] = step, time.monotonic()

    async def one(fn: Any) -> tuple[float, str]:
        t = time.perf_counter()
        try:
            await handle.call(fn)
        except BaseException as exc:
            return (time.perf_counter() - t) * 1000, _outcome(exc)
        return (time.perf_counter() - t) * 1000, "ok"

    peer = subject(key)
    opts = Options(
        threshold=THRESHOLD, cooldown=30.0, socket_timeout=socket_timeout, op_timeout=None
    )
    mark("start-up")
    t = time.perf_counter()
    try:
        handle = await peer.open(url, f"down{time.monotonic_ns()}", "down", opts)
    except Exception as exc:
        res["startup"] = f"raised {type(exc).__name__}"
        return
    res["startup_ms"] = (time.perf_counter() - t) * 1000
    if kill is not None:
        for i in range(5):
            mark(f"warm-up call {i + 1}")
            await one(noop)
        kill.kill()
    latencies: list[float] = []
    outcomes: list[str] = []
    for i in range(calls):
        mark(f"call {i + 1}")
        ms, out = await one(noop)
        latencies.append(ms)
        outcomes.append(out)
    res["latencies"] = latencies
    res["outcomes"] = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    for i in range(THRESHOLD):
        mark(f"failing call {i + 1}")
        await one(fail)
    mark("the call after the failures")
    res["after"] = (await one(noop))[1]
    mark("close")
    try:
        await handle.aclose()
    except Exception as exc:
        res["close"] = f"close raised {type(exc).__name__}"


def _watched(key: str, socket_timeout: float | None, url: str, calls: int) -> dict[str, Any]:
    state: dict[str, Any] = {"step": "start-up", "t": time.monotonic(), "result": {}}
    server = RedisServer().start() if url == "killed" else None

    def target() -> None:
        try:
            where = server.url if server is not None else url
            asyncio.run(_scenario(state, key, socket_timeout, where, calls, server))
        except BaseException as exc:
            state["result"]["crashed"] = repr(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.02)
        if time.monotonic() - state["t"] > LIMIT:
            state["result"]["hung"] = f"hung >{LIMIT:.0f} s in {state['step']}"
            break
    if server is not None:
        server.stop()
    return dict(state["result"])


def worker(
    key: str,
    socket_timeout: float | None,
    urls: dict[str, str],
    calls: int,
    turn: int,
    turns: int,
    barrier: Any,
) -> dict[str, dict[str, Any]]:
    """Serial modes in this process's turn, then the hanging mode with every process at once."""
    logging.disable(logging.CRITICAL)
    out: dict[str, dict[str, Any]] = {}
    for i in range(turns):
        barrier.wait(STEP_TIMEOUT)
        if i == turn:
            for mode in SERIAL:
                out[mode] = _watched(key, socket_timeout, urls[mode], calls)
        barrier.wait(STEP_TIMEOUT)
    barrier.wait(STEP_TIMEOUT)
    out["hanging"] = _watched(key, socket_timeout, urls["hanging"], calls)
    barrier.wait(STEP_TIMEOUT)
    return out


#: modes run one subject at a time (their figures are CPU time)
SERIAL = ("killed", "refusing")
MODES = (*SERIAL, "hanging")


def _ms(value: float) -> str:
    return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"


def run(ctx: Context) -> Result:
    calls = ctx.scale(30, 10)
    result = Result(
        "redis_down",
        f"Redis down: {calls} no-op calls, then {THRESHOLD} failing calls and one more; "
        f"each step bounded at {LIMIT:.0f} s",
        [
            "breaker",
            "Redis client",
            "Redis",
            "start-up ms",
            "first call ms",
            "median call ms",
            "max call ms",
            "calls",
            "breaker opens",
            "vs msfw-redis median",
            "remarks",
        ],
    )
    variants: list[tuple[str, float | None, str]] = []
    for s in BREAKERS:
        if not s.installed():
            result.add(breaker=s.title, **{"Redis client": NOT_INSTALLED})
        elif s.key == "msfw-redis":
            variants.append((s.key, None, "defaults (op timeout 0.25 s)"))
        else:
            variants.append((s.key, None, "redis-py defaults (no timeout)"))
            variants.append((s.key, TIMEOUT_VARIANT, f"socket_timeout={TIMEOUT_VARIANT}"))
    with SilentServer() as silent:
        urls = {
            "killed": "killed",
            "refusing": f"redis://127.0.0.1:{free_port()}/0",
            "hanging": silent.url,
        }
        args = [(key, st, urls, calls, i, len(variants)) for i, (key, st, _) in enumerate(variants)]
        ctx.progress(f"[redis_down] starting {len(variants)} processes")
        with Fleet(worker, args, timeout=60 + len(variants) * (4 * LIMIT + 10)) as fleet:
            for key, _, client in variants:
                ctx.progress(f"[redis_down] killed, refusing: {subject(key).label}, {client}")
                fleet.sync()
                fleet.sync()
            ctx.progress("[redis_down] hanging: every subject at once")
            fleet.sync()
            fleet.sync()
            results = fleet.results()
    rows = []
    for (key, _, client), res in zip(variants, results, strict=True):
        for mode in MODES:
            rows.append((key, client, mode, res.get(mode, {})))
    ours_median = {
        mode: statistics.median(r["latencies"])
        for key, _, mode, r in rows
        if key == "msfw-redis" and r.get("latencies")
    }
    for key, client, mode, r in rows:
        lat = r.get("latencies") or []
        row: dict[str, Any] = {
            "breaker": subject(key).label,
            "Redis client": client,
            "Redis": mode,
            "start-up ms": _ms(r["startup_ms"]) if "startup_ms" in r else "-",
        }
        if lat:
            rest = lat[1:] or lat
            row["first call ms"] = _ms(lat[0])
            row["median call ms"] = _ms(statistics.median(rest))
            row["max call ms"] = _ms(max(rest))
            row["vs msfw-redis median"] = ratio(statistics.median(rest), ours_median.get(mode))
            row["calls"] = ", ".join(f"{n} {o}" for o, n in r.get("outcomes", {}).items())
        after = r.get("after")
        if after is not None:
            row["breaker opens"] = {"rejected": "yes", "ok": "no"}.get(after, f"no ({after})")
        remarks = [r[k] for k in ("hung", "close") if k in r]
        if "startup" in r:
            remarks.append(f"cannot start: constructor {r['startup']}")
        if "crashed" in r:
            remarks.append(f"crashed: {r['crashed'][:60]}")
        row["remarks"] = "; ".join(remarks)
        result.add(**row)
    result.notes.append(
        "killed: a real server, SIGKILLed after 5 successful calls; refusing: nothing "
        "listens on the port; hanging: msfw_redis.testing.SilentServer; "
        f"'hung >{LIMIT:.0f} s in X': step X made no progress for {LIMIT:.0f} s and the "
        "subject was abandoned there"
    )
    result.notes.append(
        "calls: what the no-op calls returned: ok (admitted and ran), rejected, or the "
        "exception the library raised into the caller instead of running the call; median "
        "and max exclude the first call; ratio baseline: msfw-redis median in the same mode"
    )
    return result
