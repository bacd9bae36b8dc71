"""lua/lib/publish.lua: the store appends the publish mode; a script without it refuses."""

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from msfw_redis._store.replies import reply_list
from msfw_redis._store.scripts import load_scripts
from msfw_redis._store.store import Store

SCRIPTS = load_scripts()
PUBLISHERS = sorted(n for n, s in SCRIPTS.items() if "lib/publish.lua" in s.includes)


def test_every_script_that_publishes_goes_through_the_helper() -> None:
    """No script calls PUBLISH itself: the mode branch lives in one helper."""
    for name, script in SCRIPTS.items():
        if "lib/publish.lua" not in script.includes:
            assert "'PUBLISH'" not in script.source and "'SPUBLISH'" not in script.source, name
        else:
            # Only the helper's own two calls, one per mode.
            assert script.source.count("redis.call('PUBLISH'") == 1, name
            assert script.source.count("redis.call('SPUBLISH'") == 1, name
            assert "-- ARGV[last] - publish mode" in script.source, name
    assert "breaker_record" in PUBLISHERS and "cache_fill" in PUBLISHERS


async def test_a_publishing_script_without_the_mode_flag_is_refused(store: Store) -> None:
    """Called directly without the store's flag, the script names what is missing."""
    script = SCRIPTS["limits_retryafter_close"]
    await store.client.script_load(script.source)
    key = store.keys.retry_after_gate("svc")
    with pytest.raises(rexc.ResponseError, match="publish mode"):
        await store.client.evalsha(script.sha, 1, key, "ch", "/x", 1, 10, 0)
    assert await store.client.exists(key) == 0


async def test_the_store_appends_the_mode_and_the_event_arrives(store: Store) -> None:
    """Through Store.run the same script runs, and a subscriber on the channel hears it."""
    channel = store.keys.limits_channel("svc")
    pubsub = store.client.pubsub()
    await pubsub.subscribe(channel)
    try:
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        reply = reply_list(
            await store.run(
                "limits_retryafter_close",
                [store.keys.retry_after_gate("svc")],
                [channel, "/x", 1000, 10_000, 0],
            )
        )
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None and message["data"].startswith(b"gate|")
        assert int(reply[0]) > int(reply[1])
    finally:
        await pubsub.aclose()
