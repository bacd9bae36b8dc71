"""lua/registry_*.lua, called directly with explicit now_ms, on both backends."""

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
RECORD = json.dumps({"host": "10.0.0.1", "port": 8000, "ttl_ms": 1000})


def keys(store: Store) -> ServiceKeys:
    return ServiceKeys.build(store.keys, SVC)


def channel(store: Store) -> str:
    """The service's own registry channel (same hash tag as its keys)."""
    return store.keys.channel(SVC, "registry")


async def register(
    store: Store,
    instance_id: str,
    *,
    now: int = T0,
    token: str = "tok",
    ttl_ms: int = 1000,
    record: str = RECORD,
) -> list[int]:
    reply = await store.run(
        "registry_register",
        keys(store).registry,
        [now, instance_id, token, ttl_ms, record, RETENTION_MS, channel(store), SVC],
    )
    return [reply_int(x) for x in reply_list(reply)]


async def heartbeat(
    store: Store, instance_id: str, *, now: int, token: str = "tok", ttl_ms: int = 1000
) -> list[int]:
    reply = await store.run(
        "registry_heartbeat",
        keys(store).registry,
        [now, instance_id, token, ttl_ms, RETENTION_MS, channel(store), SVC],
    )
    return [reply_int(x) for x in reply_list(reply)]


async def deregister(
    store: Store, instance_id: str, *, now: int, token: str = "tok", tomb_ms: int = 60_000
) -> list[int]:
    k = keys(store)
    reply = await store.run(
        "registry_deregister",
        [*k.registry, k.health_instances],
        [now, instance_id, token, tomb_ms, RETENTION_MS, channel(store), SVC],
    )
    return [reply_int(x) for x in reply_list(reply)]


async def list_raw(
    store: Store,
    *,
    now: int,
    known: int = -1,
    share: int = 500,
    hold_ms: int = 10_000,
    min_instances: int = 2,
) -> dict[str, Any]:
    k = keys(store)
    reply = reply_list(
        await store.run(
            "registry_list",
            [*k.registry, k.health_instances],
            [now, known, share, hold_ms, min_instances, RETENTION_MS, channel(store), SVC],
        )
    )
    head = [reply_int(x) for x in reply[:8]]
    instances = {}
    for i in range(head[7]):
        base = 8 + 5 * i
        instances[reply_str(reply[base])] = {
            "deadline": reply_str(reply[base + 1]),
            "record": reply_str(reply[base + 2]),
            "suspect": reply_int(reply[base + 3]),
            "health": reply_str(reply[base + 4]),
        }
    return {
        "revision": head[0],
        "changed": head[1],
        "evicted": head[2],
        "newly_suspect": head[3],
        "suspects": head[4],
        "preserving": head[5],
        "now": head[6],
        "count": head[7],
        "instances": instances,
    }


async def assert_expiring(store: Store, *names: str) -> None:
    """Every named key exists and has an expiry within the retention."""
    for name in names:
        ttl = await store.client.pttl(name)
        assert 0 < ttl <= RETENTION_MS, (name, ttl)


# -- registry_register ------------------------------------------------------------------


async def test_register_adds_member_with_server_deadline(store: Store) -> None:
    """A registration stores deadline now+ttl, record and token, and expires every key."""
    revision, replaced, members = await register(store, "a", ttl_ms=1500)
    assert (replaced, members) == (0, 1)
    # The revision starts from server time, so it is above anything cached before.
    assert revision == T0 + 1
    k = keys(store)
    assert await store.client.zscore(k.members, "a") == T0 + 1500
    assert await store.client.hget(k.records, "a") == RECORD.encode()
    assert await store.client.hget(k.tokens, "a") == b"tok"
    await assert_expiring(store, k.members, k.records, k.tokens, k.revision)


async def test_register_again_replaces_and_fences_the_old_token(store: Store) -> None:
    """Re-registering an id replaces it, bumps the revision and swaps the token."""
    first = await register(store, "a", token="old")
    second = await register(store, "a", now=T0 + 5, token="new")
    assert second[1] == 1
    assert second[2] == 1
    assert second[0] == first[0] + 1
    assert (await heartbeat(store, "a", now=T0 + 6, token="old"))[0] == -1
    assert (await heartbeat(store, "a", now=T0 + 6, token="new"))[0] == 1


