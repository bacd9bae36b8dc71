"""The shared response cache on loopback: hit latency, Redis commands, stampede.

Run from the repository root::

    python benchmarks/bench_cache.py [--calls 2000] [--json results.json]

It starts a throwaway ``redis-server`` (or valkey) and a loopback HTTP origin, then
measures, sequentially (one caller, so the figures are latencies, not throughput):

* origin: a plain httpx GET to the loopback origin;
* hit: ``ResponseCache.get_or_fetch`` on a fresh entry (real Redis, and fakeredis);
* miss+fill: a cold key each time (lookup, origin call, fill);
* Redis commands per hit, from ``INFO commandstats`` deltas (script-internal commands
  included) and EVALSHA round trips per hit;
* stampede: 4 processes x 5 concurrent callers on one cold key, origin 300 ms: origin
  calls and Redis commands sent while it ran; the same run with cashews (default and
  ``lock=True``) when cashews is installed (``pip install cashews``), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msfw_redis._cache import CachePolicy, ResponseCache, TypeAdapterCodec
from msfw_redis._events import EventBus
from msfw_redis._store import Store
from msfw_redis.testing import RedisServer, run_in_processes

SECRET = b"benchmark-secret-0123456789abcdef"
SERVICE = "bench"
PAYLOAD = {"id": 1, "name": "Ann", "email": "ann@example.com", "tags": ["a", "b", "c"]}


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
            for _ in range(calls):
                started = time.perf_counter()
                await store.run("clock_now", [], [])
                samples.append(time.perf_counter() - started)
            out["evalsha"] = summary(samples)
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
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                result = await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                samples.append(time.perf_counter() - started)
                if not result.from_cache:
                    raise RuntimeError("expected a hit")
            out["hit"] = summary(samples)
            if real:
                used = delta(before, commandstats(url))
                out["commands_per_hit"] = round(sum(used.values()) / calls, 2)
                out["round_trips_per_hit"] = round(used.get("evalsha", 0) / calls, 2)

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


async def stampede_worker(
    url: str, prefix: str, origin_url: str, callers: int, ready: Any, go: Any, done: Any
) -> dict[str, Any]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    bus = EventBus(store)
    cache = ResponseCache(store, bus, secret=SECRET)
    try:
        await cache.prepare(SERVICE)
        key = cache.request_key(service=SERVICE, method="GET", path="/slow")
        if key is None:
            raise RuntimeError("uncredentialed requests are cacheable")
        codec = TypeAdapterCodec(dict[str, Any])
        policy = CachePolicy(ttl=3600.0, lease_timeout=10.0, wait_timeout=10.0)
        async with httpx.AsyncClient(base_url=origin_url) as client:

            async def fetch() -> dict[str, Any]:
                response = await client.get("/slow")
                response.raise_for_status()
                data: dict[str, Any] = response.json()
                return data

            await asyncio.to_thread(ready.wait, 60)
            await asyncio.to_thread(go.wait, 60)
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                    for _ in range(callers)
                )
            )
            elapsed = time.monotonic() - started
            await asyncio.to_thread(done.wait, 60)
        return {"outcomes": [str(r.outcome) for r in results], "elapsed": elapsed}
    finally:
        await cache.aclose()
        await bus.aclose()
        await store.aclose()


async def cashews_worker(
    url: str, name: str, origin_url: str, callers: int, ready: Any, go: Any, done: Any
) -> dict[str, Any]:
    """The same stampede through cashews' Redis backend (``lock=True`` when asked)."""
    from cashews import Cache

    cache = Cache()
    cache.setup(url)
    lock = name.endswith("lock")
    try:
        await cache.get(f"warm-up:{name}")  # open the connection before the window
        async with httpx.AsyncClient(base_url=origin_url) as client:

            @cache(ttl="10m", key=f"stampede:{name}", lock=lock)
            async def fetch() -> dict[str, Any]:
                response = await client.get("/slow")
                response.raise_for_status()
                data: dict[str, Any] = response.json()
                return data

            await asyncio.to_thread(ready.wait, 60)
            await asyncio.to_thread(go.wait, 60)
            started = time.monotonic()
            await asyncio.gather(*(fetch() for _ in range(callers)))
            elapsed = time.monotonic() - started
            await asyncio.to_thread(done.wait, 60)
        return {"outcomes": [], "elapsed": elapsed}
    finally:
        await cache.close()


