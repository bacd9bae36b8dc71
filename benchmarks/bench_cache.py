"""The shared response cache on loopback: stampede against the peers, hit latency.

Part of the suite (``python -m benchmarks cache [--quick]``), or on its own from the
repository root::

    python benchmarks/bench_cache.py [--quick] [--calls 2000] [--json results.json]

It uses a loopback HTTP origin (and, on its own, a throwaway ``redis-server`` or
valkey) and measures:

* **stampede** (the main table): 4 processes x 5 concurrent callers on one cold key,
  origin 300 ms: origin calls and Redis commands (``INFO commandstats`` deltas, commands
  run inside scripts included) while it ran, repeated; the same through cashews
  (default, which coalesces callers inside one process, and ``lock=True``) and aiocache
  (``@cached``, and ``@cached_stampede``, its documented stampede guard), each through
  its documented decorator on the same Redis;
* sequentially (one caller, so latencies, not throughput): a plain httpx GET to the
  origin; a bare EVALSHA; a hit through ``ResponseCache.get_or_fetch`` on real Redis and
  on fakeredis; a miss plus fill; Redis commands and EVALSHA round trips per hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    Context,
    Result,
    dump,
    machine,
    ratio,
    redis_server,
    spread,
    tidy,
)
from benchmarks._fleet import Fleet, step
from benchmarks._peers import NOT_INSTALLED
from msfw_redis._cache.cache import CachePolicy, ResponseCache, TypeAdapterCodec
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

SECRET = b"benchmark-secret-0123456789abcdef"
SERVICE = "bench"
PAYLOAD = {"id": 1, "name": "Ann", "email": "ann@example.com", "tags": ["a", "b", "c"]}
PROCESSES = 4
CALLERS = 5
ORIGIN_DELAY = 0.3

#: stampede subjects: key -> (label, modules that must be importable)
SUBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "msfw-redis": ("msfw-redis ResponseCache (lookup-or-lease)", ("msfw_redis",)),
    "cashews": ("cashews @cache (default)", ("cashews",)),
    "cashews-lock": ("cashews @cache(lock=True)", ("cashews",)),
    "aiocache": ("aiocache @cached (Cache.REDIS)", ("aiocache",)),
    "aiocache-stampede": ("aiocache @cached_stampede (Cache.REDIS)", ("aiocache",)),
}
#: distribution of each subject, for its version
DISTS = {"msfw-redis": None, "cashews": "cashews", "cashews-lock": "cashews"}
DISTS |= {"aiocache": "aiocache", "aiocache-stampede": "aiocache"}


class Origin:
    """A minimal keep-alive HTTP/1.1 origin on loopback, in a thread of its own.

    Each response goes out in one write. (The test suite's ScriptedService writes head
    and body separately, which on loopback meets Nagle and delayed ACKs: about 40 ms
    per keep-alive request, which would swamp what is measured here.)
    """

    def __init__(self, routes: dict[str, tuple[bytes, float]]) -> None:
        self._routes = routes
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits.get(path, 0)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=256)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
                with self._lock:
                    self._hits[path] = self._hits.get(path, 0) + 1
                body, delay = self._routes.get(path, (b'{"error":"not found"}', 0.0))
                if delay:
                    await asyncio.sleep(delay)
                status = b"200 OK" if path in self._routes else b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> Origin:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def commandstats(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(s["calls"])
        for name, s in stats.items()
        if name != "cmdstat_info"
    }


def evalsha_usec(url: str) -> tuple[int, int]:
    """(calls, usec) of EVALSHA so far by the server's own count: CPU time inside Redis,
    which machine load on the client side barely moves."""
    client = redis.Redis.from_url(url)
    try:
        stat = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        client.close()
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


def usec_per_call(before: tuple[int, int], after: tuple[int, int]) -> float:
    calls = after[0] - before[0]
    return round((after[1] - before[1]) / calls, 2) if calls else 0.0


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in out.items() if calls}


def summary(samples_s: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples_s)
    return {
        "median_us": round(statistics.median(us), 1),
        "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1),
        "n": len(us),
    }


async def measure_latencies(url: str, origin_url: str, calls: int, *, real: bool) -> dict[str, Any]:
    store = Store.from_url(url, key_prefix=f"bench{time.monotonic_ns()}", op_timeout=2.0)
    await store.start()
    bus = EventBus(store)
    cache = ResponseCache(store, bus, secret=SECRET)
    await cache.prepare(SERVICE)
    codec = TypeAdapterCodec(dict[str, Any])
    policy = CachePolicy(ttl=3600.0)
    out: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=origin_url) as client:

            async def fetch() -> dict[str, Any]:
                response = await client.get("/item")
                response.raise_for_status()
                data: dict[str, Any] = response.json()
                return data

            for _ in range(50):  # warm-up: connections, scripts, imports
                await fetch()
                await store.run("clock_now", [], [])
            samples = []
            inside = evalsha_usec(url) if real else (0, 0)
            for _ in range(calls):
                started = time.perf_counter()
                await store.run("clock_now", [], [])
                samples.append(time.perf_counter() - started)
            out["evalsha"] = summary(samples)
            if real:
                out["evalsha_usec_per_call"] = usec_per_call(inside, evalsha_usec(url))
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await fetch()
                samples.append(time.perf_counter() - started)
            out["origin"] = summary(samples)

            key = cache.request_key(service=SERVICE, method="GET", path="/item")
            if key is None:
                raise RuntimeError("uncredentialed requests are cacheable")
            await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
            for _ in range(50):
                await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
            before = commandstats(url) if real else {}
            inside = evalsha_usec(url) if real else (0, 0)
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                result = await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                samples.append(time.perf_counter() - started)
                if not result.from_cache:
                    raise RuntimeError("expected a hit")
            out["hit"] = summary(samples)
            if real:
                out["hit_usec_per_call"] = usec_per_call(inside, evalsha_usec(url))
                used = delta(before, commandstats(url))
                out["commands_per_hit"] = round(sum(used.values()) / calls, 2)
                out["round_trips_per_hit"] = round(used.get("evalsha", 0) / calls, 2)
            # The ratio that matters, measured interleaved (one bare EVALSHA, one hit) so
            # that load from other processes on the machine hits both alike.
            bare, hits = [], []
            for _ in range(calls):
                started = time.perf_counter()
                await store.run("clock_now", [], [])
                bare.append(time.perf_counter() - started)
                started = time.perf_counter()
                await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                hits.append(time.perf_counter() - started)
            out["interleaved"] = {"evalsha": summary(bare), "hit": summary(hits)}

            # Near cache: the same hit served from this process's copy (no round trip).
            near_key = cache.request_key(service=SERVICE, method="GET", path="/near")
            if near_key is None:
                raise RuntimeError("uncredentialed requests are cacheable")
            for _ in range(50):
                await cache.get_or_fetch(near_key, fetch, codec=codec, policy=policy, near=True)
            before = commandstats(url) if real else {}
            near_before = cache.stats.near_hits
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await cache.get_or_fetch(near_key, fetch, codec=codec, policy=policy, near=True)
                samples.append(time.perf_counter() - started)
            out["near"] = summary(samples)
            out["near_hit_share"] = round((cache.stats.near_hits - near_before) / calls, 3)
            if real:
                used = delta(before, commandstats(url))
                out["commands_per_near_hit"] = round(sum(used.values()) / calls, 2)

            samples = []
            for i in range(min(calls, 500)):
                cold = cache.request_key(
                    service=SERVICE, method="GET", path="/item", params={"i": i}
                )
                if cold is None:
                    raise RuntimeError("uncredentialed requests are cacheable")
                started = time.perf_counter()
                await cache.get_or_fetch(cold, fetch, codec=codec, policy=policy)
                samples.append(time.perf_counter() - started)
            out["miss_fill"] = summary(samples)
    finally:
        await cache.aclose()
        await bus.aclose()
        await store.aclose()
    return out


class _Caller:
    """One subject inside one worker: ``fetch_all(tag)`` runs the callers on a cold key."""

    def __init__(self, key: str, url: str, prefix: str, client: httpx.AsyncClient) -> None:
        self.key, self.url, self.prefix, self.client = key, url, prefix, client
        self._close: list[Any] = []
        self._ours: tuple[Store, EventBus, ResponseCache] | None = None
        self._cashews: Any = None

    async def start(self) -> None:
        if self.key == "msfw-redis":
            store = Store.from_url(self.url, key_prefix=self.prefix, op_timeout=5.0)
            await store.start()
            bus = EventBus(store)
            cache = ResponseCache(store, bus, secret=SECRET)
            await cache.prepare(SERVICE)  # subscribing is start-up work, like loading scripts
            self._ours = (store, bus, cache)
        elif self.key.startswith("cashews"):
            from cashews import Cache

            self._cashews = Cache()
            self._cashews.setup(self.url)
            await self._cashews.get(f"{self.prefix}:warm-up")  # connect before the window

    async def origin(self, tag: str) -> dict[str, Any]:
        response = await self.client.get("/slow", params={"r": tag})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def fetch_all(self, tag: str, callers: int) -> None:
        if self._ours is not None:
            cache = self._ours[2]
            key = cache.request_key(service=SERVICE, method="GET", path="/slow", params={"r": tag})
            if key is None:
                raise RuntimeError("uncredentialed requests are cacheable")
            codec = TypeAdapterCodec(dict[str, Any])
            policy = CachePolicy(ttl=3600.0, lease_timeout=10.0, wait_timeout=10.0)

            async def ours() -> Any:
                return await cache.get_or_fetch(
                    key, lambda: self.origin(tag), codec=codec, policy=policy
                )

            await asyncio.gather(*(ours() for _ in range(callers)))
            return
        if self._cashews is not None:

            @self._cashews(ttl="10m", key=f"{self.prefix}:{tag}", lock=self.key == "cashews-lock")
            async def cashews_fetch() -> dict[str, Any]:
                return await self.origin(tag)

            await asyncio.gather(*(cashews_fetch() for _ in range(callers)))
            return
        from urllib.parse import urlsplit

        from aiocache import Cache, cached, cached_stampede

        parts = urlsplit(self.url)
        decorator = cached_stampede if self.key == "aiocache-stampede" else cached
        options: dict[str, Any] = {"lease": 2} if self.key == "aiocache-stampede" else {}

        @decorator(
            ttl=600,
            key=f"{self.prefix}:{tag}",
            cache=Cache.REDIS,
            endpoint=parts.hostname,
            port=parts.port,
            namespace=self.prefix,
            **options,
        )
        async def aiocache_fetch() -> dict[str, Any]:
            return await self.origin(tag)

        await aiocache_fetch.cache.get(f"{self.prefix}:warm-up")  # connect before the window
        self._close.append(aiocache_fetch.cache)
        await asyncio.gather(*(aiocache_fetch() for _ in range(callers)))

    async def aclose(self) -> None:
        for cache in self._close:
            await cache.close()
        if self._cashews is not None:
            await self._cashews.close()
        if self._ours is not None:
            store, bus, cache = self._ours
            await cache.aclose()
            await bus.aclose()
            await store.aclose()


async def stampede_worker(
    url: str, prefix: str, origin_url: str, plan: list[tuple[str, str]], barrier: Any
) -> list[float]:
    """One replica: for each (subject, round tag), ``CALLERS`` callers on one cold key."""
    elapsed = []
    async with httpx.AsyncClient(base_url=origin_url) as client:
        for key, tag in plan:
            caller = _Caller(key, url, f"{prefix}-{key}", client)
            await caller.start()
            await step(barrier)  # ready: the parent resets the origin, snapshots commandstats
            await step(barrier)  # go
            started = time.monotonic()
            await caller.fetch_all(tag, CALLERS)
            elapsed.append(time.monotonic() - started)
            await step(barrier)  # done
            await caller.aclose()
    return elapsed


def _installed(key: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in SUBJECTS[key][1])


def _label(key: str) -> str:
    import importlib.metadata

    dist = DISTS.get(key)
    label = SUBJECTS[key][0]
    if dist is None:
        return label
    name, _, rest = label.partition(" ")
    return f"{name} {importlib.metadata.version(dist)} {rest}"


def measure_stampedes(
    ctx: Context, origin: Origin, rounds: int
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every installed subject, ``rounds`` times, in workers spawned once."""
    keys = [k for k in SUBJECTS if _installed(k)]
    plan = [(k, f"r{i}") for i in range(rounds) for k in keys]
    prefix = f"stampede{time.monotonic_ns()}"
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    args = [(ctx.redis_url, prefix, origin.url, plan)] * PROCESSES
    with Fleet(stampede_worker, args, timeout=120 + len(plan) * 15) as fleet:
        for i, (key, _) in enumerate(plan):
            ctx.progress(f"[cache] stampede {i + 1}/{len(plan)}: {_label(key)}")
            fleet.sync()
            origin.reset()
            before = commandstats(ctx.redis_url)
            fleet.sync()
            fleet.sync()
            used = delta(before, commandstats(ctx.redis_url))
            runs[key].append(
                {
                    "origin_calls": origin.hits("/slow"),
                    "redis_commands": sum(used.values()),
                    "commands": used,
                }
            )
        elapsed = fleet.results()
    for i, (key, _) in enumerate(plan):
        runs[key][i // len(keys)]["slowest_ms"] = max(e[i] for e in elapsed) * 1000
    return runs, keys


async def _latencies(ctx: Context, origin: Origin, calls: int) -> Result:
    real = await measure_latencies(ctx.redis_url, origin.url, calls, real=True)
    fake = await measure_latencies("memory://bench", origin.url, calls, real=False)
    table = Result(
        "cache_latency",
        f"Response cache, sequential, {calls:,} calls per row",
        ["what", "median µs", "p99 µs", "Redis cmds", "EVALSHA round trips"],
    )
    for what, fig, cmds, trips in (
        ("origin GET over loopback (httpx)", real["origin"], "", ""),
        (
            f"near-cache hit ({real['near_hit_share']:.0%} near), {ctx.server_kind}",
            real["near"],
            real["commands_per_near_hit"],
            0,
        ),
        (f"bare EVALSHA (clock_now), {ctx.server_kind}", real["evalsha"], "", ""),
        (
            f"cache hit, {ctx.server_kind}",
            real["hit"],
            real["commands_per_hit"],
            real["round_trips_per_hit"],
        ),
        ("cache hit, fakeredis (memory://)", fake["hit"], "", ""),
        (f"cache miss + fill, {ctx.server_kind}", real["miss_fill"], "", ""),
    ):
        table.add(
            what=what,
            **{
                "median µs": fig["median_us"],
                "p99 µs": fig["p99_us"],
                "Redis cmds": cmds,
                "EVALSHA round trips": trips,
            },
        )
    table.notes.append(
        f"hit / origin median latency: {real['hit']['median_us'] / real['origin']['median_us']:.2f}"
    )
    pair = real["interleaved"]
    table.notes.append(
        "shared hit / bare EVALSHA median latency, interleaved: "
        f"{pair['hit']['median_us']:.0f} / {pair['evalsha']['median_us']:.0f} µs = "
        f"{pair['hit']['median_us'] / pair['evalsha']['median_us']:.2f} (target <= 1.2)"
    )
    table.notes.append(
        "EVALSHA CPU time inside Redis (INFO commandstats usec_per_call): "
        f"cache_lookup hit {real['hit_usec_per_call']} µs, "
        f"clock_now {real['evalsha_usec_per_call']} µs"
    )
    return table


def run(ctx: Context, calls: int | None = None) -> Result:
    """For ``python -m benchmarks``: the stampede table, with the latencies beneath it."""
    rounds = ctx.scale(10, 3)
    body = json.dumps(PAYLOAD).encode()
    result = Result(
        "cache",
        f"Cache stampede: {PROCESSES} processes x {CALLERS} callers on one cold key, "
        f"origin {ORIGIN_DELAY * 1000:.0f} ms; median [min-max] of {rounds} runs",
        [
            "library",
            "origin calls",
            "min-max",
            "Redis cmds",
            "Redis cmds min-max",
            "slowest caller ms",
            "vs msfw-redis origin calls",
            "vs msfw-redis Redis cmds",
        ],
    )
    with Origin({"/item": (body, 0.0), "/slow": (body, ORIGIN_DELAY)}) as origin:
        runs, keys = measure_stampedes(ctx, origin, rounds)
        ctx.progress("[cache] sequential latencies")
        latency = asyncio.run(_latencies(ctx, origin, calls or ctx.scale(2_000, 300)))
    med = {
        k: (
            statistics.median(r["origin_calls"] for r in runs[k]),
            statistics.median(r["redis_commands"] for r in runs[k]),
        )
        for k in keys
    }
    base = med.get("msfw-redis", (None, None))
    for key, (label, _) in SUBJECTS.items():
        if key not in runs:
            result.add(library=label, **{"origin calls": NOT_INSTALLED})
            continue
        origin_calls = [r["origin_calls"] for r in runs[key]]
        commands = [r["redis_commands"] for r in runs[key]]
        result.add(
            **{
                "library": _label(key),
                "origin calls": tidy(med[key][0]),
                "min-max": spread(origin_calls),
                "Redis cmds": tidy(med[key][1]),
                "Redis cmds min-max": spread(commands),
                "slowest caller ms": statistics.median(r["slowest_ms"] for r in runs[key]),
                "vs msfw-redis origin calls": ratio(med[key][0], base[0]),
                "vs msfw-redis Redis cmds": ratio(med[key][1], base[1]),
            }
        )
    result.notes.append(
        f"server: {ctx.server_kind}; the ideal is 1 origin call; Redis cmds are INFO "
        "commandstats deltas over the whole stampede, commands run inside scripts included"
    )
    result.notes.append(
        "cashews' default coalesces concurrent callers within one process (one origin call "
        "per process); lock=True polls its Redis lock without pause; aiocache's "
        "cached_stampede waits on an in-process event, so callers in other processes do not "
        "wait for the lock holder"
    )
    result.subtables.append(latency)
    return result


def hishel_decision(case: Any) -> str:
    """hishel 2's sans-I/O state machine (shared cache) on one storage-rules case."""
    import hishel

    response_headers: dict[str, str] = {}
    if case.cache_control:
        response_headers["cache-control"] = case.cache_control
    if case.vary:
        response_headers["vary"] = case.vary
    if case.set_cookie:
        response_headers["set-cookie"] = "sid=1"
    if case.validator:
        response_headers["etag"] = '"v1"'
    if case.retry_after:
        response_headers["retry-after"] = case.retry_after
    request_headers = {"authorization": "Bearer alice"} if case.credential != "none" else {}
    request = hishel.Request(
        method="GET", url="http://svc/a", headers=hishel.Headers(request_headers)
    )
    state = hishel.CacheMiss(request=request, options=hishel.CacheOptions(shared=True))
    nxt = state.next(
        hishel.Response(status_code=case.status, headers=hishel.Headers(response_headers))
    )
    return "store" if type(nxt).__name__ == "StoreAndUse" else "no"


def rules_table() -> Result:
    """The storage-rules table (tests/unit/test_cache_rules.py) beside hishel's decisions."""
    from tests.unit.test_cache_rules import CASES, ours

    table = Result(
        "cache_rules",
        "RFC 9111 storage decisions: msfw-redis vs hishel 2 (shared=True)",
        ["case", "msfw-redis", "hishel", "differs"],
    )
    for case in CASES:
        mine = ours(case)
        theirs = hishel_decision(case)
        differs = mine.startswith("no") != (theirs == "no")
        table.add(
            case=case.name,
            **{"msfw-redis": mine, "hishel": theirs, "differs": "yes" if differs else ""},
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and calls")
    parser.add_argument("--calls", type=int, help="sequential calls per latency figure")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--redis-url", help="use this server instead of starting one")
    parser.add_argument("--rules", action="store_true", help="only the storage-rules table")
    parser.add_argument("--latency", action="store_true", help="only the latency table")
    args = parser.parse_args(argv)
    started = time.time()
    if args.rules:
        print(rules_table().render())
        return 0
    if args.latency:
        with redis_server(args.redis_url) as (url, kind):
            ctx = Context(redis_url=url, quick=args.quick, server_kind=kind)
            with Origin({"/item": (json.dumps(PAYLOAD).encode(), 0.0)}) as origin:
                table = asyncio.run(_latencies(ctx, origin, args.calls or ctx.scale(2_000, 300)))
        print(table.render())
        if args.json:
            dump(
                str(args.json),
                [table],
                {
                    "command": " ".join(["python benchmarks/bench_cache.py", *sys.argv[1:]]),
                    "server": kind,
                    **machine(),
                },
            )
        return 0
    with redis_server(args.redis_url) as (url, kind):
        ctx = Context(redis_url=url, quick=args.quick, server_kind=kind)
        result = run(ctx, calls=args.calls)
    sys.stderr.write("\n")
    print(result.render())
    if args.json:
        meta: dict[str, Any] = {
            "command": " ".join(["python benchmarks/bench_cache.py", *sys.argv[1:]]),
            "server": kind,
            "quick": args.quick,
            "seconds": round(time.time() - started, 1),
            **machine(),
        }
        dump(str(args.json), [result], meta)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
