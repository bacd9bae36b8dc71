"""The cache's Redis operations: one method per ``lua/cache_*.lua`` script.

Key schema (all built by :class:`~msfw_redis._keys.KeySchema`, all carrying the
service's ``{hash tag}``, so every script call stays in one Cluster slot)::

    <prefix>:v1:{<service>}:cache:e:<digest>   entry hash: v sa fu su g + lease lt lu lg w
    <prefix>:v1:{<service>}:cache:gen          generation hash: '_' service, f<hash> function
    <prefix>:v1:{<service>}:cache:events       pub/sub channel for fill wake-ups

Every key gets an expiry: an entry lives until its stale-until (a lease hash twice its
lease), and the generation hash at least as long as any entry (and a week after a
bump), so nothing outlives its use and a bump can never be undone by an expiry.

Methods raise :class:`~msfw_redis.StoreError` subclasses; the cache decides what a
failure means. Times passed to the scripts are integer ms (``0`` = the server's
``TIME``; a ``now_ms`` callable may pin it in tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from msfw_redis._exceptions import StoreError
from msfw_redis._store.replies import reply_int, reply_list

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._cache.keys import CacheKey
    from msfw_redis._store.store import Store

__all__ = [
    "GENERATION_KEEP_MS",
    "LOOKUP_MALFORMED",
    "LOOKUP_TAKEOVER",
    "CacheStore",
    "Lookup",
    "PeekRequest",
    "seconds_to_ms",
]

#: How long a bumped generation hash is kept at least (ms): far above any lease.
GENERATION_KEEP_MS = 7 * 24 * 3600 * 1000
#: cache_lookup flags: an expired lease was taken over; a malformed entry was deleted.
LOOKUP_TAKEOVER = 1
LOOKUP_MALFORMED = 2


def seconds_to_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds * 1000.0))


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Lookup(NamedTuple):
    """A cache_lookup reply (see the script header). ``value`` is ``b""`` unless
    ``state`` is FRESH or STALE; ``token`` is ``""`` unless a lease was granted.

    A named tuple, not a frozen dataclass: it is built once per hit, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost about 4 µs of
    a hit on a 2-core machine, a tuple well under 1 µs.
    """

    state: str
    token: str
    value: bytes
    stored_at_ms: int
    fresh_until_ms: int
    stale_until_ms: int
    wait_ms: int
    flags: int
    now_ms: int


class PeekRequest(NamedTuple):
    """One key's 'peek' lookup, encoded once and sent as is on every hit.

    See :meth:`CacheStore.peek_request`. ``function`` is the key's generation scope:
    two keys may share a digest but not a scope (a ``key_func`` string used by two
    functions), so a caller keeping requests by digest checks it before reuse.
    """

    function: str
    keys: list[bytes]
    args: list[bytes]


def _parse_lookup(reply: object) -> Lookup:
    """A cache_lookup reply, either form; a StoreError for anything else."""
    if not isinstance(reply, bytes):
        raise StoreError(f"cache_lookup replied {type(reply).__name__}, expected a bulk string")
    if reply[:2] == b"F ":
        return _short_fresh(reply)
    # Eight head fields, then the envelope (which may itself hold spaces).
    fields = reply.split(b" ", 8)
    if len(fields) != 9:
        raise StoreError(f"cache_lookup replied a head of {len(fields) - 1} fields, expected 8")
    state, granted, stored, fresh, stale, wait, flags, now, value = fields
    try:
        # Positional: keyword arguments would cost a visible share of a hit.
        return Lookup(
            state.decode(),
            "" if granted == b"-" else granted.decode(),
            value,
            int(stored),
            int(fresh),
            int(stale),
            int(wait),
            int(flags),
            int(now),
        )
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"cache_lookup replied a malformed head {fields[:8]!r}") from None


class _UnreadableShortReply(StoreError):
    """The short FRESH reply carries entry times Lua reads and Python's int does not."""


