"""``Retry-After`` header values as seconds: the one parser both its readers share.

RFC 9110 allows delay-seconds (``"120"``) or an HTTP-date. Two callers read it with
different needs, so the strictness is a parameter rather than two copies:

- the retry loop (``strict=False``) takes the header as a *hint* for its own back-off,
  so ``"1.5"`` is 1.5 s and ``"-3"`` is 0 (wait no longer than the back-off says);
- the fleet Retry-After gate (``strict=True``) closes an endpoint for every replica,
  so it accepts only what the RFC allows (digits or a zoned HTTP-date) and never
  invents a window from a malformed header.

Pure, no I/O, no clock read (an HTTP-date is measured against the response's own
``Date`` or against the ``now`` its caller passes: Redis's clock for the gate, this
process's for its own back-off), imports nothing from the package, so any layer may
use it.
"""

from __future__ import annotations

import email.utils
import math

__all__ = ["parse_retry_after"]


def parse_retry_after(
    value: str | None, *, strict: bool, now: float | None = None, date: str | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` if absent or unusable.

    A date in the past gives ``0.0``; NaN and infinities give ``None``. With
    ``strict=True`` only delay-seconds digits or an HTTP-date with a zone are accepted
    (``"1.5"``, ``"-1"`` and naive dates give ``None``); with ``strict=False`` any float
    is accepted and a negative one clamps to ``0.0``. An HTTP-date is turned into a
    delay against ``date``, the same response's ``Date`` header, when it has a usable
    one; else against ``now`` (epoch seconds); with neither it gives ``None``.
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
    # An HTTP-date is the origin's clock: measured against the same response's own
    # Date header, the delay does not depend on any other clock at all.
    reference = _epoch(date)
    if reference is None:
        reference = now
    if reference is None:
        return None
    seconds = when.timestamp() - reference
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _epoch(date: str | None) -> float | None:
    """Epoch seconds of a zoned HTTP-date (a ``Date`` header), or None."""
    if not date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(date.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    stamp = when.timestamp()
    return stamp if math.isfinite(stamp) else None
