"""The retry budget counts requests from the breaker's report, once per call."""

from __future__ import annotations

from typing import Any

import pytest

from msfw_redis._store.store import Store
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for

# Also on a real Cluster and Sentinel: the breaker's report writes the budget hash in the
# same script, so both keys must share the service's slot.
pytestmark = pytest.mark.topologies


async def _budget_counts(store: Store, service: str) -> tuple[int, int]:
    """(requests, retries) in the budget hash of ``service``, over every bucket it holds."""
    raw = await store.client.hgetall(store.keys.retry_budget(service))
    q = sum(int(v) for f, v in raw.items() if f.startswith(b"q:"))
    r = sum(int(v) for f, v in raw.items() if f.startswith(b"r:"))
    return q, r


async def test_calls_without_retries_are_counted_by_the_breaker_report(
    make_sdk: Any, http_service: ScriptedService, store: Store
) -> None:
    """20 successful calls leave 20 requests in the budget, with no retry decision made."""
    http_service.script("/ok", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "svc"))
    for _ in range(20):
        assert (await sdk.call_service("svc", "/ok")).success
    await sdk.close()  # flushes the breaker's batched successes, and their requests
    assert await _budget_counts(store, "svc") == (20, 0)
    assert sdk.limits.state("svc").retry_budget_granted == 0


async def test_retried_calls_count_one_request_each(
    make_sdk: Any, http_service: ScriptedService, store: Store
) -> None:
    """10 calls of 3 attempts each: 10 requests (not 30, not 20) and 20 retries counted."""
    http_service.script("/busy", Step(503))
    sdk = make_sdk(services_for(http_service, "svc", failure_threshold=1_000))
    for _ in range(10):
        r = await sdk.call_service("svc", "/busy", retry_attempts=3)
        assert r.status_code == 503
    assert http_service.hits("/busy") == 30
    await sdk.close()
    requests, retries = await _budget_counts(store, "svc")
    assert requests == 10
    assert retries >= 20  # granted ones, plus any reserved lease tokens left unused
    assert sdk.limits.state("svc").retry_budget_granted == 20


async def test_calls_without_breaker_are_counted_in_process_once(
    make_sdk: Any, http_service: ScriptedService, store: Store
) -> None:
    """With the breaker off, the budget's own batched count carries each call once."""
    http_service.script("/ok", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "svc", circuit_breaker_enabled=False))
    for _ in range(7):
        assert (await sdk.call_service("svc", "/ok")).success
    await sdk.close()  # flushes the budget's pending request count
    assert await _budget_counts(store, "svc") == (7, 0)
