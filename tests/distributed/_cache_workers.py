"""Worker functions for the multi-process cache tests (module level, so spawn can import them).

Each worker is one replica: its own store, event bus and ResponseCache, calling a real
loopback origin over httpx. Multiprocessing barriers and events are waited on in a
thread so the event loop (and its pub/sub reader) keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from msfw_redis._cache.cache import CachePolicy, ResponseCache
from msfw_redis._cache.entry import TypeAdapterCodec
from msfw_redis._store.events import EventBus
from msfw_redis._store.store import Store

SERVICE = "stampede"
SECRET = b"distributed-cache-test-secret-0123"
_BARRIER_TIMEOUT = 60.0


async def _replica(url: str, prefix: str) -> tuple[Store, EventBus, ResponseCache]:
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    bus = EventBus(store)
    cache = ResponseCache(store, bus, secret=SECRET)
    return store, bus, cache


async def _close(store: Store, bus: EventBus, cache: ResponseCache) -> None:
    await cache.aclose()
    await bus.aclose()
    await store.aclose()


def _policy(lease_timeout: float, wait_timeout: float) -> CachePolicy:
    return CachePolicy(ttl=60.0, lease_timeout=lease_timeout, wait_timeout=wait_timeout)


async def stampede_worker(
    url: str,
    prefix: str,
    origin_url: str,
    path: str,
    callers: int,
    ready: Any,
    go: Any,
    done: Any,
) -> dict[str, Any]:
    """``callers`` concurrent calls on one cold key, released together with the other workers."""
    store, bus, cache = await _replica(url, prefix)
    try:
        # Subscribing is start-up work, like loading scripts: done before the window.
        await cache.prepare(SERVICE)
        key = cache.request_key(service=SERVICE, method="GET", path=path)
        if key is None:
            raise RuntimeError("an uncredentialed request must be cacheable")
        codec = TypeAdapterCodec(Any)
        policy = _policy(lease_timeout=10.0, wait_timeout=10.0)
        async with httpx.AsyncClient(base_url=origin_url) as client:

            async def fetch() -> Any:
                response = await client.get(path)
                response.raise_for_status()
                return response.json()

            await asyncio.to_thread(ready.wait, _BARRIER_TIMEOUT)
            await asyncio.to_thread(go.wait, _BARRIER_TIMEOUT)
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                    for _ in range(callers)
                )
            )
            elapsed = time.monotonic() - started
            await asyncio.to_thread(done.wait, _BARRIER_TIMEOUT)
        return {
            "outcomes": [str(r.outcome) for r in results],
            "values": [r.value for r in results],
            "elapsed": elapsed,
            "metrics": cache.metrics(),
        }
    finally:
        await _close(store, bus, cache)


async def doomed_filler(
    url: str, prefix: str, origin_url: str, path: str, lease_timeout: float, leased: Any
) -> None:
    """Take the fill lease, start the origin call, and hang there until SIGKILLed."""
    store, bus, cache = await _replica(url, prefix)
    key = cache.request_key(service=SERVICE, method="GET", path=path)
    if key is None:
        raise RuntimeError("an uncredentialed request must be cacheable")
    async with httpx.AsyncClient(base_url=origin_url, timeout=60.0) as client:

        async def fetch() -> Any:
            leased.set()
            response = await client.get(path)
            return response.json()

        await cache.get_or_fetch(
            key, fetch, codec=TypeAdapterCodec(Any), policy=_policy(lease_timeout, 30.0)
        )
    await _close(store, bus, cache)


def run_doomed_filler(
    url: str, prefix: str, origin_url: str, path: str, lease_timeout: float, leased: Any
) -> None:
    """Process entry point for :func:`doomed_filler`."""
    asyncio.run(doomed_filler(url, prefix, origin_url, path, lease_timeout, leased))


async def takeover_worker(
    url: str,
    prefix: str,
    origin_url: str,
    path: str,
    callers: int,
    lease_timeout: float,
    wait_timeout: float,
    ready: Any,
    go: Any,
) -> dict[str, Any]:
    """Callers that arrive while a (soon dead) filler holds the lease."""
    store, bus, cache = await _replica(url, prefix)
    try:
        await cache.prepare(SERVICE)
        key = cache.request_key(service=SERVICE, method="GET", path=path)
        if key is None:
            raise RuntimeError("an uncredentialed request must be cacheable")
        codec = TypeAdapterCodec(Any)
        policy = _policy(lease_timeout, wait_timeout)
        async with httpx.AsyncClient(base_url=origin_url) as client:

            async def fetch() -> Any:
                response = await client.get(path)
                response.raise_for_status()
                return response.json()

            async def timed() -> tuple[str, Any, float]:
                started = time.monotonic()
                result = await cache.get_or_fetch(key, fetch, codec=codec, policy=policy)
                return str(result.outcome), result.value, time.monotonic() - started

            await asyncio.to_thread(ready.wait, _BARRIER_TIMEOUT)
            await asyncio.to_thread(go.wait, _BARRIER_TIMEOUT)
            calls = await asyncio.gather(*(timed() for _ in range(callers)))
        return {"calls": calls, "metrics": cache.metrics()}
    finally:
        await _close(store, bus, cache)
