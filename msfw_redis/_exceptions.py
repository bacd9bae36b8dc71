"""The library's one error tree.

Every error that msfw_redis raises derives from :class:`MsfwError`::

    MsfwError
    ├── ConfigurationError (ValueError)       invalid settings; names the field
    ├── InvalidRequestError (ValueError)      a call's arguments are unusable (no I/O done)
    ├── ServiceClientError                     a service call failed
    │   ├── ServiceTimeoutError                a call or its deadline timed out
    │   ├── CircuitOpenError                   the breaker refused the call
    │   ├── BulkheadFullError                  the fleet-wide bulkhead had no permit
    │   ├── RateLimitedError                   a fleet rate limit or Retry-After refused
    │   ├── ResponseTooLargeError (ValueError) decoded body over ``max_response_bytes``
    │   └── ServiceNotFoundError (LookupError) no address is known for a service
    └── StoreError                             the shared Redis store failed
        ├── StoreConnectionError               refused, reset, DNS, TLS
        ├── StoreTimeoutError                  no answer within ``redis_op_timeout``
        ├── StoreRefusedError                  Redis answered but refused the command
        │   ├── StoreReadOnlyError             READONLY: a replica or demoted primary
        │   ├── StorePermissionError           NOPERM: the ACL user lacks a command or key
        │   └── StoreOutOfMemoryError          OOM: ``maxmemory`` reached
        ├── StoreClusterError                  CLUSTERDOWN, TRYAGAIN, MASTERDOWN, cluster
        ├── StoreClientError                   redis-py itself failed (a bug or a race)
        └── ScriptError                        a Lua script replied ``MSFW_<CODE> ...``

Store errors are handled inside the library according to ``store_failure_policy``
and reach a caller only when that policy says so. Redis-py exceptions are turned
into these at a single boundary (``msfw_redis._store.errors``), so no redis-py type ever
escapes. Only :class:`StoreConnectionError` and :class:`StoreTimeoutError` mean "Redis
unavailable"; the others name the cause.
"""

from __future__ import annotations

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigurationError",
    "InvalidRequestError",
    "MsfwError",
    "RateLimitedError",
    "ResponseTooLargeError",
    "ScriptError",
    "ServiceClientError",
    "ServiceNotFoundError",
    "ServiceTimeoutError",
    "StoreClientError",
    "StoreClusterError",
    "StoreConnectionError",
    "StoreError",
    "StoreOutOfMemoryError",
    "StorePermissionError",
    "StoreReadOnlyError",
    "StoreRefusedError",
    "StoreTimeoutError",
]


class MsfwError(Exception):
    """Root of every error raised by msfw_redis."""


class ConfigurationError(MsfwError, ValueError):
    """A setting is invalid. The message names the field (or variable and file)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidRequestError(MsfwError, ValueError):
    """A call was rejected before any network I/O: bad method, endpoint or body."""


class ServiceClientError(MsfwError):
    """A call to another service failed.

    Attributes:
        status_code: the HTTP status of the failed response, or ``None`` when no
            response arrived (connect error, timeout, refused by the breaker).
        service_name: the logical service that was called.
        endpoint: the path (or route template) that was called.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        service_name: str | None = None,
        endpoint: str | None = None,
        response_body: object = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.service_name = service_name
        self.endpoint = endpoint
        self.response_body = response_body
        #: How many attempts were made before this error was raised (set by retries).
        self.attempts: int = 1

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ServiceTimeoutError(ServiceClientError):
    """A call did not complete within its timeout or total deadline."""


class CircuitOpenError(ServiceClientError):
    """The circuit breaker refused the call without sending it.

    Attributes:
        retry_after: seconds until the breaker will admit a probe, computed from
            Redis server time, so it is right on every replica. ``0.0`` when the
            breaker is half-open and all probe slots are taken; ``None`` when it
            was forced open without a TTL (it stays open until reset).
        breaker: the breaker's name (``service`` or ``service:endpoint``).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        breaker: str = "",
        service_name: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, service_name=service_name, endpoint=endpoint)
        self.retry_after = retry_after
        self.breaker = breaker


class ServiceNotFoundError(ServiceClientError, LookupError):
    """No address is known for a service: not in the registry, not in the settings."""


class StoreError(MsfwError):
    """The shared Redis store failed to answer an operation."""


class StoreConnectionError(StoreError):
    """Redis refused or dropped the connection."""


class StoreTimeoutError(StoreError):
    """Redis did not answer within ``redis_op_timeout``."""


class StoreRefusedError(StoreError):
    """Redis is reachable but refused the command (it is not an outage)."""


class StoreReadOnlyError(StoreRefusedError):
    """READONLY: the server is a replica (or a demoted primary) and refuses writes."""


class StorePermissionError(StoreRefusedError):
    """NOPERM: the ACL user may not run a command or touch a key.

    Attributes:
        command: the command refused, when Redis named it (e.g. ``"hset"``).
        key_pattern: the key pattern the library needs access to, e.g. ``"msfw:*"``.
    """

    def __init__(
        self, message: str, *, command: str | None = None, key_pattern: str | None = None
    ) -> None:
        super().__init__(message)
        self.command = command
        self.key_pattern = key_pattern


class StoreOutOfMemoryError(StoreRefusedError):
    """OOM: Redis reached ``maxmemory`` and refuses writes."""


class StoreClusterError(StoreError):
    """A Redis Cluster error: CLUSTERDOWN, TRYAGAIN, MASTERDOWN or another cluster fault."""


class StoreClientError(StoreError):
    """redis-py raised something that is not a Redis error (e.g. ``AttributeError``)."""


class ScriptError(StoreError):
    """A Lua script rejected its input with an ``MSFW_<CODE>`` error reply.

    Attributes:
        code: the ``MSFW_<CODE>`` token, e.g. ``"MSFW_BADARG"``.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class BulkheadFullError(ServiceClientError):
    """The fleet-wide bulkhead had no free permit (within ``max_wait``); nothing was sent.

    It is not a breaker failure: the service was never called.

    Attributes:
        limit: the bulkhead's ``max_concurrent_calls``.
        in_flight: permits the fleet held when the call was refused.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        in_flight: int,
        service_name: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, service_name=service_name, endpoint=endpoint)
        self.limit = limit
        self.in_flight = in_flight


class RateLimitedError(ServiceClientError):
    """A fleet-wide rate limit, or a Retry-After window, refused the call; nothing was sent.

    It is not a breaker failure.

    Attributes:
        retry_after: seconds until the call would be admitted, from Redis server time.
        limit: which limit refused: the rate limit's key, or ``"retry-after"``.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        limit: str = "",
        service_name: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, service_name=service_name, endpoint=endpoint)
        self.retry_after = retry_after
        self.limit = limit


class ResponseTooLargeError(ServiceClientError, ValueError):
    """The decoded response body exceeds ``max_response_bytes``; decoding stopped there.

    The origin answered, but with more than the caller accepts: it is not a breaker
    failure. ``status_code`` is the origin's status; the message names the limit.
    """
