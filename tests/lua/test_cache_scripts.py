"""lua/cache_*.lua called directly, with a fixed now_ms, on fakeredis and a real server."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from msfw_redis._cache.keys import CacheKey
from msfw_redis._cache.store import CacheStore
from msfw_redis._exceptions import ScriptError, StoreError
from msfw_redis._store.replies import reply_int, reply_list
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

NOW = 1_700_000_000_000
LEASE = 5_000
FN = "fabc"
OTHER_FN = "fdef"
DIGEST = "d" * 32


class Keys:
    """The keys and channel of one entry of service 'svc'."""

    def __init__(self, store: Store, digest: str = DIGEST) -> None:
        self.entry = store.keys.key("svc", "cache", "e", digest)
        self.gen = store.keys.key("svc", "cache", "gen")
        self.channel = store.keys.channel("svc", "cache")
        self.digest = digest


async def lookup(
    store: Store,
    k: Keys,
    *,
    mode: str = "get",
    token: str = "t1",
    lease_ms: int = LEASE,
    fn: str = FN,
    now: int = NOW,
) -> dict[str, Any]:
    reply = await store.run("cache_lookup", [k.entry, k.gen], [mode, token, lease_ms, fn, now])
    assert isinstance(reply, bytes)
    *head, value = reply.split(b" ", 8)
    state, token, sa, fu, su, wait_ms, flags, now = (part.decode() for part in head)
    return {
        "state": state,
        "token": "" if token == "-" else token,
        "value": value,
        "sa": int(sa),
        "fu": int(fu),
        "su": int(su),
        "wait_ms": int(wait_ms),
        "flags": int(flags),
        "now": int(now),
    }


async def fill(
    store: Store,
    k: Keys,
    *,
    token: str = "t1",
    value: bytes = b"payload",
    fresh_ms: int = 1_000,
    stale_ms: int = 2_000,
    fn: str = FN,
    now: int = NOW,
) -> list[Any]:
    return reply_list(
        await store.run(
            "cache_fill",
            [k.entry, k.gen],
            [token, value, fresh_ms, stale_ms, fn, k.channel, k.digest, now],
        )
    )


async def pttl(store: Store, key: str) -> int:
    return int(await store.client.pttl(key))


@pytest.fixture
async def listener(store: Store) -> AsyncIterator[Any]:
    """A raw subscriber on the cache channel of 'svc'."""
    pubsub = store.pubsub_client().pubsub()
    await pubsub.subscribe(store.keys.channel("svc", "cache"))
    msg = await pubsub.get_message(timeout=5)
    assert msg is not None
    assert msg["type"] == "subscribe"
    try:
        yield pubsub
    finally:
        await pubsub.aclose()


async def next_message(pubsub: Any) -> bytes | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msg = await pubsub.get_message(timeout=0.5)
        if msg is not None and msg["type"] == "message":
            data: bytes = msg["data"]
            return data
    return None


async def test_cold_key_grants_one_fill_lease_then_wait(store: Store) -> None:
    """The first caller on a cold key gets the fill lease; the next one is told to WAIT."""
    k = Keys(store)
    first = await lookup(store, k, token="t1")
    assert first["state"] == "MISS"
    assert first["token"] == "t1"
    assert first["value"] == b""
    # The lease hash outlives the lease (twice its length) so a takeover can be seen.
    assert 0 < await pttl(store, k.entry) <= 2 * LEASE
    second = await lookup(store, k, token="t2", now=NOW + 1_500)
    assert second["state"] == "WAIT"
    assert second["token"] == ""
    assert second["wait_ms"] == LEASE - 1_500
    assert await store.client.hget(k.entry, "w") == b"1"
    assert await pttl(store, k.entry) > 0


async def test_fill_then_fresh_stale_and_expired(store: Store) -> None:
    """A fill is FRESH until fresh-until, STALE until stale-until, then a MISS again."""
    k = Keys(store)
    await lookup(store, k)
    assert await fill(store, k, fresh_ms=1_000, stale_ms=2_000) == [1, 0]
    fields = await store.client.hgetall(k.entry)
    assert fields[b"sa"] == str(NOW).encode()
    assert fields[b"fu"] == str(NOW + 1_000).encode()
    assert fields[b"su"] == str(NOW + 3_000).encode()
    assert b"lt" not in fields
    assert 0 < await pttl(store, k.entry) <= 3_000
    # The generation hash is created and lives at least as long as the entry.
    assert await pttl(store, k.gen) >= 2_900

    fresh = await lookup(store, k, token="t2", now=NOW + 999)
    assert (fresh["state"], fresh["token"], fresh["value"]) == ("FRESH", "", b"payload")
    assert (fresh["sa"], fresh["fu"], fresh["su"]) == (NOW, NOW + 1_000, NOW + 3_000)

    stale = await lookup(store, k, token="t3", now=NOW + 1_000)
    assert (stale["state"], stale["token"], stale["value"]) == ("STALE", "t3", b"payload")
    # Exactly one caller gets the refresh lease; the others are served stale only.
    other = await lookup(store, k, token="t4", now=NOW + 1_001)
    assert (other["state"], other["token"], other["value"]) == ("STALE", "", b"payload")

    gone = await lookup(store, k, token="t5", now=NOW + 3_000 + LEASE)
    assert gone["state"] == "MISS"
    assert gone["value"] == b""


async def test_fill_needs_the_current_token(store: Store) -> None:
    """A fill with a token that is not the current lease is refused and stores nothing."""
    k = Keys(store)
    await lookup(store, k, token="t1")
    assert await fill(store, k, token="nope") == [0, 0]
    assert await store.client.hget(k.entry, "v") is None
    assert await fill(store, k, token="t1") == [1, 0]
    # The lease is spent: the same token cannot fill again.
    assert await fill(store, k, token="t1") == [0, 0]


async def test_expired_lease_is_taken_over_and_old_filler_refused(store: Store) -> None:
    """After lease_ms, the next caller takes the lease over (flag 1); the old token is void."""
    k = Keys(store)
    await lookup(store, k, token="t1")
    waiting = await lookup(store, k, token="t2", now=NOW + LEASE - 1)
    assert waiting["state"] == "WAIT"
    taken = await lookup(store, k, token="t3", now=NOW + LEASE)
    assert (taken["state"], taken["token"], taken["flags"]) == ("MISS", "t3", 1)
    assert await fill(store, k, token="t1", now=NOW + LEASE + 10) == [0, 0]
    assert (await fill(store, k, token="t3", now=NOW + LEASE + 10))[0] == 1


async def test_fill_wakes_waiters_only_when_someone_waits(store: Store, listener: Any) -> None:
    """The fill publishes '<digest> F' when a WAIT was answered, and nothing otherwise."""
    quiet = Keys(store, "a" * 32)
    await lookup(store, quiet)
    assert await fill(store, quiet) == [1, 0]

    k = Keys(store)
    await lookup(store, k, token="t1")
    assert (await lookup(store, k, token="t2"))["state"] == "WAIT"
    result, receivers = await fill(store, k, token="t1")
    assert result == 1
    assert receivers == 1
    assert await next_message(listener) == f"{DIGEST} F".encode()
    # The waiter flag is cleared with the fill.
    assert await store.client.hget(k.entry, "w") is None


async def test_release_tells_waiters_to_call_the_origin(store: Store, listener: Any) -> None:
    """Release drops the lease for its token only and publishes '<digest> S' to waiters."""
    k = Keys(store)
    await lookup(store, k, token="t1")
    await lookup(store, k, token="t2")
    args = [k.channel, k.digest]
    assert reply_list(await store.run("cache_release", [k.entry], ["other", *args])) == [0, 0]
    assert reply_list(await store.run("cache_release", [k.entry], ["t1", *args])) == [1, 1]
    assert await next_message(listener) == f"{DIGEST} S".encode()
    assert not await store.client.exists(k.entry)
    again = await lookup(store, k, token="t3")
    assert (again["state"], again["token"]) == ("MISS", "t3")


async def test_release_keeps_a_usable_entry(store: Store) -> None:
    """Releasing a refresh lease leaves the stale entry in place."""
    k = Keys(store)
    await lookup(store, k)
    await fill(store, k)
    refresh = await lookup(store, k, token="r1", now=NOW + 1_500)
    assert refresh["token"] == "r1"
    await store.run("cache_release", [k.entry], ["r1", k.channel, k.digest])
    after = await lookup(store, k, token="r2", now=NOW + 1_600)
    assert (after["state"], after["value"], after["token"]) == ("STALE", b"payload", "r2")


async def test_clear_deletes_entry_and_voids_the_fill_in_flight(
    store: Store, listener: Any
) -> None:
    """Clearing one key deletes it, refuses the in-flight fill and tells waiters 'S'."""
    k = Keys(store)
    await lookup(store, k, token="t1")
    await lookup(store, k, token="t2")
    assert reply_int(await store.run("cache_clear", [k.entry], [k.channel, k.digest])) == 1
    assert await next_message(listener) == f"{DIGEST} S".encode()
    assert await fill(store, k, token="t1") == [0, 0]
    assert reply_int(await store.run("cache_clear", [k.entry], [k.channel, k.digest])) == 0


async def test_function_generation_bump_retires_entries_in_one_call(store: Store) -> None:
    """Bumping a function's generation hides its entries; other functions are untouched."""
    mine, theirs = Keys(store, "1" * 32), Keys(store, "2" * 32)
    for k, fn in ((mine, FN), (theirs, OTHER_FN)):
        await lookup(store, k, fn=fn)
        await fill(store, k, fn=fn)
    assert reply_int(await store.run("cache_invalidate", [mine.gen], [FN, 86_400_000])) == 1
    assert await pttl(store, mine.gen) > 86_000_000
    hidden = await lookup(store, mine, token="t9", now=NOW + 10)
    assert (hidden["state"], hidden["token"], hidden["value"]) == ("MISS", "t9", b"")
    kept = await lookup(store, theirs, fn=OTHER_FN, now=NOW + 10)
    assert (kept["state"], kept["value"]) == ("FRESH", b"payload")
    # A fill under the new lease stores under the new generation and is served again.
    assert (await fill(store, mine, token="t9", now=NOW + 20))[0] == 1
    assert (await lookup(store, mine, now=NOW + 30))["state"] == "FRESH"


