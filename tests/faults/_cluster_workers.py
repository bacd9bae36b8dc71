"""Worker for the cluster fault tests (runs in spawned processes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from msfw_redis import ServiceSDK, ServiceSDKConfig
from msfw_redis._exceptions import StoreError
from msfw_redis._store.store import Store

OP_TIMEOUT = 1.0


async def call_through_fault(
    url: str,
    prefix: str,
    host: str,
    port: int,
    sick: str,
    healthy: str,
    seconds: float,
    ready: Any,
) -> dict[str, Any]:
    """Call both services through the SDK and read both shards' keys for ``seconds``.

    Returns caller errors per service, gated (fast-failed) reads per service and the wall
    times of the sick service's failed reads, so the parent can tell when it was back.
    """
    services = {"services": {n: {"host": host, "port": port} for n in (sick, healthy)}}
    sdk = ServiceSDK(
        config=services,
        sdk_config=ServiceSDKConfig(
            redis_url=url,
            key_prefix=prefix,
            service_discovery_enabled=False,
            monitor_registered_services=False,
            store_failure_policy="fail_open",
            # A loaded 2-core CI box: the cluster client's socket timeout is 0.4 of this.
            redis_op_timeout=OP_TIMEOUT,
        ),
    )
    store = Store.from_url(url, key_prefix=prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    out: dict[str, Any] = {
        "caller_errors": {sick: 0, healthy: 0},
        "calls": {sick: 0, healthy: 0},
        "read_errors": {sick: 0, healthy: 0},
        "gated": {sick: 0, healthy: 0},
        "reads": {sick: 0, healthy: 0},
        "sick_failed_at": [],
    }
    keys = {n: store.keys.key(n, "breaker") for n in (sick, healthy)}
    try:
        for name in (sick, healthy):  # warm up: connections and breakers exist
            await sdk.get_from_service(name, "/ok")
        # Every worker and the fault injector start together.
        await asyncio.to_thread(ready.wait, 60)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for name in (sick, healthy):
                out["calls"][name] += 1
                try:
                    await sdk.get_from_service(name, "/ok")
                except Exception:
                    out["caller_errors"][name] += 1
                out["reads"][name] += 1
                gated_before = store.stats.fast_failures
                try:
                    await store.get(keys[name])
                except StoreError:
                    out["read_errors"][name] += 1
                    if name == sick:
                        out["sick_failed_at"].append(time.time())
                out["gated"][name] += store.stats.fast_failures - gated_before
            await asyncio.sleep(0.01)
    finally:
        await sdk.close()
        await store.aclose()
    return out
