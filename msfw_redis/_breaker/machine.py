"""The breaker state machine in pure Python (sans-I/O).

It follows the same rules as ``lua/breaker_acquire.lua``, ``breaker_record.lua`` and
``breaker_control.lua``, step for step, and replies with the same tuples. Two users:

* the local fallback breaker while Redis is unreachable, seeded from the last shared
  state a process saw;
* the tests, which run random operation sequences through this machine and through the
  Lua scripts and require identical replies (see ``tests/lua/test_breaker_model.py``).

Time is an explicit ``now_ms`` everywhere; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "ADMIT",
    "APPLIED",
    "CORRUPT_FLAG",
    "PROBE",
    "REJECT",
    "STALE",
    "TRANSITIONED",
    "BreakerParams",
    "BreakerState",
    "LocalBreaker",
    "Snapshot",
]

# acquire decisions
ADMIT, PROBE, REJECT = 0, 1, 2
# record results
APPLIED, STALE, TRANSITIONED = 0, 1, 2
#: Added to a script's code when the stored breaker value was corrupt (read as absent).
CORRUPT_FLAG = 16


class BreakerState(IntEnum):
    """Breaker states, with the integer codes the Lua scripts reply with."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2
    FORCED_OPEN = 3
    FORCED_CLOSED = 4
    DISABLED = 5

    @property
    def label(self) -> str:
        """Lower-case name, as shown by ``CircuitState.state``."""
        return self.name.lower()

    @property
    def manual(self) -> bool:
        return self in (BreakerState.FORCED_OPEN, BreakerState.FORCED_CLOSED, BreakerState.DISABLED)


@dataclass(frozen=True, slots=True)
class BreakerParams:
    """A breaker's policy in the integer units the scripts take."""

    failure_threshold: int = 5
    success_threshold: int = 2
    open_ms: int = 60_000
    rate_permille: int = 0
    minimum_calls: int = 10
    window_ms: int = 60_000
    half_open_max: int = 1
    lease_ms: int = 30_000
    key_ttl_ms: int = 7 * 24 * 3_600_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One breaker's state at server time ``now_ms`` (a script reply, decoded)."""

    code: int
    state: BreakerState
    gen: int
    failures: int
    successes: int
    opened_at_ms: int
    open_until_ms: int
    now_ms: int
    extra: tuple[int, ...] = ()
    #: The stored value did not decode (another type, an unknown state): read as absent.
    corrupt: bool = False
    #: The failure count that tripped the breaker, while OPEN/HALF_OPEN; else 0.
    failures_at_trip: int = 0

    @classmethod
    def from_reply(cls, reply: list[object]) -> Snapshot:
        """Decode ``{code, state, gen, fail, succ, opened_at, open_until, now, fat, ...}``.

        A code with 16 added flags a corrupt stored value that the script read as absent.
        """
        if len(reply) < 9:
            raise ValueError(f"breaker reply too short: {reply!r}")
        nums = [int(v) if isinstance(v, (int, bytes, str)) else 0 for v in reply]
        return cls(
            corrupt=bool(nums[0] & CORRUPT_FLAG),
            code=nums[0] & ~CORRUPT_FLAG,
            state=BreakerState(nums[1]),
            gen=nums[2],
            failures=nums[3],
            successes=nums[4],
            opened_at_ms=nums[5],
            open_until_ms=nums[6],
            now_ms=nums[7],
            failures_at_trip=nums[8],
            extra=tuple(nums[9:]),
        )

    def as_reply(self) -> list[int]:
        return [
            self.code,
            int(self.state),
            self.gen,
            self.failures,
            self.successes,
            self.opened_at_ms,
            self.open_until_ms,
            self.now_ms,
            self.failures_at_trip,
            *self.extra,
        ]


