"""Cluster replies that escape redis-py's cluster client map into StoreClusterError."""

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from msfw_redis._exceptions import StoreClientError, StoreClusterError
from msfw_redis._store.errors import is_outage, translate_error
from msfw_redis._store.store import Store


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (rexc.TryAgainError("Multiple keys request during rehashing of slot"), "TRYAGAIN"),
        (rexc.AskError("3999 127.0.0.1:30002"), "ASK"),
        (rexc.MovedError("3999 127.0.0.1:30002"), "MOVED"),
    ],
)
def test_a_redirection_or_tryagain_is_a_cluster_error_naming_its_code(
    exc: Exception, code: str
) -> None:
    """redis-py strips the code from these ResponseErrors; the store error names it."""
    err = translate_error(exc, what="script breaker_read")
    assert type(err) is StoreClusterError
    assert f"breaker_read: {code} " in str(err)
    assert is_outage(err)


def test_redirections_that_ran_out_name_a_slot_migration() -> None:
    """redis-py's "TTL exhausted." says what most likely caused it."""
    err = translate_error(rexc.ClusterError("TTL exhausted."), what="script breaker_read")
    assert type(err) is StoreClusterError
    assert "being migrated" in str(err)


def test_an_attribute_error_from_inside_redis_py_is_a_client_error() -> None:
    """The error seen during a reshard (issue #14) becomes a StoreClientError."""
    exc = AttributeError("'NoneType' object has no attribute 'writelines'")
    err = translate_error(exc, what="GET")
    assert type(err) is StoreClientError
    assert "writelines" in str(err)


class _TornClient:
    """A client whose EVALSHA trips over a connection torn down under it (issue #14)."""

    async def evalsha(self, *args: object) -> object:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")


async def test_store_run_maps_an_attribute_error_from_the_client() -> None:
    """No AttributeError leaves Store.run(): it is a StoreClientError, and no outage."""
    store = Store.from_client(_TornClient(), op_timeout=1.0)  # type: ignore[arg-type]
    with pytest.raises(StoreClientError, match="writelines"):
        await store.run("clock_now", [], [])
    assert store.available  # redis-py's own failure does not close the gate
