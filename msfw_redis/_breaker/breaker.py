"""The distributed circuit breaker: one breaker per service (or endpoint) for the fleet.

State lives in Redis and changes only in ``lua/breaker_*.lua``. Each process keeps a
*mirror* of every breaker it uses, so the hot path is local:

* **CLOSED admits with no round trip.** The mirror is loaded on first use (after the
  pub/sub subscription is confirmed, so no later change can be missed), kept current by
  the PUBLISH of every transition script, and re-read after ``max_staleness`` seconds as
  a safety net. A replica started while the fleet's breaker is OPEN rejects its very
  first call.
* **OPEN rejects locally** until its open-until time, compared with estimated server
  time (local clock plus the measured offset).
* **HALF_OPEN admission is one EVALSHA** that hands out an expiring probe lease, so at
  most ``half_open_max_calls`` probes run fleet-wide and a lost probe cannot wedge it.
* **Failures are recorded at once** (one EVALSHA, which may trip the breaker);
  **successes are batched** for ``success_flush_interval`` and carried along with the
  next failure, so one replica's own order is kept.
* **Requests for the retry budget ride along.** A permit marked with
  :meth:`Permit.count_request` adds one request to its service's retry-budget buckets in
  the same ``breaker_record`` call that reports its outcome (batched with the successes),
  so the budget counts requests with no round trip of its own.
* **Generation fencing:** outcomes carry the generation they were admitted under; the
  scripts ignore outcomes of older generations.

When a write fails (Redis unreachable, READONLY, NOPERM, OOM) a breaker falls back to a
:class:`LocalBreaker` seeded from its mirror (``fail_open``), or refuses calls
(``fail_closed``); it rejoins the shared state only when a write succeeds again,
carrying its local outcomes (see ``msfw_redis._breaker.local``). No lock is held across
a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import httpx

from msfw_redis._breaker.local import LocalEpisode
from msfw_redis._breaker.machine import (
    PROBE,
    REJECT,
    BreakerParams,
    BreakerState,
    LocalBreaker,
    Snapshot,
)
from msfw_redis._exceptions import CircuitOpenError, ScriptError, StoreError
from msfw_redis._store.errors import is_refusal
from msfw_redis._store.replies import reply_list

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from msfw_redis._config import CircuitBreakerConfig, StoreFailurePolicy
    from msfw_redis._store.replies import Reply
    from msfw_redis._store.store import Store

__all__ = [
    "SERVICE_SCOPE",
    "BreakerHost",
    "CircuitState",
    "DistributedBreaker",
    "Permit",
    "TransitionEvent",
    "TransitionListener",
    "params_from_config",
]

logger = logging.getLogger("msfw_redis.breaker")

T = TypeVar("T")
#: The name part of a breaker that covers a whole service.
SERVICE_SCOPE = "*"
Action = Literal["open", "close", "disable", "reset"]


def params_from_config(config: CircuitBreakerConfig) -> BreakerParams:
    """The integer-millisecond policy the scripts take, from a user's config."""
    rate = config.failure_rate_threshold
    return BreakerParams(
        failure_threshold=config.failure_threshold,
        success_threshold=config.success_threshold,
        open_ms=max(1, round(config.timeout * 1000)),
        rate_permille=0 if rate is None else max(1, round(rate * 10)),
        minimum_calls=config.minimum_calls,
        window_ms=max(10, round(config.sliding_window * 1000)),
        half_open_max=config.half_open_max_calls,
        lease_ms=max(1, round(config.effective_probe_lease * 1000)),
        key_ttl_ms=round(config.state_ttl * 1000),
    )


