"""The ``msfw-redis`` inspection and control commands against a store seeded by the test.

On fakeredis (``memory://<name>``, private to this process) the CLI runs in-process,
``main(argv)`` in a thread with its own event loop; on a real server it runs as a
separate ``python -m msfw_redis`` process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from msfw_redis import CircuitBreakerConfig, CircuitOpenError, ServiceSDK, ServiceSDKConfig
from msfw_redis._cli.main import main
from msfw_redis._cli.parser import build_parser
from msfw_redis.testing import ScriptedService, SilentServer, Step, free_port
from tests.integration.conftest import services_for

# Names of this module's own: @health_check enrols its service in every SDK created
# after the decorated class is defined, and other test modules decorate order-service.
SVC = "cli-orders"
OTHER = "cli-users"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MSFW_REDIS_URL", None)
    return env


async def run_cli(url: str, prefix: str, *args: str) -> Ran:
    """The CLI on ``url``: in-process for memory:// (the store lives here), else a process."""
    argv = [*args, "--redis-url", url, "--prefix", prefix]
    if url.startswith("memory://"):
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(main, argv, out=out, err=err)
        return Ran(code, out.getvalue(), err.getvalue())
    return await run_process(*argv)


async def run_process(*argv: str) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "msfw_redis", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def make_sdk(url: str, prefix: str, svc: ScriptedService) -> ServiceSDK:
    return ServiceSDK(
        config=services_for(svc, SVC, OTHER),
        sdk_config=ServiceSDKConfig(
            redis_url=url,
            key_prefix=prefix,
            redis_op_timeout=2.0,
            service_discovery_enabled=False,
            monitor_registered_services=False,
            default_retry_attempts=1,
            circuit_breaker=CircuitBreakerConfig(
                failure_threshold=2, timeout=60.0, success_flush_interval=0
            ),
        ),
    )


async def until(predicate: object, what: str, timeout: float = 15.0) -> None:
    """Wait for ``predicate()`` (an async or plain callable) to be true; a no-hang bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def seeded(
    redis_url: str, key_prefix: str, http_service: ScriptedService
) -> AsyncIterator[ServiceSDK]:
    """SVC: breaker OPEN, one registered and probed instance, cache cleared
    twice (service and one function); OTHER: breaker CLOSED."""
    http_service.script("/orders", Step(500))
    http_service.script("/users", Step(200, json=[]))
    http_service.script("/health", Step(200, json={"status": "up"}))
    sdk = make_sdk(redis_url, key_prefix, http_service)
    await sdk.start()
    for _ in range(2):
        await sdk.call_service(SVC, "/orders")
    await sdk.call_service(OTHER, "/users")
    await sdk.register_current_service(
        SVC, host="127.0.0.1", port=http_service.port, instance_id="order-1", ttl=30.0
    )
    probe = await sdk._health.probe_round(SVC)
    assert probe is not None and probe.code == 1 and probe.healthy
    await sdk.clear_service_cache(SVC)
    await sdk._cache.clear_function(SVC, "Orders.list")

    async def indexed() -> bool:
        return {s.service for s in await sdk._hub.fleet()} == {SVC, OTHER}

    await until(indexed, "both breakers in the fleet index")
    try:
        yield sdk
    finally:
        await sdk.close()


async def test_status_lists_every_breaker(
    seeded: ServiceSDK, redis_url: str, key_prefix: str
) -> None:
    """status prints one aligned row per breaker (state, failures, failures at trip,
    generation, retry-after) and the same facts as JSON."""
    ran = await run_cli(redis_url, key_prefix, "status")
    assert ran.code == 0, ran.err
    header, *rows = ran.out.strip().splitlines()
    assert header.split() == [
        "SERVICE",
        "ENDPOINT",
        "STATE",
        "FAILURES",
        "AT-TRIP",
        "GENERATION",
        "RETRY-AFTER",
    ]
    by_service = {row.split()[0]: row.split() for row in rows}
    assert by_service[SVC][1:5] == ["*", "open", "0", "2"]  # tripped by 2 failures
    assert by_service[SVC][6].endswith("s")  # retry-after of an OPEN breaker
    assert by_service[OTHER][1:5] == ["*", "closed", "0", "-"]
    assert "\x1b[" not in ran.out  # no terminal, no colour

    ran = await run_cli(redis_url, key_prefix, "status", "--json")
    assert ran.code == 0, ran.err
    states = {s["service"]: s for s in ran.json()}  # type: ignore[attr-defined]
    assert states[SVC]["state"] == "open"
    assert states[SVC]["failures_at_trip"] == 2
    assert states[OTHER]["failures_at_trip"] == 0
    assert states[SVC]["endpoint"] is None
    assert states[SVC]["generation"] >= 1
    assert 0 < states[SVC]["retry_after"] <= 60
    assert states[OTHER]["state"] == "closed"

    ran = await run_cli(redis_url, key_prefix, "status", OTHER, "--json")
    assert [s["service"] for s in ran.json()] == [OTHER]  # type: ignore[attr-defined]


async def test_services_lists_instances_and_health(
    seeded: ServiceSDK, redis_url: str, key_prefix: str, http_service: ScriptedService
) -> None:
    """services shows each registered instance with its status, heartbeat and the
    service's health, as a table and as JSON."""
    ran = await run_cli(redis_url, key_prefix, "services")
    assert ran.code == 0, ran.err
    header, row = ran.out.strip().splitlines()
    assert header.split() == [
        "SERVICE", "HEALTH", "INSTANCE", "ADDRESS", "STATUS", "VERSION", "HEARTBEAT",
    ]  # fmt: skip
    cells = row.split()
    assert cells[:5] == [
        SVC,
        "healthy",
        "order-1",
        f"http://127.0.0.1:{http_service.port}",
        "healthy",
    ]

    ran = await run_cli(redis_url, key_prefix, "services", SVC, "--json")
    assert ran.code == 0, ran.err
    (entry,) = ran.json()  # type: ignore[misc]
    assert entry["service"] == SVC
    assert entry["healthy"] is True
    (inst,) = entry["instances"]
    assert inst["instance_id"] == "order-1"
    assert inst["port"] == http_service.port
    assert 0 <= inst["heartbeat_age"] < 30


