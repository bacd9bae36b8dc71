"""RFC 9111 storage rules for a *shared* cache: pure functions, no I/O.

Every replica reads the entries one replica stores, so the cache is a shared cache in
the RFC's sense and follows its rules (sections 3, 4.2 and 5.2.2):

* Only statuses that are cacheable by default are stored: 200, 203, 204, 300, 301,
  308, 404, 405, 410, 414 (and 501, see below). 404 and 410 become *negative* entries,
  fresh for the negative TTL only, never the full TTL.
* 401, 403, 407, 429 and every 5xx are never stored. With ``cache_on_error`` an error
  answer (>= 400) other than 401, 403 and 407 is stored as a negative entry for the
  error TTL, capped by its ``Retry-After``. 501 is cacheable by default in the RFC but
  a 5xx here: it follows the 5xx rule, so an origin's bad hour is never kept by default.
* ``Cache-Control: no-store`` or ``private`` and any ``Set-Cookie`` are never stored
  (a shared cache must not replay one caller's session), nor ``Vary: *``.
* ``s-maxage`` (shared caches only) and else ``max-age`` cap the TTL.
* ``no-cache``, ``max-age=0`` (or ``s-maxage=0``) responses are stored only to be
  revalidated: fresh for 0 s, never served unchecked, and only when they carry a
  validator (``ETag`` / ``Last-Modified``), since without one a revalidation is a full
  fetch. ``must-revalidate``, ``proxy-revalidate`` and ``no-cache`` also forbid
  serving the entry stale (no stale-if-error, no stale-while-revalidate).
* ``Vary`` names the request headers the response depends on; the caller stores one
  entry per variant (see :func:`msfw_redis._cache.keys.variant_key`).

:func:`storage_decision` turns a status and headers into a :class:`Storage`; the HTTP
cache path applies it. The README's cache section has the full table, side by side
with hishel's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CACHEABLE_BY_DEFAULT",
    "NEGATIVE_STATUSES",
    "NEVER_STORED",
    "Storage",
    "cache_directives",
    "storage_decision",
    "vary_names",
]

#: Statuses a shared cache may store without explicit freshness (RFC 9110 15.1), 5xx aside.
CACHEABLE_BY_DEFAULT = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414})
#: Cacheable statuses stored only as short-lived negative entries.
NEGATIVE_STATUSES = frozenset({404, 410})
#: Never stored, whatever ``cache_on_error`` says: answers about the caller, not the resource.
NEVER_STORED = frozenset({401, 403, 407})
_NO_STALE = frozenset({"must-revalidate", "proxy-revalidate", "no-cache"})


@dataclass(frozen=True, slots=True)
class Storage:
    """What to do with one response.

    Attributes:
        store: keep it at all.
        reason: why not (or ``"ok"``), for metrics and the storage-rules table.
        ttl: seconds the entry is fresh (0: stored only to be revalidated).
        negative: a negative entry (404/410, or an error under ``cache_on_error``).
        serve_stale: the entry may be served past its freshness (stale-if-error,
            stale-while-revalidate); false for ``no-cache`` and ``must-revalidate``.
        vary: lower-cased request header names from ``Vary``, sorted.
    """

    store: bool
    reason: str
    ttl: float = 0.0
    negative: bool = False
    serve_stale: bool = True
    vary: tuple[str, ...] = ()


def cache_directives(values: Iterable[str]) -> dict[str, str | None]:
    """``Cache-Control`` header values as ``{directive: argument or None}``, lower-cased.

    A repeated directive keeps its first occurrence (RFC 9111 4.2.1 leaves conflicting
    ones to the cache; the first is what most caches take).
    """
    found: dict[str, str | None] = {}
    for value in values:
        for part in value.split(","):
            name, sep, arg = part.partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = arg.strip().strip('"') if sep else None
    return found


def _seconds(arg: str | None) -> float | None:
    """A delta-seconds argument, or None when it is missing or not a non-negative integer."""
    if arg is None or not arg.isdigit():
        return None
    return float(int(arg))


def vary_names(values: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, sorted, de-duplicated header names of ``Vary`` values (``*`` kept)."""
    names = {n.strip().lower() for v in values for n in v.split(",")}
    return tuple(sorted(n for n in names if n))


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None  # an HTTP-date is not trusted: replica clocks are not the server's
    return float(int(value.strip()))


def storage_decision(
    status: int,
    *,
    cache_control: Iterable[str] = (),
    vary: Iterable[str] = (),
    set_cookie: bool = False,
    has_validator: bool = False,
    retry_after: str | None = None,
    ttl: float,
    negative_ttl: float,
    error_ttl: float,
    cache_on_error: bool = False,
) -> Storage:
    """Whether and how a shared cache stores a response (see the module docstring).

    Args:
        status: the response status.
        cache_control: the response's ``Cache-Control`` values.
        vary: the response's ``Vary`` values.
        set_cookie: the response sets a cookie.
        has_validator: it carries an ``ETag`` or ``Last-Modified``.
        retry_after: its ``Retry-After`` value (seconds form only).
        ttl: configured freshness of a good answer, seconds.
        negative_ttl: freshness of a 404/410, seconds.
        error_ttl: freshness of an error stored under ``cache_on_error``, seconds.
        cache_on_error: store error answers too (never 401, 403, 407).
    """
    cc = cache_directives(cache_control)
    if "no-store" in cc:
        return Storage(False, "no-store")
    if "private" in cc:
        return Storage(False, "private")
    if set_cookie:
        return Storage(False, "set-cookie")
    names = vary_names(vary)
    if "*" in names:
        return Storage(False, "vary-star")
    if status in NEVER_STORED:
        return Storage(False, f"status {status} is about the caller")
    negative = False
    if status in CACHEABLE_BY_DEFAULT:
        negative = status in NEGATIVE_STATUSES
        fresh = negative_ttl if negative else ttl
    elif status >= 400 and cache_on_error:
        negative = True
        fresh = error_ttl
        wait = _retry_after(retry_after)
        if wait is not None:
            fresh = min(fresh, wait)
        if fresh <= 0:
            return Storage(False, "retry-after 0")
    elif status >= 400:
        return Storage(False, f"status {status} not stored without cache_on_error")
    else:
        return Storage(False, f"status {status} not cacheable by default")
    # s-maxage is for shared caches and overrides max-age (RFC 9111 5.2.2.10).
    cap = _seconds(cc.get("s-maxage"))
    if cap is None:
        cap = _seconds(cc.get("max-age"))
    if cap is not None:
        fresh = min(fresh, cap)
    if "no-cache" in cc:
        fresh = 0.0
    serve_stale = not (_NO_STALE & cc.keys()) and fresh > 0
    if fresh <= 0:
        if not has_validator:
            return Storage(False, "must revalidate, no validator")
        return Storage(True, "revalidate", 0.0, negative, False, names)
    return Storage(True, "ok", fresh, negative, serve_stale, names)
