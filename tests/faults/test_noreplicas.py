"""NOREPLICAS (``min-replicas-to-write`` not met) is a refusal that names its cause."""

from __future__ import annotations

import pytest

from msfw_redis._exceptions import StoreReadOnlyError
from msfw_redis._store.errors import is_outage, is_refusal
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer

pytestmark = [pytest.mark.real_redis]


async def test_a_primary_without_its_replica_refuses_scripts_with_a_named_cause(
    key_prefix: str,
) -> None:
    """A primary with min-replicas-to-write 1 and no replica: a state-changing script
    raises StoreReadOnlyError naming NOREPLICAS and the setting; reads still work."""
    with RedisServer(extra_args=["--min-replicas-to-write", "1"]) as server:
        store = Store.from_url(server.url, key_prefix=key_prefix, op_timeout=2.0)
        await store.start()
        try:
            k = store.keys
            key = k.key("orders", "breaker", "state", "default")
            keys = [key, k.key("orders", "breaker", "probes", "default"),
                    k.key("orders", "breaker", "window", "default")]  # fmt: skip
            with pytest.raises(StoreReadOnlyError) as caught:
                await store.run("breaker_control", keys, [
                    f"{key_prefix}:events", "orders", "open", 0, 60000, 0,
                ])  # fmt: skip
            assert "NOREPLICAS" in str(caught.value)
            assert "min-replicas-to-write" in str(caught.value)
            assert is_refusal(caught.value) and not is_outage(caught.value)
            assert store.available
            assert await store.hgetall(key) == {}
        finally:
            await store.aclose()