async def test_cache_stats_and_clear(seeded: ServiceSDK, redis_url: str, key_prefix: str) -> None:
    """cache stats reads the fleet-wide clear generations; cache clear bumps them
    (the whole service, or one function) for every replica."""
    ran = await run_cli(redis_url, key_prefix, "cache", "stats", "--json")
    assert ran.code == 0, ran.err
    stats = {s["service"]: s for s in ran.json()}  # type: ignore[attr-defined]
    assert stats[SVC] == {"service": SVC, "generation": 1, "cleared_functions": 1}
    assert stats[OTHER]["generation"] == 0

    ran = await run_cli(redis_url, key_prefix, "cache", "stats")
    assert ran.code == 0, ran.err
    lines = ran.out.strip().splitlines()
    assert lines[0].split() == ["SERVICE", "GENERATION", "CLEARED", "FUNCTIONS"]
    assert lines[1].split() == [SVC, "1", "1"] or lines[2].split() == [SVC, "1", "1"]

    ran = await run_cli(redis_url, key_prefix, "cache", "clear", SVC)
    assert ran.code == 0, ran.err
    assert "generation 2" in ran.out
    ran = await run_cli(
        redis_url, key_prefix, "cache", "clear", SVC, "--function", "Orders.list", "--json"
    )
    assert ran.json() == {"service": SVC, "function": "Orders.list", "generation": 2}
    raw = await seeded._store.hgetall(seeded._cache.generation_key(SVC))
    assert int(raw[b"_"]) == 2


async def test_breaker_open_is_seen_by_other_sdks(
    seeded: ServiceSDK,
    redis_url: str,
    key_prefix: str,
    http_service: ScriptedService,
) -> None:
    """breaker open on a CLOSED breaker reaches a running SDK through pub/sub and a new
    SDK on its first call: both reject without calling the service; reset lets them
    through again."""
    running = seeded
    breaker = running._hub.get(OTHER)
    assert breaker.state().state == "closed"
    hits = http_service.hits("/users")

    ran = await run_cli(redis_url, key_prefix, "breaker", "open", OTHER, "--ttl", "60")
    assert ran.code == 0, ran.err
    assert "forced_open" in ran.out

    await until(lambda: breaker.state().state == "forced_open", "the event to reach the SDK")
    result = await running.call_service(OTHER, "/users")
    assert isinstance(result.exception, CircuitOpenError)
    fresh = make_sdk(redis_url, key_prefix, http_service)
    try:
        result = await fresh.call_service(OTHER, "/users")
        assert isinstance(result.exception, CircuitOpenError)
        assert result.exception.retry_after > 0
        assert http_service.hits("/users") == hits

        ran = await run_cli(redis_url, key_prefix, "breaker", "reset", OTHER, "--json")
        assert ran.code == 0, ran.err
        assert ran.json()["state"] == "closed"  # type: ignore[index]
        await until(lambda: breaker.state().state == "closed", "the reset to reach the SDK")
        assert (await running.call_service(OTHER, "/users")).success
        await until(
            lambda: fresh._hub.get(OTHER).state().state == "closed", "the reset to reach it"
        )
        assert (await fresh.call_service(OTHER, "/users")).success
    finally:
        await fresh.close()


