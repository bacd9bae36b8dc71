"""SIGTERM deregisters an instance when the app opts in with deregister_on_signal()."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from msfw_redis import ServiceSDK, ServiceSDKConfig, set_default_sdk

pytestmark = pytest.mark.real_redis

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from msfw_redis import ServiceSDK, ServiceSDKConfig

    async def main() -> None:
        sdk = ServiceSDK(sdk_config=ServiceSDKConfig(redis_url=sys.argv[1], key_prefix=sys.argv[2]))
        await sdk.register_current_service("sig-service", "1.0", host="127.0.0.1", port=9123, ttl=60)
        sdk.deregister_on_signal()
        print("ready", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_sigterm_deregisters_then_terminates(real_redis_url: str, key_prefix: str) -> None:
    """The instance disappears at once (not after its 60 s TTL) and the process ends by SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, real_redis_url, key_prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        sdk = ServiceSDK(
            sdk_config=ServiceSDKConfig(redis_url=real_redis_url, key_prefix=key_prefix)
        )
        try:
            assert len(await sdk.discover_services("sig-service")) == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == -signal.SIGTERM
            instances = await sdk._registry.discover("sig-service", fresh=True)
            assert instances == []
        finally:
            await sdk.close()
            set_default_sdk(None)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