async def test_service_generation_bump_retires_everything(store: Store) -> None:
    """Bumping the service generation hides the entries of every function."""
    a, b = Keys(store, "1" * 32), Keys(store, "2" * 32)
    for k, fn in ((a, FN), (b, OTHER_FN)):
        await lookup(store, k, fn=fn)
        await fill(store, k, fn=fn)
    assert reply_int(await store.run("cache_invalidate", [a.gen], ["_", 86_400_000])) == 1
    assert (await lookup(store, a, now=NOW + 10))["state"] == "MISS"
    assert (await lookup(store, b, fn=OTHER_FN, now=NOW + 10))["state"] == "MISS"


async def test_fill_leased_before_a_clear_is_refused(store: Store, listener: Any) -> None:
    """A lease granted before a generation bump cannot store (-1) and waiters get 'S'."""
    k = Keys(store)
    await lookup(store, k, token="t1")
    await lookup(store, k, token="t2")
    await store.run("cache_invalidate", [k.gen], [FN, 86_400_000])
    assert await fill(store, k, token="t1") == [-1, 1]
    assert await next_message(listener) == f"{DIGEST} S".encode()
    assert await store.client.hget(k.entry, "v") is None
    # The old lease no longer makes anyone wait.
    assert (await lookup(store, k, token="t3", now=NOW + 1))["token"] == "t3"