async def test_unknown_service_or_breaker_is_a_clear_error(
    seeded: ServiceSDK, redis_url: str, key_prefix: str
) -> None:
    """An unknown service (or an endpoint breaker nobody used) is named in one line with
    exit code 1; --force creates the breaker and lists it from then on."""
    for args in (
        ("status", "no-such-service"),
        ("services", "no-such-service"),
        ("cache", "stats", "no-such-service"),
        ("cache", "clear", "no-such-service"),
        ("breaker", "open", "no-such-service"),
    ):
        ran = await run_cli(redis_url, key_prefix, *args)
        assert ran.code == 1, args
        assert ran.out == ""
        assert ran.err.count("\n") == 1
        assert "unknown service 'no-such-service'" in ran.err
        assert SVC in ran.err  # the known services are listed

    ran = await run_cli(redis_url, key_prefix, "breaker", "disable", SVC, "--endpoint", "/x")
    assert ran.code == 1
    assert "no breaker recorded for endpoint '/x'" in ran.err
    ran = await run_cli(
        redis_url, key_prefix, "breaker", "disable", SVC, "--endpoint", "/x", "--force"
    )
    assert ran.code == 0, ran.err
    ran = await run_cli(redis_url, key_prefix, "status", SVC, "--json")
    states = {s["endpoint"]: s["state"] for s in ran.json()}  # type: ignore[attr-defined]
    assert states == {None: "open", "/x": "disabled"}


async def test_memory_store_in_a_fresh_process_is_empty_and_says_so() -> None:
    """memory:// is private to one process: a fresh CLI shows nothing and explains why."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        main, ["status", "--redis-url", "memory://cli-empty"], out=out, err=err
    )
    assert code == 0
    assert "memory:// is a store private to this one process" in out.getvalue()
    assert err.getvalue() == ""


@pytest.mark.parametrize("command", [["status"], ["services"], ["cache", "stats"], ["demo"]])
async def test_unreachable_store_is_one_line_and_exit_code_2(command: list[str]) -> None:
    """A refused connection prints one line naming the URL and the cause, exit code 2,
    no traceback; for every command, the demo included."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    ran = await run_process(*command, "--redis-url", url)
    assert ran.code == 2
    assert ran.out == ""
    assert ran.err.count("\n") == 1
    assert url in ran.err
    assert "Connect" in ran.err or "refused" in ran.err
    assert "Traceback" not in ran.err


async def test_hung_store_fails_fast_with_one_line() -> None:
    """A store that accepts connections and never answers fails within the CLI's short
    per-operation timeout, again with one line and exit code 2."""
    with SilentServer() as server:
        ran = await run_process("status", "--redis-url", server.url)
    assert ran.code == 2
    assert ran.err.count("\n") == 1
    assert server.url in ran.err
    assert "in time" in ran.err
    assert "Traceback" not in ran.err


async def test_bad_arguments_are_one_line_and_exit_code_2() -> None:
    """A URL of an unknown scheme, a bad prefix and a too-short demo are usage errors."""
    for argv in (
        ["status", "--redis-url", "http://localhost:6379"],
        ["status", "--redis-url", "memory://", "--prefix", "a b"],
        ["demo", "--seconds", "1"],
        ["demo", "--replicas", "0"],
    ):
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(main, argv, out=out, err=err)
        assert code == 2, argv
        assert err.getvalue().count("\n") == 1, argv
        assert "Traceback" not in err.getvalue()


