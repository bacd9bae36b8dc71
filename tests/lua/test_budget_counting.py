"""breaker_record with the retry budget's key (KEYS[4]): requests counted with the report."""

from __future__ import annotations

import pytest

from msfw_redis._exceptions import ScriptError
from msfw_redis._limits.store import LimitsStore
from msfw_redis._store.replies import reply_list
from msfw_redis._store.store import Store

NOW = 1_700_000_000_000
KEY_TTL_MS = 3_600_000


def _keys(store: Store, name: str = "*") -> list[str]:
    k = store.keys
    return [k.key("svc", "breaker", part, name) for part in ("state", "probes", "window")]


async def _record(
    store: Store, gen: int, succ: int, fail: int, now: int, *, budget: tuple[int, int] | None,
    name: str = "*", rate_permille: int = 0,
) -> list[object]:  # fmt: skip
    keys = _keys(store, name)
    args: list[object] = [
        store.keys.channel("svc", "breaker"), name, gen, succ, fail, "",
        3, 2, 10_000, rate_permille, 4, 10_000, KEY_TTL_MS, now,
    ]  # fmt: skip
    if budget is not None:
        keys.append(store.keys.retry_budget("svc"))
        args += list(budget)
    return list(reply_list(await store.run("breaker_record", keys, args)))


async def test_report_counts_requests_in_the_budget_bucket(store: Store) -> None:
    """With KEYS[4] the report adds its requests to this second's bucket; the reply is unchanged."""
    budget_key = store.keys.retry_budget("svc")
    with_budget = await _record(store, 0, 2, 1, NOW, budget=(3, 10))
    assert await store.client.hgetall(budget_key) == {f"q:{NOW // 1000}".encode(): b"3"}
    await store.client.delete(*_keys(store))
    without = await _record(store, 0, 2, 1, NOW, budget=None)
    assert with_budget == without
    ttl = await store.client.pttl(budget_key)
    assert 10_000 < ttl <= 11_000


async def test_budget_spend_reads_requests_reported_by_the_breaker(store: Store) -> None:
    """The retry decision sees the breaker's requests: 0.2 x 50 + minimum 0 allows 10."""
    await _record(store, 0, 50, 0, NOW, budget=(50, 10))
    r = await LimitsStore(store).budget_spend("svc", 0, 1, 200_000, 0, 10, now_ms=NOW + 500)
    assert (r.requests, r.allowed, r.granted) == (50, 10, 1)


async def test_stale_and_endpoint_reports_count_into_the_service_budget(store: Store) -> None:
    """Stale outcomes and an endpoint breaker's report both count into the service's budget."""
    budget_key = store.keys.retry_budget("svc")
    reply = await _record(store, 7, 0, 1, NOW, budget=(1, 10))  # gen 7 never existed
    assert reply[0] == 1  # stale
    await _record(store, 0, 1, 0, NOW, budget=(1, 10), name="/orders")
    assert await store.client.hget(budget_key, f"q:{NOW // 1000}") == b"2"


async def test_new_second_prunes_buckets_older_than_the_window(store: Store) -> None:
    """A hash written only by reports keeps at most the window's buckets."""
    budget_key = store.keys.retry_budget("svc")
    for s in range(25):
        await _record(store, 0, 1, 0, NOW + s * 1000, budget=(1, 10))
    fields = sorted(int(f[2:]) for f in await store.client.hkeys(budget_key))
    last = (NOW + 24_000) // 1000
    assert fields == list(range(last - 9, last + 1))


async def test_corrupt_budget_key_does_not_fail_the_report(store: Store) -> None:
    """A budget key of another type, or a non-integer bucket, is replaced; the report goes through."""
    budget_key = store.keys.retry_budget("svc")
    await store.client.set(budget_key, "junk")
    await _record(store, 0, 1, 0, NOW, budget=(2, 10))
    assert await store.client.hget(budget_key, f"q:{NOW // 1000}") == b"2"
    await store.client.hset(budget_key, f"q:{NOW // 1000}", "x")
    await _record(store, 0, 1, 0, NOW, budget=(4, 10))
    assert await store.client.hget(budget_key, f"q:{NOW // 1000}") == b"4"


@pytest.mark.parametrize("budget", [(-1, 10), (1, 0), (1, 3601), ("x", 10)])
async def test_bad_budget_arguments_get_error_replies(
    store: Store, budget: tuple[object, object]
) -> None:
    """Budget arguments out of range are refused before anything is written."""
    keys = [*_keys(store), store.keys.retry_budget("svc")]
    args: list[object] = [
        store.keys.channel("svc", "breaker"), "*", 0, 1, 0, "",
        3, 2, 10_000, 0, 4, 10_000, KEY_TTL_MS, NOW, *budget,
    ]  # fmt: skip
    with pytest.raises(ScriptError):
        await store.run("breaker_record", keys, args)
    assert await store.client.exists(*keys) == 0
