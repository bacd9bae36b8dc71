"""Start-up checks: eviction policy, replica role and version, each one WARNING."""

from __future__ import annotations

import logging

import pytest
import redis

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._store.checks import findings
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, find_server_binary, free_port


@pytest.mark.parametrize(
    ("info", "policy", "check"),
    [
        ({}, "allkeys-lru", "maxmemory-policy"),
        ({}, "volatile-ttl", "maxmemory-policy"),
        ({"role": "slave"}, "noeviction", "role"),
        ({"redis_version": "5.0.7"}, "noeviction", "version"),
    ],
)
def test_each_risk_is_found(info: dict[str, str], policy: str, check: str) -> None:
    """Each risky setting yields exactly one finding, naming the fix."""
    found = findings(info, policy)
    assert [c for c, _ in found] == [check]
    assert "noeviction" in found[0][1] or "primary" in found[0][1] or "upgrade" in found[0][1]


def test_volatile_policy_says_every_key_has_a_ttl() -> None:
    """The volatile-* warning explains that our keys all have a TTL, so they are evicted."""
    ((_, message),) = findings({}, "volatile-lru")
    assert "every key this library writes has a TTL" in message


def test_safe_server_has_no_findings() -> None:
    """A primary on 7.0 with noeviction has nothing to warn about."""
    assert findings({"role": "master", "redis_version": "7.0.15"}, "noeviction") == []


@pytest.mark.real_redis
@pytest.mark.skipif(find_server_binary() is None, reason="needs a server binary")
async def test_real_server_warns_once_per_risk(caplog: pytest.LogCaptureFixture) -> None:
    """allkeys-lru on a primary: one WARNING at the first start, none at the second."""
    caplog.set_level(logging.WARNING, logger="msfw_redis.store")
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("maxmemory-policy", "allkeys-lru")
        for _ in range(2):
            store = Store.from_url(server.url)
            await store.start()
            await store.aclose()
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(messages) == 1
        assert "allkeys-lru" in messages[0]


async def test_real_replica_is_refused_at_start_up() -> None:
    """A plain URL to a replica fails at start-up, naming the primary or Sentinel instead."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        store = Store.from_url(server.url)
        try:
            with pytest.raises(ConfigurationError, match="replica"):
                await store.start()
        finally:
            await store.aclose()
