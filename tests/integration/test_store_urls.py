"""Store URLs beyond redis://: a unix socket on a real server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store
from msfw_redis.testing import find_server_binary

pytestmark = pytest.mark.real_redis


async def test_unix_socket_url(tmp_path: Path) -> None:
    """unix:///path connects, loads the scripts and runs them."""
    binary = find_server_binary()
    if binary is None:
        pytest.skip("needs a redis-server/valkey-server binary")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary.path, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "server did not create its socket"
            time.sleep(0.02)
        store = Store.from_url(f"unix://{sock}", op_timeout=2.0)
        try:
            await store.start()
            assert reply_int(await store.run("clock_now", [], [])) > 0
            assert store.clock.synced
        finally:
            await store.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
