"""Turning a store URL (or a ready-made client) into ``redis.asyncio`` clients.

Supported URLs: ``redis://``, ``rediss://`` (TLS), ``unix://`` and ``memory://[name]``.
``memory://`` is fakeredis with Lua, in this process: the zero-setup default. Every
``memory://`` URL with the same name shares one in-process server, so two SDKs in one
process see the same breakers, as two replicas would on a real Redis.

Clients are built with a per-operation socket timeout and **no** client-side retries:
a dead or hung Redis must cost one ``redis_op_timeout``, never seconds of hidden retries.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._store.errors import redact_url

__all__ = [
    "DEFAULT_STORE_URL",
    "ENV_REDIS_URL",
    "create_client",
    "create_pubsub_client",
    "resolve_url",
]

ENV_REDIS_URL = "MSFW_REDIS_URL"
DEFAULT_STORE_URL = "memory://"
_SCHEMES = ("redis://", "rediss://", "unix://", "memory://")

_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def resolve_url(url: str | None) -> str:
    """The store URL to use: the explicit one, else ``$MSFW_REDIS_URL``, else ``memory://``."""
    if url is None:
        url = os.environ.get(ENV_REDIS_URL) or DEFAULT_STORE_URL
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigurationError(
            f"invalid redis_url {shown!r}: expected one of {', '.join(_SCHEMES)}",
            field="redis_url",
        )
    return url


def _memory_server(url: str) -> Any:
    import fakeredis

    name = url[len("memory://") :] or "default"
    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = fakeredis.FakeServer()
            _memory_servers[name] = server
        return server


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def create_client(url: str, *, op_timeout: float) -> aioredis.Redis:
    """A command client for ``url`` whose every operation gives up after ``op_timeout`` s."""
    if url.startswith("memory://"):
        import fakeredis

        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=_memory_server(url))
        return client
    return aioredis.Redis.from_url(
        url,
        socket_timeout=op_timeout,
        socket_connect_timeout=op_timeout,
        retry=_no_retry(),
        retry_on_error=[],
        health_check_interval=0,
        client_name="msfw-redis",
    )


def create_pubsub_client(url: str, *, op_timeout: float) -> aioredis.Redis:
    """A client for the one long-lived subscriber connection of a process.

    Reads on it block for as long as no event arrives, so it has no socket read
    timeout; connecting is still bounded, and a periodic PING finds dead peers.
    """
    if url.startswith("memory://"):
        return create_client(url, op_timeout=op_timeout)
    return aioredis.Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=op_timeout,
        socket_keepalive=True,
        retry=_no_retry(),
        retry_on_error=[],
        health_check_interval=5,
        client_name="msfw-redis-events",
    )
