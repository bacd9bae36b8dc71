"""The one boundary where redis-py and socket errors become library errors.

Every error is translated here, once, into the :class:`StoreError` tree, with a message
that names its cause:

==========================================  =========================================
redis-py / stdlib                           library error
==========================================  =========================================
``TimeoutError``, ``redis.TimeoutError``    :class:`StoreTimeoutError` (unavailable)
``ConnectionError``, ``OSError``            :class:`StoreConnectionError` (unavailable)
``READONLY``                                :class:`StoreReadOnlyError`
``NOREPLICAS`` (``min-replicas-to-write``)  :class:`StoreReadOnlyError` (the primary
                                            has too few replicas to accept writes)
``NOPERM``                                  :class:`StorePermissionError` (names the
                                            command and the key pattern)
``OOM``                                     :class:`StoreOutOfMemoryError`
``CLUSTERDOWN``, ``TRYAGAIN``,              :class:`StoreClusterError`
``MASTERDOWN``, ``ClusterError``, an
``ASK``/``MOVED`` redis-py did not follow
``MSFW_<CODE> ...`` script replies          :class:`ScriptError`
any other exception from inside redis-py    :class:`StoreClientError`
==========================================  =========================================

Only connection failures and timeouts read as "Redis unavailable"; a refusal means
Redis answered. Messages never carry a credential: :func:`redact` masks any
``scheme://user:password@`` it finds.
"""

from __future__ import annotations

import re

from redis import exceptions as rexc

from msfw_redis._exceptions import (
    ScriptError,
    StoreClientError,
    StoreClusterError,
    StoreConnectionError,
    StoreError,
    StoreOutOfMemoryError,
    StorePermissionError,
    StoreReadOnlyError,
    StoreRefusedError,
    StoreTimeoutError,
)
from msfw_redis._urls import redact, redact_url

__all__ = [
    "is_outage",
    "is_refusal",
    "redact",
    "redact_url",
    "translate_error",
]

# redis-py: "User x has no permissions to run the 'hset' command"; scripts add "script: ...".
_NOPERM_COMMAND = re.compile(r"run the '([^']+)' command")
# Inside a script Redis 7.0 replies "ERR The user executing the script can't run this
# command or subcommand", naming no command; the script's own command list then helps.
_NOPERM_TEXTS = ("NOPERM", "no permissions to", "can't run this command")
_CLUSTER_CODES = ("CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN")
#: Replies redis-py's cluster client follows itself (ASK, MOVED) or retries (TRYAGAIN, a
#: multi-key script whose keys are split by a slot migration); one that still escapes it
#: (its redirections ran out, or a client without cluster support met one) is a cluster
#: error, not a script error. They are ResponseErrors, not ClusterErrors, in redis-py.
_TTL_EXHAUSTED_CAUSE = (
    " (redis-py ran out of ASK/MOVED redirections and TRYAGAIN retries: the slot is "
    "most likely being migrated, with a multi-key call's keys split between two masters)"
)
_CLUSTER_REPLIES: dict[type[BaseException], str] = {
    rexc.TryAgainError: "TRYAGAIN",
    rexc.MovedError: "MOVED",
    rexc.AskError: "ASK",
}


def translate_error(
    exc: BaseException,
    *,
    what: str,
    key_pattern: str | None = None,
    commands: tuple[str, ...] = (),
) -> StoreError:
    """The library error for an exception raised by redis-py while running ``what``.

    ``key_pattern`` (e.g. ``"msfw:*"``) and ``commands`` (those a script calls) are
    named in permission errors, so the message says which ACL grant is missing.
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, (TimeoutError, rexc.TimeoutError)):
        return StoreTimeoutError(f"Redis did not answer {what} in time")
    message = redact(str(exc))
    if isinstance(exc, rexc.ReadOnlyError) or "READONLY" in message:
        return StoreReadOnlyError(
            f"Redis refused {what}: the server is a read-only replica ({message})"
        )
    if "NOREPLICAS" in message:
        return StoreReadOnlyError(
            f"Redis refused {what}: the primary has fewer connected replicas than its "
            f"min-replicas-to-write, so it accepts no writes (cut off from its replica, "
            f"or in a Sentinel failover; {message})"
        )
    if isinstance(exc, rexc.NoPermissionError) or any(t in message for t in _NOPERM_TEXTS):
        return _permission_error(message, what=what, key_pattern=key_pattern, commands=commands)
    if isinstance(exc, rexc.OutOfMemoryError) or "OOM command not allowed" in message:
        return StoreOutOfMemoryError(
            f"Redis refused {what}: out of memory (maxmemory reached; {message})"
        )
    redirect = _CLUSTER_REPLIES.get(type(exc))
    if redirect is not None:
        # redis-py strips the error code from the message: put it back, so the cause
        # (a slot mid-migration, one redis-py could not follow) is named.
        return StoreClusterError(f"Redis Cluster refused {what}: {redirect} {message}")
    if isinstance(exc, (rexc.ClusterError, rexc.RedisClusterException)) or message.startswith(
        _CLUSTER_CODES
    ):
        if "TTL exhausted" in message:
            # redis-py's cluster client gave up after 16 redirections or TRYAGAIN replies.
            message += _TTL_EXHAUSTED_CAUSE
        return StoreClusterError(f"Redis Cluster refused {what}: {message}")
    if isinstance(exc, (rexc.ConnectionError, OSError)):
        return StoreConnectionError(f"Redis connection failed during {what}: {message}")
    if isinstance(exc, rexc.ResponseError):
        if message.startswith("MSFW_"):
            return ScriptError(f"{what}: {message}", code=message.split(" ", 1)[0])
        return StoreError(f"Redis rejected {what}: {message}")
    if isinstance(exc, rexc.RedisError):
        return StoreError(f"Redis error during {what}: {message}")
    # AttributeError and friends: redis-py tripping over a connection torn down under it.
    return StoreClientError(f"redis-py failed during {what}: {type(exc).__name__}: {message}")


def _permission_error(
    message: str, *, what: str, key_pattern: str | None, commands: tuple[str, ...]
) -> StoreError:
    found = _NOPERM_COMMAND.search(message)
    command = found.group(1) if found else None
    if command is not None:
        cause = f"the ACL user may not run {command.upper()}"
    elif commands:
        cause = f"the ACL user may not run one of {', '.join(commands)} (called by it)"
    elif "key" in message.lower():
        cause = "the ACL user may not access a key"
    else:
        cause = "the ACL user lacks a permission"
    if key_pattern is not None:
        cause += f" (the library needs its commands on keys ~{key_pattern})"
    return StorePermissionError(
        f"Redis refused {what}: {cause}; grant it to the ACL user ({message})",
        command=command,
        key_pattern=key_pattern,
    )


def is_outage(err: StoreError) -> bool:
    """True for the errors that mean Redis is unavailable: connection failures, timeouts.

    Cluster errors also close the gate (the shard cannot serve) though their message
    names the cluster cause.
    """
    return isinstance(err, (StoreConnectionError, StoreTimeoutError, StoreClusterError))


def is_refusal(err: StoreError) -> bool:
    """True when Redis answered but refused: READONLY, NOPERM or OOM."""
    return isinstance(err, StoreRefusedError)