async def test_register_external_never_gets_a_deadline(store: Store) -> None:
    """ttl_ms 0 registers an external instance scored +inf."""
    await register(store, "ext", ttl_ms=0)
    assert await store.client.zscore(keys(store).members, "ext") == float("inf")


async def test_revision_recreated_after_loss_is_larger(store: Store) -> None:
    """When the revision key is lost, the next one starts from server time, not 1."""
    first = (await register(store, "a", now=T0))[0]
    await store.client.delete(keys(store).revision)
    second = (await register(store, "b", now=T0 + 10))[0]
    assert second > first


async def test_register_publishes_the_revision(store: Store) -> None:
    """Each registration publishes '<service>\\n<revision>' on the registry channel."""
    pubsub = store.pubsub_client().pubsub()
    await pubsub.subscribe(channel(store))
    try:
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        revision = (await register(store, "a"))[0]
        message = None
        for _ in range(20):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                break
            await asyncio.sleep(0)
        assert message is not None
        assert message["data"] == f"{SVC}\n{revision}".encode()
    finally:
        await pubsub.aclose()


async def published(store: Store, pubsub: Any) -> list[tuple[str, str]]:
    """Every (channel, data) a pattern subscription over the store's prefix received up
    to a marker published now (one connection delivers in order: nothing is left out)."""
    marker = store.keys.key("marker", "test", "events")
    await store.client.publish(marker, b"end")
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(10):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            channel, data = message["channel"].decode(), message["data"].decode()
            if channel == marker:
                return seen
            seen.append((channel, data))


async def test_every_registry_script_publishes_on_the_channel_given(store: Store) -> None:
    """register, list (suspect marks), a suspect-clearing heartbeat and deregister each
    publish '<service>\\n<revision>' on the per-service channel given, and on no other."""
    pubsub = store.pubsub_client().pubsub()
    await pubsub.psubscribe(store.keys.prefix + ":*")
    try:
        assert (await pubsub.get_message(timeout=2))["type"] == "psubscribe"
        revisions = [(await register(store, name, now=T0))[0] for name in "abc"]
        revisions.append((await register(store, "d", now=T0 + 5_000))[0])
        listed = await list_raw(store, now=T0 + 1_000)  # 3 of 4 late: marked suspect
        assert listed["newly_suspect"] == 3
        revisions.append(listed["revision"])
        revisions.append((await heartbeat(store, "a", now=T0 + 1_001))[1])  # clears a mark
        revisions.append((await deregister(store, "d", now=T0 + 1_002))[1])
        seen = await published(store, pubsub)
    finally:
        await pubsub.aclose()
    assert channel(store) == store.keys.key(SVC, "registry", "events")
    assert seen == [(channel(store), f"{SVC}\n{r}") for r in revisions]
    assert len(set(revisions)) == 7


# -- registry_heartbeat -----------------------------------------------------------------


async def test_heartbeat_renews_without_bumping_revision(store: Store) -> None:
    """A renewal moves the deadline to now+ttl and leaves the revision alone."""
    revision = (await register(store, "a"))[0]
    code, rev_after, deadline = await heartbeat(store, "a", now=T0 + 400, ttl_ms=2000)
    assert (code, rev_after, deadline) == (1, revision, T0 + 2400)
    assert await store.client.zscore(keys(store).members, "a") == T0 + 2400


async def test_heartbeat_unknown_id_asks_to_register(store: Store) -> None:
    """An id that was never registered (or was reaped) answers code 0."""
    assert (await heartbeat(store, "ghost", now=T0))[0] == 0


async def test_heartbeat_with_wrong_token_is_fenced(store: Store) -> None:
    """A token that does not own the id answers -1 and changes nothing."""
    await register(store, "a", token="right")
    assert (await heartbeat(store, "a", now=T0 + 100, token="wrong"))[0] == -1
    assert await store.client.zscore(keys(store).members, "a") == T0 + 1000


