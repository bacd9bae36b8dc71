"""The curated public surface of msfw_redis."""

from __future__ import annotations

import msfw_redis
import msfw_redis.testing


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, has no duplicates and lists exactly the public names."""
    assert msfw_redis.__all__ == sorted(set(msfw_redis.__all__))
    public = {
        name
        for name in vars(msfw_redis)
        if not name.startswith("_") and not isinstance(getattr(msfw_redis, name), type(msfw_redis))
    }
    assert public == set(msfw_redis.__all__)


def test_every_exported_name_resolves_and_is_documented() -> None:
    """Every exported name exists and carries a docstring."""
    for name in msfw_redis.__all__:
        obj = getattr(msfw_redis, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_error_tree_has_one_root() -> None:
    """Every exported exception derives from MsfwError."""
    for name in msfw_redis.__all__:
        obj = getattr(msfw_redis, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, msfw_redis.MsfwError), name


def test_seed_error_relationships() -> None:
    """Seed code catches CircuitOpenError/ServiceTimeoutError before ServiceClientError."""
    assert issubclass(msfw_redis.CircuitOpenError, msfw_redis.ServiceClientError)
    assert issubclass(msfw_redis.ServiceTimeoutError, msfw_redis.ServiceClientError)
    assert issubclass(msfw_redis.ServiceNotFoundError, LookupError)
    assert issubclass(msfw_redis.ConfigurationError, ValueError)
    assert not issubclass(msfw_redis.StoreError, msfw_redis.ServiceClientError)


def test_response_too_large_error_is_public_and_a_client_error() -> None:
    """ResponseTooLargeError is exported, is a ServiceClientError and is the one body.py raises."""
    from msfw_redis._pipeline import body

    assert "ResponseTooLargeError" in msfw_redis.__all__
    assert issubclass(msfw_redis.ResponseTooLargeError, msfw_redis.ServiceClientError)
    assert issubclass(msfw_redis.ResponseTooLargeError, ValueError)
    assert body.ResponseTooLargeError is msfw_redis.ResponseTooLargeError


def test_testing_module_all_is_sorted() -> None:
    """msfw_redis.testing also has a sorted __all__ of resolvable names."""
    names = msfw_redis.testing.__all__
    assert names == sorted(set(names))
    for name in names:
        assert hasattr(msfw_redis.testing, name)


def test_resilient_transport_is_public_and_an_httpx_transport() -> None:
    """ResilientTransport is exported and plugs into httpx.AsyncClient as a transport."""
    import httpx

    assert "ResilientTransport" in msfw_redis.__all__
    assert issubclass(msfw_redis.ResilientTransport, httpx.AsyncBaseTransport)
