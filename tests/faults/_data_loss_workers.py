"""Worker for the two-process registry data-loss test (importable, so spawn can run it)."""

from __future__ import annotations

import asyncio
from typing import Any

from msfw_redis._exceptions import StoreError
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store


async def discovering_owner(
    url: str, prefix: str, service: str, port: int, ready: Any, stop: Any
) -> tuple[int, int, int]:
    """Own one instance (heartbeat ~200 s away) and discover ``service`` until ``stop``.

    Returns (lookups, empty or failed lookups, re-registrations).
    """
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    reg = ServiceRegistry(store, default_ttl=600.0, cache_max_staleness=0.0)
    await reg.start()
    lookups = failed = 0
    try:
        await reg.register(service, host="127.0.0.1", port=port, ttl=600.0)
        await asyncio.to_thread(ready.wait)
        while not stop.is_set():
            lookups += 1
            try:
                if not await reg.discover(service):
                    failed += 1
            except StoreError:
                failed += 1
            await asyncio.sleep(0.005)
        return lookups, failed, reg.stats.reregistrations
    finally:
        await reg.aclose()
        await store.aclose()
