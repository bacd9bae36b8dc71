"""RFC 9111 shared-cache storage rules: one table row per status x Cache-Control x Vary x
credential case. ``benchmarks/bench_cache.py --rules`` prints the same rows beside
hishel's decisions for the README."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from msfw_redis._cache.keys import request_key
from msfw_redis._cache.rules import storage_decision

SECRET = b"storage-rules-test-secret-0123456"
TTL, NEGATIVE_TTL, ERROR_TTL = 60.0, 5.0, 5.0


@dataclass(frozen=True, slots=True)
class Case:
    """One response (and whether its request carried a credential) and our decision."""

    name: str
    status: int
    cache_control: str | None = None
    vary: str | None = None
    set_cookie: bool = False
    validator: bool = False
    credential: str = "none"  # none | with secret | no secret
    cache_on_error: bool = False
    retry_after: str | None = None
    expected: str = ""


CASES = [
    Case("200 plain", 200, expected="store 60s"),
    Case("200 max-age=10", 200, "max-age=10", expected="store 10s"),
    Case("200 max-age=600 (ttl caps)", 200, "max-age=600", expected="store 60s"),
    Case("200 s-maxage wins", 200, "max-age=30, s-maxage=5", expected="store 5s"),
    Case("200 max-age=0", 200, "max-age=0", expected="no (must revalidate, no validator)"),
    Case("200 max-age=0 + ETag", 200, "max-age=0", validator=True, expected="revalidate only"),
    Case("200 no-cache", 200, "no-cache", expected="no (must revalidate, no validator)"),
    Case("200 no-cache + ETag", 200, "no-cache", validator=True, expected="revalidate only"),
    Case("200 must-revalidate", 200, "max-age=10, must-revalidate", expected="store 10s, no stale"),
    Case("200 private", 200, "private", expected="no (private)"),
    Case("200 no-store", 200, "no-store", expected="no (no-store)"),
    Case("200 Set-Cookie", 200, set_cookie=True, expected="no (set-cookie)"),
    Case("200 Vary: *", 200, vary="*", expected="no (vary-star)"),
    Case("200 Vary: X-Tenant", 200, vary="X-Tenant", expected="store 60s, per x-tenant"),
    Case(
        "200 Authorization, secret",
        200,
        credential="with secret",
        expected="store 60s, per credential",
    ),
    Case(
        "200 Authorization, no secret",
        200,
        credential="no secret",
        expected="no (credential, no secret)",
    ),
    Case(
        "200 Authorization + s-maxage",
        200,
        "s-maxage=10",
        credential="with secret",
        expected="store 10s, per credential",
    ),
    Case("203", 203, expected="store 60s"),
    Case("204", 204, expected="store 60s"),
    Case("300", 300, expected="store 60s"),
    Case("301", 301, expected="store 60s"),
    Case("308", 308, expected="store 60s"),
    Case("414", 414, expected="store 60s"),
    Case("302", 302, expected="no (302 not cacheable by default)"),
    Case("404", 404, expected="negative 5s"),
    Case("404 max-age=1", 404, "max-age=1", expected="negative 1s"),
    Case("410", 410, expected="negative 5s"),
    Case("405", 405, expected="store 60s"),
    Case("401", 401, expected="no (about the caller)"),
    Case("401 cache_on_error", 401, cache_on_error=True, expected="no (about the caller)"),
    Case("403", 403, expected="no (about the caller)"),
    Case("407", 407, expected="no (about the caller)"),
    Case("408", 408, expected="no (error without cache_on_error)"),
    Case("429 Retry-After: 1", 429, retry_after="1", expected="no (error without cache_on_error)"),
    Case(
        "429 Retry-After: 1, cache_on_error",
        429,
        retry_after="1",
        cache_on_error=True,
        expected="negative 1s",
    ),
    Case("500", 500, expected="no (error without cache_on_error)"),
    Case("500 cache_on_error", 500, cache_on_error=True, expected="negative 5s"),
    Case("501", 501, expected="no (error without cache_on_error)"),
    Case(
        "503 max-age=60, cache_on_error",
        503,
        "max-age=60",
        cache_on_error=True,
        expected="negative 5s",
    ),
]


def ours(case: Case) -> str:
    """Our decision for ``case``, in the words of the table."""
    headers = {"authorization": "Bearer alice"} if case.credential != "none" else {}
    secret = SECRET if case.credential == "with secret" else None
    key = request_key(service="svc", method="GET", path="/a", headers=headers, secret=secret)
    if key is None:
        return "no (credential, no secret)"
    rule = storage_decision(
        case.status,
        cache_control=[case.cache_control] if case.cache_control else [],
        vary=[case.vary] if case.vary else [],
        set_cookie=case.set_cookie,
        has_validator=case.validator,
        retry_after=case.retry_after,
        ttl=TTL,
        negative_ttl=NEGATIVE_TTL,
        error_ttl=ERROR_TTL,
        cache_on_error=case.cache_on_error,
    )
    if not rule.store:
        reason = rule.reason
        if reason.startswith("status") and "about the caller" in reason:
            reason = "about the caller"
        elif reason.endswith("without cache_on_error"):
            reason = "error without cache_on_error"
        elif reason.endswith("not cacheable by default"):
            reason = f"{case.status} not cacheable by default"
        return f"no ({reason})"
    if rule.ttl == 0:
        return "revalidate only"
    text = f"{'negative' if rule.negative else 'store'} {rule.ttl:g}s"
    if not rule.serve_stale and not rule.negative:
        text += ", no stale"
    if rule.vary:
        text += ", per " + "+".join(rule.vary)
    if case.credential == "with secret":
        text += ", per credential"
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_storage_rule(case: Case) -> None:
    """Each row of the storage-rules table gets exactly the decision written in it."""
    assert ours(case) == case.expected
