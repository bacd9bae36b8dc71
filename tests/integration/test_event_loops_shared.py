"""A module-level ServiceSDK shared by pytest-asyncio tests, each on its own event loop
(issue #16, item 1: the second test used to fail with ``Event loop is closed``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from msfw_redis import ServiceSDK, ServiceSDKConfig
from msfw_redis.testing import ScriptedService, Step
from tests.conftest import _no_real_server
from tests.integration.conftest import services_for

pytestmark = pytest.mark.filterwarnings(
    "error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning"
)

_loops: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(
    scope="module",
    params=["fakeredis", pytest.param("real", marks=pytest.mark.real_redis)],
)
def shared(
    request: pytest.FixtureRequest, real_redis_url_or_none: str | None
) -> Iterator[tuple[ServiceSDK, ScriptedService]]:
    """One SDK for the whole module, made outside any event loop."""
    if request.param == "fakeredis":
        url = f"memory://loops-{uuid.uuid4().hex}"
    elif real_redis_url_or_none is None:
        _no_real_server("no redis-server/valkey-server binary and no MSFW_TEST_REDIS_URL")
    else:
        url = real_redis_url_or_none
    with ScriptedService() as svc:
        svc.script("/ping", Step(200, json={"ok": True}))
        cfg = ServiceSDKConfig(
            redis_url=url, key_prefix=f"shared-{uuid.uuid4().hex[:8]}", redis_op_timeout=2.0
        )
        sdk = ServiceSDK(config=services_for(svc, "orders"), sdk_config=cfg)
        yield sdk, svc
        asyncio.run(sdk.close())


async def _call(shared: tuple[ServiceSDK, ScriptedService]) -> None:
    sdk, svc = shared
    _loops.append(asyncio.get_running_loop())
    before = svc.hits("/ping")
    result = await sdk.call_service("orders", "/ping")
    assert result.success and result.data == {"ok": True}
    assert svc.hits("/ping") == before + 1


async def test_first_loop(shared: tuple[ServiceSDK, ScriptedService]) -> None:
    await _call(shared)


async def test_second_loop(shared: tuple[ServiceSDK, ScriptedService]) -> None:
    await _call(shared)
    # pytest-asyncio gave each test its own loop: this one is not the first's.
    assert _loops[-1] is not _loops[-2]


async def test_third_loop(shared: tuple[ServiceSDK, ScriptedService]) -> None:
    await _call(shared)
    assert _loops[-1] is not _loops[-2]
