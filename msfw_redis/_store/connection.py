"""Turning a store URL (or a ready-made client) into ``redis.asyncio`` clients.

Supported URLs: ``redis://``, ``rediss://`` (TLS), ``unix://``, ``memory://[name]``, and,
following the ``limits`` library's conventions,
``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
TLS) and ``redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]``
(``rediss+sentinel://``).
``memory://`` is fakeredis with Lua, in this process: the zero-setup default. Every
``memory://`` URL with the same name shares one in-process server, so two SDKs in one
process see the same breakers, as two replicas would on a real Redis.

Clients are built with a per-operation socket timeout and **no** client-side retries:
a dead or hung Redis must cost one ``redis_op_timeout``, never seconds of hidden retries.
The exception is Cluster, whose client gets a socket timeout well below the op timeout
and one retry, so that redis-py itself sees a node time out, refreshes its slot table
and reaches the promoted replica inside the same operation.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._urls import StoreURL, check_url, parse_url

__all__ = [
    "DEFAULT_STORE_URL",
    "ENV_REDIS_URL",
    "StoreClient",
    "StoreURL",
    "check_url",
    "close_client",
    "create_client",
    "create_pubsub_client",
    "drop_primary_connections",
    "parse_url",
    "prefer_sentinel",
    "resolve_url",
    "sentinel_of",
]

#: A command client: one server (or Sentinel-managed primary), or a Cluster.
StoreClient = aioredis.Redis | RedisCluster

ENV_REDIS_URL = "MSFW_REDIS_URL"
DEFAULT_STORE_URL = "memory://"
#: Fraction of the op timeout a Cluster socket read may take: redis-py must time out,
#: refresh its topology and retry once, all before the store's own op timeout fires.
_CLUSTER_SOCKET_SHARE = 0.4
#: Socket reads and writes of one server (or a Sentinel-managed primary) have no timeout
#: of their own: the store's deadline bounds every operation (``Store._op``; nothing else
#: uses the command client) and forgives a loop stall once (``msfw_redis._deadline``).
#: redis-py's own socket timeout cost a task per command write (``asyncio.wait_for``) and
#: a timer per read, and fired in the same loop turn as a late deadline, which threw away
#: a reply that had arrived during the stall. A cancelled read or write makes redis-py
#: drop that connection, so the protocol never desynchronises.
_SOCKET_TIMEOUT: float | None = None

_memory_servers: dict[str, Any] = {}
#: The Sentinel manager behind each Sentinel-managed client, closed with it.
_sentinels: weakref.WeakKeyDictionary[Any, Sentinel] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()
#: Per Sentinel deployment (master name and sentinel addresses), the sentinel last seen
#: announcing a switch: it knows the new primary, while the others may name the demoted
#: one for a moment (they learn through hello messages, every 2 s). Clients made later
#: (the event bus's, after a switch) ask it first.
_preferred_sentinels: dict[tuple[str, frozenset[tuple[str, int]]], tuple[str, int]] = {}


def resolve_url(url: str | None) -> str:
    """The store URL to use: the explicit one, else ``$MSFW_REDIS_URL``, else ``memory://``."""
    if url is None:
        url = os.environ.get(ENV_REDIS_URL) or DEFAULT_STORE_URL
    return check_url(url)


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


def _cluster(
    parsed: StoreURL, *, socket_timeout: float | None, connect: float, name: str
) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in parsed.nodes],
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.tls,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect,
        # One retry after a topology refresh: enough to follow a failover, and still
        # inside the store's op timeout (the socket timeout is a share of it).
        retry=Retry(NoBackoff(), 1),
        # A shard that is down must not stop the others from serving.
        require_full_coverage=False,
        client_name=name,
    )


def _sentinel_key(
    master_name: str, nodes: list[tuple[str, int]]
) -> tuple[str, frozenset[tuple[str, int]]]:
    return master_name, frozenset(nodes)


def _sentinel(parsed: StoreURL, *, connect: float) -> Sentinel:
    opts = dict(parsed.options)
    nodes = list(parsed.nodes)
    with _memory_lock:
        preferred = _preferred_sentinels.get(_sentinel_key(parsed.master_name or "", nodes))
    if preferred in nodes:
        nodes.remove(preferred)
        nodes.insert(0, preferred)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": connect,
        "socket_connect_timeout": connect,
        "ssl": parsed.tls,
    }
    if "sentinel_username" in opts:
        sentinel_kwargs["username"] = opts["sentinel_username"]
    if "sentinel_password" in opts:
        sentinel_kwargs["password"] = opts["sentinel_password"]
    make: Any = Sentinel
    sentinel: Sentinel = make(nodes, sentinel_kwargs=sentinel_kwargs)
    return sentinel


