"""``Retry-After`` header values as seconds: the one parser both its readers share.

RFC 9110 allows delay-seconds (``"120"``) or an HTTP-date. Two callers read it with
different needs, so the strictness is a parameter rather than two copies:

- the retry loop (``strict=False``) takes the header as a *hint* for its own back-off,
  so ``"1.5"`` is 1.5 s and ``"-3"`` is 0 (wait no longer than the back-off says);
- the fleet Retry-After gate (``strict=True``) closes an endpoint for every replica,
  so it accepts only what the RFC allows (digits or a zoned HTTP-date) and never
  invents a window from a malformed header.

Pure, no I/O, imports nothing from the package, so any layer may use it.
"""

from __future__ import annotations

import email.utils
import math
import time

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, strict: bool, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if absent or unusable.

    A date in the past gives ``0.0``; NaN and infinities give ``None``. With
    ``strict=True`` only delay-seconds digits or an HTTP-date with a zone are accepted
    (``"1.5"``, ``"-1"`` and naive dates give ``None``); with ``strict=False`` any float
    is accepted and a negative one clamps to ``0.0``. ``now`` (epoch seconds) is for
    tests; it defaults to the local clock, used only to turn a date into a delay.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if strict:
        if text.isdigit():
            return float(int(text))
    else:
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if strict and when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
