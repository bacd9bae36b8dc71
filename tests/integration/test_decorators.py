"""@circuit_breaker and @retry_on_failure on plain async functions, on each backend."""

from __future__ import annotations

from typing import Any

import pytest

from msfw_redis import CircuitOpenError
from msfw_redis._interfaces.decorators import circuit_breaker, function_name, retry_on_failure
from msfw_redis._store.keys import canonical_service_name
from tests.integration.conftest import FakeSleep


async def test_breaker_decorator_is_shared_by_name(make_sdk: Any) -> None:
    """Two SDKs (replicas) decorating the same function share one breaker."""
    a, b = make_sdk(), make_sdk()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    in_a = circuit_breaker(failure_threshold=3, recovery_timeout=30.0, sdk=a)(flaky)
    in_b = circuit_breaker(failure_threshold=3, recovery_timeout=30.0, sdk=b)(flaky)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await in_a()
    with pytest.raises(CircuitOpenError) as info:
        await in_b()
    assert 25.0 < info.value.retry_after <= 30.0
    assert calls == 3
    # Breakers are named in the canonical (hyphenated) form of the function name.
    assert info.value.breaker == canonical_service_name(function_name(flaky))


async def test_excluded_exceptions_are_not_failures(make_sdk: Any) -> None:
    """Exceptions listed in exclude pass through without counting."""
    sdk = make_sdk()

    @circuit_breaker(failure_threshold=1, exclude=(KeyError,), sdk=sdk)
    async def lookup(fail: bool) -> int:
        if fail:
            raise KeyError("missing")
        return 1

    for _ in range(3):
        with pytest.raises(KeyError):
            await lookup(True)
    assert await lookup(False) == 1


async def test_retry_decorator_retries_then_succeeds(make_sdk: Any, fake_sleep: FakeSleep) -> None:
    """retry_on_failure makes max_attempts attempts with jittered, growing waits."""
    sdk = make_sdk()
    attempts = 0

    @retry_on_failure(max_attempts=3, delay=0.5, backoff=2.0, sdk=sdk)
    async def sometimes() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("blip")
        return "ok"

    assert await sometimes() == "ok"
    assert attempts == 3
    assert len(fake_sleep.waits) == 2
    assert 0 <= fake_sleep.waits[0] <= 0.5
    assert 0 <= fake_sleep.waits[1] <= 1.0


async def test_retry_decorator_gives_up_with_a_note(make_sdk: Any) -> None:
    """After the last attempt the last exception is raised, noting the attempt count."""
    sdk = make_sdk()

    @retry_on_failure(max_attempts=2, delay=0.0, retry_on=(ConnectionError,), sdk=sdk)
    async def never() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError) as info:
        await never()
    assert any("2 attempts" in note for note in info.value.__notes__)

    @retry_on_failure(max_attempts=5, retry_on=(ConnectionError,), sdk=sdk)
    async def wrong_kind() -> None:
        raise ValueError("not retried")

    with pytest.raises(ValueError, match="not retried"):
        await wrong_kind()


@pytest.mark.parametrize("breaker_outside", [True, False])
async def test_stacked_in_either_order(make_sdk: Any, breaker_outside: bool) -> None:
    """Stacked both ways: retries happen, the breaker counts per the order documented."""
    sdk = make_sdk()
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    retry = retry_on_failure(max_attempts=2, delay=0.0, sdk=sdk)
    breaker = circuit_breaker(
        failure_threshold=2, recovery_timeout=30.0, name=f"stack-{breaker_outside}", sdk=sdk
    )
    fn = breaker(retry(down)) if breaker_outside else retry(breaker(down))
    with pytest.raises(ConnectionError):
        await fn()
    if breaker_outside:
        # One breaker failure per retried call: the breaker is still closed.
        assert attempts == 2
        with pytest.raises(ConnectionError):
            await fn()
        with pytest.raises(CircuitOpenError):
            await fn()
    else:
        # Each attempt is a breaker failure: two attempts open it.
        assert attempts == 2
        with pytest.raises(CircuitOpenError):
            await fn()


def test_bad_decorator_arguments() -> None:
    """Invalid settings fail at decoration time."""
    from msfw_redis import ConfigurationError

    with pytest.raises(ValueError, match="max_attempts"):
        retry_on_failure(max_attempts=0)
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        circuit_breaker(failure_threshold=0)
