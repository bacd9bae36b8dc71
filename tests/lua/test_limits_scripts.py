"""lua/limits_*.lua called directly, with a fixed now, on fakeredis and a real server."""

from __future__ import annotations

import pytest

from msfw_redis._exceptions import ScriptError
from msfw_redis._limits.budget import retries_allowed
from msfw_redis._limits.gcra import GcraParams, gcra_decide
from msfw_redis._limits.store import LimitsStore
from msfw_redis._store.store import Store

NOW = 1_700_000_000_000
NOW_US = NOW * 1000
LEASE = 5_000


@pytest.fixture
def limits(store: Store) -> LimitsStore:
    """The limits script calls over the test's store."""
    return LimitsStore(store)


async def test_bulkhead_grants_up_to_limit_then_refuses(limits: LimitsStore) -> None:
    """Three permits of a limit of three are granted; the fourth is refused with the earliest expiry."""
    for i in range(3):
        r = await limits.bulkhead_acquire("svc", None, f"t{i}", 3, LEASE, now_ms=NOW + i)
        assert r.granted and r.in_flight == i + 1
    r = await limits.bulkhead_acquire("svc", None, "t3", 3, LEASE, now_ms=NOW + 10)
    assert not r.granted
    assert r.in_flight == 3
    assert r.earliest_expiry_ms == NOW + LEASE


async def test_bulkhead_same_token_renews_not_duplicates(limits: LimitsStore) -> None:
    """Acquiring twice with one token holds one permit (a retried acquire cannot take two)."""
    await limits.bulkhead_acquire("svc", None, "a", 2, LEASE, now_ms=NOW)
    r = await limits.bulkhead_acquire("svc", None, "a", 2, LEASE, now_ms=NOW + 100)
    assert r.granted and r.in_flight == 1
    assert r.earliest_expiry_ms == NOW + 100 + LEASE


async def test_bulkhead_lapsed_lease_is_reaped(limits: LimitsStore) -> None:
    """A permit whose lease passed (a crashed holder) is given to the next caller."""
    await limits.bulkhead_acquire("svc", None, "dead", 1, LEASE, now_ms=NOW)
    refused = await limits.bulkhead_acquire("svc", None, "b", 1, LEASE, now_ms=NOW + LEASE - 1)
    assert not refused.granted
    r = await limits.bulkhead_acquire("svc", None, "b", 1, LEASE, now_ms=NOW + LEASE)
    assert r.granted and r.in_flight == 1


async def test_bulkhead_release_frees_and_publishes(limits: LimitsStore, store: Store) -> None:
    """Releasing frees exactly the held tokens and publishes a free event."""
    channel = store.keys.limits_channel("svc")
    pubsub = store.pubsub_client().pubsub()
    await pubsub.subscribe(channel)
    try:
        await limits.bulkhead_acquire("svc", None, "a", 2, LEASE, now_ms=NOW)
        await limits.bulkhead_acquire("svc", None, "b", 2, LEASE, now_ms=NOW)
        released = await limits.bulkhead_release("svc", None, ["a", "zz"], now_ms=NOW + 1)
        assert released == 1
        assert await limits.bulkhead_in_flight("svc") == 1
        messages = []
        for _ in range(20):
            m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if m is not None:
                messages.append(m["data"])
                break
        assert messages == [b"free|1|1"]
    finally:
        await pubsub.aclose()


async def test_bulkhead_late_release_cannot_free_another_holder(limits: LimitsStore) -> None:
    """After a lease lapsed and the permit went to another, the old token's release is a no-op."""
    await limits.bulkhead_acquire("svc", None, "old", 1, LEASE, now_ms=NOW)
    await limits.bulkhead_acquire("svc", None, "new", 1, LEASE, now_ms=NOW + LEASE)
    assert await limits.bulkhead_release("svc", None, ["old"], now_ms=NOW + LEASE + 1) == 0
    assert await limits.bulkhead_in_flight("svc") == 1


