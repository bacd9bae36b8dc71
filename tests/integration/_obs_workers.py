"""Worker functions for the observability tests (run in spawned processes)."""

from __future__ import annotations

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.store import Store


async def breaker(url: str, prefix: str, service: str, action: str) -> str:
    """``trip``: one failure opens a threshold-1 breaker; else a control action. Returns the state."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=5.0)
    await store.start()
    hub = BreakerHub(store, None)
    try:
        cfg = CircuitBreakerConfig(failure_threshold=1, timeout=30.0, success_flush_interval=0.0)
        brk = hub.get(service, config=cfg)
        if action == "trip":
            await (await brk.acquire()).failure()
            await hub.drain()  # the index update that lists the breaker fleet-wide
            return (await brk.refresh()).state
        return (await brk.control(action)).state  # type: ignore[arg-type]
    finally:
        await hub.aclose()
        await store.aclose()
