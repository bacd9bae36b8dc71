"""Fleet-wide limits through the SDK and the decorators, on each backend."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest

from msfw_redis import (
    BulkheadConfig,
    BulkheadFullError,
    ConfigurationError,
    RateLimitConfig,
    RateLimitedError,
    bulkhead,
    circuit_breaker,
    rate_limited,
)


async def test_bulkhead_is_shared_by_replicas(make_sdk: Any) -> None:
    """Two SDKs share one bulkhead of 2: the third concurrent call is refused without running."""
    a, b = make_sdk(), make_sdk()
    gate = asyncio.Event()
    ran = 0

    async def work() -> None:
        nonlocal ran
        ran += 1
        await gate.wait()

    in_a = bulkhead(2, name="bh-shared", sdk=a)(work)
    in_b = bulkhead(2, name="bh-shared", sdk=b)(work)
    first = [asyncio.create_task(in_a()), asyncio.create_task(in_b())]
    while ran < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(BulkheadFullError) as err:
        await in_b()
    assert (err.value.limit, err.value.in_flight) == (2, 2)
    assert ran == 2
    gate.set()
    await asyncio.gather(*first)
    await in_a()  # permits came back
    assert ran == 3


async def test_bulkhead_waiter_is_woken_by_release(make_sdk: Any) -> None:
    """With max_wait, a caller waiting on a full bulkhead runs once another replica releases."""
    a, b = make_sdk(), make_sdk()
    hold = asyncio.Event()

    async def held() -> str:
        await hold.wait()
        return "held"

    async def quick() -> str:
        return "quick"

    blocker = asyncio.create_task(bulkhead(1, name="bh-wait", sdk=a)(held)())
    while a.limits.bulkhead("bh-wait", BulkheadConfig(max_concurrent_calls=1)).held == 0:
        await asyncio.sleep(0.01)
    await b.start()
    waiter = asyncio.create_task(bulkhead(1, max_wait=30.0, name="bh-wait", sdk=b)(quick)())
    in_b = b.limits.bulkhead("bh-wait", BulkheadConfig(max_concurrent_calls=1, max_wait=30.0))
    for _ in range(1000):  # until the waiter was refused once and is waiting (a no-hang bound)
        if in_b.stats.waited:
            break
        await asyncio.sleep(0.01)
    assert in_b.stats.waited == 1 and not waiter.done()
    hold.set()
    assert await blocker == "held"
    assert await waiter == "quick"
    assert in_b.stats.acquired == 1


async def test_bulkhead_refusal_is_not_a_breaker_failure(make_sdk: Any) -> None:
    """@circuit_breaker stacked outside @bulkhead does not count a refusal as a failure."""
    sdk = make_sdk()
    hold = asyncio.Event()

    async def work() -> None:
        await hold.wait()

    guarded = circuit_breaker(failure_threshold=1, name="bh-breaker", sdk=sdk)(
        bulkhead(1, name="bh-breaker", sdk=sdk)(work)
    )
    running = asyncio.create_task(guarded())
    await asyncio.sleep(0.05)
    for _ in range(3):
        with pytest.raises(BulkheadFullError):
            await guarded()
    hold.set()
    await running
    await guarded()  # not CircuitOpenError: the refusals were no failures


async def test_rate_limited_shared_key_and_retry_after(make_sdk: Any) -> None:
    """Two replicas share key 'acct-1' at 2 per minute: the third call gets retry_after."""
    a, b = make_sdk(), make_sdk()
    calls = 0

    async def send() -> None:
        nonlocal calls
        calls += 1

    in_a = rate_limited(2, per=60.0, key="acct-1", sdk=a)(send)
    in_b = rate_limited(2, per=60.0, key="acct-1", sdk=b)(send)
    await in_a()
    await in_b()
    with pytest.raises(RateLimitedError) as err:
        await in_a()
    assert 0 < err.value.retry_after <= 30.0
    assert err.value.limit == "call"
    assert calls == 2


async def test_rate_limited_waits_for_its_slot(make_sdk: Any) -> None:
    """With max_wait a refused call sleeps until its slot and then runs."""
    sdk = make_sdk()
    fn = rate_limited(20, burst=1, max_wait=5.0, key="wait-key", sdk=sdk)(_noop)
    await fn()
    await fn()
    limiter = sdk.limits.rate_limiter(
        "wait-key", "call", RateLimitConfig(rate=20, burst=1, max_wait=5.0)
    )
    assert limiter.stats.admitted == 2
    assert limiter.stats.slept >= 1


async def _noop() -> None:
    return None


async def test_breaker_and_rate_limit_compose_either_order(make_sdk: Any) -> None:
    """Both stacking orders refuse with RateLimitedError and never open the breaker."""
    sdk = make_sdk()
    for i, outside in enumerate((True, False)):
        rl = rate_limited(1, per=60.0, key=f"order-{i}", sdk=sdk)
        cb = circuit_breaker(failure_threshold=1, name=f"order-{i}", sdk=sdk)
        fn = cb(rl(_noop)) if outside else rl(cb(_noop))
        await fn()
        for _ in range(2):
            with pytest.raises(RateLimitedError):
                await fn()
        with pytest.raises(RateLimitedError):
            await fn()  # still a rate refusal, not CircuitOpenError


async def test_retry_after_gate_closes_one_endpoint_fleet_wide(make_sdk: Any) -> None:
    """A 429 Retry-After seen by one replica closes that endpoint on another, not others."""
    a, b = make_sdk(), make_sdk()
    await a.start()
    await b.start()
    await b.limits.gate.remaining("orders", "/x")  # b's mirror is warm before the 429
    window = await a.limits.gate.observe("orders", "/x", 429, {"Retry-After": "5"})
    assert window == 5.0
    for _ in range(100):
        if await b.limits.gate.remaining("orders", "/x") > 0:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(RateLimitedError) as err:
        await b.limits.gate.check("orders", "/x")
    assert err.value.retry_after > 0
    assert err.value.limit == "retry-after"
    await b.limits.gate.check("orders", "/y")
    c = make_sdk()  # a cold replica loads the gate on first use
    await c.start()
    with pytest.raises(RateLimitedError):
        await c.limits.gate.check("orders", "/x")
    assert "/x" in b.limits.state("orders").retry_after


async def test_retry_after_date_is_measured_against_redis_time(
    make_sdk: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Retry-After HTTP-date with no Date header closes the endpoint for its distance
    from Redis's clock: this replica's wall clock, an hour ahead here, plays no part
    (with it the date would be long past and nothing would close)."""
    sdk = make_sdk()
    await sdk.start()
    server_now = sdk.limits.store.server_now_ms() / 1000.0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    until = email.utils.formatdate(server_now + 30.0, usegmt=True)
    window = await sdk.limits.gate.observe("svc", "/a", 429, {"Retry-After": until})
    assert window is not None
    assert 25.0 <= window <= 30.0  # whole seconds in the date, less the time since
    assert await sdk.limits.gate.remaining("svc", "/a") > 20.0


