"""sdk.metrics() per service, breaker transition events, and the Prometheus collector."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from msfw_redis._breaker.hub import TransitionEvent
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
