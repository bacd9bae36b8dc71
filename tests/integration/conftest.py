"""Fixtures for SDK-level tests: an SDK wired to a loopback service on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from msfw_redis import ServiceSDK, ServiceSDKConfig, set_default_sdk
from msfw_redis.testing import ScriptedService


class FakeSleep:
    """Records retry waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def make_sdk(
    redis_url: str, key_prefix: str, fake_sleep: FakeSleep
) -> AsyncIterator[Callable[..., ServiceSDK]]:
    """Build SDKs on this test's store; all are closed afterwards."""
    made: list[ServiceSDK] = []

    def make(config: Any = None, sleep: Any = fake_sleep, **sdk_kwargs: Any) -> ServiceSDK:
        base: dict[str, Any] = {
            "redis_url": redis_url,
            "key_prefix": key_prefix,
            "redis_op_timeout": 2.0,
            "service_discovery_enabled": False,
        }
        base.update(sdk_kwargs)
        sdk = ServiceSDK(config=config, sdk_config=ServiceSDKConfig(**base), sleep=sleep)
        made.append(sdk)
        return sdk

    set_default_sdk(None)
    yield make
    for sdk in made:
        await sdk.close()
    set_default_sdk(None)


def services_for(svc: ScriptedService, *names: str, **extra: Any) -> dict[str, Any]:
    """A settings dict pointing every name at the loopback service."""
    return {"services": {n: {"host": svc.host, "port": svc.port, **extra} for n in names}}
