"""Typed service interfaces against a real loopback service, on each backend."""

from __future__ import annotations

from typing import Any, List, Optional  # noqa: UP035 - the seed's spelling

import pytest
from pydantic import BaseModel, ValidationError

from msfw_redis import (
    CircuitOpenError,
    HTTPMethod,
    InvalidRequestError,
    ServiceClientError,
    circuit_breaker,
    retry_on_failure,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


class User(BaseModel):
    id: int
    name: str
    email: str
    active: bool = True


class CreateUserRequest(BaseModel):
    name: str
    email: str


class UpdateUserRequest(BaseModel):
    name: Optional[str] = None  # noqa: UP045 - the seed's spelling
    email: Optional[str] = None  # noqa: UP045
    active: Optional[bool] = None  # noqa: UP045


@service_interface("user-service", "/api/v1")
class UserService:
    """Type-safe user service interface (the seed's, verbatim)."""

    @service_call("user-service", HTTPMethod.GET, "/users/{user_id}")
    async def get_user(self, user_id: int) -> User:
        """Get user by ID with automatic type validation."""

    @service_call("user-service", HTTPMethod.POST, "/users")
    async def create_user(self, user_data: CreateUserRequest) -> User:
        """Create a new user."""

    @service_call("user-service", HTTPMethod.PUT, "/users/{user_id}")
    async def update_user(self, user_id: int, user_data: UpdateUserRequest) -> User:
        """Update a user."""

    @service_call("user-service", HTTPMethod.GET, "/users")
    async def list_users(self, limit: int = 20, active: bool = True) -> List[User]:  # noqa: UP006
        """List users with pagination and filtering."""

    @service_call("user-service", HTTPMethod.DELETE, "/users/{user_id}")
    async def delete_user(self, user_id: int) -> None:
        """Delete a user."""


JOHN = {"id": 123, "name": "John", "email": "john@example.com", "active": True}
JANE = {"id": 7, "name": "Jane Doe", "email": "jane@example.com", "active": True}


@pytest.fixture
def users(http_service: ScriptedService) -> ScriptedService:
    http_service.script("/api/v1/users/123", Step(200, json=JOHN))
    http_service.script("/api/v1/users", Step(200, json=[JOHN, JANE]))
    return http_service


async def test_seed_basic_interface(
    make_sdk: Any, users: ScriptedService, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed: 'Basic Type-Safe Interface' usage, with the default SDK."""
    make_sdk(services_for(users, "user-service"))
    user_service = UserService()

    user = await user_service.get_user(123)
    print(f"User: {user.name} ({user.email})")

    users_ = await user_service.list_users(limit=50, active=True)
    print(f"Found {len(users_)} active users")

    users.script("/api/v1/users", Step(201, json=JANE))
    new_user = await user_service.create_user(
        CreateUserRequest(name="Jane Doe", email="jane@example.com")
    )

    assert capsys.readouterr().out == "User: John (john@example.com)\nFound 2 active users\n"
    assert isinstance(user, User) and user.id == 123
    assert all(isinstance(u, User) for u in users_)
    assert new_user == User(**JANE)
    get_list, post = users.requests("/api/v1/users")
    assert get_list.query == [("limit", "50"), ("active", "true")]
    assert post.method == "POST"
    assert post.json() == {"name": "Jane Doe", "email": "jane@example.com"}


async def test_update_and_delete(make_sdk: Any, users: ScriptedService) -> None:
    """PUT sends the model as JSON; DELETE -> None accepts an empty body."""
    sdk = make_sdk(services_for(users, "user-service"))
    svc = UserService(sdk=sdk)
    updated = await svc.update_user(123, UpdateUserRequest(name="John Smith"))
    assert updated.id == 123
    put = users.requests("/api/v1/users/123")[0]
    assert put.json() == {"name": "John Smith", "email": None, "active": None}
    users.script("/api/v1/users/123", Step(204))
    assert await svc.delete_user(123) is None


@service_interface("catalog", "/v1")
class Catalog:
    @service_call("catalog", HTTPMethod.GET, "/items/{item_id}/tags/{tag}")
    async def tagged(
        self,
        item_id: str,
        tag: str,
        page: int | None = None,
        kinds: list[str] | None = None,
        fresh: bool = False,
    ) -> dict[str, Any]:
        """Awkward path values and query shapes."""

    @service_call("catalog", HTTPMethod.POST, "/items")
    async def create(self, payload: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """A dict body on POST."""


async def test_path_query_and_body_mapping(make_sdk: Any, http_service: ScriptedService) -> None:
    """Path parameters are percent-encoded; None is omitted; lists repeat; bools are lower-case."""
    http_service.script("/v1/items/a%20b%2Fc%C3%BC/tags/x%3Fy", Step(200, json={"ok": True}))
    http_service.script("/v1/items", Step(201, json={"id": 1}))
    sdk = make_sdk(services_for(http_service, "catalog"))
    cat = Catalog(sdk=sdk)
    assert await cat.tagged("a b/cü", "x?y", kinds=["new", "sale"], fresh=True) == {"ok": True}
    req = http_service.requests("/v1/items/a%20b%2Fc%C3%BC/tags/x%3Fy")[0]
    assert req.query == [("kinds", "new"), ("kinds", "sale"), ("fresh", "true")]
    assert await cat.create({"name": "ünï", "n": 1}, dry_run=True) == {"id": 1}
    post = http_service.requests("/v1/items")[0]
    assert post.json() == {"name": "ünï", "n": 1}
    assert post.query == [("dry_run", "true")]


async def test_wrong_argument_type_fails_before_io(make_sdk: Any, users: ScriptedService) -> None:
    """An argument that does not fit its annotation is refused without a request."""
    sdk = make_sdk(services_for(users, "user-service"))
    svc = UserService(sdk=sdk)
    with pytest.raises(InvalidRequestError, match="user_id"):
        await svc.get_user("not-a-number")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="user_data"):
        await svc.create_user({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        await svc.get_user()  # type: ignore[call-arg]
    assert users.hits() == 0


async def test_malformed_response_raises_validation_error(
    make_sdk: Any, users: ScriptedService
) -> None:
    """A response that does not match the return annotation raises pydantic's ValidationError."""
    users.script("/api/v1/users/123", Step(200, json={"id": "abc", "name": 5}))
    sdk = make_sdk(services_for(users, "user-service"))
    with pytest.raises(ValidationError):
        await UserService(sdk=sdk).get_user(123)
    users.script("/api/v1/users", Step(200, json={"not": "a list"}))
    with pytest.raises(ValidationError):
        await UserService(sdk=sdk).list_users()


class Order(BaseModel):
    id: int
    status: str


class CreateOrderRequest(BaseModel):
    user_id: int
    items: list[dict[str, int]]
    total: int


@service_interface("order-service", "/api/v1")
class OrderService:
    """Order service with the seed's resilience decorators (retry inside the breaker)."""

    @circuit_breaker(failure_threshold=3, recovery_timeout=30.0)
    @retry_on_failure(max_attempts=2, delay=0.5, backoff=2.0)
    @service_call("order-service", HTTPMethod.POST, "/orders")
    async def create_order(self, order_data: CreateOrderRequest) -> Order:
        """Create order with circuit breaker and retry protection."""

    @retry_on_failure(max_attempts=3, delay=1.0)
    @service_call("order-service", HTTPMethod.PUT, "/orders/{order_id}/status")
    async def update_order_status(self, order_id: int, status: str) -> Order:
        """Update order status with retry logic."""


@service_interface("order-service", "/api/v1")
class OrderServiceOtherOrder:
    """The same decorators stacked the other way round."""

    @service_call("order-service", HTTPMethod.PUT, "/orders/{order_id}/status")
    @retry_on_failure(max_attempts=3, delay=1.0)
    @circuit_breaker(failure_threshold=3, recovery_timeout=30.0)
    async def update_order_status(self, order_id: int, status: str) -> Order:
        """Update order status."""


async def test_seed_advanced_interface(make_sdk: Any, http_service: ScriptedService) -> None:
    """Seed: retries per retry_on_failure, and a per-method fleet-wide breaker."""
    http_service.script("/api/v1/orders", Step(503), Step(201, json={"id": 1, "status": "new"}))
    http_service.script(
        "/api/v1/orders/5/status", Step(503), Step(503), Step(200, json={"id": 5, "status": "paid"})
    )
    sdk = make_sdk(services_for(http_service, "order-service"))
    order_service = OrderService(sdk=sdk)
    # An explicit retry_on_failure opts the POST in: 503, then 201.
    order = await order_service.create_order(
        CreateOrderRequest(user_id=123, items=[{"product_id": 456, "quantity": 2}], total=2000)
    )
    assert order == Order(id=1, status="new")
    assert http_service.hits("/api/v1/orders") == 2
    # PUT retries up to max_attempts=3: 503, 503, 200.
    assert (await order_service.update_order_status(5, "paid")).status == "paid"
    assert http_service.hits("/api/v1/orders/5/status") == 3
    # The per-method breaker: 3 failed create_order calls open it for the fleet.
    http_service.script("/api/v1/orders", Step(500))
    for _ in range(3):
        with pytest.raises(ServiceClientError):
            await order_service.create_order(CreateOrderRequest(user_id=1, items=[], total=0))
    other_replica = OrderService(sdk=make_sdk(services_for(http_service, "order-service")))
    with pytest.raises(CircuitOpenError) as refused:
        await other_replica.create_order(CreateOrderRequest(user_id=1, items=[], total=0))
    assert refused.value.endpoint == "OrderService.create_order"


async def test_decorators_stacked_in_another_order(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Decorators below @service_call configure the same call."""
    http_service.script(
        "/api/v1/orders/9/status", Step(503), Step(503), Step(200, json={"id": 9, "status": "ok"})
    )
    sdk = make_sdk(services_for(http_service, "order-service"))
    svc = OrderServiceOtherOrder(sdk=sdk)
    assert (await svc.update_order_status(9, "ok")).status == "ok"
    assert http_service.hits("/api/v1/orders/9/status") == 3
    http_service.script("/api/v1/orders/9/status", Step(500))
    for _ in range(3):
        with pytest.raises(ServiceClientError):
            await svc.update_order_status(9, "x")
    with pytest.raises(CircuitOpenError):
        await svc.update_order_status(9, "x")


@service_interface("user-service", "/api/v2")
class UserServiceV2:
    @service_call("user-service", HTTPMethod.GET, "/users/{user_id}")
    async def get_user(self, user_id: int) -> User:
        """v2 of get_user."""


@service_interface("user-service", "/api/v1")
class UserServiceV1:
    @service_call("user-service", HTTPMethod.GET, "/users/{user_id}")
    async def get_user(self, user_id: int) -> User:
        """v1 of get_user."""


async def test_seed_versioning_fallback(make_sdk: Any, users: ScriptedService) -> None:
    """Seed: 'Service Versioning' — v2 fails (not deployed), v1 answers."""
    make_sdk(services_for(users, "user-service"))
    v1_user_service = UserServiceV1()
    v2_user_service = UserServiceV2()

    async def get_user_with_fallback(user_id: int) -> User:
        try:
            return await v2_user_service.get_user(user_id)
        except ServiceClientError:
            return await v1_user_service.get_user(user_id)

    assert (await get_user_with_fallback(123)).name == "John"
    assert users.hits("/api/v2/users/123") == 1


def test_definition_errors() -> None:
    """Bad templates and names fail when the class is defined."""
    with pytest.raises(InvalidRequestError, match="not parameters"):

        class Broken:
            @service_call("svc", HTTPMethod.GET, "/x/{missing}")
            async def m(self, other: int) -> None: ...

    with pytest.raises(InvalidRequestError, match="method"):
        service_call("svc", "FETCH", "/x")
    with pytest.raises(ValueError, match="service name"):
        service_interface("bad name")