async def test_late_heartbeat_after_deregistration_is_fenced_until_tombstone_ends(
    store: Store,
) -> None:
    """After deregistration the old token gets -1 (no revival); after the tombstone, 0."""
    await register(store, "a")
    assert (await deregister(store, "a", now=T0 + 10, tomb_ms=5_000))[0] == 1
    assert (await heartbeat(store, "a", now=T0 + 20))[0] == -1
    assert (await heartbeat(store, "a", now=T0 + 5_009))[0] == -1
    assert await store.client.zscore(keys(store).members, "a") is None
    # The tombstone covers [now, now + tomb_ms); afterwards the id is simply unknown.
    assert (await heartbeat(store, "a", now=T0 + 5_010))[0] == 0


async def test_heartbeat_of_a_suspect_clears_the_mark_and_bumps_revision(store: Store) -> None:
    """A suspect that beats again is an ordinary member; discovery caches must see it."""
    for name in "abc":
        await register(store, name)
    await register(store, "d", now=T0 + 2_000)
    listed = await list_raw(store, now=T0 + 1_500)
    assert listed["newly_suspect"] == 3
    code, revision, _ = await heartbeat(store, "a", now=T0 + 1_600)
    assert code == 1
    assert revision == listed["revision"] + 1
    assert await store.client.hexists(keys(store).suspects, "a") == 0


async def test_heartbeat_keeps_external_instances_external(store: Store) -> None:
    """An external instance that heartbeats keeps its +inf score (deadline 0)."""
    await register(store, "ext", ttl_ms=0)
    assert await heartbeat(store, "ext", now=T0 + 1) == [1, T0 + 1, 0]
    assert await store.client.zscore(keys(store).members, "ext") == float("inf")


# -- registry_deregister ----------------------------------------------------------------


async def test_deregister_removes_everything_and_writes_a_tombstone(store: Store) -> None:
    """Deregistration removes member, record, token, suspect and health entry at once."""
    k = keys(store)
    revision = (await register(store, "a"))[0]
    await store.client.hset(k.health_instances, "a", "unhealthy|3|0|5")
    code, rev_after, members = await deregister(store, "a", now=T0 + 1, tomb_ms=9_000)
    assert (code, rev_after, members) == (1, revision + 1, 0)
    for key in (k.records, k.tokens, k.suspects, k.health_instances):
        assert await store.client.hexists(key, "a") == 0
    assert await store.client.zscore(k.tombstones, "a") == T0 + 9_001
    await assert_expiring(store, k.tombstones, k.revision)


async def test_deregister_with_a_foreign_token_changes_nothing(store: Store) -> None:
    """An owner whose id was taken over cannot remove the new registration."""
    await register(store, "a", token="new")
    assert (await deregister(store, "a", now=T0 + 1, token="old"))[0] == -1
    assert await store.client.zscore(keys(store).members, "a") == T0 + 1000


async def test_operator_deregister_removes_any_registration(store: Store) -> None:
    """An empty token removes whichever registration holds the id."""
    await register(store, "a", token="whatever")
    assert (await deregister(store, "a", now=T0 + 1, token=""))[0] == 1


async def test_deregister_unknown_still_fences(store: Store) -> None:
    """Deregistering an id that already expired answers 0 but still writes the tombstone."""
    code, _, _ = await deregister(store, "gone", now=T0)
    assert code == 0
    assert await store.client.zscore(keys(store).tombstones, "gone") is not None


async def test_deregister_prunes_old_tombstones(store: Store) -> None:
    """Tombstones past their end are removed by the next deregistration."""
    await deregister(store, "old", now=T0, tomb_ms=10)
    await deregister(store, "new", now=T0 + 100, tomb_ms=10)
    assert await store.client.zrange(keys(store).tombstones, 0, -1) == [b"new"]


async def test_register_clears_the_tombstone(store: Store) -> None:
    """Registering an id again after deregistration makes it live (with a new token)."""
    await register(store, "a", token="one")
    await deregister(store, "a", now=T0 + 1, token="one")
    await register(store, "a", now=T0 + 2, token="two")
    assert await store.client.zscore(keys(store).tombstones, "a") is None
    assert (await heartbeat(store, "a", now=T0 + 3, token="two"))[0] == 1
    assert (await heartbeat(store, "a", now=T0 + 3, token="one"))[0] == -1