async def test_bulkhead_renew_extends_only_held(limits: LimitsStore) -> None:
    """Renewal extends a held lease and does not resurrect a lapsed one."""
    await limits.bulkhead_acquire("svc", None, "a", 2, LEASE, now_ms=NOW)
    await limits.bulkhead_acquire("svc", None, "b", 2, 100, now_ms=NOW)
    renewed = await limits.bulkhead_renew("svc", None, ["a", "b"], LEASE, now_ms=NOW + 200)
    assert renewed == 1
    r = await limits.bulkhead_acquire("svc", None, "c", 2, LEASE, now_ms=NOW + LEASE + 100)
    assert r.granted and r.in_flight == 2  # "a" was renewed past its first lease


async def test_bulkhead_keys_expire(limits: LimitsStore, store: Store) -> None:
    """The permits key carries an expiry (a dead fleet leaves nothing behind)."""
    await limits.bulkhead_acquire("svc", None, "a", 2, LEASE, now_ms=0)
    ttl = await store.client.pttl(store.keys.bulkhead_permits("svc"))
    assert 0 < ttl <= LEASE + 1000


async def test_bulkhead_instance_scope_is_separate(limits: LimitsStore) -> None:
    """Per-instance bulkheads do not share permits."""
    assert (await limits.bulkhead_acquire("svc", "i1", "a", 1, LEASE, now_ms=NOW)).granted
    assert (await limits.bulkhead_acquire("svc", "i2", "b", 1, LEASE, now_ms=NOW)).granted
    assert not (await limits.bulkhead_acquire("svc", "i1", "c", 1, LEASE, now_ms=NOW)).granted


async def test_bulkhead_bad_args_rejected(limits: LimitsStore) -> None:
    """A zero limit is rejected with MSFW_BADARG."""
    with pytest.raises(ScriptError) as err:
        await limits.bulkhead_acquire("svc", None, "a", 0, LEASE)
    assert err.value.code == "MSFW_BADARG"


async def test_gcra_script_matches_model(limits: LimitsStore) -> None:
    """The script's decisions over an irregular schedule equal the pure model's."""
    params = GcraParams.of(10, 1.0, 3)
    tat: int | None = None
    offsets_ms = [0, 0, 0, 0, 50, 100, 150, 350, 351, 352, 1000, 1001, 1002, 1003, 1004]
    for off in offsets_ms:
        now_us = NOW_US + off * 1000
        model = gcra_decide(params, tat, now_us)
        got = await limits.rate_acquire(
            "svc", "rl", params.emission_us, params.burst, now_us=now_us
        )
        assert got.admitted == model.admitted, off
        assert got.retry_after_us == model.retry_after_us, off
        if got.admitted:
            assert got.remaining == model.remaining, off
            tat = model.tat_us


async def test_gcra_refusal_gives_exact_retry_after(limits: LimitsStore) -> None:
    """After the burst is spent, retry_after is the time to the next emission slot."""
    for _ in range(2):
        assert (await limits.rate_acquire("svc", "r", 100_000, 2, now_us=NOW_US)).admitted
    r = await limits.rate_acquire("svc", "r", 100_000, 2, now_us=NOW_US + 30_000)
    assert not r.admitted
    assert r.retry_after_us == 70_000
    ok = await limits.rate_acquire("svc", "r", 100_000, 2, now_us=NOW_US + 100_000)
    assert ok.admitted


async def test_gcra_corrupt_value_reads_as_idle(limits: LimitsStore, store: Store) -> None:
    """A corrupt stored arrival time is treated as no key, not a crash."""
    await store.client.set(store.keys.rate_limit("svc", "r"), b"not-a-number")
    assert (await limits.rate_acquire("svc", "r", 100_000, 1, now_us=NOW_US)).admitted


async def test_gcra_key_expires(limits: LimitsStore, store: Store) -> None:
    """The arrival-time key expires once it no longer matters."""
    await limits.rate_acquire("svc", "r", 100_000, 5)
    ttl = await store.client.pttl(store.keys.rate_limit("svc", "r"))
    assert 0 < ttl <= 101


async def test_gcra_bad_args_rejected(limits: LimitsStore) -> None:
    """A cost above the burst is rejected with MSFW_BADARG."""
    with pytest.raises(ScriptError) as err:
        await limits.rate_acquire("svc", "r", 1000, 2, cost=3)
    assert err.value.code == "MSFW_BADARG"


