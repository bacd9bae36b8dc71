"""Retry-budget maths and Retry-After parsing, sans I/O.

The budget is Finagle's and Envoy's: over a window of ``window`` seconds, the fleet may
retry at most ``ratio * requests + min_per_second * window`` times. The script
``lua/limits_retrybudget_spend.lua`` computes the same integer formula as
:func:`retries_allowed` (ratio in parts per million, minimum in milli-retries).
"""

from __future__ import annotations

import email.utils
import math
import time

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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if absent or unusable.

    RFC 9110 allows delay-seconds (``"120"``) or an HTTP-date. A date in the past gives
    ``0.0``; a negative, non-numeric or unparsable value gives ``None`` (a window is
    never invented from a bad header).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
