"""Worker functions for the one-name-per-service process test (run in spawned processes)."""

from __future__ import annotations

import asyncio

from msfw_redis import CircuitBreakerConfig, CircuitOpenError, ServiceSDK, ServiceSDKConfig


def _sdk(url: str, prefix: str, name: str, port: int) -> ServiceSDK:
    breaker = CircuitBreakerConfig(failure_threshold=3, timeout=60.0, success_flush_interval=0.0)
    return ServiceSDK(
        config={"services": {name: {"host": "127.0.0.1", "port": port}}},
        sdk_config=ServiceSDKConfig(
            redis_url=url,
            key_prefix=prefix,
            redis_op_timeout=5.0,
            service_discovery_enabled=False,
            default_retry_attempts=1,
            circuit_breaker=breaker,
        ),
    )


def trip(url: str, prefix: str, name: str, port: int) -> list[int | None]:
    """Call ``name`` three times (the service answers 503): the statuses seen."""

    async def run() -> list[int | None]:
        async with _sdk(url, prefix, name, port) as sdk:
            results = [await sdk.call_service(name, "/fail") for _ in range(3)]
            return [r.status_code for r in results]

    return asyncio.run(run())


def refused(url: str, prefix: str, name: str, port: int) -> bool:
    """Whether one call to ``name`` is refused by an open breaker."""

    async def run() -> bool:
        async with _sdk(url, prefix, name, port) as sdk:
            result = await sdk.call_service(name, "/fail")
            return isinstance(result.exception, CircuitOpenError)

    return asyncio.run(run())