# -- registry_list ----------------------------------------------------------------------


async def test_list_returns_every_instance_with_its_fields(store: Store) -> None:
    """The full reply carries id, deadline, record, suspect flag and probe state."""
    await register(store, "a", ttl_ms=1000)
    await register(store, "ext", ttl_ms=0)
    await store.client.hset(keys(store).health_instances, "a", "recovering|0|1|7")
    listed = await list_raw(store, now=T0 + 1)
    assert listed["changed"] == 1
    assert listed["count"] == 2
    assert listed["now"] == T0 + 1
    assert listed["instances"]["a"] == {
        "deadline": str(T0 + 1000),
        "record": RECORD,
        "suspect": 0,
        "health": "recovering|0|1|7",
    }
    assert listed["instances"]["ext"]["deadline"] == "inf"
    assert listed["instances"]["ext"]["health"] == ""


async def test_list_with_known_revision_sends_only_the_revision(store: Store) -> None:
    """When nothing changed, the reply is the header with changed=0 and no instances."""
    await register(store, "a")
    first = await list_raw(store, now=T0 + 1)
    again = await list_raw(store, now=T0 + 2, known=first["revision"])
    assert again["changed"] == 0
    assert again["count"] == 0
    assert again["revision"] == first["revision"]


async def test_list_evicts_at_the_deadline_not_before(store: Store) -> None:
    """An instance is alive while now < deadline and evicted at now == deadline."""
    await register(store, "a", ttl_ms=1000)
    assert (await list_raw(store, now=T0 + 999))["count"] == 1
    evicting = await list_raw(store, now=T0 + 1000)
    assert evicting["evicted"] == 1
    assert evicting["count"] == 0
    k = keys(store)
    assert await store.client.hexists(k.records, "a") == 0
    assert await store.client.hexists(k.tokens, "a") == 0


async def test_list_eviction_bumps_and_publishes_revision(store: Store) -> None:
    """Reaping is a change: the revision moves so cached discovery results are dropped."""
    revision = (await register(store, "a"))[0]
    assert (await list_raw(store, now=T0 + 1000))["revision"] == revision + 1


async def test_self_preservation_keeps_a_majority_as_suspect(store: Store) -> None:
    """3 of 4 past their deadline (75 % > 50 %): all kept, marked suspect, revision bumped."""
    for name in "abc":
        await register(store, name, now=T0)
    revision = (await register(store, "d", now=T0 + 5_000))[0]
    listed = await list_raw(store, now=T0 + 1_000)
    assert listed["evicted"] == 0
    assert listed["newly_suspect"] == 3
    assert listed["suspects"] == 3
    assert listed["preserving"] == 1
    assert listed["revision"] == revision + 1
    assert {n: i["suspect"] for n, i in listed["instances"].items()} == {
        "a": 1,
        "b": 1,
        "c": 1,
        "d": 0,
    }
    await assert_expiring(store, keys(store).suspects)
    # Still preserved later: no new marks, so no new revision.
    again = await list_raw(store, now=T0 + 2_000)
    assert (again["newly_suspect"], again["suspects"], again["revision"]) == (
        0,
        3,
        listed["revision"],
    )


async def test_exactly_the_threshold_share_is_evicted(store: Store) -> None:
    """2 of 4 (50 %, not more than 50 %) past their deadline are evicted, not preserved."""
    for name in "ab":
        await register(store, name, now=T0)
    for name in "cd":
        await register(store, name, now=T0 + 5_000)
    listed = await list_raw(store, now=T0 + 1_000)
    assert listed["evicted"] == 2
    assert listed["preserving"] == 0
    assert set(listed["instances"]) == {"c", "d"}


