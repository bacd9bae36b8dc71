"""lua/breaker_*.lua called directly, with explicit server time (now_ms)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from msfw_redis._breaker.machine import (
    ADMIT,
    APPLIED,
    PROBE,
    REJECT,
    STALE,
    TRANSITIONED,
    BreakerState,
    Snapshot,
)
from msfw_redis._exceptions import ScriptError
from msfw_redis._store.replies import reply_list
from msfw_redis._store.store import Store

T0 = 1_700_000_000_000
KEY_TTL_MS = 3_600_000


@dataclass
class Breaker:
    """Calls the breaker scripts on one breaker's keys."""

    store: Store
    failure_threshold: int = 3
    success_threshold: int = 2
    open_ms: int = 10_000
    rate_permille: int = 0
    minimum_calls: int = 4
    window_ms: int = 10_000
    half_open_max: int = 1
    lease_ms: int = 5_000

    @property
    def keys(self) -> list[str]:
        k = self.store.keys
        return [k.key("svc", "breaker", part, "*") for part in ("state", "probes", "window")]

    @property
    def channel(self) -> str:
        return self.store.keys.channel("svc", "breaker")

    async def acquire(self, token: str, now: int) -> Snapshot:
        reply = await self.store.run(
            "breaker_acquire",
            self.keys[:2],
            [self.channel, "*", token, self.half_open_max, self.lease_ms, KEY_TTL_MS, now],
        )
        return Snapshot.from_reply(reply_list(reply))

    async def record(self, gen: int, succ: int, fail: int, now: int, token: str = "") -> Snapshot:
        reply = await self.store.run(
            "breaker_record",
            self.keys,
            [
                self.channel, "*", gen, succ, fail, token,
                self.failure_threshold, self.success_threshold, self.open_ms,
                self.rate_permille, self.minimum_calls, self.window_ms, KEY_TTL_MS, now,
            ],
        )  # fmt: skip
        return Snapshot.from_reply(reply_list(reply))

    async def control(self, action: str, ttl_ms: int, now: int) -> Snapshot:
        reply = await self.store.run(
            "breaker_control", self.keys, [self.channel, "*", action, ttl_ms, KEY_TTL_MS, now]
        )
        return Snapshot.from_reply(reply_list(reply))

    async def read(self, now: int) -> Snapshot:
        return Snapshot.from_reply(
            reply_list(await self.store.run("breaker_read", self.keys[:2], [now]))
        )

    async def trip(self, now: int) -> Snapshot:
        snap = await self.read(now)
        for _ in range(self.failure_threshold):
            snap = await self.record(snap.gen, 0, 1, now)
        return snap


async def test_failures_at_trip_kept_while_open_and_half_open(store: Store) -> None:
    """The failure count that tripped the breaker stays in every reply while OPEN and
    HALF_OPEN (failures itself restarts at 0), and is 0 once it closes."""
    b = Breaker(store, failure_threshold=3, success_threshold=1, open_ms=1_000)
    assert (await b.read(T0)).failures_at_trip == 0
    tripped = await b.trip(T0)
    assert (tripped.state, tripped.failures, tripped.failures_at_trip) == (
        BreakerState.OPEN, 0, 3,
    )  # fmt: skip
    assert (await b.read(T0 + 1)).failures_at_trip == 3
    probe = await b.acquire("p1", T0 + 1_000)
    assert (probe.code, probe.state, probe.failures_at_trip) == (PROBE, BreakerState.HALF_OPEN, 3)
    assert (await b.read(T0 + 1_001)).failures_at_trip == 3
    closed = await b.record(probe.gen, 1, 0, T0 + 1_002, token="p1")
    assert (closed.state, closed.failures_at_trip) == (BreakerState.CLOSED, 0)
    assert (await b.read(T0 + 1_003)).failures_at_trip == 0


