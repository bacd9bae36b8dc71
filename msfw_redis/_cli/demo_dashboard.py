"""``msfw-redis demo --dashboard``: the live dashboard on the demo's own fleet."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cli.dashboard import run_dashboard
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import TextIO

__all__ = ["demo_dashboard"]


@contextlib.asynccontextmanager
async def demo_dashboard(
    url: str, prefix: str, host: str, port: int, out: TextIO
) -> AsyncIterator[None]:
    """Serve the dashboard of the store at ``url`` while the block runs."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=2.0)
    await store.start()
    registry = ServiceRegistry(store, None)
    reader = FleetReader(
        store, BreakerHub(store, None), registry, HealthMonitor(store, registry, None)
    )
    ports: list[int] = []
    listening = asyncio.Event()

    def started(bound: int) -> None:
        ports.append(bound)
        listening.set()

    task = asyncio.create_task(run_dashboard(store, reader, host, port, started=started))
    try:
        waiter = asyncio.ensure_future(listening.wait())
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not ports:
            task.result()  # raises why it could not start (a port in use, a missing extra)
        out.write(f"dashboard: http://{host}:{ports[0]}/\n")
        out.flush()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.aclose()
