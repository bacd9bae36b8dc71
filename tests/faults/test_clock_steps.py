"""A host clock step while a breaker is OPEN cannot stretch or shorten its cool-down."""

from __future__ import annotations

import time

import pytest
import redis

from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._store.clock import ServerClock
from msfw_redis._store.store import Store

CFG = CircuitBreakerConfig(failure_threshold=1, timeout=2.0, success_flush_interval=0.0)


def _server_ms(url: str) -> int:
    seconds, micros = redis.Redis.from_url(url).time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.real_redis
@pytest.mark.parametrize("step", [10.0, -10.0, 3600.0, -3600.0])
async def test_clock_step_keeps_cool_down(
    real_redis_url: str, step: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With time.time stepped by ±10 s or ±1 h, retry_after matches Redis time within 50 ms."""
    store = Store.from_url(real_redis_url, key_prefix=f"clockstep{int(step)}")
    await store.start()
    hub = BreakerHub(store, None)
    breaker = hub.get(f"svc{abs(int(step))}", config=CFG)
    await (await breaker.acquire()).failure()  # opens it
    open_until = breaker.state().retry_after  # baseline before the step
    assert open_until > 0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + step)
    with pytest.raises(CircuitOpenError) as info:
        await breaker.acquire()
    shared = await breaker.refresh()
    expected_s = (shared.opened_at or 0) + CFG.timeout - _server_ms(real_redis_url) / 1000.0
    assert abs(info.value.retry_after - expected_s) < 0.05
    assert 0 < info.value.retry_after <= CFG.timeout
    await hub.aclose()
    await store.aclose()


async def test_server_clock_uses_monotonic_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """ServerClock.now_ms does not move when the wall clock is stepped by an hour."""
    clock = ServerClock()

    async def server() -> int:
        return 1_000_000

    await clock.sync(server, samples=1)
    before = clock.now_ms()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    assert abs(clock.now_ms() - before) < 1000