async def test_failures_at_trip_of_a_failed_probe_and_of_rate_mode(store: Store) -> None:
    """A failed half-open probe re-opens with its own count; rate mode keeps the
    window's failures; a manual override is never a trip."""
    b = Breaker(store, failure_threshold=2, open_ms=1_000)
    await b.trip(T0)
    probe = await b.acquire("p1", T0 + 1_000)
    reopened = await b.record(probe.gen, 0, 1, T0 + 1_001, token="p1")
    assert (reopened.state, reopened.failures_at_trip) == (BreakerState.OPEN, 1)
    forced = await b.control("open", 0, T0 + 1_002)
    assert (forced.state, forced.failures_at_trip) == (BreakerState.FORCED_OPEN, 0)
    assert (await b.read(T0 + 1_003)).failures_at_trip == 0

    rate = Breaker(store, rate_permille=500, minimum_calls=4)
    await rate.control("reset", 0, T0 + 2_000)
    gen = (await rate.read(T0 + 2_000)).gen
    await rate.record(gen, 2, 0, T0 + 2_001)
    snap = await rate.record(gen, 0, 3, T0 + 2_002)
    assert (snap.state, snap.failures_at_trip) == (BreakerState.OPEN, 3)
    assert (await rate.read(T0 + 2_003)).failures_at_trip == 3


async def test_missing_breaker_reads_closed(store: Store) -> None:
    """A breaker never written reads as CLOSED, generation 0."""
    snap = await Breaker(store).read(T0)
    assert snap.state is BreakerState.CLOSED
    assert (snap.gen, snap.failures, snap.now_ms) == (0, 0, T0)


async def test_threshold_minus_one_stays_closed_threshold_opens(store: Store) -> None:
    """failure_threshold - 1 consecutive failures keep it CLOSED; the next one opens it."""
    b = Breaker(store, failure_threshold=3)
    s1 = await b.record(0, 0, 1, T0)
    s2 = await b.record(0, 0, 1, T0 + 1)
    assert (s2.code, s2.state, s2.failures) == (APPLIED, BreakerState.CLOSED, 2)
    assert s1.gen == s2.gen == 0
    s3 = await b.record(0, 0, 1, T0 + 2)
    assert (s3.code, s3.state, s3.gen) == (TRANSITIONED, BreakerState.OPEN, 1)
    assert (s3.opened_at_ms, s3.open_until_ms) == (T0 + 2, T0 + 2 + b.open_ms)


async def test_success_resets_the_consecutive_count(store: Store) -> None:
    """A success between failures resets the count; batched successes apply first."""
    b = Breaker(store, failure_threshold=3)
    await b.record(0, 0, 1, T0)
    await b.record(0, 0, 1, T0)
    snap = await b.record(0, 1, 0, T0)
    assert snap.failures == 0
    await b.record(0, 0, 1, T0)
    await b.record(0, 0, 1, T0)
    # Two successes carried with a failure reset the count before the failure counts.
    snap = await b.record(0, 2, 1, T0)
    assert (snap.state, snap.failures) == (BreakerState.CLOSED, 1)


async def test_cooldown_edge(store: Store) -> None:
    """OPEN rejects until open_until - 1; at open_until one probe is admitted."""
    b = Breaker(store)
    opened = await b.trip(T0)
    assert opened.state is BreakerState.OPEN
    before = await b.acquire("a", opened.open_until_ms - 1)
    assert (before.code, before.state) == (REJECT, BreakerState.OPEN)
    at = await b.acquire("b", opened.open_until_ms)
    assert (at.code, at.state, at.gen) == (PROBE, BreakerState.HALF_OPEN, opened.gen + 1)
    assert at.extra[0] == 1


async def test_half_open_admits_at_most_max_and_leases_expire(store: Store) -> None:
    """HALF_OPEN admits half_open_max probes; an expired lease frees its slot."""
    b = Breaker(store, half_open_max=2, lease_ms=1_000)
    opened = await b.trip(T0)
    t = opened.open_until_ms
    assert (await b.acquire("p1", t)).code == PROBE
    assert (await b.acquire("p2", t + 1)).code == PROBE
    full = await b.acquire("p3", t + 2)
    assert full.code == REJECT
    assert full.extra == (2, t + 1_000)
    # p1's lease (t + 1000) has expired at t + 1000: one slot frees.
    assert (await b.acquire("p4", t + 1_000)).code == PROBE
    assert (await b.acquire("p5", t + 1_000)).code == REJECT