@dataclass(slots=True)
class LocalBreaker:
    """One breaker held in process memory, with the scripts' exact semantics."""

    params: BreakerParams
    state: BreakerState = BreakerState.CLOSED
    gen: int = 0
    failures: int = 0
    successes: int = 0
    opened_at_ms: int = 0
    open_until_ms: int = 0
    total_failures: int = 0
    total_successes: int = 0
    trips: int = 0
    failures_at_trip: int = 0
    probes: dict[str, int] = field(default_factory=dict)
    window: dict[tuple[str, int], int] = field(default_factory=dict)

    # -- helpers ------------------------------------------------------------------------

    def _transition(self, to: BreakerState, now_ms: int, tripped_by: int = 0) -> None:
        self.gen += 1
        self.state = to
        self.failures = 0
        self.successes = 0
        if to is BreakerState.OPEN:
            self.opened_at_ms = now_ms
            self.open_until_ms = now_ms + self.params.open_ms
            self.trips += 1
            self.failures_at_trip = tripped_by
        elif to is BreakerState.CLOSED:
            self.open_until_ms = 0
            self.failures_at_trip = 0
        self.probes.clear()
        self.window.clear()

    def _expire_override(self, now_ms: int) -> bool:
        if self.state.manual and self.open_until_ms > 0 and now_ms >= self.open_until_ms:
            self._transition(BreakerState.CLOSED, now_ms)
            return True
        return False

    def _snap(self, code: int, now_ms: int, *extra: int) -> Snapshot:
        return Snapshot(
            code,
            self.state,
            self.gen,
            self.failures,
            self.successes,
            self.opened_at_ms,
            self.open_until_ms,
            now_ms,
            tuple(extra),
            failures_at_trip=self.failures_at_trip,
        )

    def snapshot(self, now_ms: int) -> Snapshot:
        """The current state as a snapshot at ``now_ms`` (no operation applied)."""
        return self._snap(APPLIED, now_ms)

    # -- the three operations -----------------------------------------------------------

    def acquire(self, token: str, now_ms: int) -> Snapshot:
        """As ``breaker_acquire.lua``: admit, admit as a probe, or reject."""
        self._expire_override(now_ms)
        if self.state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED, BreakerState.DISABLED):
            return self._snap(ADMIT, now_ms, 0, 0)
        if self.state is BreakerState.FORCED_OPEN or (
            self.state is BreakerState.OPEN and now_ms < self.open_until_ms
        ):
            return self._snap(REJECT, now_ms, 0, 0)
        if self.state is BreakerState.OPEN:
            self._transition(BreakerState.HALF_OPEN, now_ms)
        self.probes = {t: exp for t, exp in self.probes.items() if exp > now_ms}
        active = len(self.probes)
        if active < self.params.half_open_max:
            self.probes[token] = now_ms + self.params.lease_ms
            return self._snap(PROBE, now_ms, active + 1, 0)
        earliest = min(self.probes.values()) if self.probes else 0
        return self._snap(REJECT, now_ms, active, earliest)

    def record(self, gen: int, successes: int, failures: int, token: str, now_ms: int) -> Snapshot:
        """As ``breaker_record.lua``: apply outcomes admitted under generation ``gen``."""
        p = self.params
        self.total_successes += successes
        self.total_failures += failures
        result = TRANSITIONED if self._expire_override(now_ms) else APPLIED
        w_calls = w_fails = 0
        if gen != self.gen or self.state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            if result == APPLIED:
                result = STALE
            if token:
                self.probes.pop(token, None)
        elif self.state in (BreakerState.FORCED_CLOSED, BreakerState.DISABLED):
            result = APPLIED
        elif self.state is BreakerState.HALF_OPEN:
            if not token or token not in self.probes:
                result = STALE
            else:
                del self.probes[token]
                if failures > 0:
                    self._transition(BreakerState.OPEN, now_ms, failures)
                    result = TRANSITIONED
                else:
                    self.successes += successes
                    if self.successes >= p.success_threshold:
                        self._transition(BreakerState.CLOSED, now_ms)
                        result = TRANSITIONED
        elif p.rate_permille > 0:
            bucket_ms = max(1, p.window_ms // 10)
            bucket = now_ms - (now_ms % bucket_ms)
            if successes > 0:
                self.window[("s", bucket)] = self.window.get(("s", bucket), 0) + successes
            if failures > 0:
                self.window[("f", bucket)] = self.window.get(("f", bucket), 0) + failures
            oldest = now_ms - p.window_ms
            for (kind, at), count in list(self.window.items()):
                if at + bucket_ms <= oldest:
                    del self.window[(kind, at)]
                else:
                    w_calls += count
                    if kind == "f":
                        w_fails += count
            if failures > 0:
                self.failures += failures
            elif successes > 0:
                self.failures = 0
            if w_calls >= p.minimum_calls and w_fails * 1000 >= p.rate_permille * w_calls:
                self._transition(BreakerState.OPEN, now_ms, w_fails)
                result = TRANSITIONED
        else:
            if successes > 0:
                self.failures = 0
            self.failures += failures
            if self.failures >= p.failure_threshold:
                self._transition(BreakerState.OPEN, now_ms, self.failures)
                result = TRANSITIONED
        return self._snap(result, now_ms, w_calls, w_fails)

    def control(self, action: str, ttl_ms: int, now_ms: int) -> Snapshot:
        """As ``breaker_control.lua``: ``open``, ``close``, ``disable`` or ``reset``."""
        targets = {
            "open": BreakerState.FORCED_OPEN,
            "close": BreakerState.FORCED_CLOSED,
            "disable": BreakerState.DISABLED,
            "reset": BreakerState.CLOSED,
        }
        if action not in targets or ttl_ms < 0:
            raise ValueError(f"invalid breaker action {action!r} or ttl_ms {ttl_ms!r}")
        self.gen += 1
        self.state = targets[action]
        self.failures = self.successes = self.failures_at_trip = 0
        self.open_until_ms = now_ms + ttl_ms if action != "reset" and ttl_ms > 0 else 0
        if self.state is BreakerState.FORCED_OPEN:
            self.opened_at_ms = now_ms
        self.probes.clear()
        self.window.clear()
        return self._snap(APPLIED, now_ms)
