"""Worker for the cluster fault tests (runs in spawned processes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from msfw_redis import CircuitBreakerConfig, ServiceSDK, ServiceSDKConfig
from msfw_redis._breaker.hub import BreakerHub
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
    tripped: str | None = None,
) -> dict[str, Any]:
    """Call both services through the SDK and read both shards' keys for ``seconds``.

    Returns caller errors per service, gated (fast-failed) reads per service and the wall
    times of the sick service's failed reads, so the parent can tell when it was back.
    With ``tripped`` (an endpoint of ``sick`` whose breaker the parent tripped), each
    round also runs the multi-key ``breaker_read`` script on both services (the calls
    a slot migration answers with ASK or TRYAGAIN), non-store exceptions escaping the
    store are listed in ``escaped``, and at the end a fresh breaker hub (no mirror to
    restore from) reads that breaker: ``tripped_seen`` is its (state, generation).
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
        "escaped": [],
        "tripped_seen": None,
    }
    keys = {n: store.keys.key(n, "breaker") for n in (sick, healthy)}
    script_keys = {
        n: [store.keys.key(n, "breaker", "state", "~"), store.keys.key(n, "breaker", "probes", "~")]
        for n in (sick, healthy)
    }
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
                reads = [lambda name=name: store.get(keys[name])]
                if tripped is not None:
                    reads.append(
                        lambda name=name: store.run("breaker_read", script_keys[name], [0])
                    )
                for read in reads:
                    out["reads"][name] += 1
                    gated_before = store.stats.fast_failures
                    try:
                        await read()
                    except StoreError:
                        out["read_errors"][name] += 1
                        if name == sick:
                            out["sick_failed_at"].append(time.time())
                    except Exception as exc:  # what must never leave the store
                        out["escaped"].append(repr(exc))
                    out["gated"][name] += store.stats.fast_failures - gated_before
            await asyncio.sleep(0.01)
        if tripped is not None:
            out["tripped_seen"] = await _read_fresh(url, prefix, sick, tripped)
    finally:
        await sdk.close()
        await store.aclose()
    return out


async def _read_fresh(url: str, prefix: str, service: str, endpoint: str) -> tuple[str, int]:
    """(state, generation) of one breaker, read by a new store and hub (no mirror)."""
    store = Store.from_url(url, key_prefix=prefix, op_timeout=OP_TIMEOUT)
    await store.start()
    hub = BreakerHub(store, None)
    try:
        breaker = hub.get(service, endpoint=endpoint, config=CircuitBreakerConfig())
        deadline = time.monotonic() + 30
        while True:
            try:
                state = await breaker.refresh()
                return state.state, state.generation
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
    finally:
        await hub.aclose()
        await store.aclose()