async def test_probe_failure_reopens_and_successes_close(store: Store) -> None:
    """A failed probe re-opens (new gen); success_threshold probe successes close it."""
    b = Breaker(store, success_threshold=2)
    opened = await b.trip(T0)
    t = opened.open_until_ms
    probe = await b.acquire("p1", t)
    reopened = await b.record(probe.gen, 0, 1, t + 5, token="p1")
    assert (reopened.code, reopened.state, reopened.gen) == (
        TRANSITIONED,
        BreakerState.OPEN,
        probe.gen + 1,
    )
    assert reopened.open_until_ms == t + 5 + b.open_ms
    t2 = reopened.open_until_ms
    p = await b.acquire("q1", t2)
    first = await b.record(p.gen, 1, 0, t2 + 1, token="q1")
    assert (first.state, first.successes) == (BreakerState.HALF_OPEN, 1)
    p2 = await b.acquire("q2", t2 + 2)
    closed = await b.record(p2.gen, 1, 0, t2 + 3, token="q2")
    assert (closed.code, closed.state, closed.gen) == (
        TRANSITIONED,
        BreakerState.CLOSED,
        p2.gen + 1,
    )


async def test_stale_generation_cannot_close_a_reopened_breaker(store: Store) -> None:
    """A success recorded against an older generation is ignored."""
    b = Breaker(store, success_threshold=1)
    opened = await b.trip(T0)
    t = opened.open_until_ms
    probe = await b.acquire("p1", t)
    reopened = await b.record(probe.gen, 0, 1, t + 1, token="p1")
    stale = await b.record(probe.gen, 1, 0, t + 2, token="p1")
    assert (stale.code, stale.state, stale.gen) == (STALE, BreakerState.OPEN, reopened.gen)
    # A CLOSED-generation success arriving late is stale too.
    old = await b.record(0, 5, 0, t + 3)
    assert (old.code, old.state) == (STALE, BreakerState.OPEN)


async def test_outcome_without_lease_is_stale_in_half_open(store: Store) -> None:
    """In HALF_OPEN only the holder of a live probe lease moves the state."""
    b = Breaker(store, success_threshold=1)
    opened = await b.trip(T0)
    probe = await b.acquire("p1", opened.open_until_ms)
    snap = await b.record(probe.gen, 1, 0, opened.open_until_ms + 1, token="other")
    assert (snap.code, snap.state) == (STALE, BreakerState.HALF_OPEN)
    snap = await b.record(probe.gen, 0, 1, opened.open_until_ms + 1, token="")
    assert (snap.code, snap.state) == (STALE, BreakerState.HALF_OPEN)


async def test_rate_mode_trips_at_the_ratio(store: Store) -> None:
    """Rate mode waits for minimum_calls, then opens at the failure share."""
    b = Breaker(store, rate_permille=500, minimum_calls=4, failure_threshold=1)
    # failure_threshold=1 is unused in rate mode: one failure does not trip.
    s = await b.record(0, 0, 1, T0)
    assert s.state is BreakerState.CLOSED
    s = await b.record(0, 2, 0, T0 + 1)
    assert (s.state, s.extra) == (BreakerState.CLOSED, (3, 1))
    s = await b.record(0, 0, 1, T0 + 2)  # 2 of 4 failed: 50 % >= 50 %
    assert (s.code, s.state) == (TRANSITIONED, BreakerState.OPEN)


async def test_rate_window_slides(store: Store) -> None:
    """Outcomes older than the window no longer count."""
    b = Breaker(store, rate_permille=500, minimum_calls=2, window_ms=1_000)
    await b.record(0, 0, 1, T0)
    s = await b.record(0, 3, 0, T0 + 5_000)
    assert s.extra == (3, 0)
    s = await b.record(0, 0, 1, T0 + 5_001)
    assert (s.state, s.extra) == (BreakerState.CLOSED, (4, 1))


async def test_manual_control_and_ttl(store: Store) -> None:
    """Forced states hold until their TTL, then the breaker is CLOSED with a new gen."""
    b = Breaker(store)
    forced = await b.control("open", 1_000, T0)
    assert forced.state is BreakerState.FORCED_OPEN
    assert (await b.acquire("a", T0 + 999)).code == REJECT
    back = await b.acquire("b", T0 + 1_000)
    assert (back.code, back.state, back.gen) == (ADMIT, BreakerState.CLOSED, forced.gen + 1)
    closed = await b.control("close", 0, T0)
    for _ in range(10):
        s = await b.record(closed.gen, 0, 1, T0)
    assert s.state is BreakerState.FORCED_CLOSED
    disabled = await b.control("disable", 0, T0)
    assert (await b.acquire("c", T0)).code == ADMIT
    assert disabled.state is BreakerState.DISABLED
    reset = await b.control("reset", 5_000, T0)
    assert (reset.state, reset.open_until_ms) == (BreakerState.CLOSED, 0)


