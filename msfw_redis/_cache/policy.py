"""What a cached call is configured with and what it gets back.

* :class:`CachePolicy`: ttl, stale window, lease and wait bounds, size limit, negative
  caching, for one function or route (float seconds, validated at construction).
* :class:`CacheResult`: the value plus how it was obtained (:class:`CacheOutcome`,
  :class:`StaleReason`), so the SDK can say whether it was served from cache or stale.
* :class:`CacheStats`: the cache's counters, for metrics.
* Which origin errors a stale entry may stand in for, and which are negative-cached.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from msfw_redis._cache.entry import DEFAULT_MAX_ENTRY_BYTES
from msfw_redis._exceptions import (
    CircuitOpenError,
    ConfigurationError,
    ServiceClientError,
    ServiceTimeoutError,
)

__all__ = [
    "DEFAULT_ERROR_TTL",
    "DEFAULT_LEASE_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "CacheOutcome",
    "CachePolicy",
    "CacheResult",
    "CacheStats",
    "StaleReason",
    "is_negative_cacheable",
    "stale_reason_for",
]

T = TypeVar("T")

#: Seconds a fill lease lasts; set it above the origin call's own timeout.
DEFAULT_LEASE_TIMEOUT = 10.0
#: Seconds a caller waits for another caller's fill before calling the origin itself.
DEFAULT_WAIT_TIMEOUT = 10.0
#: Seconds a negative (error) entry stays fresh under ``cache_on_error``.
DEFAULT_ERROR_TTL = 5.0


class CacheOutcome(StrEnum):
    """How a call was answered; every call counts in exactly one of these."""

    HIT = "hit"  #: a fresh entry
    STALE = "stale"  #: an entry past its ttl, within max_stale
    MISS = "miss"  #: this caller called the origin
    COALESCED = "coalesced"  #: another caller's origin call answered this one
    BYPASS = "bypass"  #: Redis was unavailable; this caller called the origin


class StaleReason(StrEnum):
    """Why a stale entry was served."""

    REVALIDATING = "revalidating"  #: a refresh is running
    ORIGIN_ERROR = "origin_error"  #: the origin call failed
    BREAKER_OPEN = "breaker_open"  #: the service's breaker refused the call


def _check(name: str, value: float, *, minimum: float, strict: bool) -> None:
    bad = not math.isfinite(value) or (value <= minimum if strict else value < minimum)
    if bad:
        op = ">" if strict else ">="
        raise ConfigurationError(
            f"invalid cache policy {name}={value!r}: must be {op} {minimum:g}", field=name
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CachePolicy:
    """How one function or route is cached. Times are float seconds.

    Attributes:
        ttl: how long an entry is fresh. Required, > 0.
        max_stale: how long after ``ttl`` an entry may still be served stale (while a
            refresh runs, when the origin fails, when the breaker is open). Default 0.
        stale_while_revalidate: serve a stale entry at once and refresh it in the
            background (default); when false, the refresh lease holder waits for the
            origin and falls back to the stale entry only if the origin fails.
        lease_timeout: how long a fill lease lasts; a crashed filler blocks others at
            most this long. Set it above the origin call's timeout. Default 10.
        wait_timeout: how long a caller waits for another caller's fill before calling
            the origin itself. Default 10.
        max_entry_bytes: largest envelope stored; larger values are skipped and
            counted. Default 1 MiB.
        cache_on_error: store error results too (negative caching). Default false.
        error_ttl: how long an error result stays fresh. Default 5.
    """

    ttl: float
    max_stale: float = 0.0
    stale_while_revalidate: bool = True
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    cache_on_error: bool = False
    error_ttl: float = DEFAULT_ERROR_TTL

    def __post_init__(self) -> None:
        _check("ttl", self.ttl, minimum=0.0, strict=True)
        _check("max_stale", self.max_stale, minimum=0.0, strict=False)
        _check("lease_timeout", self.lease_timeout, minimum=0.0, strict=True)
        _check("wait_timeout", self.wait_timeout, minimum=0.0, strict=False)
        _check("error_ttl", self.error_ttl, minimum=0.0, strict=True)
        if isinstance(self.max_entry_bytes, bool) or not isinstance(self.max_entry_bytes, int):
            raise ConfigurationError(
                f"invalid cache policy max_entry_bytes={self.max_entry_bytes!r}: must be an int",
                field="max_entry_bytes",
            )
        _check("max_entry_bytes", self.max_entry_bytes, minimum=0, strict=True)


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made
# building one half a microsecond slower, on every hit. Nothing mutates one.
@dataclass(slots=True)
class CacheResult(Generic[T]):
    """A value and how it was obtained.

    Attributes:
        value: the value (decoded afresh when it came from an entry).
        outcome: see :class:`CacheOutcome`.
        stale_reason: why a stale entry was served (``None`` unless ``stale``).
        error: the origin error that a stale entry stands in for, if any.
        age: seconds since the served entry was stored (server time); ``None`` when
            the value came from an origin call.
        stored: this call stored a new entry.
    """

    value: T
    outcome: CacheOutcome
    stale_reason: StaleReason | None = None
    error: BaseException | None = None
    age: float | None = None
    stored: bool = False

    @property
    def from_cache(self) -> bool:
        """True unless this caller's own origin call produced the value."""
        return self.outcome in (CacheOutcome.HIT, CacheOutcome.STALE, CacheOutcome.COALESCED)

    @property
    def stale(self) -> bool:
        """True when the value is a stale entry."""
        return self.outcome is CacheOutcome.STALE


