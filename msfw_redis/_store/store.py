"""The state store: the only module that talks to Redis for commands.

It owns three things:

* **Script calls.** Every state change is a Lua script from ``lua/``, called by
  EVALSHA with a locally computed SHA1. On NOSCRIPT (after a restart, failover or
  ``SCRIPT FLUSH``) the script is loaded again and the call retried once.
* **Error translation.** redis-py and socket errors become :class:`StoreError`
  subclasses in ``msfw_redis._store.errors``, once. ``NoScriptError`` is caught before
  any broad catch, since it is itself a ``RedisError``.
* **Outage gating.** Each operation has its own timeout (``op_timeout``). After a
  failure the shard's gate (``msfw_redis._store.gates``) closes and further operations
  fail at once, without touching the network, until a growing back-off window passes.
  Only connection failures and timeouts close a gate; a timeout while the event loop
  itself was starved does not (see ``msfw_redis._store.loop``), since Redis may well
  have answered in time.
* **Refusals.** READONLY, NOPERM and OOM mean Redis answered: they do not close the
  gate, and each kind is logged once (:meth:`Store.refusal_backoff` says how long
  callers should wait before writing again).
* **No credential in a log, error or repr:** the URL is shown redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from redis import exceptions as rexc

from msfw_redis._config import DEFAULT_REDIS_OP_TIMEOUT
from msfw_redis._deadline import bounded
from msfw_redis._exceptions import (
    ConfigurationError,
    StoreError,
    StoreTimeoutError,
)
from msfw_redis._store.checks import check_server
from msfw_redis._store.clock import ServerClock
from msfw_redis._store.connection import (
    StoreClient,
    close_client,
    create_client,
    create_pubsub_client,
    resolve_url,
)
from msfw_redis._store.errors import is_outage, is_refusal, redact_url, translate_error
from msfw_redis._store.gates import (
    ShardGates,
    StoreStats,
    is_cluster_client,
    refusal_backoff,
    shard_of,
)
from msfw_redis._store.keys import DEFAULT_KEY_PREFIX, KeySchema
from msfw_redis._store.loop import LoopLagMonitor
from msfw_redis._store.primary_switch import PrimarySwitch
from msfw_redis._store.replies import Reply, encode_arg, reply_int, script_commands
from msfw_redis._store.scripts import LuaScript, load_scripts

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio import Redis

    from msfw_redis._store.sentinel import SentinelWatcher

__all__ = ["Store"]

logger = logging.getLogger("msfw_redis.store")

_PUBLISH_LIB = "lib/publish.lua"
_CLUSTER_DISCOVERY_TIMEOUT = 2.0
_MEMORY_OP_TIMEOUT = 5.0
#: At most this many op timeouts more for an operation whose deadline ran late because
#: the event loop was blocked (each one granted only while the loop stays the late one).
_STALL_GRACE = 4

T = TypeVar("T")


class _ScriptCall(NamedTuple):
    """What :meth:`Store.run` needs per script, worked out once, not on every call."""

    script: LuaScript
    #: The SHA1 pre-encoded: redis-py's encoder passes bytes through in one check, while
    #: a str takes five checks and an encode, on every call of every script.
    sha: bytes
    what: str
    commands: tuple[str, ...]
    publishes: bool


class Store:
    """Async access to the shared Redis state, with timeouts and outage gating.

    Build one with :meth:`from_url` or :meth:`from_client`, then ``await start()``.
    """

    def __init__(
        self,
        client: StoreClient,
        *,
        url: str | None = None,
        op_timeout: float = DEFAULT_REDIS_OP_TIMEOUT,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        owns_client: bool = False,
        pubsub_client_factory: Callable[[], StoreClient] | None = None,
    ) -> None:
        if not op_timeout > 0:
            raise ValueError(f"invalid redis_op_timeout {op_timeout!r}: must be > 0 seconds")
        self.client = client
        self.url = url
        self.op_timeout = op_timeout
        self.keys = KeySchema(key_prefix)
        self.clock = ServerClock()
        self.stats = StoreStats()
        self._owns_client = owns_client
        self._pubsub_client_factory = pubsub_client_factory
        self._client_factory: Callable[[], StoreClient] | None = None
        self._scripts: dict[str, LuaScript] = load_scripts()
        self._calls: dict[str, _ScriptCall] = {}
        self._gates = ShardGates(self.stats, label=self._label())
        self._recovery_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self._clock_syncing = False
        self._loop_lag = LoopLagMonitor(threshold=max(0.05, op_timeout * 0.25))
        self._primary = PrimarySwitch(label=self._label(), connect_timeout=op_timeout)

    def __repr__(self) -> str:
        label, prefix = self._label(), self.keys.prefix
        return f"Store({label!r}, op_timeout={self.op_timeout}, prefix={prefix!r})"

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        *,
        op_timeout: float = DEFAULT_REDIS_OP_TIMEOUT,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> Store:
        """A store for ``url`` (default ``$MSFW_REDIS_URL``, else ``memory://``)."""
        resolved = resolve_url(url)
        if resolved.startswith("memory://"):
            # The embedded store runs in this process and cannot hang or drop; a short
            # timeout would only misread a busy event loop as an outage.
            op_timeout = max(op_timeout, _MEMORY_OP_TIMEOUT)
        client = create_client(resolved, op_timeout=op_timeout)
        store = cls(
            client,
            url=resolved,
            op_timeout=op_timeout,
            key_prefix=key_prefix,
            owns_client=True,
            pubsub_client_factory=lambda: create_pubsub_client(resolved, op_timeout=op_timeout),
        )
        store._client_factory = lambda: create_client(resolved, op_timeout=op_timeout)
        return store

    @classmethod
    def from_client(
        cls,
        client: StoreClient,
        *,
        op_timeout: float = DEFAULT_REDIS_OP_TIMEOUT,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> Store:
        """A store over a ready-made client, which the caller keeps owning.

        The client's own timeouts and retry settings are the caller's; each operation is
        still bounded by ``op_timeout`` here.
        """
        return cls(client, op_timeout=op_timeout, key_prefix=key_prefix, owns_client=False)

    def pubsub_client(self) -> StoreClient:
        """A client for the subscriber connection (see ``msfw_redis._store.events``)."""
        if self._pubsub_client_factory is not None:
            return self._pubsub_client_factory()
        return self.client

    @property
    def sharded_pubsub(self) -> bool:
        """True on Redis Cluster: per-service events go by SPUBLISH/SSUBSCRIBE."""
        return is_cluster_client(self.client)

    @property
    def scripts(self) -> dict[str, LuaScript]:
        return self._scripts

    @property
    def sentinel_watcher(self) -> SentinelWatcher | None:
        """On Sentinel: follows ``+switch-master`` (``msfw_redis._store.sentinel``)."""
        return self._primary.watcher

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Load every script (checking each SHA) and measure the server clock offset.

        Raises :class:`StoreError` when Redis cannot be reached; callers decide by their
        failure policy whether to go on degraded.
        """
        self._primary.start(self.client)
        await self.check_topology()
        if is_cluster_client(self.client):
            # Discovering the slot table takes a few round trips to several nodes: give it
            # more than one op timeout, once, rather than fail the first operations.
            try:
                async with asyncio.timeout(max(self.op_timeout * 8, _CLUSTER_DISCOVERY_TIMEOUT)):
                    await self.client.initialize()
            except Exception as exc:  # AttributeError & co. from inside redis-py too
                raise translate_error(exc, what="cluster discovery") from exc
        await self.load_scripts()
        await self.sync_clock()
        if not (self.url or "").startswith("memory://") and not is_cluster_client(self.client):
            # Bounded like any op; a check that cannot finish is skipped, never fatal.
            # (A cluster's nodes answer INFO each for itself: not checked here yet.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.op_timeout * 4):
                    await check_server(cast("Redis", self.client), label=self._label())

    async def check_topology(self) -> None:
        """Refuse a plain URL that reaches a Cluster node or a replica.

        Through such a URL only some services (or none) would share state, silently:
        the others' scripts get MOVED or READONLY. The error names the URL to use.
        """
        if self.url is None or not self.url.startswith(("redis://", "rediss://", "unix://")):
            return
        try:
            info: Any = await self._op(lambda: self.client.info("server"), what="INFO server")
            repl: Any = await self._op(
                lambda: self.client.info("replication"), what="INFO replication"
            )
        except StoreError as exc:
            if is_outage(exc):
                raise
            # A server without INFO (fakeredis's TCP server in the demo) or an ACL user
            # without it: the topology cannot be told, so it is not refused.
            logger.debug("topology check skipped on %s: %s", self._label(), exc)
            return
        if str(info.get("redis_mode", "")) == "cluster":
            raise ConfigurationError(
                f"redis_url {self._label()} reaches a Redis Cluster node: only the services "
                "whose slots live on that node would share state. Use "
                "redis+cluster://host:port[,host:port...] instead",
                field="redis_url",
            )
        if str(repl.get("role", "")) in ("slave", "replica"):
            raise ConfigurationError(
                f"redis_url {self._label()} reaches a read-only replica: every state change "
                "would fail with READONLY. Point it at the primary, or, with Sentinel, use "
                "redis+sentinel://host:port[,host:port...]/<master_name>",
                field="redis_url",
            )

    async def load_scripts(self) -> None:
        """``SCRIPT LOAD`` every script and check that Redis agrees on its SHA1."""
        for script in self._scripts.values():
            got = await self._load(script)
            if got != script.sha:
                raise StoreError(
                    f"Redis returned SHA {got} for script {script.name!r}, expected {script.sha}"
                )

    async def _load(self, script: LuaScript) -> str:
        sha: Any = await self._op(
            lambda: self.client.script_load(script.source), what=f"SCRIPT LOAD {script.name}"
        )
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def sync_clock(self) -> None:
        """Measure this process's offset to Redis server time."""

        async def read() -> int:
            return reply_int(await self.run("clock_now", [], []))

        self._clock_syncing = True
        try:
            await self.clock.sync(read)
        finally:
            self._clock_syncing = False

    def _maybe_resync_clock(self) -> None:
        # Periodically, and after every recovery (which invalidates the clock), in the
        # background: a caller never waits for the five clock_now round trips.
        if self._clock_syncing or not self.clock.synced or not self.clock.stale():
            return
        self._clock_syncing = True

        async def resync() -> None:
            try:
                await self.sync_clock()
            except StoreError as exc:
                logger.debug("server clock re-measurement failed: %s", exc)

        self._track(asyncio.ensure_future(resync()))

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def rebind(self) -> None:
        """Drop the clients and background tasks of a previous (closed) event loop.

        Their connections belong to that loop and are never awaited here. A store made
        from a URL makes a new client for the running loop; a ready-made client is the
        caller's, and stays.
        """
        self._background.clear()
        self._loop_lag.stop()
        if self._owns_client and self._client_factory is not None:
            self.client = self._client_factory()
        self._primary.rebind(self.client)  # a new client gets a new watcher from start()

    async def release_connections(self) -> None:
        """Close the owned client's connections while their loop still runs (it is
        ending); :meth:`rebind` then makes a fresh client for the next loop."""
        await self._primary.aclose()
        if self._owns_client and self._client_factory is not None:
            with contextlib.suppress(Exception):
                await close_client(self.client)

    async def aclose(self) -> None:
        """Close the connection pool if this store created it."""
        self._loop_lag.stop()
        await self._primary.aclose()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=self.op_timeout)
        if self._owns_client:
            await close_client(self.client)

    # -- Sentinel ---------------------------------------------------------------------

    def on_primary_switch(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``callback`` each time Sentinel announces a new primary (after the store
        dropped its connections to the old one); the event bus moves its subscriber."""
        self._primary.add_listener(callback)

    # -- availability -----------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while any shard of the store is considered down (inside an outage)."""
        return self._gates.available

    @property
    def retry_due(self) -> bool:
        """True when an operation would reach Redis (up, or an outage window passed)."""
        return self._gates.retry_due

    def available_for(self, key: str) -> bool:
        """False while the shard holding ``key`` is considered down."""
        return self._gates.available_for(shard_of(self.client, key))

    def on_recovery(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``callback`` each time the store (or one shard of it) comes back."""
        self._recovery_listeners.append(callback)

    def _recovered(self) -> None:
        self.clock.invalidate()  # a reconnect may be to another server, or a restarted one
        for callback in list(self._recovery_listeners):
            try:
                result = callback()
                if asyncio.iscoroutine(result):
                    self._track(asyncio.ensure_future(result))
            except Exception:
                logger.exception("store recovery listener failed")

    def _label(self) -> str:
        return redact_url(self.url) if self.url else "(client)"

    @property
    def key_pattern(self) -> str:
        """The key pattern every key of this store matches (for ACL grants)."""
        return f"{self.keys.prefix}:*"

    def refusal_backoff(self, err: StoreError) -> float:
        """Seconds to wait before writing again after ``err`` refused a write."""
        return refusal_backoff(err)

    def _timed_out_starved(self, started: float) -> bool:
        # The deadline callback itself ran late, or a monitor tick saw the loop stall.
        late = time.monotonic() - started - self.op_timeout
        if late > self._loop_lag.threshold:
            self._loop_lag.note_lag(late, time.monotonic())
        return self._loop_lag.starved_since(started)

    async def _op(
        self,
        make: Callable[[], Awaitable[T]],
        *,
        what: str,
        key: str | bytes | None = None,
        commands: tuple[str, ...] = (),
    ) -> T:
        gates = self._gates
        shard = shard_of(self.client, key)
        gates.check(what, shard)
        self._loop_lag.ensure_running()
        started = time.monotonic()
        try:
            # A deadline that runs late because this process's loop was blocked gives
            # the operation another op timeout (up to _STALL_GRACE of them): its reply
            # may be waiting unread.
            result = await bounded(
                make(),
                self.op_timeout,
                stall_grace=self.op_timeout * _STALL_GRACE,
                stall_threshold=self._loop_lag.threshold,
                stalled=self._loop_lag.starved_since,
            )
        except rexc.NoScriptError:
            raise
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            # redis-py can raise AttributeError & co. (its cluster client trips over a
            # connection it closed itself during a reshard); translate them all.
            err = translate_error(exc, what=what, key_pattern=self.key_pattern, commands=commands)
            if isinstance(err, StoreTimeoutError) and self._timed_out_starved(started):
                # Not Redis's fault: the reply may have sat unread behind a busy loop.
                self.stats.starved_timeouts += 1
                raise StoreTimeoutError(
                    f"{what} timed out while this process's event loop was blocked "
                    f"(lag > {self._loop_lag.threshold * 1000:.0f} ms); Redis not marked down"
                ) from exc
            if is_outage(err):
                gates.failure(err, shard)
            else:
                if is_refusal(err):
                    gates.note_refusal(err)
                if gates.success(shard):
                    self._recovered()
            raise err from exc
        if gates.success(shard):
            self._recovered()
        self._maybe_resync_clock()
        return result

    # -- operations -------------------------------------------------------------------

    async def run(self, name: str, keys: Sequence[str | bytes], args: Sequence[object]) -> Reply:
        """Run script ``name`` by EVALSHA; on NOSCRIPT, load it and retry once.

        Keys and arguments may be ``bytes``: callers on a hot path pass them
        pre-encoded, which redis-py sends without encoding them again.
        """
        plan = self._calls.get(name)
        if plan is None:
            script = self._scripts[name]
            plan = self._calls[name] = _ScriptCall(
                script,
                script.sha.encode(),
                f"script {name}",
                script_commands(script),
                _PUBLISH_LIB in script.includes,
            )
        argv = list(map(encode_arg, args))  # no comprehension frame per call
        if plan.publishes:
            # The script publishes: tell it how (lua/lib/publish.lua reads the last ARGV).
            argv.append(b"spublish" if self.sharded_pubsub else b"publish")
        what, commands = plan.what, plan.commands
        shard_key = keys[0] if keys else None
        sha = plan.sha

        def call() -> Awaitable[Any]:
            return self.client.evalsha(sha, len(keys), *keys, *argv)  # type: ignore[arg-type]

        try:
            return cast("Reply", await self._op(call, what=what, key=shard_key, commands=commands))
        except rexc.NoScriptError:
            self.stats.script_reloads += 1
            logger.info("script %s missing on the server (restart or flush); reloading", name)
        await self._load(plan.script)
        try:
            return cast("Reply", await self._op(call, what=what, key=shard_key, commands=commands))
        except rexc.NoScriptError as exc:
            raise StoreError(f"script {name} vanished again right after loading") from exc

    async def get(self, key: str) -> bytes | None:
        """Read a string value (reads need no script)."""
        return cast(
            "bytes | None", await self._op(lambda: self.client.get(key), what="GET", key=key)
        )

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        """Read a whole hash."""
        return cast(
            "dict[bytes, bytes]",
            await self._op(lambda: self.client.hgetall(key), what="HGETALL", key=key),
        )

    async def smembers(self, key: str) -> set[bytes]:
        """Read a set's members."""
        return cast(
            "set[bytes]",
            await self._op(lambda: self.client.smembers(key), what="SMEMBERS", key=key),
        )

    async def zmembers(self, key: str) -> list[str]:
        """Read a sorted set's members, lowest score first, decoded as UTF-8."""
        raw = cast(
            "list[bytes]",
            await self._op(lambda: self.client.zrange(key, 0, -1), what="ZRANGE", key=key),
        )
        return [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in raw]

    async def publish(self, channel: str, message: bytes) -> int:
        """Publish an event (events are notifications, never state).

        On Cluster a per-service channel (one with a hash tag) goes by SPUBLISH, to the
        shard that owns it, as the scripts do.
        """
        if self.sharded_pubsub and "{" in channel:
            return cast(
                "int",
                await self._op(
                    lambda: self.client.spublish(channel, message), what="SPUBLISH", key=channel
                ),
            )
        return cast(
            "int",
            await self._op(
                lambda: self.client.publish(channel, message), what="PUBLISH", key=channel
            ),
        )

    async def ping(self) -> bool:
        """True when Redis answers a PING within the operation timeout."""
        return bool(await self._op(lambda: self.client.ping(), what="PING"))
