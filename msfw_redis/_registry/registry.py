"""The service registry: registration, discovery and its per-process cache.

Keys and scripts are in ``_registry_scripts`` and ``lua/registry_*.lua``; this module
owns what a process does with them:

* **Heartbeats** of the instances this process registers run in ``heartbeats``;
  here they are started on ``register`` and stopped (boundedly) on ``deregister`` and
  close.
* **Discovery** goes through the per-process cache in ``_discovery`` (keyed by the
  service revision, invalidated by pub/sub, revalidated after ``cache_max_staleness``).
  Revision events go on each service's own channel (``_channels``): the registry
  subscribes to a service's channel when discovery first asks for it (confirmed before
  the first read) and when it registers an instance of it.
  While Redis is down it serves the last known instances, counted in
  ``stats.stale_serves`` with one WARNING per service per outage.
* **Self-preservation** happens in ``registry_list``; here it is logged and counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import ConfigurationError, ScriptError, StoreError
from msfw_redis._registry.balancing import DEFAULT_STRATEGY, LoadBalancer
from msfw_redis._registry.channels import ServiceChannels
from msfw_redis._registry.discovery import DiscoveryCache, RegistryStats
from msfw_redis._registry.heartbeats import Heartbeats, OwnedInstance
from msfw_redis._registry.instance import ServiceInstance, build_instance, validate_instance_id
from msfw_redis._registry.panic import DEFAULT_PANIC_THRESHOLD, PanicRouter, Route
from msfw_redis._registry.scripts import (
    FENCED,
    RENEWED,
    HeartbeatResult,
    ListResult,
    RegistryScripts,
    encode_record,
)
from msfw_redis._store.keys import canonical_service_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

__all__ = [
    "DEFAULT_CACHE_MAX_STALENESS",
    "DEFAULT_INSTANCE_TTL",
    "DEFAULT_RETENTION",
    "DEFAULT_SELF_PRESERVATION_HOLD",
    "DEFAULT_SELF_PRESERVATION_MIN_INSTANCES",
    "DEFAULT_SELF_PRESERVATION_THRESHOLD",
    "DEFAULT_TOMBSTONE_TTL",
    "MIN_INSTANCE_TTL",
    "RegistryStats",
    "ServiceRegistry",
]

logger = logging.getLogger("msfw_redis.registry")

DEFAULT_INSTANCE_TTL = 30.0
MIN_INSTANCE_TTL = 0.1
DEFAULT_CACHE_MAX_STALENESS = 2.0
DEFAULT_SELF_PRESERVATION_THRESHOLD = 0.5
DEFAULT_SELF_PRESERVATION_MIN_INSTANCES = 2
DEFAULT_SELF_PRESERVATION_HOLD = 300.0
DEFAULT_TOMBSTONE_TTL = 86_400.0
#: Expiry of every registry and health key (s), refreshed by every script that touches
#: it. Ephemeral instances leave by their deadline long before; the expiry only keeps
#: the keys of an abandoned service, or of an external instance that nobody discovers,
#: probes or registers again for 30 days, from living forever.
DEFAULT_RETENTION = 30 * 86_400.0
#: How often one process refreshes a service's entry in the global index (s).
_INDEX_TOUCH_INTERVAL = 3_600.0


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _check_ttl(value: float, field: str) -> None:
    if not value >= MIN_INSTANCE_TTL:
        raise ConfigurationError(
            f"invalid {field} {value!r}: must be at least {MIN_INSTANCE_TTL} seconds", field=field
        )


def _check_positive(value: float, field: str) -> None:
    if not value > 0:
        raise ConfigurationError(f"invalid {field} {value!r}: must be > 0 seconds", field=field)


class ServiceRegistry:
    """Registers this process's instances and discovers any service's instances.

    Args:
        store: a started :class:`~msfw_redis._store.Store`.
        bus: the process's event bus; without it the cache relies on
            ``cache_max_staleness`` alone.
        balancer: the load balancer for :meth:`get_instance` (a new one by default).
        default_ttl: heartbeat lease in seconds when ``register`` gets none. Default 30;
            heartbeats go out about every ``ttl / 3``.
        cache_max_staleness: seconds a cached discovery result is used without asking
            Redis, the safety net for lost revision events. Default 2.
        self_preservation_threshold: when strictly more than this share of a service's
            expiring instances is past its deadline at once, they are kept as
            ``suspect`` rather than evicted. Default 0.5; 1.0 disables it.
        self_preservation_min_instances: services with fewer expiring instances are never
            preserved (a lone instance that dies is just evicted). Default 2.
        self_preservation_hold: seconds past its deadline after which an instance is
            evicted even while preserved. Default 300.
        tombstone_ttl: seconds a deregistered id refuses late heartbeats. Default 86400.
        retention: expiry of every registry key in seconds. Default 30 days.
        now_ms: for tests: returns the server time in ms to pass to every script; the
            default passes 0, so each script reads Redis ``TIME``.
        rng: random source for heartbeat jitter.

    Lifecycle: ``await start()`` once, ``await aclose()`` at shutdown (it deregisters
    this process's instances at once).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus | None = None,
        *,
        balancer: LoadBalancer | None = None,
        default_ttl: float = DEFAULT_INSTANCE_TTL,
        cache_max_staleness: float = DEFAULT_CACHE_MAX_STALENESS,
        self_preservation_threshold: float = DEFAULT_SELF_PRESERVATION_THRESHOLD,
        self_preservation_min_instances: int = DEFAULT_SELF_PRESERVATION_MIN_INSTANCES,
        self_preservation_hold: float = DEFAULT_SELF_PRESERVATION_HOLD,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        retention: float = DEFAULT_RETENTION,
        now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _check_ttl(default_ttl, "default_ttl")
        if not cache_max_staleness >= 0:
            raise ConfigurationError(
                f"invalid cache_max_staleness {cache_max_staleness!r}: must be >= 0 seconds",
                field="cache_max_staleness",
            )
        if not 0.0 <= self_preservation_threshold <= 1.0:
            raise ConfigurationError(
                f"invalid self_preservation_threshold {self_preservation_threshold!r}: "
                "must be a share between 0.0 and 1.0",
                field="self_preservation_threshold",
            )
        if self_preservation_min_instances < 1:
            raise ConfigurationError(
                f"invalid self_preservation_min_instances {self_preservation_min_instances!r}"
                ": must be >= 1",
                field="self_preservation_min_instances",
            )
        _check_positive(self_preservation_hold, "self_preservation_hold")
        _check_positive(tombstone_ttl, "tombstone_ttl")
        _check_positive(retention, "retention")
        self.store = store
        self.bus = bus
        self.balancer = balancer or LoadBalancer()
        self.panic = PanicRouter(self.balancer)
        self.stats = RegistryStats()
        self.default_ttl = default_ttl
        self.scripts = RegistryScripts(
            store, retention_ms=_ms(retention), now_ms=now_ms or (lambda: 0)
        )
        self._share_permille = round(self_preservation_threshold * 1000)
        self._min_instances = self_preservation_min_instances
        self._hold_ms = _ms(self_preservation_hold)
        self._tombstone_ms = _ms(tombstone_ttl)
        self.cache = DiscoveryCache(
            self._fetch,
            max_staleness=cache_max_staleness,
            stats=self.stats,
            on_data_loss=self._on_data_loss,
        )
        self.channels = ServiceChannels(
            bus,
            lambda service: self.scripts.keys(service).registry_channel,
            self.cache.on_event,
            lambda service: functools.partial(self.cache.resync, service),
        )
        self.heartbeats = Heartbeats(
            self.scripts,
            self.stats,
            register=self._register_owned,
            touch_index=self._touch_index,
            saw_revision=self.cache.saw_revision,
            op_timeout=store.op_timeout,
            rng=rng or random.Random(),
        )
        self._index_touched: dict[str, float] = {}
        self._preserving: set[str] = set()
        self._started = False

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Hook heartbeats to store recovery (idempotent).

        Revision events are subscribed per service, at first use (see ``channels``).
        """
        if self._started:
            return
        self._started = True
        self.store.on_recovery(self.heartbeats.wake_all)

    async def aclose(self, *, deregister: bool = True) -> None:
        """Stop every heartbeat and (by default) deregister this process's instances now.

        External registrations are not touched: they stay until deregistered.
        """
        self.heartbeats.closed = True
        owned = list(self.heartbeats.owned.values())
        self.heartbeats.owned.clear()
        await asyncio.gather(*(self.heartbeats.stop(item) for item in owned))
        if not deregister:
            return
        for item in owned:
            try:
                await self._deregister_one(item.service, item.instance_id, item.token)
            except StoreError as exc:
                logger.warning(
                    "could not deregister %s/%s on close (it expires after its ttl): %s",
                    item.service, item.instance_id, exc,
                )  # fmt: skip

    def rebind(self) -> None:
        """Restart heartbeats on the running loop (the old loop's were cancelled with it).

        Registrations, tokens and subscriptions stay; only the loop-bound event and
        task of each owned instance are made anew. Call it on the new loop.
        """
        self.cache.rebind()
        self.channels.rebind()
        self.heartbeats.rebind()

    # -- registration -----------------------------------------------------------------

    async def register(
        self,
        service_name: str,
        *,
        host: str,
        port: int,
        protocol: str = "http",
        version: str | None = None,
        health_check_path: str | None = None,
        metadata: dict[str, Any] | None = None,
        weight: int = 1,
        ttl: float | None = None,
        instance_id: str | None = None,
        start_heartbeats: bool = True,
        background_retry: bool = False,
    ) -> ServiceInstance:
        """Register an instance of this process and keep it alive with heartbeats.

        Args:
            ttl: heartbeat lease in seconds (>= 0.1; default ``default_ttl``). Without a
                heartbeat for this long (Redis server time) the instance is evicted.
            instance_id: unique within the service; default ``host:port``, so that a
                restarted process replaces its own stale entry.
            start_heartbeats: run the background heartbeat task (tests may beat by hand
                with :meth:`heartbeat`).
            background_retry: when Redis is unreachable, return anyway and let the
                heartbeat task register as soon as Redis answers (logged as WARNING).

        Raises:
            ConfigurationError: bad host (``0.0.0.0`` and ``::`` included), port,
                protocol, metadata, ttl or instance id; the message names the field.
            StoreError: Redis failed (unless ``background_retry`` covers it).
        """
        lease = self.default_ttl if ttl is None else ttl
        _check_ttl(lease, "ttl")
        instance = build_instance(
            service_name, host, port, protocol, version, health_check_path, metadata, weight,
            instance_id, external=False,
        )  # fmt: skip
        key = (instance.name, instance.instance_id)
        previous = self.heartbeats.owned.pop(key, None)
        if previous is not None:
            await self.heartbeats.stop(previous)
        owned = OwnedInstance(
            instance.name, instance.instance_id, encode_record(instance, _ms(lease)), lease,
            secrets.token_hex(8), asyncio.Event(),
        )  # fmt: skip
        try:
            await self._register_owned(owned)
        except StoreError as exc:
            if not (background_retry and start_heartbeats) or isinstance(exc, ScriptError):
                raise
            logger.warning(
                "Redis unavailable; %s/%s will be registered by its heartbeat task: %s",
                owned.service, owned.instance_id, exc,
            )  # fmt: skip
        self.heartbeats.owned[key] = owned
        if start_heartbeats:
            self.heartbeats.start(owned)
        return instance

    async def register_external(
        self,
        service_name: str,
        *,
        host: str,
        port: int,
        protocol: str = "http",
        health_check_path: str | None = None,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
        weight: int = 1,
        instance_id: str | None = None,
    ) -> ServiceInstance:
        """Register an instance that does not heartbeat and stays until deregistered.

        It is health-probed like any other (a TCP connect when ``health_check_path`` is
        ``None``). Registering the same ``instance_id`` again replaces it.
        """
        instance = build_instance(
            service_name, host, port, protocol, version, health_check_path, metadata, weight,
            instance_id, external=True,
        )  # fmt: skip
        await self.channels.ensure(instance.name, wait=False)
        revision = await self.scripts.register(
            instance.name, instance.instance_id, secrets.token_hex(8), 0, encode_record(instance, 0)
        )
        self.cache.saw_revision(instance.name, revision)
        await self._touch_index(instance.name, force=True)
        return instance

    async def deregister(self, service_name: str, instance_id: str | None = None) -> int:
        """Remove instances now; returns how many were removed.

        With ``instance_id=None``, removes every instance of ``service_name`` that this
        process registered. An instance this process owns is removed only while its
        token still holds the id; any other id is removed whoever registered it. Either
        way a tombstone refuses late heartbeats of that id for ``tombstone_ttl``.
        """
        service = canonical_service_name(service_name)
        if instance_id is None:
            targets = [
                o.instance_id for o in self.heartbeats.owned.values() if o.service == service
            ]
        else:
            targets = [validate_instance_id(instance_id)]
        removed = 0
        for target in targets:
            owned = self.heartbeats.owned.pop((service, target), None)
            token = ""
            if owned is not None:
                await self.heartbeats.stop(owned)
                token = owned.token
            removed += await self._deregister_one(service, target, token)
        return removed

    async def heartbeat(self, service_name: str, instance_id: str) -> HeartbeatResult:
        """Send one heartbeat now for an instance this process registered.

        The background task does this by itself; this is for tests and benchmarks.
        Raises ``LookupError`` for an instance this process does not keep alive.
        """
        owned = self.heartbeats.owned.get((service_name, instance_id))
        if owned is None:
            raise LookupError(f"{service_name}/{instance_id} is not registered by this process")
        return await self.heartbeats.run_heartbeat(owned)

    def owned(self) -> list[tuple[str, str]]:
        """``(service, instance_id)`` of every instance this process keeps alive."""
        return sorted(self.heartbeats.owned)

    # -- discovery --------------------------------------------------------------------

    async def discover(
        self, service_name: str, *, version: str | None = None, fresh: bool = False
    ) -> list[ServiceInstance]:
        """Every instance of ``service_name``; ``version`` keeps exact matches only.

        Answered from the per-process cache while it is current (no round trip), else
        with one ``registry_list`` call. ``fresh`` always asks Redis. While Redis is
        unreachable the last known instances are returned (``stats.stale_serves``, one
        WARNING per service per outage); with nothing cached the ``StoreError`` is raised.
        """
        service = canonical_service_name(service_name)
        self.stats.discoveries += 1
        # Subscribed (and confirmed) before the first read, so no later change is missed.
        await self.channels.ensure(service)
        instances = await self.cache.get(service, fresh=fresh)
        self.heartbeats.wake_missing_from(service, instances)
        if version is not None:
            return [inst for inst in instances if inst.version == version]
        return list(instances)

    async def get_instance(
        self,
        service_name: str,
        *,
        strategy: str = DEFAULT_STRATEGY,
        version: str | None = None,
        is_open: Callable[[ServiceInstance], bool] | None = None,
    ) -> ServiceInstance | None:
        """One instance chosen by ``strategy`` (see ``_balancing``), or ``None``.

        Unhealthy instances and those for which ``is_open(instance)`` is true (breaker
        OPEN) are skipped; healthy ones are preferred to recovering and suspect ones.
        """
        instances = await self.discover(service_name, version=version)
        return self.balancer.choose(instances, strategy=strategy, is_open=is_open)

    async def route(
        self,
        service_name: str,
        *,
        strategy: str = DEFAULT_STRATEGY,
        version: str | None = None,
        is_open: Callable[[ServiceInstance], bool] | None = None,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        panic_routing: bool = True,
    ) -> Route | None:
        """The instance a call goes to (see ``_registry.panic``), or ``None`` when the
        registry knows no instance of the service."""
        instances = await self.discover(service_name, version=version)
        return self.panic.route(
            canonical_service_name(service_name),
            instances,
            strategy=strategy,
            is_open=is_open,
            panic_threshold=panic_threshold,
            panic_routing=panic_routing,
        )

    async def services(self) -> list[str]:
        """Names in the global service index, sorted (a name may have no instances left)."""
        return await self.scripts.services()

    def known_instances(self) -> dict[str, list[ServiceInstance]]:
        """This process's last known instances per service, with their stored status.

        No I/O: what discovery last fetched (possibly stale), so a metrics scrape never
        waits on Redis.
        """
        return {svc: list(insts) for svc, insts in sorted(self.cache.known().items())}

    def is_stale(self, service_name: str) -> bool:
        """True while discovery of ``service_name`` is answered from cache during an outage."""
        return self.cache.is_stale(service_name)

    async def list_service(self, service_name: str, *, known_revision: int = -1) -> ListResult:
        """Reap and list one service with one round trip, bypassing the cache."""
        service = canonical_service_name(service_name)
        self.stats.list_calls += 1
        result = await self.scripts.list_instances(
            service,
            known_revision=known_revision,
            share_permille=self._share_permille,
            hold_ms=self._hold_ms,
            min_instances=self._min_instances,
        )
        self._note_list(service, result)
        return result

    # -- internals: discovery ---------------------------------------------------------

    async def _fetch(self, service: str, known_revision: int) -> ListResult:
        result = await self.list_service(service, known_revision=known_revision)
        if result.instances:
            await self._touch_index(service)
        return result

    def _note_list(self, service: str, result: ListResult) -> None:
        if result.evicted:
            self.stats.evictions += result.evicted
            logger.info("evicted %d expired instance(s) of %s", result.evicted, service)
        if result.newly_suspect:
            self.stats.suspects_marked += result.newly_suspect
            logger.warning(
                "self-preservation for %s: %d instance(s) missed their heartbeat deadline "
                "together; %d kept as suspect instead of evicted",
                service, result.newly_suspect, result.suspects,
            )  # fmt: skip
        if result.preserving:
            self._preserving.add(service)
        elif service in self._preserving and result.suspects == 0:
            self._preserving.discard(service)
            logger.info("self-preservation for %s released", service)
        self.cache.saw_revision(service, result.revision)

    # -- internals: registration ----------------------------------------------------

    async def _register_owned(self, owned: OwnedInstance) -> None:
        await self.channels.ensure(owned.service, wait=False)
        revision = await self.scripts.register(
            owned.service, owned.instance_id, owned.token, _ms(owned.ttl), owned.record
        )
        owned.registered = True
        self.cache.saw_revision(owned.service, revision)
        await self._touch_index(owned.service, force=True)

    def _on_data_loss(self, service: str) -> None:
        del service  # any service's loss may be every service's: wake all owners
        self.heartbeats.wake_all()

    async def _deregister_one(self, service: str, instance_id: str, token: str) -> int:
        code, revision = await self.scripts.deregister(
            service, instance_id, token, self._tombstone_ms
        )
        self.cache.saw_revision(service, revision)
        if code == FENCED:
            logger.warning(
                "did not deregister %s/%s: another registration now owns that id",
                service, instance_id,
            )  # fmt: skip
        return 1 if code == RENEWED else 0

    async def _touch_index(self, service: str, *, force: bool = False) -> None:
        last = self._index_touched.get(service)
        now = time.monotonic()
        if not force and last is not None and now - last < _INDEX_TOUCH_INTERVAL:
            return
        try:
            await self.scripts.touch_index(service)
        except StoreError as exc:
            # The index is a convenience view and the next touch repairs it; the store
            # has already logged the outage.
            logger.debug("could not update the service index for %s: %s", service, exc)
            return
        self._index_touched[service] = now
