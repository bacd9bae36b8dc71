"""Split brain bounded by ``min-replicas-to-write``: a trip is kept or provably refused."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from msfw_redis import CircuitBreakerConfig
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._exceptions import StoreError
from msfw_redis._store.store import Store
from msfw_redis.testing import SentinelSetup

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

_CFG = CircuitBreakerConfig(failure_threshold=1, timeout=600.0, success_flush_interval=0.0)


def _counting(store: Store, errors: Counter[str]) -> None:
    """Count every StoreError a script call raises, by the cause its message names."""
    run = store.run

    async def counted(name: str, keys: Any, args: Any) -> Any:
        try:
            return await run(name, keys, args)
        except StoreError as exc:
            cause = "NOREPLICAS" if "NOREPLICAS" in str(exc) else type(exc).__name__
            errors[cause] += 1
            raise

    store.run = counted  # type: ignore[method-assign]


async def test_trips_during_a_failover_are_kept_or_refused(key_prefix: str) -> None:
    """With min-replicas-to-write 1, every trip made during SENTINEL FAILOVER either
    reached Redis and is on the new primary afterwards, or a store error refused it."""
    with SentinelSetup(min_replicas_to_write=1) as setup:
        store = Store.from_url(setup.url, key_prefix=key_prefix, op_timeout=1.0)
        await store.start()
        errors: Counter[str] = Counter()
        _counting(store, errors)
        hub = BreakerHub(store, None, failure_policy="fail_open")
        acked: list[str] = []
        refused: list[str] = []
        silent: list[str] = []
        try:
            failover = asyncio.ensure_future(asyncio.to_thread(setup.failover, 60.0))
            i = 0
            while not failover.done():
                name = f"svc{i}"
                i += 1
                breaker = hub.get(name, config=_CFG)
                before = sum(errors.values())
                await (await breaker.acquire()).failure()
                if not breaker.running_local:
                    acked.append(name)
                elif sum(errors.values()) > before:
                    refused.append(name)  # the store raised for this trip's writes
                else:
                    silent.append(name)
                await asyncio.sleep(0.005)
            await failover
        finally:
            await hub.aclose()
            await store.aclose()
        check = Store.from_url(setup.url, key_prefix=key_prefix, op_timeout=2.0)
        await check.start()
        reader = BreakerHub(check, None, failure_policy="fail_closed")
        try:
            lost = [
                n for n in acked if (await reader.get(n, config=_CFG).refresh()).state != "open"
            ]
        finally:
            await reader.aclose()
            await check.aclose()
    print(
        f"\nsplit brain: {len(acked) + len(refused)} trips, {len(acked)} kept, "
        f"{len(refused)} refused ({dict(errors)}), {len(lost)} acknowledged and lost"
    )
    assert acked and refused
    assert silent == []  # no trip went local without a store error refusing it
    # Replication is asynchronous: a trip acknowledged just before the replica was
    # promoted could still be lost, so that count is reported, not asserted (0 so far).