async def test_gate_close_caps_and_never_shortens(limits: LimitsStore, store: Store) -> None:
    """A close is capped by cap_ms, and a shorter later close keeps the longer window."""
    nb, now = await limits.gate_close("svc", "/a", 10_000, 3_000, now_ms=NOW)
    assert (nb, now) == (NOW + 3_000, NOW)
    nb2, _ = await limits.gate_close("svc", "/a", 500, 3_000, now_ms=NOW + 100)
    assert nb2 == NOW + 3_000
    assert await limits.gate_read("svc") == {"/a": NOW + 3_000}


async def test_gate_is_per_endpoint_and_drops_lapsed(limits: LimitsStore) -> None:
    """Closing one endpoint leaves the others open, and lapsed windows are dropped."""
    await limits.gate_close("svc", "/a", 1_000, 300_000, now_ms=NOW)
    await limits.gate_close("svc", "/b", 5_000, 300_000, now_ms=NOW + 2_000)
    assert await limits.gate_read("svc") == {"/b": NOW + 7_000}


async def test_gate_key_expires(limits: LimitsStore, store: Store) -> None:
    """The gate hash expires after its last window."""
    await limits.gate_close("svc", "/a", 2_000, 300_000)
    ttl = await store.client.pttl(store.keys.retry_after_gate("svc"))
    assert 2_000 < ttl <= 3_000


async def test_gate_corrupt_field_is_skipped(limits: LimitsStore, store: Store) -> None:
    """A corrupt stored window reads as absent."""
    await store.client.hset(store.keys.retry_after_gate("svc"), "/x", "junk")
    assert await limits.gate_read("svc") == {}


async def test_budget_allows_min_then_ratio(limits: LimitsStore) -> None:
    """With no requests only the minimum is allowed; requests add ratio x requests."""
    ratio_ppm, min_milli = 200_000, 1_000  # 0.2, 1/s
    granted = 0
    for _ in range(15):
        r = await limits.budget_spend("svc", 0, 1, ratio_ppm, min_milli, 10, now_ms=NOW)
        granted += r.granted
    assert granted == retries_allowed(0, 0.2, 1.0, 10) == 10
    r = await limits.budget_spend("svc", 50, 1, ratio_ppm, min_milli, 10, now_ms=NOW)
    assert r.allowed == retries_allowed(50, 0.2, 1.0, 10) == 20
    assert r.granted == 1 and r.retries == 11 and r.requests == 50


async def test_budget_window_slides(limits: LimitsStore, store: Store) -> None:
    """Buckets older than the window stop counting and are deleted."""
    await limits.budget_spend("svc", 100, 5, 0, 0, 10, now_ms=NOW)
    r = await limits.budget_spend("svc", 0, 0, 0, 0, 10, now_ms=NOW + 10_000)
    assert (r.requests, r.retries) == (0, 0)
    assert await store.client.hlen(store.keys.retry_budget("svc")) == 0


async def test_budget_key_expires(limits: LimitsStore, store: Store) -> None:
    """The budget hash expires one window after its last write."""
    await limits.budget_spend("svc", 3, 0, 200_000, 10_000, 10)
    ttl = await store.client.pttl(store.keys.retry_budget("svc"))
    assert 10_000 < ttl <= 11_000


async def test_gcra_retry_after_on_server_time_is_exact(limits: LimitsStore) -> None:
    """On server TIME, a refusal's retry_after names the instant of admission: 20 ms before it is refused, at it admitted."""
    first = await limits.rate_acquire("svc", "srv", 100_000, 1)
    assert first.admitted
    refused = await limits.rate_acquire("svc", "srv", 100_000, 1)
    assert not refused.admitted and 0 < refused.retry_after_us <= 100_000
    at = refused.now_us + refused.retry_after_us
    early = await limits.rate_acquire("svc", "srv", 100_000, 1, now_us=at - 20_000)
    assert not early.admitted and early.retry_after_us == 20_000
    assert (await limits.rate_acquire("svc", "srv", 100_000, 1, now_us=at)).admitted