async def test_retry_after_never_invented(make_sdk: Any) -> None:
    """429 without Retry-After, or a 500 with one, closes nothing."""
    sdk = make_sdk()
    await sdk.start()
    assert await sdk.limits.gate.observe("svc", "/a", 429, {}) is None
    assert await sdk.limits.gate.observe("svc", "/a", 500, {"Retry-After": "9"}) is None
    assert await sdk.limits.gate.observe("svc", "/a", 503, {"retry-after": "junk"}) is None
    await sdk.limits.gate.check("svc", "/a")
    assert await sdk.limits.gate.observe("svc", "/a", 503, {"retry-after": "1"}) == 1.0


async def test_retry_after_capped_by_config(make_sdk: Any) -> None:
    """retry_after_max caps the window a huge Retry-After would set."""
    sdk = make_sdk(retry_after_max=2.0)
    await sdk.start()
    assert await sdk.limits.gate.observe("svc", "/a", 429, {"Retry-After": "86400"}) == 2.0
    assert await sdk.limits.gate.remaining("svc", "/a") > 0


async def test_retry_budget_refuses_past_minimum(make_sdk: Any) -> None:
    """With no requests, the budget grants exactly min_per_second x 10 retries."""
    sdk = make_sdk()
    budget = sdk.limits.retry_budget("svc", ratio=0.2, min_per_second=0.5)
    assert budget is not None
    granted = [await budget.allow_retry() for _ in range(8)]
    assert granted == [True] * 5 + [False] * 3
    budget.record_request(100)
    assert await budget.allow_retry()
    assert sdk.limits.state("svc").retry_budget_refused == 3
    assert sdk.limits.retry_budget("svc", ratio=None) is None


def test_sdk_config_validates_limits_fields() -> None:
    """ServiceSDKConfig's limits fields name themselves in errors."""
    from msfw_redis import ServiceSDKConfig

    with pytest.raises(ConfigurationError) as err:
        ServiceSDKConfig(retry_budget_ratio=-1)
    assert err.value.field == "retry_budget_ratio"
    assert ServiceSDKConfig(retry_budget_ratio=None).retry_budget_ratio is None


async def test_retry_budget_leases_tokens_far_from_its_edge(
    make_sdk: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far from the budget's edge, 20 granted retries cost fewer round trips than retries, all counted."""
    from msfw_redis._limits.store import LimitsStore

    calls: list[int] = []
    spend = LimitsStore.budget_spend

    async def counted(self: LimitsStore, *args: Any) -> Any:
        calls.append(args[2])  # retries asked for
        return await spend(self, *args)

    monkeypatch.setattr(LimitsStore, "budget_spend", counted)
    sdk = make_sdk()
    budget = sdk.limits.retry_budget("svc", ratio=0.2, min_per_second=10.0)
    assert budget is not None
    assert all([await budget.allow_retry() for _ in range(20)])
    assert len(calls) < 20  # leased: most retries took no round trip
    assert max(calls) > 1
    assert budget.last is not None
    assert budget.last.retries >= 20  # every retry made was counted in the fleet window
