"""Pure maths and config of fleet-wide limits: GCRA, rates, retry budget, Retry-After."""

from __future__ import annotations

import email.utils

import pytest

from msfw_redis import BulkheadConfig, ConfigurationError, RateLimitConfig
from msfw_redis._limits.budget import parse_retry_after, retries_allowed
from msfw_redis._limits.config import bulkhead_from_settings, rate_limit_from_settings
from msfw_redis._limits.gcra import GcraParams, gcra_decide, parse_rate
from msfw_redis._settings import load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/s", (100.0, 1.0)), ("30/m", (30.0, 60.0)), ("5/h", (5.0, 3600.0)),
     ("10/5s", (10.0, 5.0)), (" 2.5 / second ", (2.5, 1.0))],
)  # fmt: skip
def test_parse_rate_forms(text: str, expected: tuple[float, float]) -> None:
    """Rates in s, m, h (with optional multiplier) parse to (rate, per)."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "100", "100/d", "0/s", "x/s", "/s"])
def test_parse_rate_rejects(text: str) -> None:
    """Malformed rates raise ValueError naming the text."""
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


def test_gcra_admits_burst_then_spaces_by_emission() -> None:
    """From idle, burst requests pass at once; then one per emission interval."""
    p = GcraParams.of(10, 1.0, 3)
    assert p.emission_us == 100_000
    tat = None
    for _ in range(3):
        d = gcra_decide(p, tat, 0)
        assert d.admitted
        tat = d.tat_us
    refused = gcra_decide(p, tat, 0)
    assert not refused.admitted and refused.retry_after_us == 100_000
    assert gcra_decide(p, tat, 100_000).admitted


def test_gcra_never_exceeds_rate_times_window_plus_burst() -> None:
    """Under constant pressure, admissions in any window W are at most W/T + burst."""
    p = GcraParams.of(100, 1.0, 5)
    tat = None
    admitted: list[int] = []
    for now in range(0, 2_000_000, 1_000):  # a request every 1 ms for 2 s
        d = gcra_decide(p, tat, now)
        if d.admitted:
            admitted.append(now)
            tat = d.tat_us
    window = 500_000
    for start in range(0, 1_500_000, 10_000):
        count = sum(1 for t in admitted if start <= t < start + window)
        assert count <= window // p.emission_us + p.burst
    assert len(admitted) >= 0.9 * (2_000_000 // p.emission_us)


def test_gcra_default_burst_is_rate() -> None:
    """Without a burst the limiter admits ceil(rate) at once."""
    assert GcraParams.of(2.5, 1.0, None).burst == 3


def test_gcra_cost_bounds() -> None:
    """A cost above the burst is rejected."""
    with pytest.raises(ValueError, match="cost"):
        gcra_decide(GcraParams.of(1, 1, 1), None, 0, cost=2)


def test_retries_allowed_formula() -> None:
    """Budget = floor(ratio * requests) + floor(min_per_second * window)."""
    assert retries_allowed(0, 0.2, 10, 10) == 100
    assert retries_allowed(1000, 0.2, 10, 10) == 300
    assert retries_allowed(7, 0.2, 0, 10) == 1


def test_parse_retry_after_seconds_and_dates() -> None:
    """Retry-After as seconds or an HTTP-date; absent or junk gives None."""
    assert parse_retry_after("2") == 2.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after(date, now=2_000_000) == 0.0
    for bad in (None, "", "-1", "soon", "1.5"):
        assert parse_retry_after(bad) is None


def test_a_retry_after_date_is_measured_against_the_responses_own_date() -> None:
    """With the response's Date header the window comes from the origin's two stamps,
    not the caller's clock (here years off); a bad Date falls back to the caller's
    ``now``, and with no ``now`` either (no clock is ever read here) there is none."""
    date = email.utils.formatdate(1_000_030, usegmt=True)
    sent = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(date, date=sent) == pytest.approx(20.0)
    assert parse_retry_after(date, date=sent, now=5_000_000) == pytest.approx(20.0)
    assert parse_retry_after(date, date="junk", now=2_000_000) == 0.0  # now: long past
    assert parse_retry_after(date, date="junk", now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after(date, date="junk") is None  # nothing to measure against
    assert parse_retry_after("5", date=sent) == 5.0  # delay-seconds need no clock


def test_bulkhead_config_names_field() -> None:
    """An invalid bulkhead setting raises ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError) as err:
        BulkheadConfig(max_concurrent_calls=0)
    assert err.value.field == "max_concurrent_calls"


def test_rate_limit_config_parse_and_errors() -> None:
    """RateLimitConfig.parse reads TOML's form; bad values name the field."""
    cfg = RateLimitConfig.parse("30/m", burst=2)
    assert (cfg.rate, cfg.per, cfg.params.burst) == (30.0, 60.0, 2)
    with pytest.raises(ConfigurationError) as err:
        RateLimitConfig(rate=-1)
    assert err.value.field == "rate"


def test_service_settings_carry_limits() -> None:
    """[services.x] limits fields become BulkheadConfig and RateLimitConfig."""
    settings = load_settings(
        {"services": {"x": {"max_concurrent_calls": 4, "max_wait": 0.5, "rate_limit": "100/s"}}}
    )
    svc = settings.for_service("x")
    bh = bulkhead_from_settings(svc)
    assert bh is not None and (bh.max_concurrent_calls, bh.max_wait) == (4, 0.5)
    rl = rate_limit_from_settings(svc)
    assert rl is not None and (rl.rate, rl.per) == (100.0, 1.0)


def test_service_settings_reject_bad_rate() -> None:
    """A malformed rate_limit in settings names the field."""
    with pytest.raises(ConfigurationError) as err:
        load_settings({"services": {"x": {"rate_limit": "lots"}}})
    assert "rate_limit" in str(err.value)


def test_one_retry_after_parser_two_strictnesses() -> None:
    """The gate's and the retry loop's readings are one function; only the lenient one
    takes fractions, negatives and naive dates, so the gate never invents a window."""
    from msfw_redis._http_dates import parse_retry_after as shared
    from msfw_redis._pipeline.retry import parse_retry_after as lenient

    zoned = email.utils.formatdate(1_000_030, usegmt=True)
    naive = "Mon, 12 Jan 1970 13:47:10"
    for value, strict_seconds, lenient_seconds in (
        ("2", 2.0, 2.0),
        (" 7 ", 7.0, 7.0),
        ("1.5", None, 1.5),
        ("-3", None, 0.0),
        ("nan", None, None),
        ("inf", None, None),
        ("soon", None, None),
        ("", None, None),
        (None, None, None),
    ):
        assert shared(value, strict=True) == strict_seconds, value
        assert parse_retry_after(value) == strict_seconds, value
        assert shared(value, strict=False) == lenient_seconds, value
        assert lenient(value) == lenient_seconds, value
    assert shared(zoned, strict=True, now=1_000_000) == pytest.approx(30.0)
    assert shared(zoned, strict=False, now=1_000_000) == pytest.approx(30.0)
    assert shared(naive, strict=True, now=0) is None
    assert shared(naive, strict=False, now=0) is not None