async def test_services_below_min_instances_are_not_preserved(store: Store) -> None:
    """A lone instance (below min_instances) that misses its deadline is simply evicted."""
    await register(store, "a", now=T0)
    listed = await list_raw(store, now=T0 + 1_000, min_instances=2)
    assert listed["evicted"] == 1
    kept = await list_raw(store, now=T0 + 1_000, min_instances=1)
    assert kept["evicted"] == 0


async def test_self_preservation_ends_after_the_hold(store: Store) -> None:
    """Past deadline + hold_ms an instance is evicted even while the majority is silent."""
    for name in "abc":
        await register(store, name, now=T0)
    assert (await list_raw(store, now=T0 + 1_000, hold_ms=5_000))["suspects"] == 3
    assert (await list_raw(store, now=T0 + 5_999, hold_ms=5_000))["count"] == 3
    gone = await list_raw(store, now=T0 + 6_000, hold_ms=5_000)
    assert gone["evicted"] == 3
    assert gone["count"] == 0
    assert gone["suspects"] == 0


async def test_self_preservation_releases_when_heartbeats_return(store: Store) -> None:
    """When most suspects beat again, the ones still silent are evicted (release)."""
    for name in "abc":
        await register(store, name, now=T0)
    await register(store, "d", now=T0 + 5_000)
    assert (await list_raw(store, now=T0 + 1_000))["preserving"] == 1
    for name in "ab":
        assert (await heartbeat(store, name, now=T0 + 1_100))[0] == 1
    released = await list_raw(store, now=T0 + 1_200)
    assert released["preserving"] == 0
    assert released["evicted"] == 1
    assert released["suspects"] == 0
    assert set(released["instances"]) == {"a", "b", "d"}


async def test_share_1000_disables_self_preservation(store: Store) -> None:
    """share_permille 1000 never preserves, even when every instance is silent."""
    for name in "abc":
        await register(store, name, now=T0)
    assert (await list_raw(store, now=T0 + 1_000, share=1000))["evicted"] == 3


async def test_external_instances_are_never_reaped_nor_counted(store: Store) -> None:
    """Externals never expire and do not count towards the self-preservation share."""
    await register(store, "ext1", ttl_ms=0)
    await register(store, "ext2", ttl_ms=0)
    await register(store, "a", now=T0)
    listed = await list_raw(store, now=T0 + 10**9)
    assert listed["evicted"] == 1
    assert set(listed["instances"]) == {"ext1", "ext2"}


async def test_list_refreshes_every_expiry(store: Store) -> None:
    """Listing keeps an external-only service alive: each key's expiry is reset."""
    k = keys(store)
    await register(store, "ext", ttl_ms=0)
    for key in (k.members, k.records, k.tokens, k.revision):
        await store.client.pexpire(key, 5_000)
    await list_raw(store, now=T0 + 1)
    for key in (k.members, k.records, k.tokens, k.revision):
        assert await store.client.pttl(key) > 5_000


async def test_member_without_record_is_skipped(store: Store) -> None:
    """A member whose record is missing (corruption) is not listed."""
    await register(store, "a")
    await register(store, "b")
    await store.client.hdel(keys(store).records, "b")
    assert set((await list_raw(store, now=T0 + 1))["instances"]) == {"a"}


# -- registry_index / registry_services -------------------------------------------------


async def test_index_touch_and_list_with_pruning(store: Store) -> None:
    """The index holds touched names sorted, prunes old ones, and expires."""
    key = store.keys.global_key("registry", "services")
    assert reply_int(await store.run("registry_index", [key], [T0, "zeta", 10_000])) == 1
    assert reply_int(await store.run("registry_index", [key], [T0 + 5, "alpha", 10_000])) == 2
    assert 0 < await store.client.pttl(key) <= 10_000
    names = reply_list(await store.run("registry_services", [key], [T0 + 6, 10_000]))
    assert [reply_str(n) for n in names] == ["alpha", "zeta"]
    pruned = reply_list(await store.run("registry_services", [key], [T0 + 10_002, 10_000]))
    assert [reply_str(n) for n in pruned] == ["alpha"]


# -- bad input --------------------------------------------------------------------------

OTHER = "msfw:v1:{payments}:registry:events"
GLOBAL = "msfw:v1:global:registry:events"

