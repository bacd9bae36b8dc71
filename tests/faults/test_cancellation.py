"""No task swallows cancellation: an unclosed SDK lets ``asyncio.run`` return, and
``close()`` returns with Redis hung (SIGSTOP).

Each scenario runs in a subprocess under ``subprocess.run(timeout=...)``: a hang is the
timeout firing, which fails the test. Nothing here asserts on speed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from msfw_redis.testing import RedisServer, ScriptedService, Step, find_server_binary

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

needs_binary = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)

RUNS = 20
#: Far above a normal run (about 1 s); only a hang reaches it.
HANG_TIMEOUT = 60.0

UNCLOSED = textwrap.dedent(
    """
    import asyncio, random, sys
    from msfw_redis import ServiceSDK, ServiceSDKConfig

    async def main(url, port, prefix):
        # Short intervals keep every loop mid-round when asyncio.run cancels it.
        sdk = ServiceSDK(sdk_config=ServiceSDKConfig(
            redis_url=url, key_prefix=prefix, health_check_interval=0.02,
            health_check_timeout=0.5))
        for name in ("orders", "billing", "stock"):
            await sdk.register_current_service(name, host="127.0.0.1", port=port, ttl=0.3)
        await sdk.health_check_service("orders")
        await asyncio.sleep(random.uniform(0.05, 0.6))
        # No sdk.close(): asyncio.run must cancel the SDK's tasks and they must end.

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    print("returned", flush=True)
    """
)

HUNG_CLOSE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from msfw_redis import ServiceSDK, ServiceSDKConfig

    async def main(url, port, pid):
        sdk = ServiceSDK(sdk_config=ServiceSDKConfig(
            redis_url=url, key_prefix="hungclose", health_check_interval=0.05))
        await sdk.register_current_service("orders", host="127.0.0.1", port=port, ttl=0.6)
        await sdk.health_check_service("orders")
        await sdk.call_service("orders", "/health")
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)  # Redis keeps its sockets open and answers nothing
        await sdk.close()
        print("closed", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


def _run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=False,
    )


@pytest.fixture
def health_service() -> Iterator[ScriptedService]:
    with ScriptedService() as svc:
        # A probe that takes a little while, so cancellation often lands mid-probe.
        svc.script("/health", Step(status=200, delay=0.03))
        yield svc


@pytest.mark.parametrize("backend", ["memory", "real"])
def test_unclosed_sdk_lets_asyncio_run_return(
    backend: str,
    tmp_path: Path,
    health_service: ScriptedService,
    real_redis_url: str,
    key_prefix: str,
) -> None:
    """20 of 20 asyncio.run calls with a registered, health-monitored, unclosed SDK return."""
    url = "memory://" if backend == "memory" else real_redis_url
    script = tmp_path / "unclosed.py"
    script.write_text(UNCLOSED)
    hangs = failures = 0
    for _ in range(RUNS):
        try:
            done = _run(script, url, str(health_service.port), key_prefix)
        except subprocess.TimeoutExpired:
            hangs += 1
            continue
        if done.returncode != 0 or "returned" not in done.stdout:
            failures += 1
            print(done.stderr[-2000:])
    assert (hangs, failures) == (0, 0)


@needs_binary
def test_close_returns_with_redis_hung(tmp_path: Path, health_service: ScriptedService) -> None:
    """close() returns when Redis is SIGSTOPped just before it (3 of 3 runs)."""
    script = tmp_path / "hung_close.py"
    script.write_text(HUNG_CLOSE)
    with RedisServer() as server:
        for _ in range(3):
            pid = server.pid
            assert pid is not None
            try:
                done = _run(script, server.url, str(health_service.port), str(pid))
            finally:
                server.resume()
            assert done.returncode == 0, done.stderr[-2000:]
            assert "closed" in done.stdout