def test_common_options_go_before_or_after_the_command() -> None:
    """--redis-url and --prefix are accepted on either side of the command name."""
    parser = build_parser()
    before = parser.parse_args(["--redis-url", "redis://a", "--prefix", "p", "status"])
    after = parser.parse_args(["status", "--redis-url", "redis://a", "--prefix", "p"])
    for args in (before, after):
        assert (args.redis_url, args.prefix) == ("redis://a", "p")
    nested = parser.parse_args(["cache", "clear", "svc", "--function", "F", "--prefix", "p"])
    assert (nested.service, nested.function, nested.prefix) == ("svc", "F", "p")


async def test_forced_open_without_ttl_promises_no_time(
    redis_url: str, key_prefix: str, http_service: ScriptedService
) -> None:
    """breaker open without --ttl: retry_after is None and the message says until reset."""
    http_service.script("/users", Step(200, json=[]))
    sdk = make_sdk(redis_url, key_prefix, http_service)
    try:
        assert (await sdk.call_service("cli_users", "/users")).success  # underscore spelling
        ran = await run_cli(redis_url, key_prefix, "breaker", "open", "cli_users")
        assert ran.code == 0, ran.err
        assert "until `msfw-redis breaker reset`" in ran.out
        breaker = sdk._hub.get(OTHER)
        await until(lambda: breaker.state().state == "forced_open", "the event to reach the SDK")
        assert breaker.state().retry_after is None
        result = await sdk.call_service(OTHER, "/users")
        assert isinstance(result.exception, CircuitOpenError)
        assert result.exception.retry_after is None
        assert "forced open until reset" in str(result.exception)
        status = await run_cli(redis_url, key_prefix, "status", OTHER, "--json")
        [row] = status.json()  # type: ignore[misc]
        assert row["state"] == "forced_open" and row["retry_after"] is None
    finally:
        await sdk.close()


async def test_breaker_close_is_forced_closed_and_ignores_failures(
    redis_url: str, key_prefix: str, http_service: ScriptedService
) -> None:
    """breaker close shows forced_closed, says failures are ignored, and 503s do not trip it."""
    http_service.script("/users", Step(200, json=[]))
    sdk = make_sdk(redis_url, key_prefix, http_service)
    try:
        assert (await sdk.call_service(OTHER, "/users")).success
        ran = await run_cli(redis_url, key_prefix, "breaker", "close", OTHER)
        assert ran.code == 0, ran.err
        assert "forced_closed" in ran.out and "failures are ignored" in ran.out
        breaker = sdk._hub.get(OTHER)
        await until(lambda: breaker.state().state == "forced_closed", "the event to reach it")
        http_service.script("/down", Step(503))
        for _ in range(5):
            assert (await sdk.call_service(OTHER, "/down")).status_code == 503
        assert breaker.state().state == "forced_closed"
    finally:
        await sdk.close()


async def test_status_of_a_service_shows_its_limits(
    seeded: ServiceSDK, redis_url: str, key_prefix: str
) -> None:
    """status SERVICE adds a line with the fleet bulkhead's held permits and Retry-After windows."""
    from msfw_redis import BulkheadConfig

    bh = seeded.limits.bulkhead(SVC, BulkheadConfig(max_concurrent_calls=5))
    permit = await bh.acquire()
    await seeded.limits.gate.observe(SVC, "/orders", 429, {"Retry-After": "120"})
    try:
        ran = await run_cli(redis_url, key_prefix, "status", SVC)
    finally:
        await permit.release()
    assert ran.code == 0, ran.err
    line = ran.out.strip().splitlines()[-1]
    assert line.startswith("limits: bulkhead permits held 1; retry-after closed: /orders ")


async def test_circuit_state_keeps_failures_at_trip(seeded: ServiceSDK) -> None:
    """CircuitState of the OPEN breaker (this replica's view and a fresh read) carries
    the 2 failures that tripped it, while failure_count restarted at 0."""
    fresh = {s.service: s for s in await seeded._hub.fleet()}
    assert (fresh[SVC].state, fresh[SVC].failure_count, fresh[SVC].failures_at_trip) == (
        "open", 0, 2,
    )  # fmt: skip
    assert fresh[OTHER].failures_at_trip == 0
    view = seeded._hub.get(SVC, None).state()
    assert (view.state, view.failures_at_trip) == ("open", 2)