BAD_CALLS = [
    ("registry_register", [-1, "a", "t", 1000, RECORD, RETENTION_MS, "c", SVC], "now_ms"),
    ("registry_register", [1.5, "a", "t", 1000, RECORD, RETENTION_MS, "c", SVC], "now_ms"),
    ("registry_register", [T0, "", "t", 1000, RECORD, RETENTION_MS, "c", SVC], "instance_id"),
    ("registry_register", [T0, "a", "", 1000, RECORD, RETENTION_MS, "c", SVC], "token"),
    ("registry_register", [T0, "a", "t", -5, RECORD, RETENTION_MS, "c", SVC], "ttl_ms"),
    ("registry_register", [T0, "a", "t", 1000, "", RETENTION_MS, "c", SVC], "record"),
    ("registry_register", [T0, "a", "t", 1000, RECORD, 0, "c", SVC], "retention_ms"),
    ("registry_register", [T0, "a", "t", 1000, RECORD, RETENTION_MS, "", SVC], "channel"),
    ("registry_heartbeat", [T0, "a", "t", 0, RETENTION_MS, "c", SVC], "ttl_ms"),
    ("registry_heartbeat", ["x", "a", "t", 10, RETENTION_MS, "c", SVC], "now_ms"),
    ("registry_heartbeat", [T0, "a", "", 10, RETENTION_MS, "c", SVC], "token"),
    ("registry_deregister", [T0, "a", "", 0, RETENTION_MS, "c", SVC], "tombstone_ms"),
    ("registry_deregister", [T0, "", "", 10, RETENTION_MS, "c", SVC], "instance_id"),
    ("registry_list", [T0, -2, 500, 0, 2, RETENTION_MS, "c", SVC], "known_revision"),
    ("registry_list", [T0, -1, 1001, 0, 2, RETENTION_MS, "c", SVC], "share_permille"),
    ("registry_list", [T0, -1, 500, -1, 2, RETENTION_MS, "c", SVC], "hold_ms"),
    ("registry_list", [T0, -1, 500, 0, 0, RETENTION_MS, "c", SVC], "min_instances"),
    # A channel of another slot (another service's, or a cross-service one) is refused.
    ("registry_register", [T0, "a", "t", 1000, RECORD, RETENTION_MS, OTHER, SVC], "hash tag"),
    ("registry_heartbeat", [T0, "a", "t", 10, RETENTION_MS, GLOBAL, SVC], "hash tag"),
    ("registry_deregister", [T0, "a", "", 10, RETENTION_MS, OTHER, SVC], "hash tag"),
    ("registry_list", [T0, -1, 500, 0, 2, RETENTION_MS, GLOBAL, SVC], "hash tag"),
    ("registry_index", [T0, "", RETENTION_MS], "service"),
    ("registry_services", [T0, 0], "retention_ms"),
]


@pytest.mark.parametrize(("script", "args", "field"), BAD_CALLS)
async def test_bad_arguments_get_msfw_badarg(
    store: Store, script: str, args: list[object], field: str
) -> None:
    """Invalid arguments are refused with MSFW_BADARG naming the argument, writing nothing."""
    k = keys(store)
    if script in ("registry_index", "registry_services"):
        script_keys = [store.keys.global_key("registry", "services")]
    elif script in ("registry_deregister", "registry_list"):
        script_keys = [*k.registry, k.health_instances]
    else:
        script_keys = k.registry
    with pytest.raises(ScriptError) as info:
        await store.run(script, script_keys, args)
    assert info.value.code == "MSFW_BADARG"
    assert field in str(info.value)
    assert await store.client.exists(*script_keys) == 0


async def test_now_ms_zero_reads_server_time(store: Store) -> None:
    """With now_ms 0 the scripts use Redis TIME: the deadline is server time + ttl."""
    server_ms = reply_int(await store.run("clock_now", [], []))
    await register(store, "a", now=0, ttl_ms=60_000)
    deadline = await store.client.zscore(keys(store).members, "a")
    assert deadline is not None
    assert server_ms + 60_000 <= deadline < server_ms + 60_000 + 5_000
