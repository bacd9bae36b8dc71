"""sdk.metrics() per service, breaker transition events, and the Prometheus collector."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from msfw_redis._breaker.views import TransitionEvent
from msfw_redis._sdk.metrics import COUNTERS
from msfw_redis.contrib.prometheus import MsfwCollector
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for


def _settings(http_service: ScriptedService) -> dict[str, Any]:
    settings = services_for(http_service, "pay", failure_threshold=1)
    settings["services"].update(services_for(http_service, "cat", cache_enabled=True)["services"])
    return settings


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_every_counter_starts_at_zero_and_rejections_are_not_failures(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Totals exist at zero before any call; a breaker rejection counts once, as a rejection."""
    http_service.script("/boom", Step(501))  # 501: a breaker failure that is not retried by default
    sdk = make_sdk(_settings(http_service))
    before = sdk.metrics()
    assert {k: before[k] for k in COUNTERS} == dict.fromkeys(COUNTERS, 0)
    assert before["services"] == {}
    await sdk.call_service("pay", "/boom")  # fails and trips the threshold-1 breaker
    await sdk.call_service("pay", "/boom")  # refused by the open breaker
    pay = sdk.metrics()["services"]["pay"]
    assert (pay["calls"], pay["failures"], pay["rejections"], pay["successes"]) == (2, 1, 1, 0)
    assert pay["failed_without_retry"] == 1
    assert set(pay) == set(COUNTERS)
    assert http_service.hits("/boom") == 1


async def test_transitions_reach_every_replica_and_log_once(
    make_sdk: Any, http_service: ScriptedService, caplog: pytest.LogCaptureFixture
) -> None:
    """Two SDKs on one store both get closed -> open; the fleet logs it once at INFO."""
    http_service.script("/boom", Step(500))
    http_service.script("/ok", Step(200, json=1))
    a, b = make_sdk(_settings(http_service)), make_sdk(_settings(http_service))
    heard: dict[str, list[TransitionEvent]] = {"a": [], "b": []}
    opened = {"a": asyncio.Event(), "b": asyncio.Event()}
    for label, sdk in (("a", a), ("b", b)):

        def note(event: TransitionEvent, label: str = label) -> None:
            heard[label].append(event)
            if event.to_state == "open":
                opened[label].set()

        sdk.on_breaker_transition(note)
    await a.call_service("pay", "/ok")
    await b.call_service("pay", "/ok")  # both replicas now follow pay's breaker
    caplog.set_level(logging.INFO, logger="msfw_redis.breaker.transitions")
    await a.call_service("pay", "/boom")
    await asyncio.wait_for(asyncio.gather(opened["a"].wait(), opened["b"].wait()), 10)
    for label in ("a", "b"):
        event = heard[label][-1]
        assert (event.service, event.endpoint, event.from_state, event.to_state) == (
            "pay",
            None,
            "closed",
            "open",
        )
        assert event.generation >= 1
        assert event.at is not None and event.at > 1_600_000_000
    await asyncio.sleep(0.2)  # let the slower replica finish its claim attempt
    logged = [r for r in caplog.records if r.name == "msfw_redis.breaker.transitions"]
    assert len(logged) == 1
    record = logged[0]
    assert record.levelno == logging.INFO
    assert (record.msfw_service, record.msfw_from_state, record.msfw_to_state) == (  # type: ignore[attr-defined]
        "pay",
        "closed",
        "open",
    )
    assert record.msfw_generation == heard["a"][-1].generation  # type: ignore[attr-defined]