@dataclass(frozen=True, slots=True)
class CircuitState:
    """A breaker's state as this replica sees it.

    Attributes:
        state: ``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"``,
            ``"forced_closed"`` or ``"disabled"``.
        failure_count: consecutive failures recorded (CLOSED).
        success_count: successful probes so far (HALF_OPEN).
        generation: bumped by every transition, fleet-wide.
        opened_at: Unix time (server clock, seconds) of the last opening, or ``None``.
        retry_after: seconds until calls are admitted again (0 when admitting);
            ``None`` for a breaker forced open without a TTL, which never lapses.
        service: the service the breaker guards.
        endpoint: the endpoint, or ``None`` for a service-wide breaker.
        local: True while Redis is unreachable and this replica runs a local breaker.
        total_failures, total_successes: every outcome ever recorded fleet-wide, stale
            ones included (from :meth:`DistributedBreaker.refresh`; ``None`` from the
            local mirror, which does not track them).
        trips: CLOSED -> OPEN transitions so far (same source).
        active_probes: half-open probe leases currently held (same source).
        failures_at_trip: the failure count that tripped the breaker, kept while it is
            OPEN or HALF_OPEN (``failure_count`` restarts at 0 on every transition):
            consecutive failures, the window's failures in rate mode, or the failed
            probe(s) that re-opened it from HALF_OPEN. 0 in every other state.
    """

    state: str
    failure_count: int
    success_count: int
    generation: int
    opened_at: float | None
    retry_after: float | None
    service: str
    endpoint: str | None
    local: bool = False
    total_failures: int | None = None
    total_successes: int | None = None
    trips: int | None = None
    active_probes: int | None = None
    failures_at_trip: int = 0


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """Handed to transition listeners, in every replica, once per transition.

    ``state`` (also ``to_state``) is the new state; ``from_state`` the state this
    replica's mirror held before, or ``None`` when it had not seen the breaker yet;
    ``at`` the Redis server time of the transition (Unix seconds).
    """

    service: str
    endpoint: str | None
    state: str
    generation: int
    opened_at: float | None
    retry_after: float
    from_state: str | None = None
    at: float | None = None

    @property
    def to_state(self) -> str:
        """The new state (the same as ``state``)."""
        return self.state


TransitionListener = Callable[[TransitionEvent], Awaitable[None] | None]


class BreakerHost(Protocol):
    """What a breaker needs from the hub that made it (passed in, never reached into)."""

    store: Store
    failure_policy: StoreFailurePolicy

    async def subscribe(self, service: str) -> None:
        """Subscribe to ``service``'s breaker channel (once per service)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, logged if it fails."""

    @property
    def refresh_slots(self) -> asyncio.Semaphore:
        """Bounds the background mirror refreshes in flight, across all breakers."""

    async def index(self, breaker: DistributedBreaker) -> None:
        """List ``breaker`` in the fleet index."""

    async def enter(self, service: str, retention_ms: int) -> None:
        """Subscribe to ``service`` and list it in the services index (first use)."""

    def params_for(self, config: CircuitBreakerConfig) -> BreakerParams:
        """The script params of ``config``, shared by every breaker using it."""

    def schedule_flush(self, breaker: DistributedBreaker) -> None:
        """Flush ``breaker``'s batched successes after its ``success_flush_interval``."""


class Permit:
    """Admission of one call; report its outcome exactly once."""

    __slots__ = ("breaker", "budget", "done", "gen", "local", "started", "token")

    def __init__(self, breaker: DistributedBreaker, gen: int, token: str, local: bool) -> None:
        self.breaker = breaker
        self.gen = gen
        self.token = token
        self.local = local
        self.started = time.monotonic()
        self.done = False
        #: (budget hash key, window in s) this call counts one request into, or None.
        self.budget: tuple[str, int] | None = None

    def count_request(self, budget_key: str, window_s: int) -> None:
        """Count this call as one request of the retry budget at ``budget_key``.

        The request goes with the report of this permit's outcome (the key must share
        the breaker's ``{service}`` hash tag); a permit released without an outcome
        (a cancelled call) counts none, which only makes the budget stricter.
        """
        self.budget = (budget_key, window_s)

    @property
    def probe(self) -> bool:
        """True when this call is a half-open probe holding a lease."""
        return bool(self.token)

    async def success(self) -> None:
        """Report success (a slow call counts as a failure when configured)."""
        await self.breaker.record(self, ok=True)

    async def failure(self) -> None:
        """Report failure."""
        await self.breaker.record(self, ok=False)

    async def release(self) -> None:
        """Give the permit back without an outcome (the call was cancelled)."""
        await self.breaker.release(self)


