"""In-process coalescing: one running work per key, shared by concurrent callers."""

from __future__ import annotations

import asyncio

import pytest

from msfw_redis._cache.flights import Flights


async def test_concurrent_callers_share_one_run() -> None:
    """Callers arriving while the leader runs get its result and are marked followers."""
    flights: Flights[str] = Flights()
    gate = asyncio.Event()
    runs = 0

    async def work() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return "done"

    calls = [asyncio.ensure_future(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*calls)
    assert runs == 1
    assert sorted(follower for _, follower in results) == [False, True, True, True, True]
    assert {value for value, _ in results} == {"done"}
    assert len(flights) == 0


async def test_keys_do_not_share() -> None:
    """Different keys run independently."""
    flights: Flights[str] = Flights()

    async def work() -> str:
        await asyncio.sleep(0)
        return "x"

    results = await asyncio.gather(flights.run("a", work), flights.run("b", work))
    assert [follower for _, follower in results] == [False, False]


async def test_cancelled_follower_leaves_the_leader_alone() -> None:
    """A follower that gives up does not cancel the shared run."""
    flights: Flights[str] = Flights()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    leader = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(flights.run("k", work))
    await asyncio.sleep(0)
    follower.cancel()
    gate.set()
    assert await leader == ("done", False)
    with pytest.raises(asyncio.CancelledError):
        await follower


async def test_cancelled_leader_hands_over_to_a_follower() -> None:
    """When the leader is cancelled, a follower starts over as the new leader."""
    flights: Flights[str] = Flights()
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def quick() -> str:
        return "second"

    leader = asyncio.ensure_future(flights.run("k", hang))
    await started.wait()
    follower = asyncio.ensure_future(flights.run("k", quick))
    await asyncio.sleep(0)
    leader.cancel()
    assert await asyncio.wait_for(follower, 5) == ("second", False)
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_leader_error_makes_followers_retry_not_fail() -> None:
    """An unexpected error in the leader reaches the leader's caller only."""
    flights: Flights[str] = Flights()
    started = asyncio.Event()
    release = asyncio.Event()

    async def broken() -> str:
        started.set()
        await release.wait()
        raise RuntimeError("bug")

    async def fine() -> str:
        return "ok"

    leader = asyncio.ensure_future(flights.run("k", broken))
    await started.wait()
    follower = asyncio.ensure_future(flights.run("k", fine))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError, match="bug"):
        await leader
    assert await follower == ("ok", False)
