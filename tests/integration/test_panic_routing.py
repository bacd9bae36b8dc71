"""Panic routing: never the settings address while the registry knows instances."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from msfw_redis import ServiceClientError
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import services_for

SVC = "panic-payments"


async def _sdk_with_unhealthy_instance(
    make_sdk: Any, toml: ScriptedService, instance: ScriptedService, **config: Any
) -> Any:
    """An SDK whose settings point at ``toml`` and whose registry holds ``instance``,
    probed unhealthy."""
    sdk = make_sdk(
        services_for(toml, SVC, **config.pop("service", {})),
        service_discovery_enabled=True,
        health_failure_threshold=1,
        monitor_registered_services=False,
        **config,
    )
    instance.script("/health", Step(503))
    await sdk.register_external_service(
        SVC, host=instance.host, port=instance.port, health_check_path="/health"
    )
    sdk._health.enroll(SVC)
    await sdk._health.probe_round(SVC)
    [registered] = await sdk.discover_services(SVC)
    assert registered.status == "unhealthy"
    return sdk


async def test_all_unhealthy_routes_across_registered_instances(
    make_sdk: Any, http_service: ScriptedService, caplog: pytest.LogCaptureFixture
) -> None:
    """Every instance unhealthy: calls go to them (not the TOML host), one WARNING, a counter."""
    with ScriptedService() as toml:
        toml.script("/pay", Step(200, json={"via": "toml"}))
        http_service.script("/pay", Step(200, json={"via": "registry"}))
        sdk = await _sdk_with_unhealthy_instance(make_sdk, toml, http_service)
        with caplog.at_level(logging.WARNING, logger="msfw_redis.registry"):
            results = [await sdk.call_service(SVC, "/pay") for _ in range(3)]
        assert [r.data for r in results] == [{"via": "registry"}] * 3
        assert toml.hits() == 0
        warnings = [r for r in caplog.records if "panic routing" in r.getMessage()]
        assert len(warnings) == 1
        assert sdk.metrics()["panic_routed"] == 3


@pytest.mark.parametrize("where", ["sdk_config", "service"])
async def test_panic_routing_off_names_the_unhealthy_instances(
    make_sdk: Any, http_service: ScriptedService, where: str
) -> None:
    """panic_routing=False (SDK-wide or per service) raises an error naming the instances."""
    extra: dict[str, Any] = (
        {"panic_routing": False} if where == "sdk_config" else {"service": {"panic_routing": False}}
    )
    with ScriptedService() as toml:
        toml.script("/pay", Step(200))
        sdk = await _sdk_with_unhealthy_instance(make_sdk, toml, http_service, **extra)
        result = await sdk.call_service(SVC, "/pay")
        assert isinstance(result.exception, ServiceClientError)
        assert f"{http_service.host}:{http_service.port}" in str(result.exception)
        assert "unhealthy" in str(result.exception)
        assert toml.hits() == 0 and http_service.hits("/pay") == 0


async def test_without_instances_the_settings_address_answers(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """With no registered instance the settings address is used, as before."""
    http_service.script("/pay", Step(200, json={"via": "toml"}))
    sdk = make_sdk(services_for(http_service, SVC), service_discovery_enabled=True)
    assert (await sdk.call_service(SVC, "/pay")).data == {"via": "toml"}