async def test_drop_is_compare_and_delete_on_stored_at(store: Store) -> None:
    """cache_drop removes the entry it was told about, never a newer one, and keeps leases."""
    k = Keys(store)
    await lookup(store, k)
    await fill(store, k)
    assert reply_int(await store.run("cache_drop", [k.entry], [NOW - 1])) == 0
    assert await store.client.hget(k.entry, "v") == b"payload"
    await lookup(store, k, mode="force", token="f1", now=NOW + 5)
    assert reply_int(await store.run("cache_drop", [k.entry], [NOW])) == 1
    fields = await store.client.hgetall(k.entry)
    assert b"v" not in fields
    assert fields[b"lt"] == b"f1"


async def test_peek_never_leases_or_writes(store: Store) -> None:
    """Peek serves fresh or stale entries and never takes a lease or marks a waiter."""
    k = Keys(store)
    miss = await lookup(store, k, mode="peek", token="")
    assert (miss["state"], miss["token"]) == ("MISS", "")
    assert not await store.client.exists(k.entry)
    await lookup(store, k)
    await fill(store, k)
    stale = await lookup(store, k, mode="peek", token="", now=NOW + 2_000)
    assert (stale["state"], stale["token"], stale["value"]) == ("STALE", "", b"payload")
    assert await store.client.hget(k.entry, "lt") is None