async def test_every_written_key_expires(store: Store) -> None:
    """State, probe and window keys all carry a TTL after writes."""
    b = Breaker(store, rate_permille=500, minimum_calls=100)
    await b.record(0, 1, 1, T0)
    state_key, probes_key, window_key = b.keys
    assert 0 < await store.client.pttl(state_key) <= KEY_TTL_MS
    assert await store.client.pttl(window_key) > 0
    b2 = Breaker(store)
    await b2.control("reset", 0, T0)
    opened = await b2.trip(T0)
    await b2.acquire("p", opened.open_until_ms)
    assert 0 < await store.client.pttl(probes_key) <= b2.lease_ms * 2
    assert await store.client.pttl(state_key) > 0


async def test_forced_open_ttl_longer_than_key_ttl_keeps_the_key(store: Store) -> None:
    """An override longer than the key TTL extends the key's life to cover it."""
    b = Breaker(store)
    await b.control("open", KEY_TTL_MS * 2, T0)
    assert await store.client.pttl(b.keys[0]) > KEY_TTL_MS


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("breaker_acquire", ["ch", "*", "tok", 0, 1000, 1000, 0]),
        ("breaker_acquire", ["ch", "*", "", 1, 1000, 1000, 0]),
        ("breaker_acquire", ["ch", "*", "tok", 1, "x", 1000, 0]),
        ("breaker_record", ["ch", "*", 0, -1, 0, "", 3, 2, 1000, 0, 1, 1000, 1000, 0]),
        ("breaker_record", ["ch", "*", 0, 0, 1, "", 0, 2, 1000, 0, 1, 1000, 1000, 0]),
        ("breaker_record", ["ch", "*", 0, 0, 1, "", 3, 2, 1000, 1001, 1, 1000, 1000, 0]),
        ("breaker_control", ["ch", "*", "explode", 0, 1000, 0]),
        ("breaker_control", ["ch", "*", "open", -5, 1000, 0]),
        ("breaker_read", ["soon"]),
    ],
)
async def test_bad_arguments_get_error_replies(
    store: Store, script: str, args: list[object]
) -> None:
    """Invalid ARGV gives an MSFW_BADARG error reply, and writes nothing."""
    keys = Breaker(store).keys
    n = 2 if script in ("breaker_acquire", "breaker_read") else 3
    with pytest.raises(ScriptError) as info:
        await store.run(script, keys[:n], args)
    assert info.value.code == "MSFW_BADARG"
    assert await store.client.exists(*keys) == 0


async def test_read_with_index_key_lists_the_breaker_with_expiry(store: Store) -> None:
    """breaker_read with KEYS[3] lists the breaker in its service's index (expiring), and
    reads exactly what a plain read does; without KEYS[3] it writes nothing."""
    b = Breaker(store)
    index = store.keys.key("svc", "breaker", "index")
    plain = reply_list(await store.run("breaker_read", b.keys[:2], [T0]))
    assert await store.client.exists(index) == 0
    listed = reply_list(await store.run("breaker_read", [*b.keys[:2], index], [T0, "/a", 5_000]))
    assert listed == plain
    assert await store.zmembers(index) == ["/a"]
    assert 0 < await store.client.pttl(index) <= 5_000
    # Entries untouched for longer than the retention are pruned by the next listing.
    await store.run("breaker_read", [*b.keys[:2], index], [T0 + 6_000, "/b", 5_000])
    assert await store.zmembers(index) == ["/b"]
    assert await store.client.exists(*b.keys) == 0


@pytest.mark.parametrize("args", [[0, "", 1000], [0, "/a", 0], [0, "/a", "x"], [0]])
async def test_read_with_index_key_rejects_bad_arguments(store: Store, args: list[object]) -> None:
    """An empty name or a bad retention is an MSFW_BADARG error, and nothing is written."""
    b = Breaker(store)
    index = store.keys.key("svc", "breaker", "index")
    with pytest.raises(ScriptError) as info:
        await store.run("breaker_read", [*b.keys[:2], index], args)
    assert info.value.code == "MSFW_BADARG"
    assert await store.client.exists(index) == 0
