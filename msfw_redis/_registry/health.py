"""Fleet-wide health monitoring: one prober per service per interval, events everywhere.

Each enrolled service gets a loop in every replica. Each interval, the replicas race for
the service's probe round with ``health_acquire`` (Lua): exactly one wins it. The winner
reads the registry, probes every instance (``GET <url><health_check_path>``, a pass
being a status below 400; a TCP connect when the instance has no path) and reports
the results with ``health_report``, fenced by the round's token and its short lease.

``health_report`` runs a hysteresis state machine per instance, kept in Redis::

    healthy --failure_threshold consecutive failures--> unhealthy
    unhealthy --a success--> recovering --success_threshold successes in all--> healthy
    recovering --a failure--> unhealthy

An instance never probed is ``unknown``, not healthy: a passed probe makes it healthy,
``failure_threshold`` failed ones unhealthy. A service is healthy while at least one
registered instance is; it is ``unknown`` while it has never been probed, or none of its
instances is healthy and some are still unknown (see :meth:`HealthMonitor.status`).

A statically configured service (an address in the settings, no registered instance) is
probed at that address, ``GET <base_url>/health``, directly by the replica that asks;
its result is not stored in Redis and fires no ``on_change`` callbacks.

The first report sets
a baseline quietly; after that every flip bumps a sequence number and is published once,
on the service's own health channel (SPUBLISH on Cluster, so it stays on the shard of the
service's keys). Each replica subscribes to the channel of every service it monitors or
reports status for (confirmed before it reads that service's state), so ``on_change``
callbacks fire in every such replica, once per change: replicas drop events whose
sequence number they have already seen, and after each (re)subscription of a service's
channel they re-read that service's state and fire for a flip they missed.

This module runs the monitor; its values (settings, stored state, rounds, counters) are
in ``health_state``, one probe in ``probes``, and the round's two script calls in
``round_scripts``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx

from msfw_redis._callbacks import call_logged
from msfw_redis._exceptions import StoreError
from msfw_redis._registry.channels import ServiceChannels
from msfw_redis._registry.health_state import (
    DEFAULT_HEALTH_FAILURE_THRESHOLD,
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_SUCCESS_THRESHOLD,
    HealthCallback,
    HealthCheckSettings,
    HealthStats,
    HealthStatus,
    ProbeRound,
    ServiceHealth,
    status_of,
)
from msfw_redis._registry.probes import probe_instance, probe_static
from msfw_redis._registry.round_scripts import RoundScripts
from msfw_redis._shutdown import pause, raise_if_cancelling
from msfw_redis._store.keys import canonical_service_name
from msfw_redis._testmode import health_interval

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from msfw_redis._registry.instance import ServiceInstance
    from msfw_redis._registry.registry import ServiceRegistry
    from msfw_redis._store.events import EventBus
    from msfw_redis._store.store import Store

# HealthStatus is the type of this monitor's answers, so callers take it from here.
__all__ = ["HealthMonitor", "HealthStatus"]

logger = logging.getLogger("msfw_redis.health")

#: At most this many probes of one round run at once.
_PROBE_CONCURRENCY = 32


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class HealthMonitor:
    """Probes enrolled services (one replica per round) and reports health changes.

    Args:
        store: a started store.
        registry: the registry whose instances are probed.
        bus: the event bus; without one, only this replica's own rounds fire callbacks.
        interval, timeout, failure_threshold, success_threshold: defaults for services
            enrolled without their own (see :class:`HealthCheckSettings`).
        http_client: the ``httpx.AsyncClient`` for probes; by default one is created
            (``trust_env=False``: probes go straight to the instance, not via a proxy)
            and closed by :meth:`aclose`.
        monitor_registered: also enrol, with the defaults, every service in the
            registry's global index (re-read each ``interval``). Default off: only
            services enrolled with :meth:`enroll` are monitored.
        now_ms: for tests: the server time (ms) to pass to scripts; default 0, so scripts
            read Redis ``TIME``.
        rng: random source for loop jitter.
        static_addresses: ``{service: base_url}`` of statically configured services;
            one with no registered instance is probed at ``base_url + "/health"``.

    Lifecycle: ``enroll(...)`` any time, ``await start()`` once, ``await aclose()``.
    """

    def __init__(
        self,
        store: Store,
        registry: ServiceRegistry,
        bus: EventBus | None = None,
        *,
        interval: float = DEFAULT_HEALTH_INTERVAL,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
        failure_threshold: int = DEFAULT_HEALTH_FAILURE_THRESHOLD,
        success_threshold: int = DEFAULT_SUCCESS_THRESHOLD,
        http_client: httpx.AsyncClient | None = None,
        monitor_registered: bool = False,
        now_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        static_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.bus = bus
        self.defaults = HealthCheckSettings(interval, timeout, failure_threshold, success_threshold)
        self.stats = HealthStats()
        #: ``(service, round)`` of the latest rounds this replica won, for tests and debugging.
        self.won_rounds: collections.deque[tuple[str, int]] = collections.deque(maxlen=1024)
        self.round_scripts = RoundScripts(store, registry.scripts, self._script_ms)
        self.channels = ServiceChannels(
            bus,
            lambda service: registry.scripts.keys(service).health_channel,
            self._on_event,
            lambda service: functools.partial(self._resync, [service]),
        )
        self._http = http_client
        self._owns_http = http_client is None
        self._monitor_registered = monitor_registered
        self._now_ms = now_ms
        self._rng = rng or random.Random()
        self._static = {canonical_service_name(k): v for k, v in (static_addresses or {}).items()}
        self._enrolled: dict[str, HealthCheckSettings] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        # Rounds this process's own loops are running: status() waits for one instead of
        # reporting "unknown" because the lease it would need is held by itself.
        self._own_rounds: dict[str, asyncio.Task[ProbeRound | None]] = {}
        self._callbacks: list[HealthCallback] = []
        self._mirror: dict[str, tuple[int, bool]] = {}
        self._rounds: dict[str, tuple[int, bool]] = {}  # (seq, healthy) of our own rounds
        self._queue: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        self._started = False

    # -- configuration ----------------------------------------------------------------

    def enroll(
        self,
        service_name: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        failure_threshold: int | None = None,
        success_threshold: int | None = None,
    ) -> HealthCheckSettings:
        """Monitor ``service_name``; unset settings take the monitor's defaults.

        Enrolling again replaces the settings (the loop picks them up next round).
        """
        service = canonical_service_name(service_name)
        d = self.defaults
        settings = HealthCheckSettings(
            health_interval(d.interval if interval is None else interval),
            d.timeout if timeout is None else timeout,
            d.failure_threshold if failure_threshold is None else failure_threshold,
            d.success_threshold if success_threshold is None else success_threshold,
        )
        self._enrolled[service] = settings
        if self._started and service not in self._loops:
            self._start_loop(service)
        return settings

    def unenroll(self, service_name: str) -> None:
        """Stop monitoring ``service_name`` (its loop ends after the current round)."""
        self._enrolled.pop(service_name, None)

    def enrolled(self) -> dict[str, HealthCheckSettings]:
        """The monitored services and their settings."""
        return dict(self._enrolled)

    def on_change(self, callback: HealthCallback) -> HealthCallback:
        """Call ``callback(service_name, is_healthy)`` on every change; usable as decorator.

        Callbacks run one at a time, in order, outside the event reader; an exception is
        logged and does not stop later callbacks.
        """
        self._callbacks.append(callback)
        return callback

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the enrolled services' health events, read their states and start
        the loops."""
        if self._started:
            return
        self._started = True
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        self._spawn(self._dispatch(), "msfw-health-callbacks")
        await asyncio.gather(*(self.channels.ensure(service) for service in self._enrolled))
        await self._read_states(list(self._enrolled))
        for service in list(self._enrolled):
            self._start_loop(service)
        if self._monitor_registered:
            self._spawn(self._follow_registry(), "msfw-health-registry")

    def use_http(self, http_client: httpx.AsyncClient) -> None:
        """Probe through ``http_client`` (the SDK's, made for a new event loop)."""
        self._http = http_client
        self._owns_http = False

    def rebind(self) -> None:
        """Forget the tasks, queue and events of a previous (closed) event loop.

        Those tasks were cancelled with their loop and are never awaited here;
        enrolments, callbacks and the state mirror stay, and :meth:`start` starts the
        loops again on the running loop.
        """
        self._loops.clear()
        self._background.clear()
        self.channels.rebind()
        self._queue = asyncio.Queue()
        self._closing = asyncio.Event()
        self._started = False
        if self._owns_http:
            self._http = None

    async def aclose(self) -> None:
        """Finish rounds in flight, deliver queued callbacks, stop, close the HTTP client."""
        self._closing.set()
        loops = list(self._loops.values())
        grace = max([s.lease for s in self._enrolled.values()] + [self.defaults.lease]) + 1.0
        if loops:
            _, pending = await asyncio.wait(loops, timeout=grace)
            for task in pending:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*loops, *self._background, return_exceptions=True)
        self._loops.clear()
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- queries ----------------------------------------------------------------------

    async def state(self, service_name: str) -> ServiceHealth | None:
        """The stored health of ``service_name``, or ``None`` if it was never probed."""
        service = canonical_service_name(service_name)
        raw = await self.store.hgetall(self.registry.scripts.keys(service).health_service)
        if not raw:
            return None
        return ServiceHealth.from_fields(service, raw)

    def known_states(self) -> dict[str, HealthStatus]:
        """The last verdict this replica saw per service (its own rounds and the fleet's
        events): ``healthy`` or ``unhealthy``. No I/O, for metrics; a service with no
        verdict seen here is absent."""
        seen = dict(self._rounds)
        for svc, verdict in self._mirror.items():
            if verdict[0] >= seen.get(svc, (-1, False))[0]:
                seen[svc] = verdict  # the newer of our round and the fleet's event
        return {svc: status_of(healthy) for svc, (_, healthy) in sorted(seen.items())}

    async def check(self, service_name: str) -> bool:
        """Whether ``service_name`` is healthy now (``unknown`` is not healthy).

        See :meth:`status`.
        """
        return await self.status(service_name) == "healthy"

    async def status(self, service_name: str) -> HealthStatus:
        """``healthy``, ``unhealthy`` or ``unknown`` for ``service_name`` now.

        A statically configured service without registered instances is probed at its
        settings address. Otherwise the stored state answers when its last probe is at
        most two intervals old; else this replica runs a probe round (if the round is
        due). A service nobody has probed yet is ``unknown``. While Redis is down, the
        last state seen here answers, else a direct probe of the last known instances
        (or of the settings address).
        """
        service = canonical_service_name(service_name)
        settings = self._enrolled.get(service, self.defaults)
        static = self._static.get(service)
        try:
            if static is not None and not await self.registry.discover(service):
                return status_of(
                    await probe_static(self._http, static, settings.timeout, self.stats)
                )
            # From now on this replica hears the service's changes (and fires on_change).
            await self.channels.ensure(service)
            state = await self.state(service)
            if state is not None and self._server_ms() - state.probed_ms <= _ms(
                2 * settings.interval
            ):
                return state.status
            if await self.probe_round(service, settings) is None:
                own = self._own_rounds.get(service)
                if own is not None:
                    await asyncio.wait({own})
            state = await self.state(service)
            return "unknown" if state is None else state.status
        except StoreError as exc:
            seen = self._mirror.get(service)
            if seen is not None:
                return status_of(seen[1])
            logger.info("health of %s from a direct probe; Redis unavailable: %s", service, exc)
            if static is not None:
                return status_of(
                    await probe_static(self._http, static, settings.timeout, self.stats)
                )
            return status_of(await self._direct_check(service, settings))

    async def all_states(self) -> dict[str, HealthStatus]:
        """``{service: status}`` for enrolled, statically configured and registered services."""
        names = set(self._enrolled) | set(self._mirror) | set(self._static)
        try:
            names.update(await self.registry.services())
        except StoreError as exc:
            logger.info("service index unavailable; reporting known services only: %s", exc)
        ordered = sorted(names)
        results = await asyncio.gather(*(self.status(name) for name in ordered))
        return dict(zip(ordered, results, strict=True))

    async def all_health(self) -> dict[str, bool]:
        """``{service: healthy}`` as :meth:`all_states`, omitting ``unknown`` services."""
        return {
            name: status == "healthy"
            for name, status in (await self.all_states()).items()
            if status != "unknown"
        }

    # -- probing ----------------------------------------------------------------------

    async def probe_round(
        self, service_name: str, settings: HealthCheckSettings | None = None
    ) -> ProbeRound | None:
        """Run one probe round now if it is due; ``None`` when another replica has it.

        When this process's own monitoring loop has the round, its result is returned.
        """
        service = canonical_service_name(service_name)
        cfg = settings or self._enrolled.get(service, self.defaults)
        await self.channels.ensure(service)
        token, round_no, _ = await self._acquire(service, cfg, secrets.token_hex(8))
        if token is None:
            own = self._own_rounds.get(service)
            if own is not None:
                # This process's own loop has the round (it may start first now that a
                # first use subscribes before probing): its round is this one.
                return await asyncio.shield(own)
            return None
        return await self._run_round(service, cfg, token, round_no)

    async def _loop_round(
        self, service: str, cfg: HealthCheckSettings, waits: list[float]
    ) -> ProbeRound | None:
        """The monitoring loop's round: the lease, then the probes if it was won."""
        token, round_no, wait_ms = await self._acquire(service, cfg, secrets.token_hex(8))
        waits.append(wait_ms / 1000.0)
        if token is None:
            return None
        return await self._run_round(service, cfg, token, round_no)

    async def _acquire(
        self, service: str, cfg: HealthCheckSettings, token: str
    ) -> tuple[str | None, int, int]:
        won, round_no, wait_ms = await self.round_scripts.acquire(service, cfg, token)
        if won:
            self.stats.rounds_won += 1
        else:
            self.stats.rounds_skipped += 1
        return (token if won else None), round_no, wait_ms

    async def _run_round(
        self, service: str, cfg: HealthCheckSettings, token: str, round_no: int
    ) -> ProbeRound:
        self.won_rounds.append((service, round_no))
        instances = await self.registry.discover(service, fresh=True)
        gate = asyncio.Semaphore(_PROBE_CONCURRENCY)

        async def one(inst: ServiceInstance) -> tuple[str, bool]:
            async with gate:
                return inst.instance_id, await self._probe(inst, cfg.timeout)

        results = await asyncio.gather(*(one(inst) for inst in instances))
        probe, revision = await self.round_scripts.report(service, cfg, token, round_no, results)
        code, seq = probe.code, probe.seq
        if code != 1:
            self.stats.reports_rejected += 1
            logger.info(
                "probe round %d of %s was not applied (%s)", round_no, service,
                "lease ran out" if code == -2 else "another round took over",
            )  # fmt: skip
            return probe
        self.registry.cache.saw_revision(service, revision)
        for instance_id, before, after in probe.transitions:
            logger.info("instance %s/%s: %s -> %s", service, instance_id, before, after)
        self._rounds[service] = (seq, probe.healthy)  # for known_states, without I/O
        if probe.changed:
            log = logger.info if probe.healthy else logger.warning
            log("service %s is now %s", service, "healthy" if probe.healthy else "unhealthy")
            self._apply(service, seq, probe.healthy, is_event=True)
        return probe

    async def _probe(self, inst: ServiceInstance, timeout: float) -> bool:
        return await probe_instance(self._http, inst, timeout, self.stats)

    async def _probe_static(self, base_url: str, timeout: float) -> bool:
        return await probe_static(self._http, base_url, timeout, self.stats)

    async def _direct_check(self, service: str, cfg: HealthCheckSettings) -> bool:
        try:
            instances = await self.registry.discover(service)
        except StoreError:
            return False
        results = await asyncio.gather(
            *(probe_instance(self._http, inst, cfg.timeout, self.stats) for inst in instances)
        )
        return any(results)

    # -- loops ------------------------------------------------------------------------

    def _start_loop(self, service: str) -> None:
        task = asyncio.create_task(self._service_loop(service), name=f"msfw-health-{service}")
        self._loops[service] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._loops.get(service) is done:
                del self._loops[service]

        task.add_done_callback(forget)

    async def _service_loop(self, service: str) -> None:
        if service not in self.channels.services():
            # Enrolled after start(): subscribe, then read a quiet baseline, before the
            # first round, so that no flip after this point is missed.
            await self.channels.ensure(service)
            await self._read_states([service])
        while not self._closing.is_set():
            cfg = self._enrolled.get(service)
            if cfg is None:
                return
            started = time.monotonic()
            wait = cfg.interval
            try:
                # Registered before the lease is asked for: a status() that loses the
                # lease to this loop meanwhile finds the round here and waits for it,
                # rather than answering "unknown" while the round runs.
                waits: list[float] = []
                own = asyncio.ensure_future(self._loop_round(service, cfg, waits))
                self._own_rounds[service] = own
                try:
                    await own
                finally:
                    self._own_rounds.pop(service, None)
                if waits:
                    wait = waits[0]
            except StoreError as exc:
                # The store logs the outage; retry soon so recovery is picked up quickly.
                wait = min(cfg.interval, 1.0)
                logger.debug("health round of %s skipped: %s", service, exc)
            except Exception:
                logger.exception("health round of %s crashed", service)
            # Small jitter so that replicas do not all ask at the same millisecond.
            delay = wait - (time.monotonic() - started) + self._rng.uniform(0, 0.02 * cfg.interval)
            await pause(self._closing, delay)

    async def _follow_registry(self) -> None:
        while not self._closing.is_set():
            try:
                for service in await self.registry.services():
                    if service not in self._enrolled:
                        self.enroll(service)
            except StoreError as exc:
                logger.debug("could not read the service index: %s", exc)
            await pause(self._closing, self.defaults.interval)

    # -- events and callbacks ---------------------------------------------------------

    def _on_event(self, payload: bytes) -> None:
        try:
            service, seq, healthy = payload.decode().split("\n")
            self._apply(service, int(seq), healthy == "1", is_event=True)
        except ValueError:
            logger.warning("ignoring malformed health event %r", payload[:100])

    def _apply(self, service: str, seq: int, healthy: bool, *, is_event: bool) -> None:
        previous = self._mirror.get(service)
        if previous is not None and seq <= previous[0]:
            return
        self._mirror[service] = (seq, healthy)
        if previous is None and not is_event:
            return  # a first read is a baseline, not a change
        if previous is None or previous[1] != healthy:
            self.stats.changes_seen += 1
            self._queue.put_nowait((service, healthy))

    def _resync(self, services: list[str] | None = None) -> None:
        # Changes may have been missed while a channel's subscriber was away: read those
        # services' states (all known ones by default) off the event reader.
        if services is None:
            services = sorted(set(self._mirror) | set(self._enrolled) | self.channels.services())
        self._spawn(self._read_states(services), "msfw-health-resync")

    async def _read_states(self, services: list[str]) -> None:
        for service in services:
            try:
                state = await self.state(service)
            except StoreError as exc:
                logger.debug("could not read the health of %s: %s", service, exc)
                continue
            if state is not None:
                self._apply(service, state.seq, state.healthy, is_event=False)

    async def _dispatch(self) -> None:
        while True:
            raise_if_cancelling()
            service, healthy = await self._queue.get()
            try:
                for callback in list(self._callbacks):
                    ok = await call_logged(
                        callback, service, healthy, log=logger, what="health change callback"
                    )
                    if ok:
                        self.stats.callbacks_fired += 1
                    else:
                        self.stats.callback_errors += 1
            finally:
                self._queue.task_done()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _script_ms(self) -> int:
        return self._now_ms() if self._now_ms is not None else 0

    def _server_ms(self) -> int:
        if self._now_ms is not None:
            injected = self._now_ms()
            if injected > 0:
                return injected
        return self.store.clock.now_ms()
