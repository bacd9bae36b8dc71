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
local breaker seeded from its mirror (``fail_open``), or refuses calls (``fail_closed``);
it rejoins the shared state only when a write succeeds again, carrying its local outcomes
(see :mod:`msfw_redis._breaker.local`). The mirror's reads and write-backs are in
:mod:`msfw_redis._breaker.mirror`; what callers see (states, events, refusals) in
:mod:`msfw_redis._breaker.views`. No lock is held across a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Literal, TypeVar

import httpx

from msfw_redis._breaker.local import LocalFallback
from msfw_redis._breaker.machine import PROBE, REJECT, BreakerState, Snapshot
from msfw_redis._breaker.mirror import (
    event_snapshot,
    log_corrupt,
    restore_open,
    vanished_while_open,
)
from msfw_redis._breaker.permit import Permit
from msfw_redis._breaker.views import (
    SERVICE_SCOPE,
    CircuitState,
    circuit_state,
    refusal,
    reopens_at,
    unreachable_refusal,
)
from msfw_redis._exceptions import ScriptError, StoreError
from msfw_redis._store.replies import reply_list

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msfw_redis._breaker.host import BreakerHost
    from msfw_redis._config import CircuitBreakerConfig
    from msfw_redis._exceptions import CircuitOpenError
    from msfw_redis._store.replies import Reply

__all__ = ["DistributedBreaker"]

logger = logging.getLogger("msfw_redis.breaker")

T = TypeVar("T")
Action = Literal["open", "close", "disable", "reset"]


#: What a process knows of a breaker it never read: CLOSED, generation 0, as of never.
_UNKNOWN = Snapshot(0, BreakerState.CLOSED, 0, 0, 0, 0, 0, -1)