@dataclass(slots=True)
class CacheStats:
    """Counters since start.

    Each call counts once in ``hits``, ``stale_served``, ``misses`` (this caller called
    the origin), ``coalesced_waiters`` (another caller's origin call answered it, in
    this process or, after a WAIT, in another) or ``bypasses`` (Redis unavailable).
    The rest count events: ``fills`` stored and ``fill_rejections`` refused (lease
    lost or generation changed); ``lease_expiries``, expired leases taken over;
    ``oversize_skips``, ``uncacheable_skips`` (codec said no: no-store, private...)
    and ``encode_failures``, values not stored; ``corrupt_entries`` deleted;
    ``wait_timeouts``, waits that hit ``wait_timeout``; background ``refreshes`` and
    ``refresh_failures``; ``errors_cached`` (negative entries); ``origin_calls`` and
    ``origin_errors``; ``store_errors`` (Redis operations that failed);
    ``near_hits`` (hits served from the near cache, counted in ``hits`` too);
    ``revalidations`` (conditional refreshes) and ``not_modified`` (those answered 304).
    """

    hits: int = 0
    stale_served: int = 0
    misses: int = 0
    coalesced_waiters: int = 0
    bypasses: int = 0
    fills: int = 0
    fill_rejections: int = 0
    lease_expiries: int = 0
    oversize_skips: int = 0
    uncacheable_skips: int = 0
    encode_failures: int = 0
    corrupt_entries: int = 0
    wait_timeouts: int = 0
    refreshes: int = 0
    refresh_failures: int = 0
    errors_cached: int = 0
    origin_calls: int = 0
    origin_errors: int = 0
    store_errors: int = 0
    near_hits: int = 0
    revalidations: int = 0
    not_modified: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


def stale_reason_for(exc: BaseException) -> StaleReason | None:
    """Why an origin error lets a usable stale entry stand in, or None when it must not.

    Any failure does (connection errors, timeouts, 5xx, an open breaker), except a 4xx
    ``ServiceClientError``: that is the origin's answer, not its failure.
    """
    if isinstance(exc, CircuitOpenError):
        return StaleReason.BREAKER_OPEN
    if (
        isinstance(exc, ServiceClientError)
        and exc.status_code is not None
        and 400 <= exc.status_code < 500
    ):
        return None  # a client error is the origin's answer, not its failure
    return StaleReason.ORIGIN_ERROR


def is_negative_cacheable(exc: BaseException) -> bool:
    """Whether ``cache_on_error`` stores ``exc``: only an answer the origin gave.

    That is a ``ServiceClientError`` carrying an HTTP status; timeouts and an open
    breaker say nothing about the resource and are never cached.
    """
    return (
        isinstance(exc, ServiceClientError)
        and exc.status_code is not None
        and not isinstance(exc, (CircuitOpenError, ServiceTimeoutError))
    )
