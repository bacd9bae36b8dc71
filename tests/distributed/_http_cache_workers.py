"""An echoing loopback origin and the replica workers of the HTTP cache process tests.

The origin answers from the request (tenant, API key, validators), which a scripted
service cannot, and counts what it sent: full bodies and 304s per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from msfw_redis import ServiceSDK, ServiceSDKConfig

SERVICE = "echo"
SECRET = "http-cache-process-test-secret"


class EchoOrigin:
    """``/vary`` (Vary: X-Tenant), ``/whoami`` (echoes X-Api-Key), ``/etag`` (max-age=0,
    ETag, answers 304 to a matching If-None-Match), ``/value`` (a settable body)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.value = "v1"
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                headers: dict[str, str] = {"content-type": "application/json"}
                status = 200
                body: Any
                if path == "/vary":
                    headers["vary"] = "X-Tenant"
                    body = {"tenant": self.headers.get("x-tenant")}
                elif path == "/whoami":
                    body = {"key": self.headers.get("x-api-key")}
                elif path == "/set":
                    origin.value = self.path.split("value=", 1)[1]
                    body = {"value": origin.value}
                elif path == "/etag":
                    headers["etag"] = '"v1"'
                    headers["cache-control"] = "max-age=0"
                    if self.headers.get("if-none-match") == '"v1"':
                        status, body = 304, None
                    else:
                        body = {"doc": "x" * 1000}
                else:
                    body = {"value": origin.value}
                with origin._lock:
                    origin.counts[f"{path} {status}"] += 1
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> EchoOrigin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def make_sdk(
    url: str, prefix: str, port: int, *, staleness: float = 1.0, **service: Any
) -> ServiceSDK:
    """One replica: an SDK on the shared store, caching the echo service."""
    settings = {
        "services": {SERVICE: {"host": "127.0.0.1", "port": port, "cache_enabled": True, **service}}
    }
    config = ServiceSDKConfig(
        redis_url=url,
        key_prefix=prefix,
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        default_circuit_breaker_enabled=False,
        cache_key_secret=SECRET,
        cache_max_stale=0.0,
        near_cache_max_staleness=staleness,
    )
    return ServiceSDK(config=settings, sdk_config=config)


def _wait(event: Any) -> None:
    if not event.wait(60):
        raise TimeoutError("the other process never got there")


async def header_worker(
    url: str, prefix: str, port: int, path: str, header: str, value: str, first: Any, second: Any
) -> list[Any]:
    """Call ``path`` with ``header: value``; process 0 first, process 1 after it."""
    sdk = make_sdk(url, prefix, port)
    try:
        if value.startswith("second:"):
            await asyncio.to_thread(_wait, first)
            value = value.removeprefix("second:")
        got = [await sdk.get_from_service(SERVICE, path, headers={header: value}) for _ in range(2)]
        first.set()
        return got
    finally:
        await sdk.close()


async def etag_worker(url: str, prefix: str, port: int, calls: int, start: Any) -> list[Any]:
    """``calls`` sequential GETs of /etag after both processes are ready."""
    sdk = make_sdk(url, prefix, port)
    try:
        await asyncio.to_thread(start.wait, 60)
        out = [await sdk.get_from_service(SERVICE, "/etag") for _ in range(calls)]
        return [out, sdk._cache.metrics()]
    finally:
        await sdk.close()


async def near_reader(url: str, prefix: str, port: int, ready: Any, changed: Any, done: Any) -> Any:
    """Process B: warm the near cache, then report what it serves after A changes the key."""
    sdk = make_sdk(url, prefix, port, staleness=30.0, near_cache=True)
    try:
        first = await sdk.get_from_service(SERVICE, "/value")
        # Redis hits copy it near (the copy is skipped while this process's own fill
        # announcement is in flight); read until a near hit has served it.
        again = first
        for _ in range(50):
            again = await sdk.get_from_service(SERVICE, "/value")
            if sdk._cache.metrics()["near_hits"]:
                break
        near_hits = sdk._cache.metrics()["near_hits"]
        ready.set()
        await asyncio.to_thread(_wait, changed)
        # The invalidation travels by pub/sub: read until it has landed (bounded).
        seen = again
        for _ in range(200):
            seen = await sdk.get_from_service(SERVICE, "/value")
            if seen != again:
                break
            await asyncio.sleep(0.01)
        done.set()
        return [first, again, near_hits, seen]
    finally:
        await sdk.close()