async def test_prometheus_names_labels_and_values(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: Any
) -> None:
    """After a trip, a rejection, a cache hit and a retry the exposition says so."""
    http_service.script("/boom", Step(501))
    http_service.script("/flaky", Step(503), Step(200, json=1))
    http_service.script("/data", Step(200, json=1))
    sdk = make_sdk(_settings(http_service))
    registry = CollectorRegistry()
    MsfwCollector(sdk, registry=registry)
    opened = asyncio.Event()
    sdk.on_breaker_transition(lambda e: opened.set() if e.to_state == "open" else None)
    await sdk.call_service("pay", "/boom")
    await asyncio.wait_for(opened.wait(), 10)
    await sdk.call_service("pay", "/boom")  # not permitted
    await sdk.call_service("cat", "/flaky")  # one retry, then success
    await sdk.call_service("cat", "/data")
    assert (await sdk.call_service("cat", "/data")).from_cache
    got = _samples(generate_latest(registry).decode())

    def val(metric: str, /, **labels: str) -> float:
        return got[(metric, frozenset(labels.items()))]

    pay = {"name": "pay", "service": "pay"}
    assert val("msfw_circuitbreaker_state", **pay, state="open") == 1
    assert val("msfw_circuitbreaker_state", **pay, state="closed") == 0
    assert val("msfw_circuitbreaker_state", **pay, state="forced_open") == 0
    assert val("msfw_circuitbreaker_calls_total", **pay, kind="failed") == 1
    assert val("msfw_circuitbreaker_calls_total", **pay, kind="not_permitted") == 1
    assert val("msfw_circuitbreaker_calls_total", **pay, kind="successful") == 0
    assert val("msfw_circuitbreaker_failure_rate", **pay) == 1.0
    assert (
        val("msfw_circuitbreaker_transitions_total", **pay, from_state="closed", to_state="open")
        == 1
    )
    cat = {"name": "cat", "service": "cat"}
    assert val("msfw_retry_calls_total", **cat, kind="successful_with_retry") == 1
    assert val("msfw_retry_calls_total", **cat, kind="successful_without_retry") == 2
    assert val("msfw_retry_calls_total", **cat, kind="failed_with_retry") == 0
    assert val("msfw_cache_requests_total", name="_all", service="_all", result="hit") == 1
    assert val("msfw_cache_requests_total", name="_all", service="_all", result="miss") >= 1
    assert val("msfw_cache_requests_total", **cat, result="hit") == 1
    assert val("msfw_cache_requests_total", **cat, result="stale") == 0
    assert val("msfw_cache_requests_total", **cat, result="miss") == 2  # /flaky and /data
    assert val("msfw_circuitbreaker_slow_call_rate", **pay) == 0  # no slow_call_threshold
    assert val("msfw_cache_requests_total", **pay, result="hit") == 0
    assert val("msfw_store_up") == 1
    count = sum(
        v
        for (n, labels), v in got.items()
        if n == "msfw_http_client_request_duration_seconds_count" and ("service", "cat") in labels
    )
    assert count == 3
    inf = val(
        "msfw_http_client_request_duration_seconds_bucket",
        service="cat",
        method="GET",
        status_code="200",
        le="+Inf",
    )
    assert inf >= 1


