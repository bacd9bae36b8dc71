"""TLS: ``rediss://...?ssl_ca_certs=`` against a TLS-only ``redis-server``.

The CA and server certificate are made per test run with the ``openssl`` CLI (nothing is
committed). A wrong CA fails clearly (``StoreError`` naming the certificate check, no
password in it) and a ``fail_open`` breaker falls back locally, so calls still go out.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from msfw_redis import ServiceSDK, ServiceSDKConfig
from msfw_redis._exceptions import StoreError
from msfw_redis._store.store import Store
from msfw_redis.testing import (
    ENV_REQUIRE_REAL_REDIS,
    RedisServer,
    ScriptedService,
    ServerTLS,
    Step,
    find_server_binary,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PASSWORD = "tls-Passw0rd"


def _unavailable(reason: str) -> None:
    if os.environ.get(ENV_REQUIRE_REAL_REDIS) == "1":
        pytest.fail(f"{reason} (and {ENV_REQUIRE_REAL_REDIS}=1)")
    pytest.skip(reason)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_cert(where: Path, name: str) -> ServerTLS:
    """A self-signed CA ``name`` and a server certificate for 127.0.0.1 signed by it."""
    where.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name} CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=where)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=where)  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt",
             cwd=where)  # fmt: skip
    return ServerTLS(str(where / "server.crt"), str(where / "server.key"), str(where / "ca.crt"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """A TLS-only server with a password, and the path of a CA that did not sign it."""
    if find_server_binary() is None or shutil.which("openssl") is None:
        _unavailable("needs redis-server and openssl")
    base = tmp_path_factory.mktemp("tls")
    files = make_ca_and_cert(base / "good", "msfw-test")
    wrong = make_ca_and_cert(base / "wrong", "someone-else")
    server = RedisServer(tls=files, extra_args=["--requirepass", PASSWORD])
    try:
        server.start()
    except RuntimeError as exc:
        if "tls" in str(exc).lower():
            _unavailable(f"this redis-server lacks TLS: {exc}")
        raise
    try:
        yield server, wrong.ca_file
    finally:
        server.cleanup()


def _with_password(url: str) -> str:
    return url.replace("rediss://", f"rediss://:{PASSWORD}@", 1)


async def test_rediss_with_ca_runs_scripts(tls_server: tuple[RedisServer, str]) -> None:
    """rediss:// with ssl_ca_certs: scripts load and run over TLS."""
    server, _ = tls_server
    assert server.url.startswith("rediss://")
    store = Store.from_url(_with_password(server.url), key_prefix="tls", op_timeout=2.0)
    try:
        await store.start()
        assert await store.ping() is True
        assert await store.run("clock_now", [], []) > 0
    finally:
        await store.aclose()


async def test_wrong_ca_fails_clearly_and_breaker_falls_back(
    tls_server: tuple[RedisServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A CA that did not sign the server: StoreError naming certificate verification;
    fail_open calls still reach the origin through the local breaker."""
    server, wrong_ca = tls_server
    url = _with_password(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={wrong_ca}")
    store = Store.from_url(url, key_prefix="tls", op_timeout=2.0)
    try:
        with pytest.raises(StoreError) as caught:
            await store.start()
    finally:
        await store.aclose()
    message = str(caught.value)
    assert "certificate" in message.lower() and "verif" in message.lower(), message
    assert PASSWORD not in message

    caplog.set_level(logging.DEBUG)
    with ScriptedService() as svc:
        svc.script("/ok", Step(json={"ok": True}))
        sdk = ServiceSDK(
            config={"services": {"origin": {"host": "127.0.0.1", "port": svc.port}}},
            sdk_config=ServiceSDKConfig(
                redis_url=url, key_prefix="tls", store_failure_policy="fail_open"
            ),
        )
        async with sdk:
            results = [await sdk.call_service("origin", "/ok") for _ in range(5)]
        assert [r.success for r in results] == [True] * 5
        assert svc.hits("/ok") == 5
        assert [s.local for s in sdk.circuit_states() if s.service == "origin"] == [True]
    assert PASSWORD not in caplog.text