async def near_writer(url: str, prefix: str, port: int, ready: Any, changed: Any, done: Any) -> Any:
    """Process A: after B is warm, clear the entry and refill it with a new value."""
    sdk = make_sdk(url, prefix, port)
    try:
        await asyncio.to_thread(_wait, ready)
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/set?value=v2")
        await sdk.clear_service_cache(SERVICE)
        changed.set()
        await asyncio.to_thread(_wait, done)
        return None
    finally:
        await sdk.close()


async def near_worker(
    url: str, prefix: str, port: int, ready: Any, changed: Any, done: Any, role: str
) -> Any:
    """Process 0 reads through its near cache, process 1 changes the key."""
    if role == "reader":
        return await near_reader(url, prefix, port, ready, changed, done)
    return await near_writer(url, prefix, port, ready, changed, done)


async def _pause_subscriber(sdk: ServiceSDK) -> None:
    """Stop reading the pub/sub connection, leaving it subscribed: messages are lost
    without the resubscription that would tell the near cache so."""
    task = sdk._bus._task
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def near_paused_reader(
    url: str, prefix: str, port: int, ready: Any, changed: Any, staleness: float
) -> Any:
    """Process B: warm the near cache, pause pub/sub, then read past the staleness bound."""
    sdk = make_sdk(url, prefix, port, staleness=staleness, near_cache=True, cache_ttl=600.0)
    try:
        first = await sdk.get_from_service(SERVICE, "/value")
        for _ in range(50):
            await sdk.get_from_service(SERVICE, "/value")
            if sdk._cache.metrics()["near_hits"]:
                break
        warm_near_hits = sdk._cache.metrics()["near_hits"]
        # Every v1 copy was read from Redis before this instant: after it no read can
        # return v1 from Redis, because B reads again only once A has refilled the key.
        warm_end = time.monotonic()
        await _pause_subscriber(sdk)
        messages_at_pause = sdk._bus.messages
        ready.set()
        await asyncio.to_thread(_wait, changed)
        reads: list[tuple[float, Any]] = []
        while True:
            started = time.monotonic()
            reads.append((started - warm_end, await sdk.get_from_service(SERVICE, "/value")))
            if started - warm_end > staleness + 0.3 and len(reads) >= 5:
                break
            await asyncio.sleep(0.02)
        return {
            "first": first,
            "warm_near_hits": warm_near_hits,
            "reads": reads,
            "messages_while_paused": sdk._bus.messages - messages_at_pause,
        }
    finally:
        await sdk.close()


async def near_paused_writer(
    url: str, prefix: str, port: int, ready: Any, changed: Any, staleness: float
) -> Any:
    """Process A: once B is warm and deaf, change the origin, clear and refill the key."""
    sdk = make_sdk(url, prefix, port)
    try:
        await asyncio.to_thread(_wait, ready)
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/set?value=v2")
        await sdk.clear_service_cache(SERVICE)
        refilled = await sdk.get_from_service(SERVICE, "/value")
        changed.set()
        return refilled
    finally:
        await sdk.close()


async def near_paused_worker(
    url: str, prefix: str, port: int, ready: Any, changed: Any, staleness: float, role: str
) -> Any:
    """Process 0 is B (near cache, paused pub/sub), process 1 is A (refills the key)."""
    if role == "reader":
        return await near_paused_reader(url, prefix, port, ready, changed, staleness)
    return await near_paused_writer(url, prefix, port, ready, changed, staleness)
