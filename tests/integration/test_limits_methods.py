"""Fleet limits on typed @service_call methods, and retries never repeating a refusal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from msfw_redis import (
    BulkheadFullError,
    CircuitOpenError,
    HTTPMethod,
    RateLimitedError,
    bulkhead,
    circuit_breaker,
    rate_limited,
    retry_on_failure,
    service_call,
    service_interface,
)
from msfw_redis.testing import ScriptedService, Step
from tests.integration.conftest import FakeSleep, services_for


@service_interface("lim-svc")
class Limited:
    """Each limit decorator above and below @service_call, with a breaker and retries."""

    @rate_limited(1, per=60.0, key="above")
    @retry_on_failure(max_attempts=3, delay=0.0)
    @service_call("lim-svc", HTTPMethod.GET, "/rate-above")
    async def rate_above(self) -> int:
        """Rate limit above @service_call."""

    @service_call("lim-svc", HTTPMethod.GET, "/rate-below")
    @circuit_breaker(failure_threshold=1)
    @rate_limited(1, per=60.0, key="below")
    async def rate_below(self) -> int:
        """Rate limit below @service_call, inside a breaker."""

    @circuit_breaker(failure_threshold=1)
    @bulkhead(1, name="held-above")
    @service_call("lim-svc", HTTPMethod.GET, "/slow-above")
    async def slow_above(self) -> int:
        """Bulkhead above @service_call, inside a breaker."""

    @service_call("lim-svc", HTTPMethod.GET, "/slow-below")
    @bulkhead(1, name="held-below")
    @retry_on_failure(max_attempts=3, delay=0.0)
    async def slow_below(self) -> int:
        """Bulkhead below @service_call, with retries."""

    @service_call("lim-svc", HTTPMethod.GET, "/free")
    async def free(self) -> int:
        """No method limit."""


async def _until_hit(svc: ScriptedService, path: str) -> None:
    while svc.hits(path) == 0:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("which", ["above", "below"])
async def test_rate_limited_method_is_fleet_wide_and_sends_nothing(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep, which: str
) -> None:
    """@rate_limited(1/min) on a typed method, either order: a second call on another replica is refused unsent and not retried."""
    path = f"/rate-{which}"
    http_service.script(path, Step(200, json=1))
    http_service.script("/free", Step(200, json=1))
    a = Limited(sdk=make_sdk(services_for(http_service, "lim-svc")))
    b = Limited(sdk=make_sdk(services_for(http_service, "lim-svc")))
    call_a, call_b = getattr(a, f"rate_{which}"), getattr(b, f"rate_{which}")
    assert await call_a() == 1
    for _ in range(2):
        with pytest.raises(RateLimitedError) as refused:
            await call_b()
        assert refused.value.retry_after > 0
        assert not getattr(refused.value, "__notes__", None)  # no "gave up after" retries
    assert http_service.hits(path) == 1
    assert fake_sleep.waits == []  # no retry back-off was slept
    assert await b.free() == 1  # other methods of the service are not limited


@pytest.mark.parametrize("which", ["above", "below"])
async def test_bulkhead_method_refuses_unsent_and_releases(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep, which: str
) -> None:
    """@bulkhead(1) on a typed method, either order: a concurrent call on another replica is refused, not retried, no breaker failure; the permit comes back."""
    path = f"/slow-{which}"
    http_service.script(path, Step(200, json=1, delay=0.5), Step(200, json=2))
    a = Limited(sdk=make_sdk(services_for(http_service, "lim-svc")))
    b = Limited(sdk=make_sdk(services_for(http_service, "lim-svc")))
    first = asyncio.create_task(getattr(a, f"slow_{which}")())
    await _until_hit(http_service, path)
    with pytest.raises(BulkheadFullError) as refused:
        await getattr(b, f"slow_{which}")()
    assert not isinstance(refused.value, CircuitOpenError)
    assert not getattr(refused.value, "__notes__", None)
    assert http_service.hits(path) == 1
    assert fake_sleep.waits == []
    assert await first == 1
    # Released, and the refusal opened no breaker (failure_threshold=1 above).
    assert await getattr(b, f"slow_{which}")() == 2
    assert http_service.hits(path) == 2


async def test_method_bulkhead_refusal_returns_the_service_permit(
    make_sdk: Any, http_service: ScriptedService
) -> None:
    """Service bulkhead 1 plus a full method bulkhead: the refused call gives its service permit back."""
    http_service.script("/free", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "lim-svc", max_concurrent_calls=1))
    release = asyncio.Event()

    @bulkhead(1, name="held-above", sdk=sdk)
    async def holder() -> None:
        await release.wait()

    held = asyncio.create_task(holder())
    while sdk.limits.bulkhead("held-above", _cfg(1)).held == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(BulkheadFullError):
        await Limited(sdk=sdk).slow_above()
    assert http_service.hits("/slow-above") == 0
    assert await Limited(sdk=sdk).free() == 1  # the service's one permit is free again
    release.set()
    await held


def _cfg(n: int) -> Any:
    from msfw_redis import BulkheadConfig

    return BulkheadConfig(max_concurrent_calls=n)


async def test_retry_decorator_never_retries_plain_refusals(
    make_sdk: Any, fake_sleep: FakeSleep
) -> None:
    """@retry_on_failure over @rate_limited / @bulkhead on plain functions: a refusal is raised at once."""
    sdk = make_sdk()
    runs = 0

    @retry_on_failure(max_attempts=3, delay=0.0, sdk=sdk)
    @rate_limited(1, per=60.0, key="plain-rate", sdk=sdk)
    async def limited() -> None:
        nonlocal runs
        runs += 1

    await limited()
    with pytest.raises(RateLimitedError) as refused:
        await limited()
    assert not getattr(refused.value, "__notes__", None)
    assert runs == 1
    release = asyncio.Event()

    @retry_on_failure(max_attempts=3, delay=0.0, sdk=sdk)
    @bulkhead(1, name="plain-bulkhead", sdk=sdk)
    async def guarded() -> None:
        await release.wait()

    held = asyncio.create_task(guarded())
    while sdk.limits.bulkhead("plain-bulkhead", _cfg(1)).held == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(BulkheadFullError) as full:
        await guarded()
    assert not getattr(full.value, "__notes__", None)
    assert fake_sleep.waits == []
    release.set()
    await held


async def test_sdk_retries_never_repeat_a_service_refusal(
    make_sdk: Any, http_service: ScriptedService, fake_sleep: FakeSleep
) -> None:
    """retry_attempts=3 on a TOML-rate-limited service: the refused call makes one attempt and sends nothing."""
    http_service.script("/x", Step(200, json=1))
    sdk = make_sdk(services_for(http_service, "svc", rate_limit="1/m"))
    assert (await sdk.call_service("svc", "/x", retry_attempts=3)).success
    result = await sdk.call_service("svc", "/x", retry_attempts=3)
    assert isinstance(result.exception, RateLimitedError)
    assert result.attempts == 1
    assert http_service.hits("/x") == 1
    assert fake_sleep.waits == []
