"""The seed document's communication examples, run almost verbatim on a loopback service.

Each test keeps the seed's code shape; the only changes are the imports (msfw_redis),
a loopback address for the services, and asserts on what the example prints.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from msfw_redis import (
    CircuitBreakerConfig,
    CircuitOpenError,
    ServiceClientError,
    ServiceSDK,
    ServiceSDKConfig,
    ServiceTimeoutError,
    call_service,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for

SERVICES = ("order-service", "user-service", "payment-service")


@pytest.fixture
def config(http_service: ScriptedService) -> dict[str, Any]:
    http_service.script("/orders", Step(200, json=[{"id": 1}, {"id": 2}, {"id": 3}]))
    http_service.script("/orders/123", Step(200, json={"id": 123}))
    http_service.script("/users", Step(200, json=[{"id": 1, "name": "Ann"}]))
    http_service.script("/users/123", Step(200, json={"id": 123, "name": "John Smith"}))
    http_service.script("/payments", Step(201, json={"status": "paid"}))
    return services_for(http_service, *SERVICES)


async def test_simple_service_calls(
    make_sdk: Any, config: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed: 'Simple Service Calls'."""
    make_sdk(config)
    # Basic service call
    result = await call_service(
        service="order-service", endpoint="/orders", method="GET", timeout=30.0, retry_attempts=3
    )

    if result.success:
        orders = result.data
        print(f"Retrieved {len(orders)} orders")
    else:
        print(f"Service call failed: {result.error}")
        print(f"HTTP Status: {result.status_code}")
    assert capsys.readouterr().out == "Retrieved 3 orders\n"


async def test_http_methods(
    make_sdk: Any, config: dict[str, Any], http_service: ScriptedService
) -> None:
    """Seed: 'HTTP Methods'."""
    sdk = make_sdk(config)
    users = await sdk.get_from_service(
        service_name="user-service", path="/users", params={"limit": 50, "active": True}
    )
    new_user = await sdk.post_to_service(
        service_name="user-service",
        path="/users",
        data={"name": "John Doe", "email": "john@example.com"},
    )
    updated_user = await sdk.put_to_service(
        service_name="user-service", path="/users/123", data={"name": "John Smith"}
    )
    await sdk.delete_from_service(service_name="user-service", path="/users/123")

    assert users == [{"id": 1, "name": "Ann"}]
    assert new_user == [{"id": 1, "name": "Ann"}]  # the loopback answers /users alike
    assert updated_user == {"id": 123, "name": "John Smith"}
    get_req, post_req = http_service.requests("/users")
    assert get_req.query == [("limit", "50"), ("active", "true")]
    assert post_req.json() == {"name": "John Doe", "email": "john@example.com"}
    assert [r.method for r in http_service.requests("/users/123")] == ["PUT", "DELETE"]
    assert http_service.requests("/users/123")[0].json() == {"name": "John Smith"}


