"""Worker functions for the fleet cache-stats tests (run in spawned processes)."""

from __future__ import annotations

from msfw_redis import ServiceSDK, ServiceSDKConfig


async def cached_calls(url: str, prefix: str, host: str, port: int, paths: list[str]) -> dict:
    """Call ``cat`` once per path (cache on); this process's own cache counts of ``cat``."""
    settings = {"services": {"cat": {"host": host, "port": port, "cache_enabled": True}}}
    config = ServiceSDKConfig(
        redis_url=url, key_prefix=prefix, redis_op_timeout=5.0, service_discovery_enabled=False
    )
    sdk = ServiceSDK(config=settings, sdk_config=config)
    try:
        for path in paths:
            result = await sdk.call_service("cat", path)
            if not result.success:
                raise RuntimeError(f"call to {path} failed: {result.error}")
        counts = sdk.metrics()["services"]["cat"]
    finally:
        await sdk.close()  # flushes this process's deltas
    return {k: v for k, v in counts.items() if k.startswith("cache_")}
