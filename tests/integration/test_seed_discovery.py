"""The seed's discovery, registration and health examples, through the SDK."""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional  # noqa: UP035 - the seed's spelling

import pytest
from pydantic import BaseModel

from msfw_redis import (
    ConfigurationError,
    HTTPMethod,
    cached_service_call,
    circuit_breaker,
    health_check,
    retry_on_failure,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step, free_port


async def test_register_and_discover(make_sdk: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Seed: 'Initialize the SDK', 'Register Services', 'Service Discovery'."""
    sdk = make_sdk(service_discovery_enabled=True)
    await sdk.register_current_service(
        service_name="user-service",
        version="1.0.0",
        host="localhost",
        port=8000,
        health_check_path="/health",
    )
    await sdk.register_external_service(
        service_name="payment-service",
        host="payments.example.com",
        port=443,
        protocol="https",
        health_check_path="/health",
        version="2.0",
    )
    await sdk.register_external_service(
        service_name="notification-service",
        host="notifications.internal",
        port=8080,
        metadata={"region": "us-west-2", "team": "platform", "environment": "production"},
    )

    services = await sdk.discover_services("user-service")
    for service in services:
        print(f"Service: {service.name}@{service.host}:{service.port}")
        print(f"Status: {service.status}")
        print(f"Version: {service.version}")
    instance = await sdk.get_service_instance("user-service")
    if instance:
        print(f"Using service at {instance.host}:{instance.port}")

    assert capsys.readouterr().out.splitlines() == [
        "Service: user-service@localhost:8000",
        "Status: healthy",
        "Version: 1.0.0",
        "Using service at localhost:8000",
    ]
    (payment,) = await sdk.discover_services("payment-service")
    assert payment.url == "https://payments.example.com:443"
    (notify,) = await sdk.discover_services("notification-service")
    assert notify.metadata == {
        "region": "us-west-2",
        "team": "platform",
        "environment": "production",
    }
    assert await sdk.discover_services("payment-service", version="1.0") == []


async def test_unroutable_host_is_refused(make_sdk: Any) -> None:
    """0.0.0.0 is not an address anyone can call."""
    sdk = make_sdk()
    with pytest.raises(ConfigurationError, match="host"):
        await sdk.register_current_service("svc", "1", host="0.0.0.0", port=8000)


async def test_close_deregisters(make_sdk: Any) -> None:
    """Closing an SDK removes its instances at once."""
    a, b = make_sdk(), make_sdk()
    await a.register_current_service("svc", "1", host="127.0.0.1", port=9001)
    assert len(await b.discover_services("svc")) == 1
    await a.close()
    # Gone from Redis at once; b's cached view follows by event, so read afresh here.
    assert await b._registry.discover("svc", fresh=True) == []


async def test_calls_route_through_the_registry_round_robin(make_sdk: Any) -> None:
    """With discovery on, calls go to registered instances in round robin."""
    with ScriptedService() as one, ScriptedService() as two:
        for svc in (one, two):
            svc.script("/ping", Step(200, json="pong"))
        sdk = make_sdk(service_discovery_enabled=True)
        for svc in (one, two):
            await sdk.register_external_service("pinger", host=svc.host, port=svc.port)
        for _ in range(10):
            assert await sdk.get_from_service("pinger", "/ping") == "pong"
        assert (one.hits("/ping"), two.hits("/ping")) == (5, 5)


async def test_retry_moves_to_another_instance(make_sdk: Any) -> None:
    """A retry after a connect error may go to another registered instance."""
    with ScriptedService() as live:
        live.script("/ping", Step(200, json="pong"))
        sdk = make_sdk(service_discovery_enabled=True)
        await sdk.register_external_service("pinger", host="127.0.0.1", port=free_port())
        await sdk.register_external_service("pinger", host=live.host, port=live.port)
        results = [await sdk.call_service("pinger", "/ping", retry_attempts=3) for _ in range(4)]
        assert all(r.success for r in results)
        assert any(r.attempts > 1 for r in results)


async def test_health_monitoring_seed(make_sdk: Any) -> None:
    """Seed: 'Health Monitoring' — checks, the overview and change callbacks."""
    with ScriptedService() as svc:
        svc.script("/health", Step(200, json={"ok": True}))
        sdk = make_sdk(
            service_discovery_enabled=True,
            health_check_interval=0.2,
            health_check_timeout=0.5,
            health_failure_threshold=1,
            health_success_threshold=1,
        )
        changes: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()

        @sdk.on_service_health_change
        async def handle_health_change(service_name: str, is_healthy: bool) -> None:
            await changes.put((service_name, is_healthy))

        await sdk.register_external_service(
            "user-service", host=svc.host, port=svc.port, health_check_path="/health"
        )
        is_healthy = await sdk.health_check_service("user-service")
        assert is_healthy
        health_status = await sdk.get_all_service_health()
        assert health_status["user-service"] is True
        svc.script("/health", Step(503))
        while True:
            name, healthy = await asyncio.wait_for(changes.get(), 10)
            if name == "user-service" and not healthy:
                break
        assert await sdk.health_check_service("user-service") is False
        svc.script("/health", Step(200))
        while True:
            name, healthy = await asyncio.wait_for(changes.get(), 10)
            if name == "user-service" and healthy:
                break


class Order(BaseModel):
    id: int
    status: str


class CreateOrderRequest(BaseModel):
    user_id: int
    items: list[dict[str, int]]
    total: int


@service_interface("order-service", "/api/v1")
class OrderService:
    """Order service with full resilience patterns (the seed's, verbatim)."""

    @circuit_breaker(failure_threshold=3, recovery_timeout=30.0)
    @retry_on_failure(max_attempts=2, delay=0.5, backoff=2.0)
    @service_call("order-service", HTTPMethod.POST, "/orders")
    async def create_order(self, order_data: CreateOrderRequest) -> Order:
        """Create order with circuit breaker and retry protection."""

    @cached_service_call(ttl=300.0)  # Cache for 5 minutes
    @service_call("order-service", HTTPMethod.GET, "/orders/{order_id}")
    async def get_order(self, order_id: int) -> Order:
        """Get order with caching."""

    @health_check(interval=30.0, timeout=5.0, failure_threshold=3)
    @service_call("order-service", HTTPMethod.GET, "/orders/search")
    async def search_orders(
        self,
        user_id: Optional[int] = None,  # noqa: UP045
        status: Optional[str] = None,  # noqa: UP045
        limit: int = 20,
    ) -> List[Order]:  # noqa: UP006
        """Search orders with health monitoring."""

    @retry_on_failure(max_attempts=3, delay=1.0)
    @service_call("order-service", HTTPMethod.PUT, "/orders/{order_id}/status")
    async def update_order_status(self, order_id: int, status: str) -> Order:
        """Update order status with retry logic."""


async def test_seed_advanced_interface_with_all_decorators(make_sdk: Any) -> None:
    """Seed: 'Advanced Service Interface with Resilience' end to end."""
    with ScriptedService() as svc:
        svc.script("/api/v1/orders", Step(201, json={"id": 1, "status": "new"}))
        svc.script("/api/v1/orders/1", Step(200, json={"id": 1, "status": "new"}))
        svc.script("/api/v1/orders/search", Step(200, json=[{"id": 1, "status": "new"}]))
        svc.script(
            "/api/v1/orders/1/status", Step(503), Step(200, json={"id": 1, "status": "paid"})
        )
        sdk = make_sdk({"services": {"order-service": {"host": svc.host, "port": svc.port}}})
        order_service = OrderService()
        order = await order_service.create_order(
            CreateOrderRequest(user_id=123, items=[{"product_id": 456, "quantity": 2}], total=2000)
        )
        assert order.id == 1
        assert await order_service.get_order(1) == await order_service.get_order(1)
        assert svc.hits("/api/v1/orders/1") == 1
        found = await order_service.search_orders(user_id=123, status="new")
        assert found[0].status == "new"
        assert svc.requests("/api/v1/orders/search")[0].query == [
            ("user_id", "123"),
            ("status", "new"),
            ("limit", "20"),
        ]
        assert (await order_service.update_order_status(1, "paid")).status == "paid"
        await sdk.start()
        assert "order-service" in sdk._health.enrolled()  # @health_check enrolled it
        assert sdk._health.enrolled()["order-service"].interval == 30.0


def test_health_check_on_plain_function_needs_a_service() -> None:
    """On a plain function, @health_check must be told which service to watch."""

    async def f() -> None:
        return None

    with pytest.raises(TypeError, match="service="):
        health_check()(f)
    assert health_check(service="inventory")(f) is f


async def test_instances_with_an_open_breaker_are_skipped(make_sdk: Any) -> None:
    """With scope="instance", a failing instance's breaker opens and discovery skips it."""
    from msfw_redis import CircuitBreakerConfig

    with ScriptedService() as good, ScriptedService() as bad:
        good.script("/x", Step(200, json=1))
        bad.script("/x", Step(500))
        sdk = make_sdk(
            service_discovery_enabled=True,
            circuit_breaker=CircuitBreakerConfig(
                scope="instance", failure_threshold=2, timeout=60.0
            ),
        )
        for svc in (good, bad):
            await sdk.register_external_service("pair", host=svc.host, port=svc.port)
        results = [await sdk.call_service("pair", "/x", retry_attempts=1) for _ in range(10)]
        assert bad.hits("/x") == 2
        assert good.hits("/x") == 8
        assert sum(r.success for r in results) == 8


@service_interface("versioned", "/api", version="2.0")
class VersionedV2:
    @service_call("versioned", HTTPMethod.GET, "/who")
    async def who(self) -> str:
        """Which build answered."""


async def test_interface_version_routes_to_matching_instances(make_sdk: Any) -> None:
    """@service_interface(version="2.0") only reaches instances registered as 2.0."""
    with ScriptedService() as v1, ScriptedService() as v2:
        v1.script("/api/who", Step(200, json="v1"))
        v2.script("/api/who", Step(200, json="v2"))
        sdk = make_sdk(service_discovery_enabled=True)
        await sdk.register_external_service("versioned", host=v1.host, port=v1.port, version="1.0")
        await sdk.register_external_service("versioned", host=v2.host, port=v2.port, version="2.0")
        svc = VersionedV2(sdk=sdk)
        assert {await svc.who() for _ in range(6)} == {"v2"}
        assert v1.hits() == 0


async def test_sdk_config_switches(make_sdk: Any, http_service: ScriptedService) -> None:
    """default_circuit_breaker_enabled, cache_enabled and metrics_enabled do what they say."""
    from tests.integration.conftest import services_for

    http_service.script("/boom", Step(500))
    http_service.script("/data", Step(200, json=1))
    settings = services_for(http_service, "svc", cache_enabled=True, failure_threshold=1)
    off = make_sdk(
        settings, default_circuit_breaker_enabled=False, cache_enabled=False, metrics_enabled=False
    )
    for _ in range(3):
        assert (await off.call_service("svc", "/boom", retry_attempts=1)).status_code == 500
    assert http_service.hits("/boom") == 3  # never refused: no breaker
    assert off._hub.breakers() == []
    for _ in range(2):
        assert not (await off.call_service("svc", "/data")).from_cache
    assert http_service.hits("/data") == 2
    assert off.metrics() == {}
    on = make_sdk(settings)
    await on.call_service("svc", "/data")
    assert (await on.call_service("svc", "/data")).from_cache
    assert on.metrics()["calls"] == 2
    assert on.metrics()["cache_hits"] >= 1


async def test_toml_only_services_report_their_real_health(make_sdk: Any) -> None:
    """Services known only from the settings ([services.x] host/port, nothing registered)
    are probed at that address: a running one is True, a dead one False."""
    with ScriptedService() as svc:
        svc.script("/health", Step(200, json={"ok": True}))
        config = {
            "services": {
                "live-service": {"host": svc.host, "port": svc.port},
                "dead-service": {"host": "127.0.0.1", "port": free_port()},
            }
        }
        sdk = make_sdk(config=config, health_check_timeout=1.0)
        await sdk.start()
        assert await sdk.health_check_service("live-service") is True
        assert svc.hits("/health") == 1
        assert await sdk.health_check_service("dead-service") is False
        health = await sdk.get_all_service_health()
        assert (health["live-service"], health["dead-service"]) == (True, False)
        states = await sdk.get_service_health_states()
        assert (states["live-service"], states["dead-service"]) == ("healthy", "unhealthy")