async def test_registry_instances_and_health_status_from_the_process_view(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Two registered instances, one probe round: the live one healthy, the dead one not."""
    http_service.script("/health", Step(200))
    sdk = make_sdk(
        None,
        service_discovery_enabled=True,
        health_failure_threshold=1,
        health_check_interval=60.0,
        monitor_registered_services=False,
    )
    registry = CollectorRegistry()
    MsfwCollector(sdk, registry=registry)
    before = _samples(generate_latest(registry).decode())
    assert not [k for k in before if k[0] in ("msfw_registry_instances", "msfw_health_status")]
    await sdk.register_external_service(
        "inv", host=http_service.host, port=http_service.port, health_check_path="/health"
    )
    with socket.socket() as sock:  # a port nobody listens on: bound, never listened
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
        await sdk.register_external_service(
            "inv", host="127.0.0.1", port=dead_port, health_check_path="/health"
        )
        probe = await sdk.components.health.probe_round("inv")
    assert probe is not None and probe.healthy
    await sdk.discover_services("inv")  # the round bumped the revision: refetch
    got = _samples(generate_latest(registry).decode())

    def val(metric: str, /, **labels: str) -> float:
        return got[(metric, frozenset(labels.items()))]

    assert val("msfw_registry_instances", service="inv", status="healthy") == 1
    assert val("msfw_registry_instances", service="inv", status="unhealthy") == 1
    assert val("msfw_registry_instances", service="inv", status="suspect") == 0
    assert val("msfw_registry_instances", service="inv", status="recovering") == 0
    assert val("msfw_health_status", service="inv") == 1
    # Only "inv" is asserted: the fleet's health events of other services that reached
    # this replica (an earlier test's, on a shared server) are part of the view too.
    assert sdk.components.health.known_states()["inv"] == "healthy"


async def test_slow_call_rate_counts_calls_over_the_threshold(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """slow_call_threshold 1 s: one call of ~1.5 s and one fast call give a rate of 0.5."""
    http_service.script("/slow", Step(200, json=1, delay=1.5))
    http_service.script("/fast", Step(200, json=1))
    settings = services_for(http_service, "slowpoke", "plain")
    sdk = make_sdk(settings, circuit_breaker={"slow_call_threshold": 1.0})
    registry = CollectorRegistry()
    MsfwCollector(sdk, registry=registry)
    await sdk.call_service("slowpoke", "/slow")
    await sdk.call_service("slowpoke", "/fast")
    slowpoke = sdk.metrics()["services"]["slowpoke"]
    assert slowpoke["slow_calls"] == 1
    got = _samples(generate_latest(registry).decode())
    rate = got[
        (
            "msfw_circuitbreaker_slow_call_rate",
            frozenset({"name": "slowpoke", "service": "slowpoke"}.items()),
        )
    ]
    assert rate == 0.5

    plain = make_sdk(settings)  # no threshold: never slow
    plain_registry = CollectorRegistry()
    MsfwCollector(plain, registry=plain_registry)
    await plain.call_service("plain", "/slow")
    assert plain.metrics()["services"]["plain"]["slow_calls"] == 0
    got = _samples(generate_latest(plain_registry).decode())
    assert (
        got[
            (
                "msfw_circuitbreaker_slow_call_rate",
                frozenset({"name": "plain", "service": "plain"}.items()),
            )
        ]
        == 0
    )


async def test_cache_results_per_service_in_metrics_and_exposition(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Two concurrent lookups (one miss, one coalesced) then a hit, per service; every key
    is there at zero for a service that never used the cache."""
    http_service.script("/slow-data", Step(200, json=1, delay=0.5))
    http_service.script("/boom", Step(501))
    sdk = make_sdk(_settings(http_service))
    registry = CollectorRegistry()
    MsfwCollector(sdk, registry=registry)
    first, second = await asyncio.gather(
        sdk.call_service("cat", "/slow-data"), sdk.call_service("cat", "/slow-data")
    )
    assert sorted([first.from_cache, second.from_cache]) == [False, True]
    assert (await sdk.call_service("cat", "/slow-data")).from_cache
    await sdk.call_service("pay", "/boom")
    services = sdk.metrics()["services"]
    cat = {k: v for k, v in services["cat"].items() if k.startswith("cache_")}
    assert cat == {
        "cache_hits": 1,
        "cache_stale": 0,
        "cache_misses": 1,
        "cache_coalesced": 1,
        "cache_bypasses": 0,
    }
    assert all(services["pay"][k] == 0 for k in cat)
    assert http_service.hits("/slow-data") == 1
    got = _samples(generate_latest(registry).decode())
    for result, value in (("hit", 1), ("miss", 1), ("coalesced", 1), ("stale", 0), ("bypass", 0)):
        labels = frozenset({"name": "cat", "service": "cat", "result": result}.items())
        assert got[("msfw_cache_requests_total", labels)] == value
        labels = frozenset({"name": "pay", "service": "pay", "result": result}.items())
        assert got[("msfw_cache_requests_total", labels)] == 0


async def test_cache_bypass_per_service_while_redis_is_down(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """With the store unreachable a cacheable call goes to the origin: a bypass for its service."""
    http_service.script("/data", Step(200, json=1))
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sdk = make_sdk(_settings(http_service), redis_url=f"redis://127.0.0.1:{port}/0")
        result = await sdk.call_service("cat", "/data")
    assert result.success and not result.from_cache
    cat = sdk.metrics()["services"]["cat"]
    assert (cat["cache_bypasses"], cat["cache_misses"], cat["cache_hits"]) == (1, 0, 0)