def measure_stampede(
    url: str,
    origin: Origin,
    processes: int,
    callers: int,
    worker: Any = None,
    name: str = "",
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, go, done = (ctx.Barrier(processes + 1) for _ in range(3))
    tag = name or f"stampede{time.monotonic_ns()}"
    args = (url, tag, origin.url, callers, ready, go, done)
    fn = worker or stampede_worker
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["results"] = run_in_processes(fn, [args] * processes, timeout=120)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    origin.reset()
    thread.start()
    ready.wait(60)
    before = commandstats(url)
    go.wait(60)
    done.wait(60)
    used = delta(before, commandstats(url))
    thread.join(120)
    if "error" in box:
        raise box["error"]
    outcomes = [o for r in box["results"] for o in r["outcomes"]]
    return {
        "processes": processes,
        "callers_per_process": callers,
        "origin_calls": origin.hits("/slow"),
        "redis_commands": sum(used.values()),
        "evalsha_round_trips": used.get("evalsha", 0),
        "commands": used,
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "slowest_caller_ms": round(max(r["elapsed"] for r in box["results"]) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per figure")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    results: dict[str, Any] = {"python": sys.version.split()[0]}
    body = json.dumps(PAYLOAD).encode()
    with RedisServer() as server, Origin({"/item": (body, 0.0), "/slow": (body, 0.3)}) as origin:
        results["server"] = server.binary.kind
        results["real"] = asyncio.run(
            measure_latencies(server.url, origin.url, args.calls, real=True)
        )
        results["fakeredis"] = asyncio.run(
            measure_latencies("memory://bench", origin.url, args.calls, real=False)
        )
        results["stampede"] = measure_stampede(server.url, origin, processes=4, callers=5)
        try:
            import cashews  # noqa: F401
        except ImportError:
            results["cashews"] = None
        else:
            stamp = time.monotonic_ns()
            results["cashews"] = {
                label: measure_stampede(
                    server.url, origin, 4, 5, cashews_worker, f"c{stamp}-{label}"
                )
                for label in ("default", "lock")
            }

    real, fake, stampede = results["real"], results["fakeredis"], results["stampede"]
    rows = [
        ("origin GET over loopback (httpx)", real["origin"]),
        (f"bare EVALSHA (clock_now), {results['server']}", real["evalsha"]),
        (f"cache hit, {results['server']}", real["hit"]),
        ("cache hit, fakeredis (memory://)", fake["hit"]),
        (f"cache miss + fill, {results['server']}", real["miss_fill"]),
    ]
    print(f"\nResponse cache, sequential, {args.calls} calls per row (Python {results['python']})")
    print(f"{'what':<40} {'median µs':>10} {'p99 µs':>10}")
    for name, fig in rows:
        print(f"{name:<40} {fig['median_us']:>10.1f} {fig['p99_us']:>10.1f}")
    print(
        f"\nhit / origin median latency: {real['hit']['median_us'] / real['origin']['median_us']:.2f}"
        f"; Redis commands per hit: {real['commands_per_hit']}"
        f" ({real['round_trips_per_hit']} EVALSHA round trips)"
    )
    print(
        f"\nstampede: {stampede['processes']} processes x {stampede['callers_per_process']}"
        f" callers on one cold key, origin 300 ms"
    )
    print(f"  origin calls:        {stampede['origin_calls']}")
    print(
        f"  Redis commands:      {stampede['redis_commands']}"
        f" ({stampede['evalsha_round_trips']} EVALSHA round trips)"
    )
    print(f"  outcomes:            {stampede['outcomes']}")
    print(f"  slowest caller:      {stampede['slowest_caller_ms']} ms")
    peers = results["cashews"]
    if peers:
        print(f"\n{'same stampede':<28} {'origin calls':>12} {'Redis cmds':>11} {'slowest ms':>11}")
        for label, fig in (
            ("msfw_redis", stampede),
            ("cashews (default)", peers["default"]),
            ("cashews (lock=True)", peers["lock"]),
        ):
            print(
                f"{label:<28} {fig['origin_calls']:>12} {fig['redis_commands']:>11}"
                f" {fig['slowest_caller_ms']:>11}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
