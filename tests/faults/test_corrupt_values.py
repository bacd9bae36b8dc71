"""Corrupt or foreign registry values are a miss, never a crash: one WARNING, repaired."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._registry.scripts import ServiceKeys

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from msfw_redis._store.store import Store

SVC = "orders"
A = "127.0.0.1:9001"
B = "127.0.0.1:9002"


@pytest.fixture
async def reg(store: Store) -> AsyncIterator[ServiceRegistry]:
    """A registry owning two instances of SVC; heartbeats are sent by hand."""
    r = ServiceRegistry(store, cache_max_staleness=0.0)
    await r.start()
    for port in (9001, 9002):
        await r.register(SVC, host="127.0.0.1", port=port, ttl=600, start_heartbeats=False)
    try:
        yield r
    finally:
        await r.aclose()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and r.name == "msfw_redis.registry"
    ]


async def ids(reg: ServiceRegistry) -> list[str]:
    return sorted(i.instance_id for i in await reg.discover(SVC, fresh=True))


async def test_unreadable_record_is_skipped_with_one_warning(
    store: Store, reg: ServiceRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    keys = ServiceKeys.build(store.keys, SVC)
    await store.client.hset(keys.records, A, b"\xff{not json")
    with caplog.at_level(logging.WARNING):
        answers = [await ids(reg) for _ in range(20)]
    assert answers == [[B]] * 20
    assert len([m for m in warnings(caplog) if "unreadable registry record" in m]) == 1
    # Repaired by the next registration of the owner.
    await reg.register(SVC, host="127.0.0.1", port=9001, ttl=600, start_heartbeats=False)
    assert await ids(reg) == [A, B]
    assert await store.client.pttl(keys.records) > 0


@pytest.mark.parametrize("which", ["members", "records", "tokens", "revision"])
async def test_key_of_another_type_is_absent_then_repaired(
    store: Store, reg: ServiceRegistry, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    """A registry key overwritten as a string (a hash: the revision), without TTL: no call
    fails, one WARNING, and the owners' heartbeats bring both instances back with TTLs."""
    keys = ServiceKeys.build(store.keys, SVC)
    key = getattr(keys, which)
    assert await ids(reg) == [A, B]
    await store.client.delete(key)
    if which == "revision":
        await store.client.hset(key, "foreign", "value")
    else:
        await store.client.set(key, "foreign")
    assert await store.client.pttl(key) == -1
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            await reg.discover(SVC)
            await reg.discover(SVC, fresh=True)
    assert len([m for m in warnings(caplog) if "held another type" in m]) == 1
    for instance_id in (A, B):
        await reg.heartbeats.beat(reg.heartbeats.owned[(SVC, instance_id)])  # the task's step
    assert await ids(reg) == [A, B]
    # No key is left without an expiry (-1); the revision is re-created at its next bump.
    for k in (keys.members, keys.records, keys.tokens, keys.revision):
        assert await store.client.pttl(k) != -1
    if which != "revision":
        assert await store.client.pttl(key) > 0


async def test_unknown_health_record_reads_as_unprobed_and_gets_a_ttl(
    store: Store, reg: ServiceRegistry
) -> None:
    keys = ServiceKeys.build(store.keys, SVC)
    await store.client.hset(keys.health_instances, A, "bogus|x|y")
    await store.client.persist(keys.health_instances)
    states = {i.instance_id: i.status for i in await reg.discover(SVC, fresh=True)}
    assert states == {A: "healthy", B: "healthy"}
    assert await store.client.pttl(keys.health_instances) > 0
