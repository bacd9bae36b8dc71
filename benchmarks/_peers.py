"""The breakers the benchmarks compare, behind one small interface.

Each subject is driven through its own documented API and nothing else:

* **msfw-redis**: ``BreakerHub.get(...)``, ``permit = await breaker.acquire()``,
  ``await permit.success() / failure()``.
* **pybreaker** with ``CircuitRedisStorage`` over the sync ``redis.Redis`` client, used
  as its README shows (``with breaker.calling(): ...``; pybreaker has no asyncio API,
  its async support is for Tornado).
* **purgatory** with ``AsyncRedisUnitOfWork`` (``async with await factory.get_breaker(name)``).
* **aiobreaker-redis** with a ``redis.asyncio`` client (``await breaker.call(fn)``).
* **interlock-cb** with ``interlock.integrations.redis.AsyncRedisStorage``
  (``await breaker.call_async(fn)``). interlock trips on a failure *rate*; a
  ``threshold``-call count window at 100 % reproduces "``threshold`` failures in a row".

Peers are imported lazily: a missing one reports :data:`NOT_INSTALLED` instead of
failing the run. Every handle maps "the breaker refused the call" to :class:`Rejected`;
anything else a call raises is the protected function's own failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

NOT_INSTALLED = "not installed (pip install -e .[bench])"


class Rejected(Exception):
    """The breaker refused the call without running it."""


class BenchFailure(Exception):
    """What a failing protected call raises."""


@dataclass(frozen=True, slots=True)
class Options:
    """One breaker's policy, translated by each subject into its own terms.

    ``socket_timeout`` applies to the Redis clients the benchmark builds for a peer
    (None: redis-py's default, no timeout, as in the peers' docs). ``op_timeout`` is
    msfw-redis's per-operation timeout (None: the library default, 0.25 s).
    """

    threshold: int = 5
    cooldown: float = 30.0
    socket_timeout: float | None = None
    op_timeout: float | None = 5.0
    poll_interval: float | None = None  # interlock-cb's view refresh (None: its 1 s default)
    flush_interval: float | None = None  # msfw-redis success batching (None: default 50 ms)
    probe_lease: float | None = None  # msfw-redis probe lease (None: default)


class Handle(Protocol):
    #: the redis-py client (sync or asyncio) that carries the breaker's commands
    redis_client: Any

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any: ...

    async def aclose(self) -> None: ...


class CommandCounter:
    """Counts the commands a redis-py client sends: each one is a round trip here.

    Pipelines and pub/sub connections bypass ``execute_command``; none of the breakers'
    per-call paths use them.
    """

    def __init__(self, client: Any) -> None:
        self.count = 0
        original = client.execute_command
        if asyncio.iscoroutinefunction(original):

            async def counting(*args: Any, **kwargs: Any) -> Any:
                self.count += 1
                return await original(*args, **kwargs)

            client.execute_command = counting
        else:

            def counting_sync(*args: Any, **kwargs: Any) -> Any:
                self.count += 1
                return original(*args, **kwargs)

            client.execute_command = counting_sync


class Subject:
    """A breaker library under test."""

    key = ""
    title = ""
    dist: str | None = None
    modules: tuple[str, ...] = ()
    #: why the shared failure count cannot be checked (None: it can)
    no_shared_count: str | None = None

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    @property
    def version(self) -> str:
        if self.dist is None:
            return ""
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}".strip()

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        raise NotImplementedError

    async def shared_failures(self, url: str, prefix: str, name: str) -> int | None:
        """Failures the shared state holds for breaker ``name`` (None: no shared count)."""
        return None


# -- msfw-redis ------------------------------------------------------------------------------


class _OursHandle:
    def __init__(self, store: Any, bus: Any, hub: Any, breaker: Any) -> None:
        self.store, self.bus, self.hub, self.breaker = store, bus, hub, breaker
        self.redis_client = store.client

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        from msfw_redis import CircuitOpenError

        try:
            permit = await self.breaker.acquire()
        except CircuitOpenError as exc:
            raise Rejected(str(exc)) from None
        try:
            result = await fn()
        except asyncio.CancelledError:
            await asyncio.shield(permit.release())
            raise
        except Exception:
            await permit.failure()
            raise
        await permit.success()
        return result

    async def aclose(self) -> None:
        await self.hub.aclose()
        await self.bus.aclose()
        await self.store.aclose()


class Ours(Subject):
    key = "msfw-redis"
    title = "msfw-redis"
    modules = ("msfw_redis",)

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        from msfw_redis import CircuitBreakerConfig
        from msfw_redis._breaker.hub import BreakerHub
        from msfw_redis._exceptions import StoreError
        from msfw_redis._store.events import EventBus
        from msfw_redis._store.store import Store

        kw: dict[str, Any] = {"key_prefix": prefix}
        if opts.op_timeout is not None:
            kw["op_timeout"] = opts.op_timeout
        store = Store.from_url(url, **kw)
        # As ServiceSDK does: go on with local breakers until Redis answers.
        with contextlib.suppress(StoreError):
            await store.start()
        bus = EventBus(store)
        bus.start()
        hub = BreakerHub(store, bus)
        cfg: dict[str, Any] = {
            "failure_threshold": opts.threshold,
            "timeout": opts.cooldown,
            "half_open_max_calls": 1,
        }
        if opts.flush_interval is not None:
            cfg["success_flush_interval"] = opts.flush_interval
        if opts.probe_lease is not None:
            cfg["probe_lease"] = opts.probe_lease
        breaker = hub.get(name, config=CircuitBreakerConfig(**cfg))
        return _OursHandle(store, bus, hub, breaker)

    async def shared_failures(self, url: str, prefix: str, name: str) -> int | None:
        from msfw_redis._store.replies import reply_list
        from msfw_redis._store.store import Store

        store = Store.from_url(url, key_prefix=prefix, op_timeout=10.0)
        await store.start()
        try:
            keys = [store.keys.key(name, "breaker", p, "*") for p in ("state", "probes")]
            snap = reply_list(await store.run("breaker_read", keys, [0]))
            return int(snap[8])  # lifetime failures recorded ("tf")
        finally:
            await store.aclose()


# -- pybreaker -------------------------------------------------------------------------------


def _sync_client(url: str, socket_timeout: float | None) -> Any:
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
    )


def _async_client(url: str, socket_timeout: float | None) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
    )


async def _get_int(url: str, key: str) -> int:
    client = _async_client(url, 10.0)
    try:
        raw = await client.get(key)
    finally:
        await client.aclose()
    return int(raw or 0)


class _PybreakerHandle:
    def __init__(self, client: Any, breaker: Any) -> None:
        self.client, self.breaker = client, breaker
        self.redis_client = client

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        import pybreaker

        ran = False
        try:
            with self.breaker.calling():
                ran = True
                return await fn()
        except pybreaker.CircuitBreakerError:
            if not ran:
                raise Rejected("pybreaker: open") from None
            raise  # the call ran, failed and tripped the breaker

    async def aclose(self) -> None:
        self.client.close()


class Pybreaker(Subject):
    key = "pybreaker"
    title = "pybreaker"
    dist = "pybreaker"
    modules = ("pybreaker", "redis")

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        import pybreaker

        client = _sync_client(url, opts.socket_timeout)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"{prefix}:{name}"
        )
        breaker = pybreaker.CircuitBreaker(
            fail_max=opts.threshold,
            reset_timeout=opts.cooldown,
            state_storage=storage,
            name=name,
        )
        return _PybreakerHandle(client, breaker)

    async def shared_failures(self, url: str, prefix: str, name: str) -> int | None:
        return await _get_int(url, f"{prefix}:{name}:pybreaker:fail_counter")


# -- purgatory -------------------------------------------------------------------------------


class _PurgatoryHandle:
    def __init__(self, factory: Any, name: str) -> None:
        self.factory, self.name = factory, name
        self.redis_client = factory.uow.contexts.redis

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        from purgatory.domain.model import OpenedState

        ran = False
        try:
            async with await self.factory.get_breaker(self.name):
                ran = True
                return await fn()
        except OpenedState:
            if not ran:
                raise Rejected("purgatory: open") from None
            raise

    async def aclose(self) -> None:
        await self.factory.uow.contexts.redis.aclose()


class Purgatory(Subject):
    key = "purgatory"
    title = "purgatory"
    dist = "purgatory"
    modules = ("purgatory", "redis")

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork

        if opts.socket_timeout is not None:
            t = opts.socket_timeout
            url = f"{url}?socket_timeout={t}&socket_connect_timeout={t}"
        factory = AsyncCircuitBreakerFactory(
            default_threshold=opts.threshold,
            default_ttl=opts.cooldown,
            uow=AsyncRedisUnitOfWork(url),
        )
        await factory.initialize()
        return _PurgatoryHandle(factory, f"{prefix}:{name}")

    async def shared_failures(self, url: str, prefix: str, name: str) -> int | None:
        return await _get_int(url, f"cbr::{prefix}:{name}::failure_count")


# -- aiobreaker-redis ------------------------------------------------------------------------


class _AiobreakerHandle:
    def __init__(self, client: Any, breaker: Any) -> None:
        self.client, self.breaker = client, breaker
        self.redis_client = client

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        from aiobreaker_redis import CircuitOpenError

        try:
            return await self.breaker.call(fn)
        except CircuitOpenError:
            raise Rejected("aiobreaker-redis: open") from None

    async def aclose(self) -> None:
        await self.client.aclose()


class AiobreakerRedis(Subject):
    key = "aiobreaker-redis"
    title = "aiobreaker-redis"
    dist = "aiobreaker-redis"
    modules = ("aiobreaker_redis", "redis")

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        from aiobreaker_redis import CircuitBreaker

        client = _async_client(url, opts.socket_timeout)
        breaker = CircuitBreaker(
            name,
            failure_threshold=opts.threshold,
            recovery_timeout=opts.cooldown,
            redis_client=client,
            redis_prefix=prefix,
        )
        return _AiobreakerHandle(client, breaker)

    async def shared_failures(self, url: str, prefix: str, name: str) -> int | None:
        return await _get_int(url, f"{prefix}:{name}:failures")


# -- interlock-cb ----------------------------------------------------------------------------


class _InterlockHandle:
    def __init__(self, client: Any, breaker: Any) -> None:
        self.client, self.breaker = client, breaker
        self.redis_client = client

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        from interlock import CircuitOpenError

        try:
            return await self.breaker.call_async(fn)
        except CircuitOpenError:
            raise Rejected("interlock-cb: open") from None

    async def aclose(self) -> None:
        await self.breaker.aclose()
        await self.client.aclose()


class Interlock(Subject):
    key = "interlock-cb"
    title = "interlock-cb"
    dist = "interlock-cb"
    modules = ("interlock", "redis")
    no_shared_count = "cannot: per-replica window"

    async def open(self, url: str, prefix: str, name: str, opts: Options) -> Handle:
        from interlock import CircuitBreaker, Config
        from interlock.integrations.redis import AsyncRedisStorage

        client = _async_client(url, opts.socket_timeout)
        kw: dict[str, Any] = {}
        if opts.poll_interval is not None:
            kw["poll_interval"] = opts.poll_interval
        storage = AsyncRedisStorage(client, key_prefix=f"{prefix}:", **kw)
        config = Config(
            failure_rate_threshold=1.0,
            minimum_number_of_calls=opts.threshold,
            window_size=min(opts.threshold, 100),  # never trips when threshold > 100
            wait_duration_in_open=opts.cooldown,
            permitted_calls_in_half_open=1,
            max_concurrent_probes=1,
        )
        return _InterlockHandle(client, CircuitBreaker(name=name, config=config, storage=storage))


#: every breaker subject, ours first
BREAKERS: tuple[Subject, ...] = (Ours(), Pybreaker(), Purgatory(), AiobreakerRedis(), Interlock())
PEERS: tuple[Subject, ...] = BREAKERS[1:]


def subject(key: str) -> Subject:
    for s in BREAKERS:
        if s.key == key:
            return s
    raise KeyError(key)


async def noop() -> None:
    return None


async def fail() -> None:
    raise BenchFailure("the protected call failed")


async def guarded(handle: Handle, fn: Callable[[], Awaitable[Any]]) -> str:
    """One call through ``handle``: ``"ok"``, ``"failed"`` or ``"rejected"``."""
    try:
        await handle.call(fn)
    except Rejected:
        return "rejected"
    except Exception:
        return "failed"
    return "ok"
