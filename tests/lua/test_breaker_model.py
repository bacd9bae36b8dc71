"""The Python breaker machine (local fallback) against the Lua scripts, by Hypothesis.

Random operation sequences run through ``LocalBreaker`` and through the scripts on each
backend; every reply must be identical. The local fallback therefore behaves exactly
as the shared breaker does.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msfw_redis._breaker.machine import BreakerParams, LocalBreaker
from msfw_redis._store.scripts import load_scripts

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPTS = load_scripts()
T0 = 1_700_000_000_000
# Every duration is a multiple of SCALE ms. The scripts compare the virtual ``now`` they
# are given, but the expiries they set (a probe set's lease_ms * 2, a rate window's
# window_ms + a bucket) run on the server's real clock: unscaled, a 1 ms lease's probe
# set expired while a loaded machine ran the example, and the script no longer matched
# the model (a flake, about 1 run in 3). Scaled, every real expiry is 20 s or more, and
# since all times are multiples of SCALE, every boundary is still hit exactly.
SCALE = 10_000


def _ms(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high).map(lambda v: v * SCALE)


op = st.one_of(
    st.tuples(st.just("advance"), _ms(0, 3_000)),
    st.tuples(st.just("acquire"), st.integers(0, 3)),
    st.tuples(st.just("record"), st.integers(0, 3), st.integers(0, 2), st.integers(0, 1),
              st.integers(-1, 1)),
    st.tuples(st.just("control"), st.sampled_from(["open", "close", "disable", "reset"]),
              st.sampled_from([0, 500 * SCALE, 2_000 * SCALE])),
)  # fmt: skip
params_st = st.builds(
    BreakerParams,
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 3),
    open_ms=_ms(1, 2_500),
    rate_permille=st.sampled_from([0, 0, 250, 500, 1000]),
    minimum_calls=st.integers(1, 5),
    window_ms=st.sampled_from([10 * SCALE, 1_000 * SCALE, 5_000 * SCALE]),
    half_open_max=st.integers(1, 3),
    lease_ms=_ms(1, 3_000),
    key_ttl_ms=st.just(3_600_000),
)


@pytest.fixture
def sync_client(redis_url: str) -> Iterator[Any]:
    if redis_url.startswith("memory://"):
        client: Any = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = redis.Redis.from_url(redis_url)
    for script in SCRIPTS.values():
        client.script_load(script.source)
    yield client
    client.close()


def _run(client: Any, name: str, keys: list[str], args: list[object]) -> list[int]:
    # The store appends the publish mode to scripts that publish (lua/lib/publish.lua).
    mode = ["publish"] if "lib/publish.lua" in SCRIPTS[name].includes else []
    reply = client.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args, *mode)
    return [int(v) for v in reply]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=params_st, ops=st.lists(op, min_size=1, max_size=40))
def test_local_machine_matches_lua(
    sync_client: Any, params: BreakerParams, ops: list[tuple[Any, ...]]
) -> None:
    """Every acquire/record/control reply of LocalBreaker equals the script's reply."""
    prefix = f"model{uuid.uuid4().hex[:10]}"
    keys = [f"{prefix}:v1:{{svc}}:breaker:{part}:*" for part in ("state", "probes", "window")]
    channel = f"{prefix}:v1:{{svc}}:breaker:events"
    local = LocalBreaker(params)
    now = T0
    tokens: list[str] = []
    gen_seen = 0
    p = params
    for step in ops:
        kind = step[0]
        if kind == "advance":
            now += step[1]
            continue
        if kind == "acquire":
            token = f"t{len(tokens)}"
            tokens.append(token)
            expected = local.acquire(token, now).as_reply()
            args = [channel, "*", token, p.half_open_max, p.lease_ms, p.key_ttl_ms, now]
            got = _run(sync_client, "breaker_acquire", keys[:2], args)
        elif kind == "record":
            _, succ, fail, use_token, gen_delta = step
            if succ == 0 and fail == 0:
                succ = 1
            gen = max(0, gen_seen + gen_delta)
            token = tokens[-1] if use_token and tokens else ""
            expected = local.record(gen, succ, fail, token, now).as_reply()
            got = _run(sync_client, "breaker_record", keys,
                       [channel, "*", gen, succ, fail, token, p.failure_threshold,
                        p.success_threshold, p.open_ms, p.rate_permille, p.minimum_calls,
                        p.window_ms, p.key_ttl_ms, now])  # fmt: skip
        else:
            _, action, ttl_ms = step
            expected = local.control(action, ttl_ms, now).as_reply()
            got = _run(sync_client, "breaker_control", keys,
                       [channel, "*", action, ttl_ms, p.key_ttl_ms, now])  # fmt: skip
        assert got == expected, (step, got, expected)
        gen_seen = got[2]
        read = _run(sync_client, "breaker_read", keys[:2], [now])
        state, until = int(local.state), local.open_until_ms
        if local.state.manual and until > 0 and now >= until:
            state, until = 0, 0  # an expired override reads as CLOSED
        live_probes = sum(1 for exp in local.probes.values() if exp > now)
        fat = local.failures_at_trip if state in (1, 2) else 0
        assert read[1:] == [
            state, local.gen, local.failures, local.successes, local.opened_at_ms, until, now,
            fat, local.total_failures, local.total_successes, local.trips, live_probes,
        ], (step, read)  # fmt: skip