class DistributedBreaker:
    """One fleet-wide breaker. Get it from :meth:`BreakerHub.get`."""

    # Slots, and nothing made that a CLOSED breaker which never failed does not need
    # (the load lock, the pending-success dict and the local fallback are made when
    # first needed): at 10,000 endpoint breakers each is well under 1 KB.
    __slots__ = (
        "_channel",
        "_corrupt_logged",
        "_fallback",
        "_load_lock",
        "_loaded",
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
        # The local breaker and its episode while Redis is not taking writes, else None.
        self._fallback: LocalFallback | None = None
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
        return self._fallback is not None

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
        self._apply(event_snapshot(self._view, gen, state, opened_at, open_until, now))

    def _decode(self, reply: Reply) -> Snapshot:
        snap = Snapshot.from_reply(reply_list(reply))
        if snap.corrupt and not self._corrupt_logged:
            # Once per key: the script read it as absent, and the next write repairs it.
            self._corrupt_logged = True
            log_corrupt(self.label, self._keys[0])
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
        if snap.gen == 0 and vanished_while_open(self._view, snap):
            snap = await restore_open(
                self.hub.store,
                self._keys[:2],
                self._channel,
                self.name,
                self._view,
                snap,
                key_ttl_ms=self.params.key_ttl_ms,
                label=self.label,
                decode=self._decode,
            )
        self._apply(snap, authoritative=True)
        # A read that succeeds is no proof that writes do: a local breaker stays local
        # until _rejoin's write goes through.
        return self._state(snap, local=False)

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
                self.hub.spawn(self.index())
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
                    await (self._rejoin() if self._fallback is not None else self.refresh())
            except StoreError as exc:
                logger.debug("breaker %s refresh failed: %s", self.label, exc)
                if self._fallback is None and not isinstance(exc, ScriptError):
                    self._enter_local(exc)
            finally:
                self._refreshing = False

        self.hub.spawn(run())

    # -- local fallback ----------------------------------------------------------------------

    def _enter_local(self, exc: BaseException) -> None:
        fallback = self._fallback
        if fallback is not None:
            fallback.defer(self.hub.store, exc)
            return
        fallback = LocalFallback(self._view, self.params)
        fallback.defer(self.hub.store, exc)
        self._fallback = fallback
        logger.debug("breaker %s runs locally (a write failed): %s", self.label, exc)

    async def _rejoin(self) -> None:
        """Write the local outcomes to the shared state; on success, leave local mode."""
        fallback = self._fallback
        if fallback is None:
            return
        successes, failures, sent = fallback.start_rejoin(rate_mode=self.params.rate_permille > 0)
        try:
            reply = await self.hub.store.run(
                "breaker_record",
                self._keys,
                self._record_args(sent.gen, successes, failures, ""),
            )
        except StoreError as exc:
            # Whichever fallback runs now (normally the same one) carries the outcomes.
            if self._fallback is not None:
                self._fallback.take_back(sent, self.hub.store, exc)
            raise
        snap = self._decode(reply)
        self._apply(snap, authoritative=True)
        self._fallback = None
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
        opened_at_ms = self._view.opened_at_ms
        return refusal(
            self.label, self.service, self.endpoint, snap_state, open_until_ms, now_ms, opened_at_ms
        )

    # -- admission ------------------------------------------------------------------------------

    async def acquire(self) -> Permit:
        """Admit a call or raise :class:`CircuitOpenError` (with ``retry_after``)."""
        if not self._loaded:
            await self._ensure_loaded()
        if self._fallback is not None:
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
                self._probes_busy_until_ms = reopens_at(snap)
                self._probes_busy_gen = snap.gen
            raise self._refuse(snap.state, reopens_at(snap), snap.now_ms)
        return Permit(self, snap.gen, token if snap.code == PROBE else "", False)

    def _acquire_local(self) -> Permit:
        if self.hub.failure_policy == "fail_closed":
            self.rejections += 1
            raise unreachable_refusal(self.label, self.service, self.endpoint)
        fallback = self._fallback
        if fallback is None:  # pragma: no cover - callers check
            raise RuntimeError("no local breaker")
        if self.hub.store.retry_due and fallback.due():
            self.background_refresh()
        self.local_calls += 1
        snap, token = fallback.acquire(self._now_ms())
        self._apply(snap)
        if snap.code == REJECT:
            raise self._refuse(snap.state, reopens_at(snap), snap.now_ms)
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
        if permit.local or self._fallback is not None:
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
        if permit.probe and not permit.local and self._fallback is None:
            await self._send(permit.gen, 0, 0, permit.token)
        elif permit.probe and self._fallback is not None:
            self._fallback.release(permit.token)

    def _record_local(self, permit: Permit, ok: bool) -> None:
        fallback = self._fallback
        if fallback is None:
            # Redis came back while this call ran; its outcome belongs to the old view.
            return
        snap = fallback.record(
            permit.gen, 1 if ok else 0, 0 if ok else 1, permit.token, self._now_ms()
        )
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
            if self._fallback is not None and (successes or failures):
                snap = self._fallback.record(gen, successes, failures, token, self._now_ms())
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

    async def index(self) -> None:
        """List this breaker in the fleet-wide indexes (for ``status`` and the CLI)."""
        await self.hub.index(self.service, self.name, self.params.key_ttl_ms)

    def _schedule_flush(self) -> None:
        if not self.flush_due:
            self.hub.schedule_flush(self, self.config.success_flush_interval)

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

    def _state(self, snap: Snapshot, *, local: bool) -> CircuitState:
        return circuit_state(
            snap, service=self.service, endpoint=self.endpoint, now_ms=self._now_ms(), local=local
        )

    def state(self) -> CircuitState:
        """This replica's current view, without a round trip."""
        if self._fallback is not None:
            return self._state(self._fallback.breaker.snapshot(self._now_ms()), local=True)
        return self._state(self._view, local=False)

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
        await self.index()  # a breaker set by hand is listed like any other
        return self._state(snap, local=False)

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
