"""One ServiceSDK used from several event loops in turn (issue #16, item 1)."""

from __future__ import annotations

import asyncio
import uuid

from msfw_redis import ServiceSDK, ServiceSDKConfig
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


def _sdk(redis_url: str, svc: ScriptedService) -> ServiceSDK:
    cfg = ServiceSDKConfig(
        redis_url=redis_url,
        key_prefix=f"loops-{uuid.uuid4().hex[:8]}",
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
    )
    return ServiceSDK(config=services_for(svc, "orders"), sdk_config=cfg)


def test_same_sdk_across_five_asyncio_runs(redis_url: str, http_service: ScriptedService) -> None:
    http_service.script("/ping", *[Step(200, json={"ok": True})] * 5)
    sdk = _sdk(redis_url, http_service)
    results = [asyncio.run(sdk.call_service("orders", "/ping", "GET")) for _ in range(5)]
    asyncio.run(sdk.close())
    assert [r.success for r in results] == [True] * 5
    assert http_service.hits("/ping") == 5