def _address(conn: Any) -> tuple[str, int]:
    kwargs = conn.connection_pool.connection_kwargs
    return str(kwargs["host"]), int(kwargs["port"])


def _master_name(client: StoreClient) -> str:
    pool: Any = cast("Any", client).connection_pool
    return str(pool.service_name)


def sentinel_of(client: StoreClient) -> tuple[str, list[tuple[str, int]], dict[str, Any]] | None:
    """For a Sentinel-managed client: its master name, the sentinels' addresses (in the
    order they are asked) and the connection settings for them; else None."""
    sentinel = _sentinels.get(client)
    if sentinel is None:
        return None
    name = _master_name(client)
    return name, [_address(conn) for conn in sentinel.sentinels], dict(sentinel.sentinel_kwargs)


def prefer_sentinel(client: StoreClient, address: tuple[str, int]) -> None:
    """Ask the sentinel at ``address`` first from now on, for ``client`` and for every
    Sentinel client made later for the same deployment (see ``_preferred_sentinels``)."""
    sentinel = _sentinels.get(client)
    if sentinel is None:
        return
    conns = sentinel.sentinels
    found = [i for i, conn in enumerate(conns) if _address(conn) == address]
    if found and found[0] > 0:
        conns.insert(0, conns.pop(found[0]))
    name = _master_name(client)
    key = _sentinel_key(name, [_address(conn) for conn in conns])
    with _memory_lock:
        _preferred_sentinels[key] = address


async def drop_primary_connections(client: StoreClient) -> None:
    """Make a Sentinel-managed client ask the sentinels again before its next command.

    Idle connections are closed now; those in use finish their command and are closed
    when they return to the pool. The next connection asks the sentinels where the
    primary is.
    """
    pool: Any = cast("Any", client).connection_pool
    await pool.disconnect(inuse_connections=False)
    await pool.update_active_connections_for_reconnect()


def _sentinel_primary(
    sentinel: Sentinel, parsed: StoreURL, *, socket_timeout: float | None, connect: float, name: str
) -> aioredis.Redis:
    if parsed.master_name is None:  # parse_url refuses a Sentinel URL without one
        raise ConfigurationError("a Sentinel URL needs the master name", field="redis_url")
    client: aioredis.Redis = sentinel.master_for(
        parsed.master_name,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.tls,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect,
        retry=_no_retry(),
        client_name=name,
    )
    _sentinels[client] = sentinel
    return client


async def close_client(client: StoreClient) -> None:
    """Close ``client`` and, for Sentinel, the connections to the sentinels too."""
    await client.aclose()
    sentinel = _sentinels.pop(client, None)
    if sentinel is not None:
        for conn in sentinel.sentinels:
            await conn.aclose()


def _from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    client: aioredis.Redis = aioredis.Redis.from_url(url, **kwargs)
    return client


def create_client(url: str, *, op_timeout: float) -> StoreClient:
    """A command client for ``url`` whose every operation gives up after ``op_timeout`` s."""
    parsed = parse_url(url)
    if parsed is not None and parsed.kind == "cluster":
        return _cluster(
            parsed,
            socket_timeout=op_timeout * _CLUSTER_SOCKET_SHARE,
            connect=op_timeout * _CLUSTER_SOCKET_SHARE,
            name="msfw-redis",
        )
    if parsed is not None:
        return _sentinel_primary(
            _sentinel(parsed, connect=op_timeout),
            parsed,
            socket_timeout=_SOCKET_TIMEOUT,
            connect=op_timeout,
            name="msfw-redis",
        )
    if url.startswith("memory://"):
        import fakeredis

        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=_memory_server(url))
        return client
    return _from_url(
        url,
        socket_timeout=_SOCKET_TIMEOUT,
        socket_connect_timeout=op_timeout,
        retry=_no_retry(),
        retry_on_error=[],
        health_check_interval=0,
        client_name="msfw-redis",
    )


def create_pubsub_client(url: str, *, op_timeout: float) -> StoreClient:
    """A client for the one long-lived subscriber connection of a process.

    Reads on it block for as long as no event arrives, so it has no socket read
    timeout; connecting is still bounded, and a periodic PING finds dead peers.
    """
    parsed = parse_url(url)
    if parsed is not None and parsed.kind == "cluster":
        return _cluster(parsed, socket_timeout=None, connect=op_timeout, name="msfw-redis-events")
    if parsed is not None:
        return _sentinel_primary(
            _sentinel(parsed, connect=op_timeout),
            parsed,
            socket_timeout=None,
            connect=op_timeout,
            name="msfw-redis-events",
        )
    if url.startswith("memory://"):
        return create_client(url, op_timeout=op_timeout)
    return _from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=op_timeout,
        socket_keepalive=True,
        retry=_no_retry(),
        retry_on_error=[],
        health_check_interval=5,
        client_name="msfw-redis-events",
    )
