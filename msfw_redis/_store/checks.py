"""Start-up checks of the Redis server: settings that silently break the library's promises.

Each finding is logged once per process and server as a WARNING that names the risk and
the fix. The checks only read (``INFO``, ``CONFIG GET``); a server or ACL that does not
allow one skips it (logged at DEBUG), since the library works without them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["MIN_REDIS_VERSION", "check_server", "findings"]

logger = logging.getLogger("msfw_redis.store")

#: The oldest Redis the scripts are written for (``redis.setresp``-free Lua 5.1, 6.2 commands).
MIN_REDIS_VERSION = (6, 2)

_warned: set[tuple[str, str]] = set()


def findings(info: dict[str, Any], policy: str | None) -> list[tuple[str, str]]:
    """``(check, message)`` for every risk in ``INFO`` fields and ``maxmemory-policy``."""
    found: list[tuple[str, str]] = []
    if policy and policy.startswith("allkeys-"):
        found.append((
            "maxmemory-policy",
            f"maxmemory-policy is {policy}: Redis may evict breaker, registry and cache keys "
            "under memory pressure, so an OPEN breaker reads as closed and services vanish; "
            "set maxmemory-policy noeviction (or give the library its own Redis)",
        ))  # fmt: skip
    elif policy and policy.startswith("volatile-"):
        found.append((
            "maxmemory-policy",
            f"maxmemory-policy is {policy}: every key this library writes has a TTL, so "
            "volatile-* evicts them too (an OPEN breaker reads as closed, services vanish); "
            "set maxmemory-policy noeviction",
        ))  # fmt: skip
    if str(info.get("role", "")) == "slave":
        found.append((
            "role",
            "the Redis server is a replica (role:slave): every write is refused (READONLY), "
            "so breakers run locally only; point redis_url at the primary",
        ))  # fmt: skip
    version = str(info.get("redis_version", ""))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if len(parts) == 2 and parts < MIN_REDIS_VERSION:
        need = ".".join(map(str, MIN_REDIS_VERSION))
        found.append((
            "version",
            f"Redis {version} is older than the required {need}: scripts may fail; "
            f"upgrade the server to {need} or later",
        ))  # fmt: skip
    return found


async def check_server(client: aioredis.Redis, *, label: str) -> list[str]:
    """Run the checks against ``client`` and log each new finding once; returns them."""
    info: dict[str, Any] = {}
    policy: str | None = None
    try:
        info = dict(await client.info("server"))
        info.update(await client.info("replication"))
    except Exception as exc:  # a restricted ACL or an old server: skip the check
        logger.debug("start-up check INFO skipped on %s: %r", label, exc)
    try:
        reply: dict[Any, Any] = dict(await client.config_get("maxmemory-policy"))
        value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
        policy = value.decode() if isinstance(value, bytes) else value
    except Exception as exc:
        logger.debug("start-up check CONFIG GET skipped on %s: %r", label, exc)
    messages: list[str] = []
    for check, message in findings(info, policy):
        messages.append(message)
        if (label, check) in _warned:
            continue
        _warned.add((label, check))
        logger.warning("Redis store %s: %s", label, message)
    return messages
