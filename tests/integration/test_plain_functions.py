"""@service_call and @health_check on plain async functions, as MSFW's own tests use them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from msfw_redis import HTTPMethod, health_check, service_call, set_default_sdk
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


class User(BaseModel):
    id: int
    name: str


@service_call("user-service", HTTPMethod.POST, "/users")
async def create_user(user_data: dict[str, Any]) -> User:
    """Create a user (module level: no self)."""
    raise NotImplementedError


@service_call("user-service", HTTPMethod.GET, "/users/{user_id}")
async def get_user(user_id: int) -> User:
    """Get a user (module level: no self)."""
    raise NotImplementedError


async def test_plain_function_sends_its_first_argument_as_the_body(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A module-level @service_call POST sends its first argument as the JSON body."""
    http_service.script("/users", Step(201, json={"id": 1, "name": "Ann"}))
    set_default_sdk(make_sdk(services_for(http_service, "user-service")))
    user = await create_user({"name": "Ann"})
    assert user == User(id=1, name="Ann")
    [request] = http_service.requests("/users")
    assert request.json() == {"name": "Ann"}


async def test_plain_function_fills_path_parameters(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """A module-level @service_call GET fills its path from its first argument."""
    http_service.script("/users/5", Step(200, json={"id": 5, "name": "Bo"}))
    set_default_sdk(make_sdk(services_for(http_service, "user-service")))
    assert (await get_user(5)).id == 5


def test_health_check_on_a_plain_service_call_takes_its_service() -> None:
    """@health_check above a plain @service_call enrols that call's service."""
    from msfw_redis._interfaces.decorators import meta_of

    @health_check(interval=30.0)
    @service_call("inventory_service", HTTPMethod.GET, "/items")
    async def list_items() -> list[int]:
        """List items."""
        raise NotImplementedError

    assert meta_of(list_items)["health_check"].service == "inventory-service"


def test_health_check_on_a_plain_function_with_service() -> None:
    """@health_check(service=...) on a plain async def is accepted."""

    @health_check(service="ledger-service")
    async def ping() -> None:
        """Ping."""

    assert ping.__name__ == "ping"


def test_health_check_without_a_service_is_refused_at_decoration() -> None:
    """@health_check on a plain async def without service= says what to pass."""
    with pytest.raises(TypeError, match="service="):

        @health_check()
        async def ping() -> None:
            """Ping."""
