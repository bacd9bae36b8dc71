"""Fleet limits on real calls: bulkhead, rate limit, Retry-After and retry budget in the pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

from msfw_redis import BulkheadConfig, BulkheadFullError, RateLimitedError
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


async def test_full_bulkhead_sends_nothing_and_is_no_breaker_failure(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """get_client(bulkhead_config=) of 1: a second concurrent call fails fast, unsent, breaker closed."""
    http_service.script("/slow", Step(200, json=1, delay=0.5))
    sdk = make_sdk(services_for(http_service, "svc", failure_threshold=1))
    client = sdk.get_client("svc", bulkhead_config=BulkheadConfig(max_concurrent_calls=1))
    first = asyncio.create_task(sdk.call_service("svc", "/slow"))
    while http_service.hits("/slow") == 0:
        await asyncio.sleep(0.01)
    refused = await sdk.call_service("svc", "/slow")
    assert not refused.success
    assert isinstance(refused.exception, BulkheadFullError)
    assert http_service.hits("/slow") == 1
    assert (await first).success
    assert (await sdk.call_service("svc", "/slow")).success  # not CircuitOpenError
    assert client.get_circuit_state()  # the breaker exists and took no failure
    assert all(s.state == "closed" for s in client.get_circuit_state().values())


async def test_toml_rate_limit_refuses_without_sending(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """rate_limit = "2/m" in settings: the third call gets RateLimitedError and is not sent."""
    http_service.script("/x", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "svc", rate_limit="2/m"))
    for _ in range(2):
        assert (await sdk.call_service("svc", "/x")).success
    result = await sdk.call_service("svc", "/x")
    assert isinstance(result.exception, RateLimitedError)
    assert result.exception.retry_after > 0
    assert http_service.hits("/x") == 2


async def test_429_closes_endpoint_for_other_replicas_only(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A 429 Retry-After through one SDK stops /a on another SDK; /b still goes."""
    http_service.script("/a", Step(429, headers={"Retry-After": "60"}), Step(200, json=1))
    http_service.script("/b", Step(200, json=1))
    a = make_sdk(services_for(http_service, "svc"))
    b = make_sdk(services_for(http_service, "svc"))
    assert (await a.call_service("svc", "/a", retry_attempts=1)).status_code == 429
    result = await b.call_service("svc", "/a")
    assert isinstance(result.exception, RateLimitedError)
    assert result.exception.limit == "retry-after"
    assert http_service.hits("/a") == 1
    assert (await b.call_service("svc", "/b")).success


async def test_retry_budget_ends_retries_with_last_response(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """With a budget of 0.5 retries/s and no ratio, 5 retries are granted, then calls stop retrying."""
    http_service.script("/busy", Step(503))
    sdk = make_sdk(
        services_for(
            http_service,
            "svc",
            retry_budget_ratio=0.0,
            retry_budget_min_per_second=0.5,
            circuit_breaker_enabled=False,  # 503s would open it; the budget is under test
        )
    )
    results = [await sdk.call_service("svc", "/busy", retry_attempts=3) for _ in range(5)]
    assert all(r.status_code == 503 for r in results)
    # 5 first attempts + 5 granted retries (10 s x 0.5/s); every further retry refused.
    assert http_service.hits("/busy") == 10
    assert sdk.metrics()["retry_budget_refusals"] >= 3
