"""lua/health_acquire.lua and lua/health_report.lua, called directly with explicit now_ms."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from msfw_redis._exceptions import ScriptError
from msfw_redis._registry.scripts import ServiceKeys
from msfw_redis._store.replies import reply_int, reply_list, reply_str
from msfw_redis._store.store import Store

SVC = "orders"
RETENTION_MS = 3_600_000
T0 = 1_000_000
INTERVAL_MS = 1_000
LEASE_MS = 500
#: Channels with the service's hash tag (only the tag matters to the scripts' check).
H = f"msfw:v1:{{{SVC}}}:health:events"
R = f"msfw:v1:{{{SVC}}}:registry:events"


def keys(store: Store) -> ServiceKeys:
    return ServiceKeys.build(store.keys, SVC)


async def member(store: Store, *instance_ids: str) -> None:
    """Register instances through the registry script (the report reads its members)."""
    for instance_id in instance_ids:
        await store.run(
            "registry_register",
            keys(store).registry,
            [
                T0, instance_id, "tok", 10**9, json.dumps({"host": "h", "port": 1}),
                RETENTION_MS, store.keys.channel(SVC, "registry"), SVC,
            ],
        )  # fmt: skip


async def acquire(
    store: Store,
    *,
    now: int,
    token: str = "r",
    interval_ms: int = INTERVAL_MS,
    lease_ms: int = LEASE_MS,
) -> list[int]:
    reply = await store.run(
        "health_acquire",
        [keys(store).health_probe],
        [now, token, interval_ms, lease_ms, RETENTION_MS],
    )
    return [reply_int(x) for x in reply_list(reply)]


async def report(
    store: Store,
    results: dict[str, bool],
    *,
    now: int,
    token: str = "r",
    failure_threshold: int = 2,
    success_threshold: int = 2,
) -> dict[str, Any]:
    k = keys(store)
    args: list[object] = [
        now, token, failure_threshold, success_threshold, RETENTION_MS,
        store.keys.channel(SVC, "health"), store.keys.channel(SVC, "registry"), SVC,
        len(results),
    ]  # fmt: skip
    for instance_id, ok in results.items():
        args += [instance_id, 1 if ok else 0]
    reply = reply_list(
        await store.run(
            "health_report",
            [k.health_probe, k.health_instances, k.health_service, k.members, k.revision],
            args,
        )
    )
    head = [reply_int(x) for x in reply[:6]]
    transitions = [
        (reply_str(reply[6 + 3 * i]), reply_str(reply[7 + 3 * i]), reply_str(reply[8 + 3 * i]))
        for i in range(head[5])
    ]
    return {
        "code": head[0],
        "healthy": head[1],
        "changed": head[2],
        "seq": head[3],
        "revision": head[4],
        "transitions": transitions,
    }


async def round_at(store: Store, now: int, results: dict[str, bool], **kw: int) -> dict[str, Any]:
    """Acquire the round due at ``now`` (one per interval) and report ``results``."""
    token = f"r{now}"
    won, _, _ = await acquire(store, now=now, token=token)
    assert won == 1
    return await report(store, results, now=now, token=token, **kw)


async def state_of(store: Store, instance_id: str) -> str:
    raw = await store.client.hget(keys(store).health_instances, instance_id)
    return raw.decode().split("|")[0] if raw else "unknown"


# -- health_acquire ---------------------------------------------------------------------


async def test_one_caller_wins_each_round(store: Store) -> None:
    """The first caller wins round 1; others in the same interval lose and learn the wait."""
    assert await acquire(store, now=T0, token="a") == [1, 1, INTERVAL_MS]
    assert await acquire(store, now=T0, token="b") == [0, 1, INTERVAL_MS]
    assert await acquire(store, now=T0 + 400, token="c") == [0, 1, 600]
    probe = keys(store).health_probe
    assert await store.client.hget(probe, "token") == b"a"
    assert 0 < await store.client.pttl(probe) <= RETENTION_MS


async def test_next_round_starts_exactly_one_interval_later(store: Store) -> None:
    """now = next_ms - 1 loses; now = next_ms wins the next round number."""
    await acquire(store, now=T0, token="a")
    assert (await acquire(store, now=T0 + INTERVAL_MS - 1, token="b"))[0] == 0
    assert await acquire(store, now=T0 + INTERVAL_MS, token="b") == [1, 2, INTERVAL_MS]


async def test_rounds_never_overlap_when_the_lease_is_longer(store: Store) -> None:
    """With lease > interval the next round waits for the lease: rounds never overlap."""
    assert await acquire(store, now=T0, interval_ms=100, lease_ms=300) == [1, 1, 300]
    assert (await acquire(store, now=T0 + 299, interval_ms=100, lease_ms=300))[0] == 0
    assert (await acquire(store, now=T0 + 300, interval_ms=100, lease_ms=300))[0] == 1


# -- health_report: fencing -------------------------------------------------------------


async def test_report_with_a_stale_token_is_refused(store: Store) -> None:
    """A report from a round that is no longer current answers -1 and changes nothing."""
    await member(store, "a")
    await acquire(store, now=T0, token="old")
    await acquire(store, now=T0 + INTERVAL_MS, token="new")
    refused = await report(store, {"a": False}, now=T0 + INTERVAL_MS + 1, token="old")
    assert refused["code"] == -1
    assert await store.client.exists(keys(store).health_instances) == 0


async def test_report_after_the_lease_is_refused(store: Store) -> None:
    """At lease end the report is still taken; one ms later it is refused with -2."""
    await member(store, "a")
    await acquire(store, now=T0, token="x")
    assert (await report(store, {"a": True}, now=T0 + LEASE_MS + 1, token="x"))["code"] == -2
    await acquire(store, now=T0 + INTERVAL_MS, token="y")
    on_time = await report(store, {"a": True}, now=T0 + INTERVAL_MS + LEASE_MS, token="y")
    assert on_time["code"] == 1


async def test_a_round_reports_once(store: Store) -> None:
    """Replaying a report with the same token is refused: results never count twice."""
    await member(store, "a")
    await acquire(store, now=T0, token="x")
    assert (await report(store, {"a": False}, now=T0 + 1, token="x"))["code"] == 1
    assert (await report(store, {"a": False}, now=T0 + 2, token="x"))["code"] == -1
    raw = await store.client.hget(keys(store).health_instances, "a")
    assert raw == f"unknown|1|0|{T0 + 1}".encode()  # one failure of a never-probed one


# -- health_report: the state machine ---------------------------------------------------


async def test_every_instance_transition_with_hysteresis(store: Store) -> None:
    """unknown -2 fails-> unhealthy -ok-> recovering -fail-> unhealthy -ok,ok-> healthy."""
    await member(store, "a")
    steps = [
        (False, "unknown", []),
        (False, "unhealthy", [("a", "unknown", "unhealthy")]),
        (False, "unhealthy", []),
        (True, "recovering", [("a", "unhealthy", "recovering")]),
        (False, "unhealthy", [("a", "recovering", "unhealthy")]),
        (True, "recovering", [("a", "unhealthy", "recovering")]),
        (True, "healthy", [("a", "recovering", "healthy")]),
        (True, "healthy", []),
    ]
    for i, (ok, expected, transitions) in enumerate(steps):
        result = await round_at(store, T0 + i * INTERVAL_MS, {"a": ok})
        assert result["transitions"] == transitions, i
        assert await state_of(store, "a") == expected, i


async def test_a_success_resets_the_failure_count(store: Store) -> None:
    """Failures must be consecutive: fail, ok, fail stays healthy with threshold 2."""
    await member(store, "a")
    for i, ok in enumerate([False, True, False]):
        await round_at(store, T0 + i * INTERVAL_MS, {"a": ok})
    assert await state_of(store, "a") == "healthy"


async def test_thresholds_of_one_switch_at_once(store: Store) -> None:
    """failure_threshold 1 and success_threshold 1 flip on a single probe each way."""
    await member(store, "a")
    down = await round_at(store, T0, {"a": False}, failure_threshold=1, success_threshold=1)
    assert down["transitions"] == [("a", "unknown", "unhealthy")]
    up = await round_at(
        store, T0 + INTERVAL_MS, {"a": True}, failure_threshold=1, success_threshold=1
    )
    assert up["transitions"] == [("a", "unhealthy", "healthy")]


async def test_first_report_is_a_quiet_baseline(store: Store) -> None:
    """The first report stores the service state with seq = now_ms and no change event."""
    await member(store, "a")
    first = await round_at(store, T0, {"a": True})
    assert (first["code"], first["healthy"], first["changed"], first["seq"]) == (1, 1, 0, T0)
    stored = await store.client.hgetall(keys(store).health_service)
    assert stored[b"healthy"] == b"1"
    assert stored[b"seq"] == str(T0).encode()
    assert stored[b"probed_ms"] == str(T0).encode()
    assert stored[b"members"] == b"1"


async def test_service_flips_bump_seq_once_each(store: Store) -> None:
    """The service flips unhealthy, then healthy: each flip is one seq step and one event."""
    await member(store, "a")
    await round_at(store, T0, {"a": True})
    seen = []
    for i, ok in enumerate([False, False, False, True, True, True], start=1):
        result = await round_at(store, T0 + i * INTERVAL_MS, {"a": ok})
        if result["changed"]:
            seen.append((result["seq"], result["healthy"]))
    assert seen == [(T0 + 1, 0), (T0 + 2, 1)]


async def test_service_is_healthy_while_any_instance_is(store: Store) -> None:
    """One unhealthy instance out of two leaves the service healthy; both make it unhealthy."""
    await member(store, "a", "b")
    await round_at(store, T0, {"a": True, "b": True})
    one = await round_at(store, T0 + INTERVAL_MS, {"a": False, "b": True}, failure_threshold=1)
    assert (one["healthy"], one["changed"]) == (1, 0)
    both = await round_at(
        store, T0 + 2 * INTERVAL_MS, {"a": False, "b": False}, failure_threshold=1
    )
    assert (both["healthy"], both["changed"]) == (0, 1)
    stored = await store.client.hgetall(keys(store).health_service)
    assert stored[b"healthy_members"] == b"0"


async def test_never_probed_instance_is_unknown_not_healthy(store: Store) -> None:
    """An instance registered but never probed is not counted healthy: the service is
    unhealthy with one unknown member; a first passed probe makes the instance healthy."""
    await member(store, "a")
    await round_at(store, T0, {})  # "a" joined after the probes were sent
    stored = await store.client.hgetall(keys(store).health_service)
    assert (stored[b"healthy"], stored[b"healthy_members"], stored[b"unknown_members"]) == (
        b"0", b"0", b"1",
    )  # fmt: skip
    one_fail = await round_at(store, T0 + INTERVAL_MS, {"a": False}, failure_threshold=2)
    assert (one_fail["healthy"], await state_of(store, "a")) == (0, "unknown")
    up = await round_at(store, T0 + 2 * INTERVAL_MS, {"a": True})
    assert (up["healthy"], up["changed"], up["transitions"]) == (
        1, 1, [("a", "unknown", "healthy")],
    )  # fmt: skip
    stored = await store.client.hgetall(keys(store).health_service)
    assert (stored[b"healthy_members"], stored[b"unknown_members"]) == (b"1", b"0")


async def test_service_without_instances_is_unhealthy(store: Store) -> None:
    """When the last instance leaves, the next report flips the service to unhealthy."""
    await member(store, "a")
    await round_at(store, T0, {"a": True})
    await store.run(
        "registry_deregister",
        [*keys(store).registry, keys(store).health_instances],
        [T0 + 1, "a", "", 1000, RETENTION_MS, store.keys.channel(SVC, "registry"), SVC],
    )
    result = await round_at(store, T0 + INTERVAL_MS, {})
    assert (result["healthy"], result["changed"]) == (0, 1)


async def test_results_for_unregistered_instances_are_dropped(store: Store) -> None:
    """A result for an id not in the registry is ignored; stale entries are removed."""
    await member(store, "a")
    await store.client.hset(keys(store).health_instances, "left", "unhealthy|9|0|1")
    result = await round_at(store, T0, {"a": True, "ghost": False}, failure_threshold=1)
    assert result["transitions"] == [("a", "unknown", "healthy")]
    assert await store.client.hkeys(keys(store).health_instances) == [b"a"]


async def test_instance_transitions_bump_the_registry_revision(store: Store) -> None:
    """Discovery shows instance health, so a transition moves the registry revision."""
    await member(store, "a")
    base = int(await store.client.get(keys(store).revision))
    quiet = await round_at(store, T0, {"a": True})
    assert quiet["transitions"] == [("a", "unknown", "healthy")]
    assert quiet["revision"] == base  # discovery already showed the unknown one healthy
    moved = await round_at(store, T0 + INTERVAL_MS, {"a": False}, failure_threshold=1)
    assert moved["revision"] == base + 1


async def test_report_sets_expiries_on_health_keys(store: Store) -> None:
    """Every key the report writes gets the retention as its expiry."""
    await member(store, "a")
    await round_at(store, T0, {"a": False})
    k = keys(store)
    for key in (k.health_probe, k.health_instances, k.health_service):
        assert 0 < await store.client.pttl(key) <= RETENTION_MS, key


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ([-1, "t", 1000, 500, RETENTION_MS], "now_ms"),
        ([T0, "", 1000, 500, RETENTION_MS], "token"),
        ([T0, "t", 0, 500, RETENTION_MS], "interval_ms"),
        ([T0, "t", 1000, 0, RETENTION_MS], "lease_ms"),
        ([T0, "t", 1000, 500, 0], "retention_ms"),
    ],
)
async def test_acquire_bad_arguments(store: Store, args: list[object], field: str) -> None:
    """health_acquire refuses bad input with MSFW_BADARG naming the argument."""
    with pytest.raises(ScriptError) as info:
        await store.run("health_acquire", [keys(store).health_probe], args)
    assert info.value.code == "MSFW_BADARG"
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("tail", "field"),
    [
        ([0, 2, RETENTION_MS, H, R, SVC, 0], "failure_threshold"),
        ([2, 0, RETENTION_MS, H, R, SVC, 0], "success_threshold"),
        ([2, 2, RETENTION_MS, "", R, SVC, 0], "channels"),
        ([2, 2, RETENTION_MS, H, R, SVC, 2, "a", 1], "count"),
        ([2, 2, RETENTION_MS, H, R, SVC, 1, "a", 2], "ok 0 or 1"),
        ([2, 2, RETENTION_MS, H, R, SVC, 1, "", 1], "instance_id"),
        # Channels of another slot: a cross-service one, another service's.
        ([2, 2, RETENTION_MS, "h", R, SVC, 0], "hash tag"),
        ([2, 2, RETENTION_MS, H, "msfw:v1:{payments}:registry:events", SVC, 0], "hash tag"),
    ],
)
async def test_report_bad_arguments(store: Store, tail: list[object], field: str) -> None:
    """health_report refuses bad input with MSFW_BADARG before touching any key."""
    k = keys(store)
    with pytest.raises(ScriptError) as info:
        await store.run(
            "health_report",
            [k.health_probe, k.health_instances, k.health_service, k.members, k.revision],
            [T0, "t", *tail],
        )
    assert info.value.code == "MSFW_BADARG"
    assert field in str(info.value)


async def test_report_publishes_on_the_service_channels_given(store: Store) -> None:
    """A flip goes out on the service's health channel, the revision bump on its registry
    channel; nothing else is published (pattern subscription over the whole prefix)."""
    await member(store, "a")
    pubsub = store.pubsub_client().pubsub()
    await pubsub.psubscribe(store.keys.prefix + ":*")
    try:
        assert (await pubsub.get_message(timeout=2))["type"] == "psubscribe"
        await round_at(store, T0, {"a": True})  # baseline: no health event
        down = await round_at(store, T0 + INTERVAL_MS, {"a": False}, failure_threshold=1)
        assert (down["healthy"], down["changed"]) == (0, 1)
        marker = store.keys.key("marker", "test", "events")
        await store.client.publish(marker, b"end")
        seen: list[tuple[str, str]] = []
        async with asyncio.timeout(10):
            while not seen or seen[-1][0] != marker:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    seen.append((message["channel"].decode(), message["data"].decode()))
    finally:
        await pubsub.aclose()
    health = store.keys.key(SVC, "health", "events")
    registry = store.keys.key(SVC, "registry", "events")
    assert [c for c, _ in seen if c == health] == [health]
    assert (health, f"{SVC}\n{down['seq']}\n0") in seen
    assert (registry, f"{SVC}\n{down['revision']}") in seen
    assert {c for c, _ in seen} == {health, registry, marker}
