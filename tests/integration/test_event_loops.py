"""One ServiceSDK used from several event loops in turn (issue #16, item 1).

These are sync tests that call ``asyncio.run`` themselves (a new loop each time), the
way a script or a CLI command uses the SDK; the last part shares one module-level SDK
between pytest-asyncio's function-scoped loops.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from msfw_redis import CircuitOpenError, ResilientTransport, ServiceSDK, ServiceSDKConfig
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for

pytestmark = pytest.mark.filterwarnings(
    "error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning"
)


def _sdk(redis_url: str, svc: ScriptedService, **service: Any) -> ServiceSDK:
    cfg = ServiceSDKConfig(
        redis_url=redis_url,
        key_prefix=f"loops-{uuid.uuid4().hex[:8]}",
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        health_check_interval=0.2,
        health_failure_threshold=1,
        health_success_threshold=1,
    )
    return ServiceSDK(config=services_for(svc, "orders", **service), sdk_config=cfg)


def test_same_sdk_across_five_asyncio_runs(redis_url: str, http_service: ScriptedService) -> None:
    http_service.script("/ping", Step(200, json={"ok": True}))
    sdk = _sdk(redis_url, http_service)
    results = [asyncio.run(sdk.call_service("orders", "/ping", "GET")) for _ in range(5)]
    asyncio.run(sdk.close())
    assert [r.success for r in results] == [True] * 5
    assert [r.data for r in results] == [{"ok": True}] * 5
    assert http_service.hits("/ping") == 5


def test_breaker_tripped_on_one_loop_is_still_open_on_the_next(
    redis_url: str, http_service: ScriptedService
) -> None:
    http_service.script("/boom", Step(500))
    http_service.script("/data", Step(200, json={"n": 1}))
    sdk = _sdk(redis_url, http_service, failure_threshold=1, cache_enabled=True, retry_attempts=1)

    async def first() -> None:
        assert (await sdk.call_service("orders", "/data")).success
        assert not (await sdk.call_service("orders", "/boom")).success

    async def second() -> tuple[Any, list[str]]:
        result = await sdk.call_service("orders", "/data")
        return result, [s.state for s in sdk.circuit_states() if s.service == "orders"]

    asyncio.run(first())
    refused, state = asyncio.run(second())
    asyncio.run(sdk.close())
    # The breaker is open on the second loop: the cached entry answers, nothing is sent.
    assert refused.success and refused.from_cache and refused.data == {"n": 1}
    assert "open" in state
    assert http_service.hits("/data") == 1


def test_open_breaker_refuses_on_the_next_loop(
    redis_url: str, http_service: ScriptedService
) -> None:
    http_service.script("/boom", Step(500))
    sdk = _sdk(redis_url, http_service, failure_threshold=1, retry_attempts=1)
    assert not asyncio.run(sdk.call_service("orders", "/boom")).success
    refused = asyncio.run(sdk.call_service("orders", "/boom"))
    asyncio.run(sdk.close())
    assert isinstance(refused.exception, CircuitOpenError)
    assert http_service.hits("/boom") == 1


def test_registered_service_and_health_across_loops(
    redis_url: str, http_service: ScriptedService
) -> None:
    http_service.script("/health", Step(200, json={"status": "ok"}))
    http_service.script("/ping", Step(200, json={"ok": True}))
    sdk = _sdk(redis_url, http_service)

    async def use(round_: int) -> tuple[int, bool, str, bool]:
        if round_ == 0:
            await sdk.register_current_service(
                "orders",
                host=http_service.host,
                port=http_service.port,
                health_check_path="/health",
            )
        before = http_service.hits("/health")
        ok = (await sdk.call_service("orders", "/ping")).success
        # The monitor's probe loop runs again on this loop: wait (bounded) for a probe.
        for _ in range(200):
            if http_service.hits("/health") > before:
                break
            await asyncio.sleep(0.05)
        probed = http_service.hits("/health") > before
        status = "unknown"
        for _ in range(200):
            status = (await sdk.get_service_health_states()).get("orders", "unknown")
            if status == "healthy":
                break
            await asyncio.sleep(0.05)
        return len(await sdk.discover_services("orders")), ok, status, probed

    rounds = [asyncio.run(use(i)) for i in range(3)]
    asyncio.run(sdk.close())
    assert rounds == [(1, True, "healthy", True)] * 3


def test_resilient_transport_reused_across_loops(
    redis_url: str, http_service: ScriptedService
) -> None:
    http_service.script("/ping", Step(200, json={"ok": True}))
    sdk = _sdk(redis_url, http_service)
    transport = ResilientTransport(sdk, service="orders")

    async def get() -> int:
        client = httpx.AsyncClient(transport=transport, base_url=http_service.url)
        return (await client.get("/ping")).status_code

    codes = [asyncio.run(get()) for _ in range(3)]

    async def finish() -> None:
        await transport.aclose()
        await sdk.close()

    asyncio.run(finish())
    assert codes == [200] * 3
    assert http_service.hits("/ping") == 3


def test_batched_successes_go_out_when_their_loop_ends(
    redis_url: str, http_service: ScriptedService
) -> None:
    """The end of an asyncio.run sends the breakers' batched successes and stops their
    timers, so no flush is left to fire (or be dropped) while that loop shuts down."""
    from msfw_redis import CircuitBreakerConfig

    http_service.script("/ping", Step(200, json={"ok": True}))
    cfg = ServiceSDKConfig(
        redis_url=redis_url,
        key_prefix=f"loops-{uuid.uuid4().hex[:8]}",
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        circuit_breaker=CircuitBreakerConfig(success_flush_interval=10.0),
    )
    sdk = ServiceSDK(config=services_for(http_service, "orders"), sdk_config=cfg)
    assert asyncio.run(sdk.call_service("orders", "/ping")).success
    [breaker] = sdk.components.hub.breakers()
    # Read from the breaker itself: nothing else says whether its batch was sent.
    assert not breaker.has_pending
    assert not breaker.flush_due
    asyncio.run(sdk.close())