async def test_force_always_leases_and_returns_the_entry(store: Store) -> None:
    """Force takes the lease even over a fresh entry or a live lease, returning the entry."""
    k = Keys(store)
    await lookup(store, k)
    await fill(store, k)
    forced = await lookup(store, k, mode="force", token="f1", now=NOW + 10)
    assert (forced["state"], forced["token"], forced["value"]) == ("FRESH", "f1", b"payload")
    again = await lookup(store, k, mode="force", token="f2", now=NOW + 20)
    assert again["token"] == "f2"
    assert await fill(store, k, token="f1", now=NOW + 30) == [0, 0]
    assert (await fill(store, k, token="f2", now=NOW + 30))[0] == 1


async def test_malformed_entries_are_deleted_and_flagged(store: Store) -> None:
    """A key of the wrong type, or an entry missing its stamps, is deleted (flag 2): a MISS."""
    k = Keys(store)
    await store.client.set(k.entry, b"garbage", px=60_000)
    out = await lookup(store, k)
    assert (out["state"], out["token"], out["flags"]) == ("MISS", "t1", 2)
    assert await store.client.type(k.entry) == b"hash"

    broken = Keys(store, "b" * 32)
    await store.client.hset(broken.entry, mapping={"v": b"x", "sa": b"1"})
    await store.client.pexpire(broken.entry, 60_000)
    out = await lookup(store, broken)
    assert (out["state"], out["flags"]) == ("MISS", 2)
    assert await store.client.hget(broken.entry, "v") is None


async def test_server_time_is_used_without_now_ms(store: Store) -> None:
    """With now_ms 0 the scripts read TIME: stamps are the server's clock."""
    k = Keys(store)
    await lookup(store, k, now=0)
    await fill(store, k, now=0)
    server = await store.client.time()
    server_ms = server[0] * 1000 + server[1] // 1000
    stored_at = int(await store.client.hget(k.entry, "sa"))
    assert abs(server_ms - stored_at) < 5_000
    assert (await lookup(store, k, now=0))["state"] == "FRESH"


async def test_every_written_key_expires(store: Store) -> None:
    """After each script, every key it wrote has a TTL (no key lives forever)."""
    k = Keys(store)

    async def all_expire() -> None:
        for key in (k.entry, k.gen):
            assert await pttl(store, key) != -1, key

    await lookup(store, k, token="t1")
    await all_expire()
    await lookup(store, k, token="t2")
    await all_expire()
    await fill(store, k, token="t1")
    await all_expire()
    await lookup(store, k, mode="force", token="t3", now=NOW + 1)
    await all_expire()
    await store.run("cache_invalidate", [k.gen], ["_", 1_000])
    await all_expire()
    await store.run("cache_drop", [k.entry], [NOW])
    await all_expire()


@pytest.mark.parametrize(
    ("script", "keys", "args"),
    [
        ("cache_lookup", 2, ["bogus", "t", 10, FN, NOW]),
        ("cache_lookup", 2, ["get", "", 10, FN, NOW]),
        ("cache_lookup", 2, ["get", "t", 0, FN, NOW]),
        ("cache_lookup", 2, ["get", "t", "1.5", FN, NOW]),
        ("cache_lookup", 2, ["get", "t", 10, "_", NOW]),
        ("cache_lookup", 2, ["get", "t", 10, FN, -1]),
        ("cache_fill", 2, ["", b"v", 10, 0, FN, "ch", "id", NOW]),
        ("cache_fill", 2, ["t", b"", 10, 0, FN, "ch", "id", NOW]),
        ("cache_fill", 2, ["t", b"v", 0, 0, FN, "ch", "id", NOW]),
        ("cache_fill", 2, ["t", b"v", 10, -1, FN, "ch", "id", NOW]),
        ("cache_fill", 2, ["t", b"v", 10, 0, "", "ch", "id", NOW]),
        ("cache_fill", 2, ["t", b"v", 10, 0, FN, "", "id", NOW]),
        ("cache_fill", 2, ["t", b"v", 10, 0, FN, "ch", "id", "x"]),
        ("cache_release", 1, ["", "ch", "id"]),
        ("cache_release", 1, ["t", "", "id"]),
        ("cache_clear", 1, ["", "id"]),
        ("cache_drop", 1, ["x"]),
        ("cache_invalidate", 1, ["", 10]),
        ("cache_invalidate", 1, ["_", 0]),
    ],
)
async def test_bad_arguments_get_badarg_errors(
    store: Store, script: str, keys: int, args: list[Any]
) -> None:
    """Invalid ARGV gets an MSFW_BADARG error reply, never a Lua crash or a write."""
    k = Keys(store)
    with pytest.raises(ScriptError) as info:
        await store.run(script, [k.entry, k.gen][:keys], args)
    assert info.value.code == "MSFW_BADARG"
    assert not await store.client.exists(k.entry, k.gen)


