"""The HTTP cache across OS processes sharing one real Redis (issue 13, items 2 and 3)."""

from __future__ import annotations

import multiprocessing as mp
import uuid

from msfw_redis.testing import run_in_processes
from tests.distributed import _http_cache_workers as workers


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_vary_tenant_is_never_served_to_another_tenant(real_redis_url: str) -> None:
    """Vary: X-Tenant: globex, after acme filled the entry in another process, gets its own body."""
    ctx = mp.get_context("spawn")
    first, second = ctx.Event(), ctx.Event()
    prefix = _prefix()
    with workers.EchoOrigin() as origin:
        acme, globex = run_in_processes(
            workers.header_worker,
            [
                (real_redis_url, prefix, origin.port, "/vary", "X-Tenant", "acme", first, second),
                (
                    real_redis_url,
                    prefix,
                    origin.port,
                    "/vary",
                    "X-Tenant",
                    "second:globex",
                    first,
                    second,
                ),
            ],
        )
        assert acme == [{"tenant": "acme"}] * 2
        assert globex == [{"tenant": "globex"}] * 2
        # One origin call per variant: each variant's second call was a cache hit.
        assert origin.counts["/vary 200"] == 2


def test_x_api_key_is_a_credential(real_redis_url: str) -> None:
    """X-Api-Key: bob never receives alice's body, cached in another process."""
    ctx = mp.get_context("spawn")
    first, second = ctx.Event(), ctx.Event()
    prefix = _prefix()
    with workers.EchoOrigin() as origin:
        alice, bob = run_in_processes(
            workers.header_worker,
            [
                (
                    real_redis_url,
                    prefix,
                    origin.port,
                    "/whoami",
                    "X-Api-Key",
                    "alice",
                    first,
                    second,
                ),
                (
                    real_redis_url,
                    prefix,
                    origin.port,
                    "/whoami",
                    "X-Api-Key",
                    "second:bob",
                    first,
                    second,
                ),
            ],
        )
        assert alice == [{"key": "alice"}] * 2
        assert bob == [{"key": "bob"}] * 2
        assert origin.counts["/whoami 200"] == 2


def test_etag_revalidation_across_processes(real_redis_url: str) -> None:
    """One full origin response, then only 304s; both processes serve the renewed entry."""
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    prefix = _prefix()
    calls = 5
    with workers.EchoOrigin() as origin:
        start.set()
        results = run_in_processes(
            workers.etag_worker,
            [(real_redis_url, prefix, origin.port, calls, start)] * 2,
        )
        bodies = [body for out, _ in results for body in out]
        assert bodies == [{"doc": "x" * 1000}] * (2 * calls)
        assert origin.counts["/etag 200"] == 1
        assert origin.counts["/etag 304"] == 2 * calls - 1
        assert sum(m["not_modified"] for _, m in results) == 2 * calls - 1


def test_near_cache_invalidated_across_processes(real_redis_url: str) -> None:
    """B serves the new value after A clears the key: with a 30 s staleness bound only the
    pub/sub invalidation can have done it."""
    ctx = mp.get_context("spawn")
    ready, changed, done = ctx.Event(), ctx.Event(), ctx.Event()
    prefix = _prefix()
    with workers.EchoOrigin() as origin:
        reader, _ = run_in_processes(
            workers.near_worker,
            [
                (real_redis_url, prefix, origin.port, ready, changed, done, "reader"),
                (real_redis_url, prefix, origin.port, ready, changed, done, "writer"),
            ],
        )
        first, again, near_hits, seen = reader
        assert first == again == {"value": "v1"}
        assert near_hits == 1
        assert seen == {"value": "v2"}


def test_near_cache_with_pubsub_paused_respects_max_staleness(real_redis_url: str) -> None:
    """B's pub/sub is paused while A refills: B serves v2, never v1, once its copy passes
    near_cache_max_staleness, and never goes back to v1."""
    ctx = mp.get_context("spawn")
    ready, changed = ctx.Event(), ctx.Event()
    prefix = _prefix()
    staleness = 1.0
    with workers.EchoOrigin() as origin:
        reader, refilled = run_in_processes(
            workers.near_paused_worker,
            [
                (real_redis_url, prefix, origin.port, ready, changed, staleness, "reader"),
                (real_redis_url, prefix, origin.port, ready, changed, staleness, "writer"),
            ],
        )
    assert refilled == {"value": "v2"}
    assert reader["first"] == {"value": "v1"}
    assert reader["warm_near_hits"] >= 1
    # The invalidation really was lost: B's paused subscriber delivered nothing.
    assert reader["messages_while_paused"] == 0
    reads = reader["reads"]
    values = [value["value"] for _, value in reads]
    assert set(values) <= {"v1", "v2"}, values
    # Every read that began past the bound (measured from the last possible v1 read
    # from Redis) got the refilled value, and the versions never went backwards.
    past_bound = [value for since, value in reads if since >= staleness]
    assert past_bound, reads
    assert all(value == {"value": "v2"} for value in past_bound), reads
    assert values == sorted(values), values
    assert values[-1] == "v2"
