"""Retry-budget maths, and the strict Retry-After reading the fleet gate uses, sans I/O.

The budget is Finagle's and Envoy's: over a window of ``window`` seconds, the fleet may
retry at most ``ratio * requests + min_per_second * window`` times. The script
``lua/limits_retrybudget_spend.lua`` computes the same integer formula as
:func:`retries_allowed` (ratio in parts per million, minimum in milli-retries).
"""

from __future__ import annotations

from msfw_redis._http_dates import parse_retry_after as _parse

__all__ = ["budget_args", "parse_retry_after", "retries_allowed"]


def budget_args(ratio: float, min_per_second: float) -> tuple[int, int]:
    """``(ratio_ppm, min_per_second_milli)``: the integers the script takes."""
    if ratio < 0 or min_per_second < 0:
        raise ValueError("retry budget ratio and minimum must be >= 0")
    return round(ratio * 1_000_000), round(min_per_second * 1000)


def retries_allowed(requests: int, ratio: float, min_per_second: float, window_s: int) -> int:
    """Retries the budget allows over the window for ``requests`` requests in it.

    ``floor(ratio * requests) + floor(min_per_second * window_s)``, each term computed in
    integers exactly as the script does.
    """
    ratio_ppm, min_milli = budget_args(ratio, min_per_second)
    return (ratio_ppm * requests) // 1_000_000 + (min_milli * window_s) // 1000


def parse_retry_after(
    value: str | None, *, now: float | None = None, date: str | None = None
) -> float | None:
    """Seconds from a ``Retry-After`` value, strictly (digits or a zoned HTTP-date), or None.

    The fleet gate's reading: a negative, fractional or unparsable value gives ``None``,
    so a window is never invented from a bad header. An HTTP-date is measured against
    the response's ``Date``, else against ``now``, which the gate takes from Redis's
    clock (a window every replica obeys must not rest on one replica's clock); with
    neither it gives ``None``. See :mod:`msfw_redis._http_dates`.
    """
    return _parse(value, strict=True, now=now, date=date)