async def test_concurrent_lookups_grant_exactly_one_lease(store: Store) -> None:
    """Fifty lookups at once on a cold key: one MISS with a lease, the rest WAIT."""
    k = Keys(store)
    replies = await asyncio.gather(*(lookup(store, k, token=f"t{i}") for i in range(50)))
    states = sorted(r["state"] for r in replies)
    assert states.count("MISS") == 1
    assert states.count("WAIT") == 49
    assert sum(1 for r in replies if r["token"]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["get", "", 10, FN, NOW + 1],
        ["get", "t", "1.5", FN, NOW + 1],
        ["peek", "", 0, FN, NOW + 1],
        ["peek", "", 10, "_", NOW + 1],
        ["peek", "", 10, FN, "1.5"],
    ],
)
async def test_fresh_fast_path_checks_arguments_like_the_full_path(
    store: Store, args: list[Any]
) -> None:
    """A FRESH entry is served by the script's fast path; bad ARGV is still refused there."""
    k = Keys(store)
    await lookup(store, k)
    await fill(store, k)
    assert (await lookup(store, k, mode="peek", token="", now=NOW + 1))["state"] == "FRESH"
    with pytest.raises(ScriptError) as info:
        await store.run("cache_lookup", [k.entry, k.gen], args)
    assert info.value.code == "MSFW_BADARG"


async def test_fresh_looking_but_broken_entries_leave_the_fast_path(store: Store) -> None:
    """A fresh fu with a bad stamp, a foreign generation or a non-hash generation key is
    never served by the fast path: the full path answers MISS as before."""
    k = Keys(store)
    await lookup(store, k)
    await fill(store, k)
    fresh = await lookup(store, k, now=NOW + 1)
    assert (fresh["state"], fresh["value"], fresh["sa"], fresh["now"]) == (
        "FRESH",
        b"payload",
        NOW,
        NOW + 1,
    )

    await store.client.hset(k.entry, "su", b"soon")
    out = await lookup(store, k, now=NOW + 1)
    assert (out["state"], out["flags"]) == ("MISS", 2)
    assert await store.client.hget(k.entry, "v") is None

    other = Keys(store, "c" * 32)
    await lookup(store, other)
    await fill(store, other)
    await store.client.hset(other.entry, "g", b"9:9")
    assert (await lookup(store, other, now=NOW + 1))["state"] == "MISS"

    await store.client.delete(other.gen)
    await store.client.set(other.gen, b"not a hash", px=60_000)
    await store.client.hset(other.entry, "g", b"0:0")
    out = await lookup(store, other, now=NOW + 1)
    assert out["state"] == "FRESH"
    assert await store.client.type(other.gen) != b"string"


