"""The pipeline across OS processes on a real server: ResilientTransport and the cache step."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from msfw_redis import CircuitBreakerConfig, ResilientTransport, ServiceSDK, ServiceSDKConfig
from msfw_redis.testing import run_in_processes
from tests.distributed import _pipeline_workers as workers

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


def _sdk(url: str, prefix: str, services: dict[str, Any], **extra: Any) -> ServiceSDK:
    config = ServiceSDKConfig(
        redis_url=url,
        key_prefix=prefix,
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        circuit_breaker=CircuitBreakerConfig(failure_threshold=3, timeout=60.0),
        default_retry_attempts=0,
        **extra,
    )
    return ServiceSDK(config={"services": services}, sdk_config=config)


async def test_transport_trips_the_breaker_another_process_sees(
    real_redis_url: str, key_prefix: str
) -> None:
    """Failures through ResilientTransport open order-service's breaker; another process's
    SDK then refuses with CircuitOpenError."""
    sdk = _sdk(real_redis_url, key_prefix, {"order-service": {"host": "orders", "port": 80}})
    sends: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        sends.append(request.url.path)
        return httpx.Response(500)

    async with sdk:
        transport = ResilientTransport(
            sdk=sdk, service="order-service", transport=httpx.MockTransport(origin)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
            statuses = [(await client.get("/orders")).status_code for _ in range(3)]
        await sdk.pipeline.hub.flush()
    assert statuses == [500, 500, 500]
    assert len(sends) == 3
    args = (real_redis_url, key_prefix, "order-service", "127.0.0.1", 9)
    [seen] = run_in_processes(workers.sdk_call_worker, [args], timeout=60)
    assert seen["success"] is False
    assert seen["error_type"] == "CircuitOpenError"


def test_cached_get_through_transport_is_a_hit_for_an_sdk_elsewhere(
    real_redis_url: str, key_prefix: str
) -> None:
    """A GET cached by ResilientTransport in one process answers an SDK call in another."""
    [filled] = run_in_processes(
        workers.transport_get_worker, [(real_redis_url, key_prefix, "order-service")], timeout=60
    )
    assert filled == {"status": 200, "json": {"orders": [1, 2]}, "origin_calls": 1}
    # The reader's base URL points nowhere: only a cache hit can answer it.
    args = (real_redis_url, key_prefix, "order-service", "orders", 8080)
    [read] = run_in_processes(workers.sdk_call_worker, [args], timeout=60)
    assert read == {
        "success": True,
        "error_type": None,
        "from_cache": True,
        "data": {"orders": [1, 2]},
    }


@pytest.mark.parametrize("secret", [None, workers.SECRET], ids=["no-secret", "secret"])
def test_middleware_credentials_keep_cached_calls_apart(
    real_redis_url: str, key_prefix: str, secret: str | None
) -> None:
    """Issue #13 item 1: alice then bob, in two processes, through one cached typed method
    whose credential a middleware sets: bob gets bob's body, never alice's."""
    [alice] = run_in_processes(
        workers.profile_worker, [(real_redis_url, key_prefix, "alice", secret)], timeout=60
    )
    [bob] = run_in_processes(
        workers.profile_worker, [(real_redis_url, key_prefix, "bob", secret)], timeout=60
    )
    assert alice == {"body": {"user": "alice"}, "origin_calls": 1}
    assert bob == {"body": {"user": "bob"}, "origin_calls": 1}
    [again] = run_in_processes(
        workers.profile_worker, [(real_redis_url, key_prefix, "alice", secret)], timeout=60
    )
    # With a secret alice's own entry answers her again; without one nothing is shared.
    assert again == {"body": {"user": "alice"}, "origin_calls": 0 if secret else 1}
