"""Redis Cluster and Sentinel as stores: URLs, start-up checks and per-shard gating."""

from __future__ import annotations

import asyncio
import sys

import pytest
from redis.asyncio.cluster import RedisCluster

from msfw_redis import ServiceSDK, ServiceSDKConfig
from msfw_redis._exceptions import ConfigurationError, StoreError
from msfw_redis._store.connection import ENV_REDIS_URL, parse_url
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisClusterSetup, SentinelSetup


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "cluster://127.0.0.1:7000",
        "redis+cluster://127.0.0.1",
        "redis+cluster://127.0.0.1:7000/2",
        "redis+cluster://127.0.0.1:7000?nope=1",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/primary/x",
    ],
)
def test_bad_store_urls_fail_at_construction_naming_the_field(url: str) -> None:
    """A bare host:port, an unknown scheme or a malformed Cluster/Sentinel URL is refused."""
    with pytest.raises(ConfigurationError) as info:
        ServiceSDKConfig(redis_url=url)
    assert info.value.field == "redis_url"


def test_cluster_and_sentinel_urls_parse_like_limits() -> None:
    """Nodes, credentials, master name, db and TLS come out of the URL."""
    cluster = parse_url("rediss+cluster://u:p%40ss@h1:7000,h2:7001")
    assert cluster is not None
    assert (cluster.kind, cluster.nodes, cluster.tls) == (
        "cluster",
        (("h1", 7000), ("h2", 7001)),
        True,
    )
    assert (cluster.username, cluster.password) == ("u", "p@ss")
    sentinel = parse_url("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3")
    assert sentinel is not None
    assert (sentinel.kind, sentinel.master_name, sentinel.db, sentinel.password) == (
        "sentinel",
        "mymaster",
        3,
        "pw",
    )
    assert (
        ServiceSDKConfig(redis_url="redis+sentinel://s1:1/m").redis_url == "redis+sentinel://s1:1/m"
    )


def test_a_bad_url_error_never_shows_the_password() -> None:
    """The rejected URL is shown redacted."""
    with pytest.raises(ConfigurationError) as info:
        ServiceSDKConfig(redis_url="redis+cluster://user:s3cret@h:1/5")
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.real_redis
async def test_plain_url_to_a_cluster_node_fails_with_the_hint(
    cluster_setup: RedisClusterSetup,
) -> None:
    """redis:// to one cluster node is refused at start-up, naming redis+cluster://."""
    store = Store.from_url(cluster_setup.node_url(0), op_timeout=2.0)
    try:
        with pytest.raises(ConfigurationError, match=r"redis\+cluster://") as info:
            await store.start()
        assert info.value.field == "redis_url"
    finally:
        await store.aclose()


@pytest.mark.real_redis
async def test_plain_url_to_a_replica_fails_with_the_hint(sentinel_setup: SentinelSetup) -> None:
    """redis:// to a replica is refused at start-up, naming redis+sentinel://."""
    primary = sentinel_setup.current_primary()
    replica = next(s for s in sentinel_setup.servers if s is not primary)
    store = Store.from_url(replica.url, op_timeout=2.0)
    try:
        with pytest.raises(ConfigurationError, match=r"redis\+sentinel://"):
            await store.start()
    finally:
        await store.aclose()


@pytest.mark.real_redis
async def test_env_url_selects_the_cluster(
    cluster_setup: RedisClusterSetup, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    """MSFW_REDIS_URL=redis+cluster://... builds a cluster client that runs the scripts."""
    monkeypatch.setenv(ENV_REDIS_URL, cluster_setup.url)
    store = Store.from_url(None, op_timeout=2.0, key_prefix=key_prefix)
    try:
        await store.start()
        assert isinstance(store.client, RedisCluster)
        assert reply_int(await store.run("clock_now", [], [])) > 0
    finally:
        await store.aclose()


@pytest.mark.real_redis
async def test_cli_accepts_a_sentinel_url(sentinel_setup: SentinelSetup, key_prefix: str) -> None:
    """msfw-redis --redis-url redis+sentinel://... runs a command against the primary."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "msfw_redis", "services",
        "--redis-url", sentinel_setup.url, "--prefix", key_prefix,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.mark.real_redis
async def test_sdk_accepts_a_ready_made_cluster_client(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """ServiceSDK(redis=RedisCluster(...)) starts on the cluster and keeps a registry."""
    host, port = "127.0.0.1", cluster_setup.ports[0]
    client = RedisCluster(host=host, port=port)
    sdk = ServiceSDK(
        sdk_config=ServiceSDKConfig(key_prefix=key_prefix, monitor_registered_services=False),
        redis=client,
    )
    try:
        made = await sdk.register_external_service("billing", "127.0.0.1", 8080)
        found = await sdk.discover_services("billing")
        assert [i.instance_id for i in found] == [made.instance_id]
    finally:
        await sdk.close()
        await client.aclose()


def _services_on_two_shards(cluster: RedisClusterSetup, store: Store) -> tuple[str, str]:
    first = "svc0"
    first_master = cluster.master_of(store.keys.key(first, "breaker"))
    for i in range(1, 200):
        other = f"svc{i}"
        if cluster.master_of(store.keys.key(other, "breaker")) is not first_master:
            return first, other
    raise AssertionError("no two services on different shards")


@pytest.mark.real_redis
async def test_a_hung_shard_gates_only_its_own_services(
    cluster_setup: RedisClusterSetup, key_prefix: str
) -> None:
    """While one master hangs, reads for a service on another shard never fail or gate."""
    store = Store.from_url(cluster_setup.url, op_timeout=1.0, key_prefix=key_prefix)
    await store.start()
    sick, healthy = _services_on_two_shards(cluster_setup, store)
    sick_key, healthy_key = store.keys.key(sick, "breaker"), store.keys.key(healthy, "breaker")
    master = cluster_setup.master_of(sick_key)
    healthy_errors = sick_errors = 0
    master.pause()
    try:
        for _ in range(3):
            try:
                await store.get(sick_key)
            except StoreError:
                sick_errors += 1
            before = store.stats.fast_failures
            try:
                await store.get(healthy_key)
            except StoreError:
                healthy_errors += 1
            assert store.stats.fast_failures == before
        assert store.available_for(healthy_key)
    finally:
        master.resume()
        await store.aclose()
        cluster_setup.wait_ok()
    assert healthy_errors == 0
    # The first read of the hung shard times out; a failover may end the hang sooner.
    assert sick_errors >= 1
    assert store.stats.outages >= 1