def _short_fresh(reply: bytes) -> Lookup:
    """The short form's FRESH reply: 'F stored fresh stale sec usec envelope'."""
    fields = reply.split(b" ", 6)
    if len(fields) != 7:
        raise StoreError(f"cache_lookup replied a short head of {len(fields) - 1} fields")
    _, stored, fresh, stale, sec, usec, value = fields
    try:
        return Lookup(
            "FRESH", "", value, int(stored), int(fresh), int(stale), 0, 0,
            int(sec) * 1000 + int(usec) // 1000,
        )  # fmt: skip
    except ValueError:
        # Times the entry holds in a form Lua reads and Python does not ('1e15'): the
        # short form passes them on as stored, the long form prints them with %d.
        raise _UnreadableShortReply(
            f"cache_lookup replied a malformed short head {fields[:6]!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class _Names:
    entry_prefix: str
    generations: str
    channel: str


class CacheStore:
    """Runs the cache scripts for a :class:`~msfw_redis._store.Store`."""

    def __init__(self, store: Store, now_ms: Callable[[], int] | None = None) -> None:
        self._store = store
        self._now_ms = now_ms
        self._names: dict[str, _Names] = {}

    def _for(self, service: str) -> _Names:
        names = self._names.get(service)
        if names is None:
            keys = self._store.keys
            names = _Names(
                entry_prefix=keys.key(service, "cache", "e", ""),
                generations=keys.key(service, "cache", "gen"),
                channel=keys.channel(service, "cache"),
            )
            self._names[service] = names
        return names

    def entry_key(self, key: CacheKey) -> str:
        """The Redis key of ``key``'s entry hash."""
        return self._for(key.service).entry_prefix + key.digest

    def generation_key(self, service: str) -> str:
        """The Redis key of ``service``'s generation hash."""
        return self._for(service).generations

    def channel(self, service: str) -> str:
        """The pub/sub channel on which ``service``'s fills wake waiters."""
        return self._for(service).channel

    def _now(self) -> int:
        return self._now_ms() if self._now_ms is not None else 0

    async def lookup(self, key: CacheKey, mode: str, token: str, *, lease_ms: int) -> Lookup:
        """Serve or lease (``mode`` 'get', 'peek' or 'force'), one round trip."""
        if mode == "peek":  # never leases: token and lease_ms mean nothing to it
            return await self.peek(self.peek_request(key))
        names = self._for(key.service)
        reply = await self._store.run(
            "cache_lookup",
            [names.entry_prefix + key.digest, names.generations],
            [mode, token, lease_ms, key.function_field, self._now()],
        )
        return _parse_lookup(reply)

    def peek_request(self, key: CacheKey) -> PeekRequest:
        """``key``'s 'peek' (no lease, server time), for :meth:`peek`.

        Keys and arguments are bytes, in the script's short form: redis-py encodes a
        str in five type checks and a call, and under callgrind building, encoding
        and packing them per call was a sixth of what a hit cost this process beyond
        a bare EVALSHA.
        """
        names = self._for(key.service)
        return PeekRequest(
            key.function,
            [(names.entry_prefix + key.digest).encode(), names.generations.encode()],
            [b"peek", key.function_field.encode()],
        )

    async def peek(self, request: PeekRequest) -> Lookup:
        """Serve a fresh or stale entry, never leasing: one round trip.

        An entry whose times only Lua can read (written by hand, say, as '1e15') costs
        a second round trip in the long form, which prints them as integers: it is
        served like any other, never taken for a failing store.
        """
        if self._now_ms is None:  # a pinned clock needs the long form (it carries now_ms)
            reply = await self._store.run("cache_lookup", request.keys, request.args)
            try:
                return _parse_lookup(reply)
            except _UnreadableShortReply:
                pass
        long_form = [b"peek", b"", 1, request.args[1], self._now()]
        return _parse_lookup(await self._store.run("cache_lookup", request.keys, long_form))

    async def fill(
        self,
        key: CacheKey,
        token: str,
        blob: bytes,
        *,
        fresh_ms: int,
        stale_ms: int,
        announce: bool = False,
    ) -> int:
        """Store ``blob`` under lease ``token``: 1 stored, 0 lease lost, -1 generation changed.

        ``announce`` publishes the fill even when nobody waits, for near caches.
        """
        names = self._for(key.service)
        reply = reply_list(
            await self._store.run(
                "cache_fill",
                [names.entry_prefix + key.digest, names.generations],
                [
                    token,
                    blob,
                    fresh_ms,
                    stale_ms,
                    key.function_field,
                    names.channel,
                    key.digest,
                    self._now(),
                    "1" if announce else "",
                ],
            )
        )
        return reply_int(reply[0])

    async def release(self, key: CacheKey, token: str) -> bool:
        """Give up lease ``token`` and tell its waiters to call the origin."""
        names = self._for(key.service)
        reply = reply_list(
            await self._store.run(
                "cache_release",
                [names.entry_prefix + key.digest],
                [token, names.channel, key.digest],
            )
        )
        return reply_int(reply[0]) == 1

    async def drop(self, key: CacheKey, stored_at_ms: int) -> bool:
        """Delete the entry stored at ``stored_at_ms`` if it is still the current one."""
        names = self._for(key.service)
        reply = await self._store.run(
            "cache_drop",
            [names.entry_prefix + key.digest],
            [stored_at_ms, names.channel, key.digest],
        )
        return reply_int(reply) == 1

    async def clear(self, key: CacheKey) -> bool:
        """Delete one entry and its lease; True if something was deleted."""
        names = self._for(key.service)
        reply = await self._store.run(
            "cache_clear", [names.entry_prefix + key.digest], [names.channel, key.digest]
        )
        return reply_int(reply) > 0

    async def invalidate(self, service: str, field_name: str) -> int:
        """Bump generation ``field_name`` ('_' = whole service); the new generation."""
        reply = await self._store.run(
            "cache_invalidate",
            [self.generation_key(service)],
            [field_name, GENERATION_KEEP_MS, self.channel(service)],
        )
        return reply_int(reply)
