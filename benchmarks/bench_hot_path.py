"""Sequential µs per call through a CLOSED breaker around a no-op, and Redis commands per call.

Ours (several configurations), an in-process floor, and each peer through its own
documented API with its Redis storage (see ``benchmarks/_peers.py``). The ratio column
divides each row's µs/call by msfw-redis's default configuration (successes batched
every 50 ms), measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from benchmarks._common import Context, Result, command_counts, command_delta, ratio, stats
from benchmarks._peers import NOT_INSTALLED, PEERS, CommandCounter, Options, Subject
from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._breaker.machine import BreakerParams, LocalBreaker
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store


async def noop() -> None:
    return None


class _MinimalBreaker:
    """The least an in-process consecutive-failure breaker must do per call."""

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def before(self) -> None:
        if self.open_until and time.monotonic() < self.open_until:
            raise RuntimeError("open")

    def success(self) -> None:
        self.failures = 0


async def _time(call: Callable[[], Awaitable[None]], n: int, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            await call()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return samples


async def _ours(
    url: str, cfg: CircuitBreakerConfig, ok: bool, n: int, repeats: int, count: bool
) -> tuple[list[float], tuple[float, float] | None]:
    store = Store.from_url(url, op_timeout=5.0, key_prefix=f"bench{time.monotonic_ns()}")
    await store.start()
    bus = EventBus(store)
    hub = BreakerHub(store, bus)
    breaker = hub.get("bench", config=cfg)
    await breaker.acquire()  # load the mirror and subscribe outside the timed loop

    async def call() -> None:
        permit = await breaker.acquire()
        await noop()
        await (permit.success() if ok else permit.failure())

    before = command_counts(url) if count else {}
    samples = await _time(call, n, repeats)
    await hub.flush()
    per_call: tuple[float, float] | None = None
    if count:
        after = command_counts(url)
        calls = n * repeats
        per_call = (
            (after.get("evalsha", 0) - before.get("evalsha", 0)) / calls,
            command_delta(before, after) / calls,
        )
    await hub.aclose()
    await bus.aclose()
    await store.aclose()
    return samples, per_call


async def _peer(
    ctx: Context, peer: Subject, n: int, repeats: int
) -> tuple[list[float], tuple[float, float]]:
    """µs per call samples and (round trips, Redis commands) per call for one peer."""
    prefix = f"hot{time.monotonic_ns()}"
    handle = await peer.open(ctx.redis_url, prefix, "hot", Options(threshold=10**9, cooldown=60))
    try:
        for _ in range(20):  # connect, create the breaker's keys, load its scripts
            await handle.call(noop)
        counter = CommandCounter(handle.redis_client)

        async def call() -> None:
            await handle.call(noop)

        before = command_counts(ctx.redis_url)
        samples = await _time(call, n, repeats)
        after = command_counts(ctx.redis_url)
    finally:
        await handle.aclose()
    calls = n * repeats
    return samples, (counter.count / calls, command_delta(before, after) / calls)


async def run(ctx: Context) -> Result:
    n = ctx.scale(20_000, 3_000)
    n_peer = ctx.scale(5_000, 1_000)
    repeats = ctx.scale(7, 3)
    baseline_name = "msfw-redis CLOSED success, batched 50 ms"
    result = Result(
        "hot_path",
        f"Hot path: sequential µs per call ({repeats} runs x {n:,} calls, peers {n_peer:,}; median [min-max])",
        [
            "scenario",
            "µs/call",
            "min-max",
            "overhead µs",
            "round trips/call",
            "Redis cmds/call",
            "vs msfw-redis batched",
        ],
    )
    ctx.progress("[hot_path] baseline")
    base = stats(await _time(noop, n, repeats))

    def add(name: str, samples: list[float], cmds: tuple[float, float] | None) -> None:
        s = stats(samples)
        result.add(
            **{
                "scenario": name,
                "µs/call": s["median"],
                "min-max": f"{s['min']:.2f}-{s['max']:.2f}",
                "overhead µs": s["median"] - base["median"],
                "round trips/call": "-" if cmds is None else f"{cmds[0]:.4f}",
                "Redis cmds/call": "-" if cmds is None else f"{cmds[1]:.4f}",
            }
        )

    add("no-op async call (baseline)", [base["median"], base["min"], base["max"]], None)
    floor_breaker = _MinimalBreaker()

    async def floor() -> None:
        floor_breaker.before()
        await noop()
        floor_breaker.success()

    ctx.progress("[hot_path] in-process floor")
    add("minimal in-process breaker (floor)", await _time(floor, n, repeats), (0.0, 0.0))
    local = LocalBreaker(BreakerParams(failure_threshold=10**9))

    async def fallback() -> None:
        snap = local.acquire("t", 0)
        await noop()
        local.record(snap.gen, 1, 0, "", 0)

    ctx.progress("[hot_path] local fallback")
    add(
        "msfw-redis LocalBreaker (Redis-down fallback)",
        await _time(fallback, n, repeats),
        (0.0, 0.0),
    )
    never_trips = {"failure_threshold": 10**9}
    scenarios = [
        (
            "msfw-redis CLOSED success, batched 50 ms",
            ctx.redis_url,
            CircuitBreakerConfig(**never_trips),
            True,
            True,
        ),
        (
            "msfw-redis CLOSED success, unbatched",
            ctx.redis_url,
            CircuitBreakerConfig(success_flush_interval=0, **never_trips),
            True,
            True,
        ),
        (
            "msfw-redis failure path (1 EVALSHA)",
            ctx.redis_url,
            CircuitBreakerConfig(**never_trips),
            False,
            True,
        ),
        (
            "msfw-redis CLOSED success on memory://",
            "memory://bench-hot",
            CircuitBreakerConfig(**never_trips),
            True,
            False,
        ),
    ]
    for name, url, cfg, ok, count in scenarios:
        ctx.progress(f"[hot_path] {name}")
        samples, cmds = await _ours(url, cfg, ok, n, repeats, count)
        add(name, samples, cmds)
    for peer in PEERS:
        name = f"{peer.label} + Redis storage, CLOSED success"
        if not peer.installed():
            result.add(**{"scenario": f"{peer.title} + Redis storage", "µs/call": NOT_INSTALLED})
            continue
        ctx.progress(f"[hot_path] {name}")
        samples, cmds = await _peer(ctx, peer, n_peer, repeats)
        add(name, samples, cmds)
    base = next(r["µs/call"] for r in result.rows if r["scenario"] == baseline_name)
    for row in result.rows:
        if isinstance(row.get("µs/call"), float):
            row["vs msfw-redis batched"] = ratio(row["µs/call"], base)
    result.notes.append(
        f"server: {ctx.server_kind}; round trips = EVALSHA calls for msfw-redis, commands sent "
        "by the client for peers; Redis cmds = every command including those run inside "
        "scripts (INFO commandstats deltas)"
    )
    result.notes.append(
        f"ratio baseline: '{baseline_name}', measured in this run; pybreaker's sync client "
        "blocks the event loop for each of its round trips"
    )
    return result
