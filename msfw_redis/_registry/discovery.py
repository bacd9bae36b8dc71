"""The per-process discovery cache, keyed by each service's registry revision.

Every registry script that changes what discovery shows (membership, suspect marks,
instance health) bumps the service's revision and publishes ``<service>\\n<revision>`` on
the service's own registry channel (SPUBLISH on Cluster). The registry subscribes to it
when discovery first asks for the service, before the first read.
A cached result is used without a round trip while both hold:

* no event has announced a revision newer than the cached one, and
* it was fetched or revalidated less than ``max_staleness`` seconds ago: the safety
  net for events lost in a reconnect (the bus's resync also expires every entry).

Otherwise one ``registry_list`` call revalidates it; when the revision has not moved,
the reply carries the revision only. Concurrent lookups of one service share that call.
When Redis is unreachable the last known result is served and counted as stale.

Data loss (FLUSHALL, a restart without persistence, eviction) is detected, not trusted:
a registered service's revision key always exists and starts from server time, so a
reply whose revision went back (0 when the key is gone) means the registry's data
vanished. An empty list in such a reply never replaces a non-empty last-known one: the
last known instances are served, counted as stale, until an owner is back, and
``on_data_loss`` is called so this process's owners register again at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._exceptions import StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._registry.instance import ServiceInstance
    from msfw_redis._registry.scripts import ListResult

__all__ = ["DiscoveryCache", "RegistryStats"]

logger = logging.getLogger("msfw_redis.registry")


@dataclass(slots=True)
class RegistryStats:
    """Counters for metrics.

    ``stale_serves`` counts discoveries answered from the cache because Redis was
    unreachable; ``data_loss_serves`` refreshes that kept the last known instances
    because the registry's data vanished (also counted in ``stale_serves``);
    ``cache_hits`` those answered without a round trip while fresh.
    """

    discoveries: int = 0
    cache_hits: int = 0
    list_calls: int = 0
    list_unchanged: int = 0
    stale_serves: int = 0
    data_loss_serves: int = 0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    reregistrations: int = 0
    fenced: int = 0
    evictions: int = 0
    suspects_marked: int = 0


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: int
    instances: tuple[ServiceInstance, ...]
    fetched_at: float


class DiscoveryCache:
    """Cached instance lists per service.

    Args:
        fetch: ``fetch(service, known_revision)`` runs ``registry_list``.
        max_staleness: seconds an entry is trusted without asking Redis.
        stats: counters updated here (``cache_hits``, ``list_unchanged``,
            ``stale_serves``, ``data_loss_serves``).
        on_data_loss: called with the service name when a reply shows the registry's
            data vanished (the registry wakes its heartbeats so owners re-register).
    """

    def __init__(
        self,
        fetch: Callable[[str, int], Awaitable[ListResult]],
        *,
        max_staleness: float,
        stats: RegistryStats,
        on_data_loss: Callable[[str], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_data_loss = on_data_loss
        self.max_staleness = max_staleness
        self._stats = stats
        self._entries: dict[str, _Entry] = {}
        self._latest: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._stale: set[str] = set()

    def saw_revision(self, service: str, revision: int) -> None:
        """Note that ``service`` has reached ``revision`` (older entries become invalid)."""
        if revision > self._latest.get(service, -1):
            self._latest[service] = revision

    def is_stale(self, service: str) -> bool:
        """True while ``service`` is answered from cache because Redis is unreachable."""
        return service in self._stale

    def known(self) -> dict[str, tuple[ServiceInstance, ...]]:
        """The last instances fetched per service, valid or not (no I/O; for metrics)."""
        return {service: entry.instances for service, entry in self._entries.items()}

    def on_event(self, payload: bytes) -> None:
        """Handler for the registry channels: ``<service>\\n<revision>``."""
        try:
            service, raw = payload.decode().split("\n", 1)
            revision = int(raw)
        except ValueError:
            logger.warning("ignoring malformed registry event %r", payload[:100])
            return
        self.saw_revision(service, revision)

    def rebind(self) -> None:
        """Forget refreshes in flight on a previous (closed) event loop; the entries
        (the last known instances) stay."""
        self._inflight.clear()

    def resync(self, service: str | None = None) -> None:
        """Expire the entry of ``service`` (every entry when ``None``): its events may
        have been lost while its channel's subscriber was away."""
        for name, entry in list(self._entries.items()):
            if service is None or name == service:
                self._entries[name] = dataclasses.replace(entry, fetched_at=float("-inf"))

    def _valid(self, service: str, entry: _Entry) -> bool:
        if entry.revision < self._latest.get(service, -1):
            return False
        return time.monotonic() - entry.fetched_at < self.max_staleness

    async def get(self, service: str, *, fresh: bool = False) -> tuple[ServiceInstance, ...]:
        """The instances of ``service``: cached when valid, else fetched.

        ``fresh`` always reads the full list from Redis (so ``last_heartbeat`` is current).

        Raises the ``StoreError`` when Redis fails and nothing is cached.
        """
        entry = self._entries.get(service)
        if entry is not None and not fresh and self._valid(service, entry):
            self._stats.cache_hits += 1
            return entry.instances
        task = None if fresh else self._inflight.get(service)
        if task is None:
            task = asyncio.create_task(self._refresh(service, full=fresh))
            self._inflight[service] = task
            task.add_done_callback(functools.partial(self._refresh_done, service))
        try:
            return (await asyncio.shield(task)).instances
        except StoreError as exc:
            cached = self._entries.get(service)
            if cached is None:
                raise
            self._stats.stale_serves += 1
            if service not in self._stale:
                self._stale.add(service)
                logger.warning(
                    "registry unavailable; serving the last known %d instance(s) of %s "
                    "(stale, fetched %.1fs ago): %s",
                    len(cached.instances), service, time.monotonic() - cached.fetched_at, exc,
                )  # fmt: skip
            return cached.instances

    def _refresh_done(self, service: str, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(service) is task:
            del self._inflight[service]
        if not task.cancelled():
            # Retrieve the outcome so that an error whose callers were all cancelled is
            # not reported as "never retrieved"; awaiting callers handled it already.
            task.exception()

    async def _refresh(self, service: str, *, full: bool) -> _Entry:
        entry = self._entries.get(service)
        known = entry.revision if entry is not None and not full else -1
        result = await self._fetch(service, known)
        lost = result.revision < entry.revision or result.repaired > 0 if entry else False
        if entry is not None and entry.instances and lost and not result.instances:
            return self._data_lost(service, entry, result.revision)
        self.saw_revision(service, result.revision)
        if result.instances is not None or entry is None:
            entry = _Entry(result.revision, result.instances or (), time.monotonic())
        else:
            self._stats.list_unchanged += 1
            entry = dataclasses.replace(entry, fetched_at=time.monotonic())
        self._entries[service] = entry
        if service in self._stale:
            self._stale.discard(service)
            logger.info("registry reachable again; discovery of %s is fresh", service)
        return entry

    def _data_lost(self, service: str, entry: _Entry, revision: int) -> _Entry:
        """Keep the last known instances: the registry's data for ``service`` vanished.

        The entry is not refreshed, so the next lookup asks Redis again and switches to
        the re-registered list as soon as an owner is back (its revision starts from
        server time, above any cached one).
        """
        self._stats.stale_serves += 1
        self._stats.data_loss_serves += 1
        if service not in self._stale:
            self._stale.add(service)
            logger.warning(
                "registry data for %s vanished (revision %d, last known %d: FLUSHALL, a "
                "restart without persistence or eviction); serving the last known %d "
                "instance(s), stale, until the owners register again",
                service, revision, entry.revision, len(entry.instances),
            )  # fmt: skip
        if self._on_data_loss is not None:
            self._on_data_loss(service)
        return entry
