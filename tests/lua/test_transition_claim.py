"""lua/transition_claim.lua, called directly."""

from __future__ import annotations

import pytest

from msfw_redis._exceptions import StoreError
from msfw_redis._store.replies import reply_int
from msfw_redis._store.store import Store


async def test_first_claim_wins_and_the_key_expires(store: Store) -> None:
    """The first caller claims a generation (1), the next gets 0; the claim carries its expiry."""
    key = store.keys.key("pay", "breaker", "logged", "*", "3")
    assert reply_int(await store.run("transition_claim", [key], [60_000])) == 1
    assert reply_int(await store.run("transition_claim", [key], [60_000])) == 0
    ttl = await store.client.pttl(key)
    assert 0 < ttl <= 60_000
    other = store.keys.key("pay", "breaker", "logged", "*", "4")
    assert reply_int(await store.run("transition_claim", [other], [60_000])) == 1


@pytest.mark.parametrize("ttl_ms", [0, -5, 1.5, "soon"])
async def test_bad_ttl_is_refused(store: Store, ttl_ms: object) -> None:
    """A ttl that is not a positive integer is an error naming the argument, and writes nothing."""
    key = store.keys.key("pay", "breaker", "logged", "*", "9")
    with pytest.raises(StoreError, match="ttl_ms"):
        await store.run("transition_claim", [key], [ttl_ms])
    assert await store.client.exists(key) == 0
