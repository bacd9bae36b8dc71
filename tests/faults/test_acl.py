"""The minimal ACL in the README: a user with exactly that list runs the library.

The user is created on a private real server with the README's ``ACL SETUSER`` line
(prefix ``acl``); a representative slice (breaker trip and shared state, cache fill and
hit, register and discover, a health check) must pass as that user, and a user missing
EVALSHA gets a NOPERM error that names the command.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from msfw_redis import CircuitBreakerConfig, ServiceSDK, ServiceSDKConfig
from msfw_redis._exceptions import StorePermissionError
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, ScriptedService, Step, find_server_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(
    find_server_binary() is None, reason="needs a redis-server/valkey-server binary"
)

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "acl-Passw0rd"
THRESHOLD = CircuitBreakerConfig().failure_threshold


def readme_acl_line() -> str:
    """The copy-paste ``ACL SETUSER`` line from the README's Reliability section."""
    match = re.search(r"^ACL SETUSER msfw .+$", README.read_text(), re.MULTILINE)
    assert match is not None, "README has no 'ACL SETUSER msfw ...' line"
    return match.group(0)


def acl_args(prefix: str, *, drop: str | None = None) -> list[str]:
    """The README line's rules for ``prefix``, with one ``+command`` rule removed."""
    rules = readme_acl_line().split()[3:]
    rules = [r.replace("msfw:", f"{prefix}:").replace("<password>", PASSWORD) for r in rules]
    if drop is not None:
        assert f"+{drop}" in rules
        rules.remove(f"+{drop}")
    return rules


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def make_user(server: RedisServer, name: str, rules: list[str]) -> str:
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
    finally:
        admin.close()
    return f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"


async def test_minimal_acl_user_runs_breaker_cache_registry_health(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """As the README's minimal user: trip shared, cache hit, register/discover, health ok."""
    url = make_user(server, "msfw", acl_args("acl"))
    caplog.set_level(logging.WARNING)
    with ScriptedService() as svc:
        svc.script("/fail", Step(status=503))
        svc.script("/data", Step(json={"n": 1}, headers={"Cache-Control": "max-age=60"}))
        svc.script("/health", Step(status=200))
        origin = {"host": "127.0.0.1", "port": svc.port}
        services = {"services": {"origin": origin, "data-origin": origin}}
        sdk = ServiceSDK(
            config=services,
            sdk_config=ServiceSDKConfig(redis_url=url, key_prefix="acl", default_retry_attempts=1),
        )
        async with sdk:
            for _ in range(THRESHOLD + 3):
                await sdk.call_service("origin", "/fail")
            states = [s for s in sdk.circuit_states() if s.service == "origin"]
            assert [(s.state, s.local) for s in states] == [("open", False)]
            assert svc.hits("/fail") == THRESHOLD  # the rest were rejected by the OPEN breaker

            first = await sdk.call_service("data-origin", "/data", use_cache=True)
            second = await sdk.call_service("data-origin", "/data", use_cache=True)
            assert (first.success, first.from_cache, second.from_cache) == (True, False, True)
            assert svc.hits("/data") == 1

            await sdk.register_current_service("acl-svc", host="127.0.0.1", port=svc.port)
            found = await sdk.discover_services("acl-svc")
            assert [i.port for i in found] == [svc.port]
            assert await sdk.health_check_service("acl-svc") is True
    text = caplog.text
    assert "NOPERM" not in text and "refuses writes" not in text and "unavailable" not in text
    assert PASSWORD not in text


async def test_user_without_evalsha_gets_noperm_naming_it(server: RedisServer) -> None:
    """Drop +evalsha from the list: the error is NOPERM and names evalsha."""
    url = make_user(server, "noevalsha", acl_args("acl2", drop="evalsha"))
    store = Store.from_url(url, key_prefix="acl2", op_timeout=2.0)
    try:
        with pytest.raises(StorePermissionError) as caught:
            await store.start()  # start-up loads scripts, then measures the clock by EVALSHA
    finally:
        await store.aclose()
    assert "evalsha" in str(caught.value).lower()
    assert PASSWORD not in str(caught.value)
