"""Worker functions (run in separate processes) and a metered HTTP service for limits tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._config import CircuitBreakerConfig
from msfw_redis._exceptions import BulkheadFullError
from msfw_redis._limits.config import BulkheadConfig, RateLimitConfig
from msfw_redis._limits.limits import FleetLimits
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

SERVICE = "limited"


class MeteredService:
    """A loopback HTTP service that measures its own in-flight count and records arrivals.

    Paths: ``/slow`` answers 200 after 50 ms; ``/busy`` answers 503; ``/a`` answers
    ``429 Retry-After: 2`` to its first request and 200 after; anything else 200.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: dict[str, list[float]] = {}
        self.first_429_at: float | None = None
        metered = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                status, headers, delay = metered._enter(path)
                try:
                    if delay:
                        time.sleep(delay)
                    body = json.dumps({"path": path}).encode()
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    metered._leave()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _enter(self, path: str) -> tuple[int, dict[str, str], float]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.arrivals.setdefault(path, []).append(time.time())
            if path == "/slow":
                return 200, {}, 0.05
            if path == "/busy":
                return 503, {}, 0.0
            if path == "/a" and self.first_429_at is None:
                self.first_429_at = time.time()
                return 429, {"Retry-After": "2"}, 0.0
            return 200, {}, 0.0

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def hits(self, path: str) -> int:
        with self._lock:
            return len(self.arrivals.get(path, []))

    def __enter__(self) -> MeteredService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


async def _limits(url: str, prefix: str) -> tuple[Store, EventBus, FleetLimits]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    bus = EventBus(store)
    bus.start()
    return store, bus, FleetLimits(store, bus, failure_policy="fail_closed")


async def _close(store: Store, bus: EventBus, limits: FleetLimits) -> None:
    await limits.aclose()
    await bus.aclose()
    await store.aclose()


async def bulkhead_calls(
    url: str, prefix: str, service_url: str, tasks: int, limit: int, max_wait: float, barrier: Any
) -> tuple[int, int]:
    """``tasks`` concurrent calls of /slow through the fleet bulkhead: (ran, refused)."""
    store, bus, limits = await _limits(url, prefix)
    cfg = BulkheadConfig(max_concurrent_calls=limit, max_wait=max_wait, permit_lease=10.0)
    bh = limits.bulkhead(SERVICE, cfg)
    ran = refused = 0
    async with httpx.AsyncClient(base_url=service_url, timeout=30.0) as http:

        async def one() -> None:
            nonlocal ran, refused
            try:
                async with await bh.acquire():
                    r = await http.get("/slow")
                    r.raise_for_status()
                    ran += 1
            except BulkheadFullError:
                refused += 1

        await asyncio.to_thread(barrier.wait)
        await asyncio.gather(*(one() for _ in range(tasks)))
    await _close(store, bus, limits)
    return ran, refused


async def hold_and_hang(url: str, prefix: str, limit: int, lease: float, ready: Any) -> None:
    """Take every permit, signal ``ready``, then hang until SIGKILLed."""
    _store, _bus, limits = await _limits(url, prefix)
    bh = limits.bulkhead(SERVICE, BulkheadConfig(max_concurrent_calls=limit, permit_lease=lease))
    for _ in range(limit):
        await bh.acquire()
    ready.set()
    await asyncio.sleep(3600)


async def rate_hammer(
    url: str, prefix: str, service_url: str, tasks: int, duration: float, rate: float,
    barrier: Any,
) -> list[int]:  # fmt: skip
    """Hammer a fleet rate limit for ``duration`` s; server-time µs of every admission."""
    store, bus, limits = await _limits(url, prefix)
    limiter = limits.rate_limiter(SERVICE, "hammer", RateLimitConfig(rate=rate, burst=10))
    stamps: list[int] = []
    async with httpx.AsyncClient(base_url=service_url, timeout=30.0) as http:
        await asyncio.to_thread(barrier.wait)
        deadline = time.monotonic() + duration

        sends: list[asyncio.Task[httpx.Response]] = []

        async def loop() -> None:
            while time.monotonic() < deadline:
                reply = await limiter.decide()
                if reply.admitted:
                    stamps.append(reply.now_us)
                    # Sent beside the decision loop, so a slow loopback send (on a loaded
                    # machine) does not hold back the next decision.
                    sends.append(asyncio.create_task(http.get("/rated")))
                else:
                    # Sleep until the slot the script named: no polling.
                    await asyncio.sleep(reply.retry_after_us / 1_000_000)

        await asyncio.gather(*(loop() for _ in range(tasks)))
        await asyncio.gather(*sends)
    await _close(store, bus, limits)
    return stamps


async def budget_calls(
    url: str, prefix: str, service_url: str, requests: int, attempts: int, barrier: Any
) -> tuple[int, int, int, int, int]:
    """Call /busy (always 503) with retries under the fleet budget.

    As the call pipeline does, every attempt is reported to the service's breaker (one
    that never trips) and each call's first attempt counts its one request into the
    budget with that report: the budget hears of requests only from breaker reports.
    Returns (requests, retries granted, retries refused, server ms at start and end).
    """
    store, bus, limits = await _limits(url, prefix)
    hub = BreakerHub(store, bus)
    breaker = hub.get(SERVICE, None, CircuitBreakerConfig(failure_threshold=1_000_000))
    budget = limits.retry_budget(SERVICE, ratio=0.2, min_per_second=1.0)
    assert budget is not None
    granted = refused = 0

    async def attempt(http: httpx.AsyncClient, first: bool) -> httpx.Response:
        permit = await breaker.acquire()
        if first:
            permit.count_request(budget.key, budget.window_s)
        r = await http.get("/busy")
        await (permit.failure() if breaker.classify_status(r.status_code) else permit.success())
        return r

    async with httpx.AsyncClient(base_url=service_url, timeout=30.0) as http:
        await asyncio.to_thread(barrier.wait)
        start_ms = store.clock.now_ms()
        for _ in range(requests):
            r = await attempt(http, True)
            for _attempt in range(attempts - 1):
                if r.status_code != 503:
                    break
                if not await budget.allow_retry():
                    refused += 1
                    break
                granted += 1
                r = await attempt(http, False)
    await hub.aclose()
    end_ms = store.clock.now_ms()
    await _close(store, bus, limits)
    return requests, granted, refused, start_ms, end_ms


async def retry_after_replica(
    url: str, prefix: str, service_url: str, index: int, duration: float, barrier: Any
) -> dict[str, Any]:
    """Call /a and /b in a loop through the fleet's Retry-After gate for ``duration`` s.

    Returns the wall times of this replica's sends per path, and (for the replica that
    got the 429) the wall time its close was written and the window it set.
    """
    store, bus, limits = await _limits(url, prefix)
    gate = limits.gate
    await gate.remaining(SERVICE, "/a")  # warm: subscribed and loaded before any 429
    sent: dict[str, list[float]] = {"/a": [], "/b": []}
    closed_at: float | None = None
    window: float | None = None
    async with httpx.AsyncClient(base_url=service_url, timeout=30.0) as http:
        await asyncio.to_thread(barrier.wait)
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            for path in ("/a", "/b"):
                if await gate.remaining(SERVICE, path) > 0:
                    continue
                sent[path].append(time.time())
                r = await http.get(path)
                seen = await gate.observe(SERVICE, path, r.status_code, r.headers)
                if seen is not None:
                    closed_at, window = time.time(), seen
            await asyncio.sleep(0.005)
    await _close(store, bus, limits)
    return {"index": index, "sent": sent, "closed_at": closed_at, "window": window}