#: What a process knows of a breaker it never read: CLOSED, generation 0, as of never.
_UNKNOWN = Snapshot(0, BreakerState.CLOSED, 0, 0, 0, 0, 0, -1)


class DistributedBreaker:
    """One fleet-wide breaker. Get it from :meth:`BreakerHub.get`."""

    # Slots, and nothing made that a CLOSED breaker which never failed does not need
    # (the load lock, the pending-success dict, the local breaker and episode are made
    # when first needed): at 10,000 endpoint breakers each is well under 1 KB.
    __slots__ = (
        "_channel",
        "_corrupt_logged",
        "_episode",
        "_load_lock",
        "_loaded",
        "_local",
        "_pending",
        "_probes_busy_gen",
        "_probes_busy_until_ms",
        "_refreshed_at",
        "_refreshing",
        "_requests",
        "_view",
        "config",
        "endpoint",
        "flush_due",
        "hub",
        "local_calls",
        "name",
        "params",
        "prior",
        "rejections",
        "service",
    )

    def __init__(
        self,
        hub: BreakerHost,
        service: str,
        endpoint: str | None,
        config: CircuitBreakerConfig,
    ) -> None:
        self.hub = hub
        self.service = service
        self.endpoint = endpoint
        self.config = config
        self.params = hub.params_for(config)
        self.name = endpoint if endpoint is not None else SERVICE_SCOPE
        # One string per service, shared by all its breakers (interned).
        self._channel = sys.intern(hub.store.keys.channel(service, "breaker"))
        # The mirror: the newest snapshot seen (reply, event or read), without extras.
        self._view = _UNKNOWN
        self._refreshed_at = -math.inf
        self._loaded = False
        self._load_lock: asyncio.Lock | None = None  # only while the first load runs
        self._refreshing = False
        self._local: LocalBreaker | None = None
        self._episode: LocalEpisode | None = None
        self._corrupt_logged = False
        self._pending: dict[int, int] | None = None  # batched successes, per generation
        # Retry-budget requests not yet reported: (budget key, window s, count), or None.
        self._requests: tuple[str, int, int] | None = None
        #: Monotonic time the hub's flusher sends the batch, or 0.0 when none is due.
        self.flush_due = 0.0
        self._probes_busy_until_ms = 0
        self._probes_busy_gen = -1
        self.rejections = 0
        self.local_calls = 0
        #: (generation, the state before it) for the newest generation change seen.
        self.prior: tuple[int, str] | None = None

    @property
    def _keys(self) -> tuple[str, str, str]:
        """State hash, probe leases, rate window: built when a script needs them.

        Not stored: three keys are ~300 bytes per breaker, and a CLOSED breaker's calls
        never touch Redis; a call that does pays a round trip that dwarfs building them.
        """
        keys, service, name = self.hub.store.keys, self.service, self.name
        return (
            keys.key(service, "breaker", "state", name),
            keys.key(service, "breaker", "probes", name),
            keys.key(service, "breaker", "window", name),
        )

    @property
    def running_local(self) -> bool:
        """True while Redis is unreachable and this breaker runs a local one."""
        return self._local is not None

    # -- labels ----------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.service if self.endpoint is None else f"{self.service}:{self.endpoint}"

    # -- mirror maintenance ---------------------------------------------------------------

    def _apply(self, snap: Snapshot, *, authoritative: bool = False) -> None:
        view = self._view
        if not authoritative and (snap.now_ms, snap.gen) < (view.now_ms, view.gen):
            return  # an older view arriving late must not roll the mirror back
        if snap.gen != view.gen and view is not _UNKNOWN:
            # Remembered for transition events: the mirror may learn a new generation
            # from a script reply before the pub/sub message about it arrives.
            self.prior = (snap.gen, view.state.label)
        self._view = dataclasses.replace(snap, code=0, extra=())
        if authoritative:
            self._refreshed_at = time.monotonic()

    def on_event(
        self, gen: int, state: BreakerState, opened_at: int, open_until: int, now: int
    ) -> None:
        # Any event (a transition, or a half-open probe slot freeing) ends a local
        # "all probe slots taken" rejection window.
        self._probes_busy_until_ms = 0
        # Events do not carry the trip's failure count; OPEN -> HALF_OPEN keeps it.
        view = self._view
        fat = (
            view.failures_at_trip
            if state is BreakerState.HALF_OPEN
            and view.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
            else 0
        )
        self._apply(Snapshot(0, state, gen, 0, 0, opened_at, open_until, now, failures_at_trip=fat))

    def _decode(self, reply: Reply) -> Snapshot:
        snap = Snapshot.from_reply(reply_list(reply))
        if snap.corrupt and not self._corrupt_logged:
            # Once per key: the script read it as absent, and the next write repairs it.
            self._corrupt_logged = True
            logger.warning(
                "breaker %s: the stored state at %s did not decode (another type or an "
                "unknown state); treated as absent and rewritten by the next write",
                self.label,
                self._keys[0],
            )
        return snap

    async def refresh(self) -> CircuitState:
        """Re-read the shared state from Redis (one round trip) and return it."""
        return await self._read(index=False)

    async def _read(self, *, index: bool) -> CircuitState:
        keys: list[str] = list(self._keys[:2])
        args: list[object] = [0]
        if index:
            # First use: the same call lists the breaker in its service's index (the
            # index key shares the service's hash tag), so operators see it at once.
            keys.append(self.hub.store.keys.key(self.service, "breaker", "index"))
            args += [self.name, self.params.key_ttl_ms]
        snap = self._decode(await self.hub.store.run("breaker_read", keys, args))
        if snap.gen == 0 and _vanished_while_open(self._view, snap):
            snap = await self._restore_open(snap)
        self._apply(snap, authoritative=True)
        # A read that succeeds is no proof that writes do: a local breaker stays local
        # until _rejoin's write goes through.
        return self._state_from(snap, local=False)

    async def _restore_open(self, absent: Snapshot) -> Snapshot:
        """Write back the OPEN state this mirror knows: the shared key vanished.

        Without this an OPEN breaker would close silently after FLUSHALL, a restart
        without persistence or eviction. ``breaker_restore`` re-creates it with the
        generation and cool-down end (server time) the mirror holds, unless another
        replica did first; a replica started after the loss has no mirror to restore.
        """
        m = self._view
        reply = await self.hub.store.run(
            "breaker_restore",
            self._keys[:2],
            [self._channel, self.name, m.gen, m.opened_at_ms, m.open_until_ms,
             m.failures_at_trip, self.params.key_ttl_ms],
        )  # fmt: skip
        snap = self._decode(reply)
        if snap.code & 1:
            logger.warning(
                "breaker %s: its shared state vanished while OPEN (FLUSHALL, a restart "
                "without persistence or eviction; read at gen %d); written back OPEN at "
                "gen %d until its cool-down ends",
                self.label, absent.gen, m.gen,
            )  # fmt: skip
        return dataclasses.replace(snap, code=0)

    async def _ensure_loaded(self) -> None:
        lock = self._load_lock
        if lock is None:
            lock = self._load_lock = asyncio.Lock()
        async with lock:
            # Another task may have loaded the mirror while this one waited for the lock.
            if self._is_loaded():
                return
            # At most two round trips before the first call proceeds: the subscription
            # with the services index (concurrently), then the read with the breaker's
            # own index entry (one script).
            await self.hub.enter(self.service, self.params.key_ttl_ms)
            try:
                await self._read(index=True)
            except StoreError as exc:
                self._enter_local(exc)
                # Not listed yet: try again in the background (it logs if Redis is down).
                self.hub.spawn(self.hub.index(self))
            self._loaded = True
        # Waiters hold the lock object itself; once loaded nobody needs a new one.
        self._load_lock = None

    def _is_loaded(self) -> bool:
        return self._loaded

    def background_refresh(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True

        async def run() -> None:
            try:
                # Bounded per hub: 10,000 mirrors going stale together must not become
                # 10,000 concurrent reads, past the connection pool's size.
                async with self.hub.refresh_slots:
                    await (self._rejoin() if self._local is not None else self.refresh())
            except StoreError as exc:
                logger.debug("breaker %s refresh failed: %s", self.label, exc)
                if self._local is None and not isinstance(exc, ScriptError):
                    self._enter_local(exc)
            finally:
                self._refreshing = False

        self.hub.spawn(run())

    # -- local fallback ----------------------------------------------------------------------

    def _enter_local(self, exc: BaseException) -> None:
        if self._local is not None:
            self._defer_rejoin(exc)
            return
        v = self._view
        self._episode = LocalEpisode(gen=v.gen)
        self._defer_rejoin(exc)
        self._local = LocalBreaker(
            self.params,
            state=v.state,
            gen=v.gen,
            failures=v.failures,
            successes=v.successes,
            opened_at_ms=v.opened_at_ms,
            open_until_ms=v.open_until_ms,
        )
        logger.debug("breaker %s runs locally (a write failed): %s", self.label, exc)

    def _defer_rejoin(self, exc: BaseException) -> None:
        if self._episode is None:
            return
        # A refusal (above all NOPERM) is not fixed by retrying every few seconds.
        floor = 0.0
        if isinstance(exc, StoreError) and is_refusal(exc):
            floor = self.hub.store.refusal_backoff(exc)
        self._episode.defer(floor=floor)

    async def _rejoin(self) -> None:
        """Write the local outcomes to the shared state; on success, leave local mode."""
        local, episode = self._local, self._episode
        if local is None or episode is None:
            return
        successes, failures = episode.carry(rate_mode=self.params.rate_permille > 0)
        # Counted now; outcomes recorded while the write is in flight start a new tally.
        self._episode = LocalEpisode(
            gen=episode.gen, retry_at=episode.retry_at, backoff=episode.backoff
        )
        try:
            reply = await self.hub.store.run(
                "breaker_record",
                self._keys,
                self._record_args(episode.gen, successes, failures, ""),
            )
        except StoreError as exc:
            if self._episode is not None:
                self._episode.successes += episode.successes
                self._episode.failures += episode.failures
                self._episode.trailing_failures += episode.trailing_failures
            self._defer_rejoin(exc)
            raise
        snap = self._decode(reply)
        self._apply(snap, authoritative=True)
        self._local = None
        self._episode = None
        logger.info(
            "breaker %s rejoined the shared state (%s), carrying %d successes and %d failures",
            self.label,
            snap.state.label,
            successes,
            failures,
        )

    def _now_ms(self) -> int:
        return self.hub.store.clock.now_ms()

    def _refuse(
        self, snap_state: BreakerState, open_until_ms: int, now_ms: int
    ) -> CircuitOpenError:
        self.rejections += 1
        if snap_state is BreakerState.FORCED_OPEN and open_until_ms <= 0:
            # Forced open without a TTL never lapses: promise no time at all.
            return CircuitOpenError(
                f"circuit breaker {self.label} is forced open until reset "
                "(msfw-redis breaker reset)",
                retry_after=None,
                breaker=self.label,
                service_name=self.service,
                endpoint=self.endpoint,
            )
        retry_after = max(0.0, (open_until_ms - now_ms) / 1000.0)
        opened_at_ms = self._view.opened_at_ms
        if snap_state is BreakerState.OPEN and 0 < opened_at_ms < open_until_ms:
            # The local estimate of server time can lag by up to half a round trip;
            # never promise a wait longer than the cool-down itself.
            retry_after = min(retry_after, (open_until_ms - opened_at_ms) / 1000.0)
        return CircuitOpenError(
            f"circuit breaker {self.label} is {snap_state.label}; retry after {retry_after:.2f}s",
            retry_after=retry_after,
            breaker=self.label,
            service_name=self.service,
            endpoint=self.endpoint,
        )

    # -- admission ------------------------------------------------------------------------------

    async def acquire(self) -> Permit:
        """Admit a call or raise :class:`CircuitOpenError` (with ``retry_after``)."""
        if not self._loaded:
            await self._ensure_loaded()
        if self._local is not None:
            return self._acquire_local()
        m = self._view
        if time.monotonic() - self._refreshed_at > self.config.max_staleness:
            self.background_refresh()
        state = m.state
        if (
            state is BreakerState.CLOSED
            or state is BreakerState.FORCED_CLOSED
            or (state is BreakerState.DISABLED)
        ):
            if m.open_until_ms <= 0 or self._now_ms() < m.open_until_ms:
                return Permit(self, m.gen, "", False)
        elif state is BreakerState.OPEN or state is BreakerState.FORCED_OPEN:
            now = self._now_ms()
            if state is BreakerState.FORCED_OPEN and m.open_until_ms <= 0:
                raise self._refuse(state, 0, now)
            if now < m.open_until_ms:
                raise self._refuse(state, m.open_until_ms, now)
        elif state is BreakerState.HALF_OPEN and m.gen == self._probes_busy_gen:
            # Every probe slot was taken when we last asked; until a slot frees (an
            # event) or the earliest lease lapses, asking again would only cost a trip.
            now = self._now_ms()
            if now < self._probes_busy_until_ms:
                raise self._refuse(state, self._probes_busy_until_ms, now)
        return await self._acquire_shared()

    async def _acquire_shared(self) -> Permit:
        token = os.urandom(8).hex()
        p = self.params
        try:
            reply = await self.hub.store.run(
                "breaker_acquire",
                self._keys[:2],
                [self._channel, self.name, token, p.half_open_max, p.lease_ms, p.key_ttl_ms, 0],
            )
        except ScriptError:
            raise
        except StoreError as exc:
            self._enter_local(exc)
            return self._acquire_local()
        snap = self._decode(reply)
        self._apply(snap)
        if snap.code == REJECT:
            if snap.state is BreakerState.HALF_OPEN:
                self._probes_busy_until_ms = _reopens_at(snap)
                self._probes_busy_gen = snap.gen
            raise self._refuse(snap.state, _reopens_at(snap), snap.now_ms)
        return Permit(self, snap.gen, token if snap.code == PROBE else "", False)

    def _acquire_local(self) -> Permit:
        if self.hub.failure_policy == "fail_closed":
            self.rejections += 1
            raise CircuitOpenError(
                f"circuit breaker {self.label} cannot reach its shared state and "
                "store_failure_policy is fail_closed",
                retry_after=1.0,
                breaker=self.label,
                service_name=self.service,
                endpoint=self.endpoint,
            )
        local = self._local
        if local is None:  # pragma: no cover - callers check
            raise RuntimeError("no local breaker")
        if self.hub.store.retry_due and (self._episode is None or self._episode.due()):
            self.background_refresh()
        self.local_calls += 1
        # Only a half-open admission needs a probe token; skip the syscall otherwise.
        admitting = local.state in (
            BreakerState.CLOSED,
            BreakerState.FORCED_CLOSED,
            BreakerState.DISABLED,
        )
        token = "" if admitting else os.urandom(8).hex()
        snap = local.acquire(token, self._now_ms())
        self._apply(snap)
        if snap.code == REJECT:
            raise self._refuse(snap.state, _reopens_at(snap), snap.now_ms)
        return Permit(self, snap.gen, token if snap.code == PROBE else "", True)

    # -- outcomes ------------------------------------------------------------------------------

    def classify_exception(self, exc: BaseException) -> bool:
        """True when ``exc`` from the protected call counts as a breaker failure.

        Connect errors, timeouts and other transport failures always count, and so do
        the configured ``failure_exceptions``.
        """
        if isinstance(exc, (httpx.TransportError, TimeoutError, ConnectionError)):
            return True
        return bool(self.config.failure_exceptions) and isinstance(
            exc, self.config.failure_exceptions
        )

    def classify_status(self, status_code: int) -> bool:
        """True when an HTTP status counts as a failure (default: any 5xx)."""
        return status_code in self.config.failure_status_codes

    async def record(self, permit: Permit, *, ok: bool) -> None:
        """Record a call's outcome against the generation it was admitted under."""
        if permit.done:
            return
        permit.done = True
        slow = self.config.slow_call_threshold
        if ok and slow is not None and time.monotonic() - permit.started > slow:
            ok = False
        if permit.local or self._local is not None:
            # Redis is not taking writes: the budget (in Redis too) loses this request.
            self._record_local(permit, ok)
            return
        if permit.budget is not None:
            key, window_s = permit.budget
            prior = self._requests
            self._requests = (key, window_s, (prior[2] if prior else 0) + 1)
        if ok and not permit.probe and self.config.success_flush_interval > 0:
            pending = self._pending
            if pending is None:
                pending = self._pending = {}
            pending[permit.gen] = pending.get(permit.gen, 0) + 1
            self._schedule_flush()
            return
        carried = 0
        if not permit.probe and self._pending:
            carried = self._pending.pop(permit.gen, 0)
        successes = (1 if ok else 0) + carried
        await self._send(permit.gen, successes, 0 if ok else 1, permit.token)

    async def release(self, permit: Permit) -> None:
        """Return a probe lease without an outcome; a no-op for ordinary permits."""
        if permit.done:
            return
        permit.done = True
        if permit.probe and not permit.local and self._local is None:
            await self._send(permit.gen, 0, 0, permit.token)
        elif permit.probe and self._local is not None:
            self._local.probes.pop(permit.token, None)

    def _record_local(self, permit: Permit, ok: bool) -> None:
        local = self._local
        if local is None:
            # Redis came back while this call ran; its outcome belongs to the old view.
            return
        snap = local.record(
            permit.gen, 1 if ok else 0, 0 if ok else 1, permit.token, self._now_ms()
        )
        if self._episode is not None:
            self._episode.note(1 if ok else 0, 0 if ok else 1)
        self._apply(snap)

    def _record_args(self, gen: int, successes: int, failures: int, token: str) -> list[object]:
        p = self.params
        return [
            self._channel,
            self.name,
            gen,
            successes,
            failures,
            token,
            p.failure_threshold,
            p.success_threshold,
            p.open_ms,
            p.rate_permille,
            p.minimum_calls,
            p.window_ms,
            p.key_ttl_ms,
            0,
        ]

    async def _send(self, gen: int, successes: int, failures: int, token: str) -> None:
        args = self._record_args(gen, successes, failures, token)
        keys: list[str] = list(self._keys)
        requests, self._requests = self._requests, None
        if requests is not None:
            # Every pending request rides along, whichever generation this report is for.
            keys.append(requests[0])
            args += [requests[2], requests[1]]
        try:
            reply = await self.hub.store.run("breaker_record", keys, args)
        except ScriptError:
            raise
        except StoreError as exc:
            self._enter_local(exc)
            if self._local is not None and (successes or failures):
                snap = self._local.record(gen, successes, failures, token, self._now_ms())
                if self._episode is not None:
                    self._episode.note(successes, failures)
                self._apply(snap)
            return
        if token:
            self._probes_busy_until_ms = 0  # this replica just freed a probe slot
        self._apply(self._decode(reply))

    def rebind(self) -> None:
        """Drop the lock of a previous (closed) event loop; batched successes stay, and
        the hub's flusher (re-armed by the hub) sends them on the running one."""
        self._load_lock = asyncio.Lock()
        self._refreshing = False

    def _schedule_flush(self) -> None:
        if not self.flush_due:
            self.hub.schedule_flush(self)

    @property
    def has_pending(self) -> bool:
        """True while batched successes wait to be sent."""
        return bool(self._pending)

    async def flush(self) -> None:
        """Send batched successes now (one EVALSHA per generation pending)."""
        self.flush_due = 0.0  # the flusher's entry for this batch is now stale
        pending, self._pending = self._pending, None
        for gen, count in (pending or {}).items():
            try:
                await self._send(gen, count, 0, "")
            except StoreError as exc:
                logger.debug("breaker %s: batched successes dropped: %s", self.label, exc)

    # -- inspection and control ---------------------------------------------------------------

    def _state_from(self, snap: Snapshot, *, local: bool) -> CircuitState:
        now = self._now_ms()
        state, gen, fails, succ = snap.state, snap.gen, snap.failures, snap.successes
        opened, until = snap.opened_at_ms, snap.open_until_ms
        # breaker_read replies carry lifetime totals: {tf, ts, trips, active probes}.
        totals = snap.extra if len(snap.extra) >= 4 else None
        retry_after: float | None = 0.0
        if state is BreakerState.OPEN or (state is BreakerState.FORCED_OPEN and until > 0):
            retry_after = max(0.0, (until - now) / 1000.0)
        elif state is BreakerState.FORCED_OPEN:
            retry_after = None  # forced open until reset: it never lapses by itself
        return CircuitState(
            state=state.label,
            failure_count=fails,
            success_count=succ,
            generation=gen,
            opened_at=opened / 1000.0 if opened else None,
            retry_after=retry_after,
            service=self.service,
            endpoint=self.endpoint,
            local=local,
            total_failures=totals[0] if totals else None,
            total_successes=totals[1] if totals else None,
            trips=totals[2] if totals else None,
            active_probes=totals[3] if totals else None,
            failures_at_trip=snap.failures_at_trip,
        )

    def state(self) -> CircuitState:
        """This replica's current view, without a round trip."""
        if self._local is not None:
            return self._state_from(self._local.snapshot(self._now_ms()), local=True)
        return self._state_from(self._view, local=False)

    async def control(self, action: Action, ttl: float | None = None) -> CircuitState:
        """Fleet-wide manual control: ``open``, ``close``, ``disable`` or ``reset``.

        ``ttl`` seconds bound the override; after it the breaker returns to CLOSED.
        """
        ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        await self.hub.subscribe(self.service)
        reply = await self.hub.store.run(
            "breaker_control",
            self._keys,
            [self._channel, self.name, action, ttl_ms, self.params.key_ttl_ms, 0],
        )
        snap = self._decode(reply)
        self._apply(snap)
        self._loaded = True
        await self.hub.index(self)  # a breaker set by hand is listed like any other
        return self._state_from(snap, local=False)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` under the breaker, classifying exceptions as failures or not."""
        permit = await self.acquire()
        try:
            result = await fn()
        except asyncio.CancelledError:
            await asyncio.shield(permit.release())
            raise
        except BaseException as exc:
            if self.classify_exception(exc):
                await permit.failure()
            else:
                await permit.success()
            raise
        await permit.success()
        return result


def _vanished_while_open(view: Snapshot, snap: Snapshot) -> bool:
    """True when ``snap`` reads a breaker as absent that ``view`` knew OPEN, in cool-down."""
    return (
        view.state is BreakerState.OPEN
        and view.gen > 0
        and snap.state is BreakerState.CLOSED
        and snap.now_ms < view.open_until_ms
    )


def _reopens_at(snap: Snapshot) -> int:
    """Server ms at which a rejected caller may try again: the end of the cool-down, or
    for a full half-open breaker the earliest probe lease's expiry (reply extra 1)."""
    if snap.state is BreakerState.HALF_OPEN:
        return snap.extra[1] if len(snap.extra) > 1 and snap.extra[1] else snap.now_ms
    return snap.open_until_ms