async def test_peek_short_form_reads_server_time_and_never_leases(store: Store) -> None:
    """ARGV {'peek', field} is 'peek' with no token, lease 1 and server TIME: a fresh
    entry is served, a missing one is a MISS that writes nothing."""
    k = Keys(store)
    reply = await store.run("cache_lookup", [k.entry, k.gen], ["peek", FN])
    assert isinstance(reply, bytes)
    parts = reply.split(b" ", 8)
    assert (parts[0], parts[1], parts[8]) == (b"MISS", b"-", b"")
    assert not await store.client.exists(k.entry, k.gen)

    await lookup(store, k, now=0)
    await fill(store, k, now=0)
    reply = await store.run("cache_lookup", [k.entry, k.gen], ["peek", FN])
    assert isinstance(reply, bytes)
    # A FRESH hit in the short form answers in its own short form (see the header).
    state, sa, fu, su, sec, usec, value = reply.split(b" ", 6)
    assert (state, value) == (b"F", b"payload")
    now = int(sec) * 1000 + int(usec) // 1000
    full = await lookup(store, k, mode="peek", token="", lease_ms=1, now=now)
    assert full["state"] == "FRESH"
    assert (int(sa), int(fu), int(su)) == (full["sa"], full["fu"], full["su"])
    assert int(sa) <= now < int(fu)
    with pytest.raises(ScriptError) as info:
        await store.run("cache_lookup", [k.entry, k.gen], ["peek", "_"])
    assert info.value.code == "MSFW_BADARG"


@pytest.mark.parametrize(
    ("field", "stored", "state"),
    [
        ("fu", "1", "STALE"),  # past fresh-until, before stale-until
        ("g", "7:0", "MISS"),  # written under another generation
        ("sa", "x", "MISS"),  # a malformed entry (deleted by the full path)
        ("su", "1", "MISS"),  # past stale-until
    ],
)
async def test_peek_short_form_answers_anything_but_fresh_in_the_long_form(
    store: Store, field: str, stored: str, state: str
) -> None:
    """The short form's own reply is for FRESH hits only: every other entry falls
    through to the full path, whose long reply says what it is."""
    k = Keys(store)
    await lookup(store, k, now=0)
    await fill(store, k, now=0)
    await store.client.hset(k.entry, field, stored)
    reply = await store.run("cache_lookup", [k.entry, k.gen], ["peek", FN])
    assert isinstance(reply, bytes)
    assert reply.split(b" ", 1)[0].decode() == state


async def test_peek_serves_an_entry_whose_times_only_lua_reads(store: Store) -> None:
    """Lua's tonumber reads '1e15', Python's int does not: the short reply passes the
    stored text on, so peek asks again in the long form (which prints %d) and serves
    the entry, instead of reporting a failing store."""
    k = Keys(store)
    await lookup(store, k, now=0)
    await fill(store, k, now=0)
    await store.client.hset(k.entry, mapping={"fu": "1e15", "su": "2e15"})
    short = await store.run("cache_lookup", [k.entry, k.gen], ["peek", FN])
    assert isinstance(short, bytes) and short.startswith(b"F ")  # what Python cannot read
    key = CacheKey(service="svc", function="GET /x", digest=DIGEST, label="GET /x")
    cache_store = CacheStore(store)
    got = await cache_store.peek(cache_store.peek_request(key))
    assert (got.state, got.value) == ("FRESH", b"payload")
    assert (got.fresh_until_ms, got.stale_until_ms) == (10**15, 2 * 10**15)


async def test_envelope_bytes_with_spaces_come_back_whole(store: Store) -> None:
    """The reply is head fields then the envelope in one bulk: spaces (and a trailing
    one) inside the envelope survive, fresh (fast path) and stale (full path)."""
    k = Keys(store)
    blob = b" a  b\x00 c "
    await lookup(store, k)
    await fill(store, k, value=blob)
    assert (await lookup(store, k, now=NOW + 1))["value"] == blob
    stale = await lookup(store, k, now=NOW + 1_500)
    assert (stale["state"], stale["value"]) == ("STALE", blob)


@pytest.mark.parametrize(
    "reply",
    [
        [b"FRESH - 1 2 3 0 0 4", b"v"],
        b"FRESH - 1 2 3",
        b"FRESH - 1 x 3 0 0 4 v",
        7,
        b"F 1 2 3 4",
        b"F 1e3 2 3 4 5 v",
    ],
)
async def test_lookup_decoder_refuses_a_foreign_reply_shape(
    store: Store, reply: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply that is not one bulk with eight head fields is a StoreError (so the call
    bypasses the cache), never an IndexError or a wrong value."""

    async def fake_run(name: str, keys: Any, args: Any) -> object:
        return reply

    monkeypatch.setattr(store, "run", fake_run)
    key = CacheKey(service="svc", function="GET /x", digest=DIGEST, label="GET /x")
    with pytest.raises(StoreError):
        await CacheStore(store).lookup(key, "peek", "", lease_ms=1)
