"""GCRA maths and rate parsing, sans I/O.

The Generic Cell Rate Algorithm keeps one number per key, the *theoretical arrival
time* (TAT). With emission interval ``T = per / rate`` and a burst of ``B`` requests, a
request of cost ``c`` arriving at ``now`` is admitted when::

    now >= max(TAT, now) + c*T - B*T

and admitting sets ``TAT = max(TAT, now) + c*T``. So over any window of length ``W`` at
most ``W / T + B`` requests are admitted, and a refused caller learns exactly when it
would be admitted (``retry_after``). ``lua/limits_ratelimit_acquire.lua`` is the same
function on Redis ``TIME``; :func:`gcra_decide` here is its model, for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from msfw_redis._config import parse_rate

__all__ = ["GcraDecision", "GcraParams", "gcra_decide", "parse_rate"]


@dataclass(frozen=True, slots=True)
class GcraParams:
    """Integer parameters for the script: emission interval (µs) and burst."""

    emission_us: int
    burst: int

    @classmethod
    def of(cls, rate: float, per: float, burst: int | None) -> GcraParams:
        """Parameters for ``rate`` requests per ``per`` seconds; burst defaults to ``ceil(rate)``.

        The emission interval is rounded to the microsecond, at least 1 µs, so the
        sustained rate is exact to about one part in ``emission_us``.
        """
        if not rate > 0 or not per > 0:
            raise ValueError(f"rate and per must be > 0, got rate={rate!r} per={per!r}")
        emission_us = max(1, round(per * 1_000_000 / rate))
        b = burst if burst is not None else max(1, math.ceil(rate))
        if b < 1:
            raise ValueError(f"burst must be >= 1, got {b!r}")
        return cls(emission_us=emission_us, burst=b)


@dataclass(frozen=True, slots=True)
class GcraDecision:
    """One decision: admitted or not, the wait (µs) and the new TAT (µs)."""

    admitted: bool
    retry_after_us: int
    remaining: int
    tat_us: int


def gcra_decide(params: GcraParams, tat_us: int | None, now_us: int, cost: int = 1) -> GcraDecision:
    """The decision the script makes for a stored ``tat_us`` (``None``: no key)."""
    if not 1 <= cost <= params.burst:
        raise ValueError(f"cost must be within 1..burst ({params.burst}), got {cost}")
    t = params.emission_us
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + cost * t
    allow_at = new_tat - params.burst * t
    if now_us < allow_at:
        return GcraDecision(False, allow_at - now_us, 0, tat)
    remaining = (now_us - (new_tat - params.burst * t)) // t
    return GcraDecision(True, 0, remaining, new_tat)