async def test_circuit_breaker_configuration_and_states(
    make_sdk: Any,
    config: dict[str, Any],
    http_service: ScriptedService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seed: 'Circuit Breaker Configuration' and 'Circuit Breaker States'."""
    sdk = make_sdk(config)
    http_service.script("/orders/123", Step(503))
    circuit_config = CircuitBreakerConfig(
        failure_threshold=5,  # Open after 5 failures
        success_threshold=2,  # Close after 2 successes
        timeout=60.0,  # Wait 60s before retry
        retry_attempts=3,  # Retry failed requests
        retry_delay=1.0,  # Initial retry delay
        retry_backoff=2.0,  # Backoff multiplier
        request_timeout=30.0,  # Request timeout
    )
    client = sdk.get_client("order-service", circuit_config=circuit_config)

    for _ in range(3):
        try:
            await client.get("/orders/123")
            print("Order retrieved successfully")
        except CircuitOpenError:
            print("Circuit breaker is open - service temporarily unavailable")
        except ServiceClientError as e:
            print(f"Service error: {e}")

    circuit_states = client.get_circuit_state()
    for endpoint, state in circuit_states.items():
        print(f"Circuit {endpoint}: {state.state} (failures: {state.failure_count})")

    out = capsys.readouterr().out.splitlines()
    # 3 attempts per call: the 2nd call's 2nd attempt is the 5th failure and trips the
    # breaker, so its 3rd attempt is refused; the 3rd call is refused outright.
    assert out[0].startswith("Service error: order-service /orders/123 answered 503")
    assert out[1] == "Circuit breaker is open - service temporarily unavailable"
    assert out[2] == "Circuit breaker is open - service temporarily unavailable"
    assert out[3] == "Circuit order-service: open (failures: 0)"
    assert http_service.hits("/orders/123") == 5


async def test_circuit_breaker_context_manager(make_sdk: Any, config: dict[str, Any]) -> None:
    """Seed: 'Circuit Breaker with Context Manager'."""
    sdk = make_sdk(config)

    async def pay() -> Any:
        async with sdk.service_client("payment-service") as client:
            try:
                response = await client.post(
                    "/payments", json={"amount": 1000, "currency": "USD", "card_token": "tok_123"}
                )
                return response
            except CircuitOpenError:
                return {"error": "Payment service temporarily unavailable"}

    response = await pay()
    assert isinstance(response, httpx.Response)
    assert (response.status_code, response.json()) == (201, {"status": "paid"})
    await sdk._hub.get("payment-service").control("open")
    assert await pay() == {"error": "Payment service temporarily unavailable"}


async def test_service_specific_error_handling(
    make_sdk: Any, config: dict[str, Any], http_service: ScriptedService
) -> None:
    """Seed: 'Service-Specific Error Handling' (404 -> None, timeout -> backup)."""
    sdk = make_sdk(config)
    http_service.script("/users/404", Step(404))
    http_service.script("/users/slow", Step(200, delay=1.0))

    async def get_user(path: str) -> Any:
        return await sdk.get_from_service("user-service", path, timeout=0.1, retry_attempts=1)

    async def robust_service_call(path: str) -> Any:
        try:
            return await get_user(path)
        except CircuitOpenError:
            return "cache"
        except ServiceTimeoutError:
            return "backup"
        except ServiceClientError as e:
            if e.status_code == 404:
                return None
            raise

    assert await robust_service_call("/users/404") is None
    assert await robust_service_call("/users/slow") == "backup"
    assert await robust_service_call("/users/123") == {"id": 123, "name": "John Smith"}


async def test_global_error_handling(
    make_sdk: Any, config: dict[str, Any], http_service: ScriptedService
) -> None:
    """Seed: 'Global Error Handling' with a structured logger and metrics stand-ins."""
    sdk = make_sdk(config)
    http_service.script("/payments", Step(500))
    logged: list[dict[str, Any]] = []
    alerts: list[str] = []
    metrics: dict[str, int] = {}

    class Logger:
        def error(self, msg: str, **fields: Any) -> None:
            logged.append({"msg": msg, **fields})

    logger = Logger()

    async def send_alert(text: str) -> None:
        alerts.append(text)

    @sdk.error_handler
    async def handle_service_errors(error: ServiceClientError, context: dict[str, Any]) -> None:
        """Global error handler for all service calls."""
        service_name = context.get("service_name")
        endpoint = context.get("endpoint")
        logger.error(
            "Service call failed",
            service=service_name,
            endpoint=endpoint,
            error=str(error),
            status_code=error.status_code,
        )
        metrics[f"service_call_error.{service_name}"] = (
            metrics.get(f"service_call_error.{service_name}", 0) + 1
        )
        if service_name in ["payment-service", "auth-service"]:
            await send_alert(f"Critical service {service_name} is failing")

    result = await sdk.call_service(
        "payment-service", "/payments", method="POST", data={"amount": 1}
    )
    assert not result.success
    assert logged == [
        {
            "msg": "Service call failed",
            "service": "payment-service",
            "endpoint": "/payments",
            "error": result.error,
            "status_code": 500,
        }
    ]
    assert metrics == {"service_call_error.payment-service": 1}
    assert alerts == ["Critical service payment-service is failing"]


async def test_middleware_examples(
    make_sdk: Any,
    config: dict[str, Any],
    http_service: ScriptedService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seed: 'Request/Response Middleware'."""
    sdk = make_sdk(config)

    async def get_auth_token() -> str:
        return "s3cret"

    @sdk.middleware
    async def add_auth_header(request: httpx.Request, call_next: Any) -> httpx.Response:
        """Add authentication header to all requests."""
        token = await get_auth_token()
        request.headers["Authorization"] = f"Bearer {token}"
        return await call_next(request)

    @sdk.middleware
    async def log_requests(request: httpx.Request, call_next: Any) -> httpx.Response:
        """Log all service requests."""
        start_time = time.time()
        response = await call_next(request)
        duration = time.time() - start_time
        print(f"Request to {request.url} took {duration:.2f}s")
        return response  # type: ignore[no-any-return]

    await sdk.get_from_service("order-service", "/orders")
    assert http_service.requests("/orders")[0].headers["authorization"] == "Bearer s3cret"
    assert capsys.readouterr().out.startswith(f"Request to {http_service.url}/orders took ")


async def test_batch_with_error_handling(
    make_sdk: Any,
    config: dict[str, Any],
    http_service: ScriptedService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seed: 'Batch Operations' (with plain calls standing in for the typed services)."""
    sdk = make_sdk(config)
    http_service.script("/notifications/unread", Step(503))

    async def get_user_dashboard_data(user_id: int) -> dict[str, Any]:
        results = await sdk.batch_call(
            [
                ("user", sdk.get_from_service("user-service", f"/users/{user_id}")),
                ("orders", sdk.get_from_service("order-service", "/orders")),
                (
                    "notifications",
                    sdk.get_from_service("user-service", "/notifications/unread", retry_attempts=1),
                ),
            ]
        )
        dashboard_data = {}
        for name, result in results.items():
            if result.success:
                dashboard_data[name] = result.data
            else:
                dashboard_data[name] = None
                print(f"Failed to load {name}: {result.error}")
        return dashboard_data

    data = await get_user_dashboard_data(123)
    assert data["user"] == {"id": 123, "name": "John Smith"}
    assert len(data["orders"]) == 3
    assert data["notifications"] is None
    assert (
        "Failed to load notifications: user-service /notifications/unread answered 503"
        in capsys.readouterr().out
    )


async def test_sdk_configuration(redis_url: str, key_prefix: str, config: dict[str, Any]) -> None:
    """Seed: 'SDK Configuration' (plus the store settings we add)."""
    from msfw_redis import set_default_sdk

    sdk_config = ServiceSDKConfig(
        default_timeout=30.0,
        default_retry_attempts=3,
        default_circuit_breaker_enabled=True,
        service_discovery_enabled=True,
        health_check_interval=30.0,
        cache_enabled=True,
        metrics_enabled=True,
        redis_url=redis_url,
        key_prefix=key_prefix,
    )
    sdk = ServiceSDK(config=config, sdk_config=sdk_config)
    try:
        async with sdk:
            assert await sdk.get_from_service("order-service", "/orders/123") == {"id": 123}
            assert sdk.metrics()["calls"] == 1
    finally:
        set_default_sdk(None)
