"""Retries users expect, against a real loopback service on each backend."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from msfw_redis import (
    HTTPMethod,
    ServiceTimeoutError,
    retry_on_failure,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import FakeSleep, services_for


class Order(BaseModel):
    id: int


async def test_default_statuses_retry_500_for_get(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """With the default retry_statuses a GET answered 500, 500, 200 succeeds on attempt 3."""
    http_service.script("/orders", Step(500), Step(500), Step(200, json=[{"id": 1}]))
    sdk = make_sdk(services_for(http_service, "order-service"))
    result = await sdk.call_service("order-service", "/orders", retry_attempts=3)
    assert (result.success, result.attempts) == (True, 3)
    assert http_service.hits("/orders") == 3


async def test_sdk_retries_keep_the_idempotency_rule(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A POST answered 503 is not retried by the SDK's implicit retries."""
    http_service.script("/orders", Step(503), Step(201, json={"id": 1}))
    sdk = make_sdk(services_for(http_service, "order-service"))
    result = await sdk.call_service("order-service", "/orders", method="POST", json={})
    assert (result.success, result.status_code, result.attempts) == (False, 503, 1)
    assert http_service.hits("/orders") == 1


async def test_429_with_retry_after_is_retried_after_that_wait(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep
) -> None:
    """A 429 whose Retry-After fits is retried, waiting at least what the server asked."""
    http_service.script("/x", Step(429, headers={"Retry-After": "2"}), Step(200, json={"ok": True}))
    sdk = make_sdk(services_for(http_service, "svc"))
    result = await sdk.call_service("svc", "/x")
    assert (result.success, result.attempts) == (True, 2)
    assert fake_sleep.waits and fake_sleep.waits[0] >= 2.0


async def test_429_without_retry_after_is_not_retried(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A 429 that does not say when to come back is returned at once."""
    http_service.script("/x", Step(429), Step(200))
    sdk = make_sdk(services_for(http_service, "svc"))
    result = await sdk.call_service("svc", "/x")
    assert (result.status_code, result.attempts) == (429, 1)


async def test_429_whose_retry_after_exceeds_the_deadline_is_not_retried(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep
) -> None:
    """A 429 asking for 20 s is returned at once when the call's deadline is 5 s."""
    http_service.script("/x", Step(429, headers={"Retry-After": "20"}), Step(200))
    sdk = make_sdk(services_for(http_service, "svc"))
    result = await sdk.call_service("svc", "/x", deadline=5.0)
    assert (result.status_code, result.attempts) == (429, 1)
    assert fake_sleep.waits == []


async def test_retry_on_failure_opts_a_post_in(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """@retry_on_failure(max_attempts=2) on a POST retries a 503, as the seed implies."""
    http_service.script("/api/v1/orders", Step(503), Step(201, json={"id": 7}))
    sdk = make_sdk(services_for(http_service, "order-service"))

    @service_interface("order-service")
    class OrderService:
        @retry_on_failure(max_attempts=2, delay=0.5, backoff=2.0)
        @service_call("order-service", HTTPMethod.POST, "/api/v1/orders")
        async def create_order(self, order_data: dict[str, Any]) -> Order:
            """Create an order."""
            raise NotImplementedError

    order = await OrderService(sdk=sdk).create_order({"item": 1})
    assert order.id == 7
    assert http_service.hits("/api/v1/orders") == 2


async def test_retry_on_failure_opts_a_post_in_on_timeouts(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """@retry_on_failure on a POST retries a read timeout too: two attempts are made."""
    http_service.script("/orders", Step(200, delay=1.0, json={"id": 1}))
    sdk = make_sdk(services_for(http_service, "order-service", timeout=0.2))

    @service_interface("order-service")
    class OrderService:
        @retry_on_failure(max_attempts=2, delay=0.0)
        @service_call("order-service", HTTPMethod.POST, "/orders")
        async def create_order(self, order_data: dict[str, Any]) -> Order:
            """Create an order."""
            raise NotImplementedError

    with pytest.raises(ServiceTimeoutError) as info:
        await OrderService(sdk=sdk).create_order({"item": 1})
    # Counted by the pipeline: the server may not have read the second request yet.
    assert info.value.attempts == 2


async def test_set_testing_makes_retry_waits_zero(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep
) -> None:
    """set_testing(True) makes every retry wait 0 s, Retry-After included; False restores."""
    from msfw_redis.testing import set_testing

    http_service.script("/x", Step(503, headers={"Retry-After": "3"}), Step(503), Step(200))
    sdk = make_sdk(services_for(http_service, "svc"))
    set_testing(True)
    try:
        assert (await sdk.call_service("svc", "/x")).success
    finally:
        set_testing(False)
    assert fake_sleep.waits == [0.0, 0.0]
    http_service.script("/y", Step(503, headers={"Retry-After": "3"}), Step(200))
    assert (await sdk.call_service("svc", "/y")).success
    assert fake_sleep.waits[2] >= 3.0


def test_set_testing_shortens_health_intervals() -> None:
    """In test mode a 30 s health interval becomes the short test interval."""
    from msfw_redis._testmode import TESTING_HEALTH_INTERVAL, health_interval
    from msfw_redis.testing import set_testing

    set_testing(True)
    try:
        assert health_interval(30.0) == TESTING_HEALTH_INTERVAL
    finally:
        set_testing(False)
    assert health_interval(30.0) == 30.0
