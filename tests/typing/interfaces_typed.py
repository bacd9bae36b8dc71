"""Checked by ``mypy --strict`` in tests/unit/test_typing.py: decorated methods keep types."""

from __future__ import annotations

from pydantic import BaseModel

from msfw_redis import (
    HTTPMethod,
    ServiceInterface,
    ServiceSDK,
    circuit_breaker,
    retry_on_failure,
    service_call,
    service_interface,
)


class User(BaseModel):
    id: int
    name: str


@service_interface("user-service", "/api/v1")
class UserService(ServiceInterface):
    @service_call("user-service", HTTPMethod.GET, "/users/{user_id}")
    async def get_user(self, user_id: int) -> User:
        raise NotImplementedError

    @circuit_breaker(failure_threshold=3, recovery_timeout=30.0)
    @retry_on_failure(max_attempts=2, delay=0.5, backoff=2.0)
    @service_call("user-service", HTTPMethod.GET, "/users")
    async def list_users(self, limit: int = 20, active: bool = True) -> list[User]:
        raise NotImplementedError


async def use(sdk: ServiceSDK) -> None:
    service = UserService(sdk=sdk)
    user: User = await service.get_user(123)
    users: list[User] = await service.list_users(limit=5)
    print(user.name, len(users))


@circuit_breaker(failure_threshold=2)
async def plain(x: int) -> str:
    return str(x)


async def use_plain() -> str:
    return await plain(3)
