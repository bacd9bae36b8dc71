"""The ``msfw-redis`` argument parser: its commands, their options and help texts."""

from __future__ import annotations

import argparse

from msfw_redis._store.connection import ENV_REDIS_URL
from msfw_redis._store.keys import DEFAULT_KEY_PREFIX

__all__ = ["PROG", "build_parser"]

PROG = "msfw-redis"


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {value}")
    return number


def _common(*, suppress: bool) -> argparse.ArgumentParser:
    """``--redis-url``, ``--prefix`` and ``--verbose``, accepted before or after the
    command (defaults are filled in after parsing, so one never overrides the other)."""
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        default=default,
        help=(
            "the store: redis://, rediss://, unix://, redis+cluster://h:p[,h:p...], "
            f"redis+sentinel://h:p[,h:p...]/<master> (default ${ENV_REDIS_URL}, else the "
            "embedded store: for the demo a fakeredis TCP server its processes share; for "
            "the other commands memory://, a store private to this process, so they "
            "show nothing)"
        ),
    )
    parser.add_argument(
        "--prefix",
        default=default,
        help=f"the key prefix the fleet uses (default {DEFAULT_KEY_PREFIX!r})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log the library's warnings and info on stderr",
    )
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    """The ``msfw-redis`` argument parser."""
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[_common(suppress=True)],
        description=(
            "Run the demo of a fleet sharing breakers, cache and registry through Redis, "
            "or inspect and steer a fleet's shared state."
        ),
        epilog="Exit codes: 0 ok, 1 unknown service or a failed demo guarantee, "
        "2 usage error or unreachable store.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run N replicas against a flaky order-service and measure the guarantees",
        description=(
            "Starts a store several processes can share (fakeredis's TCP server on a free "
            "loopback port, unless --redis-url names one), a flaky order-service with two "
            "registered instances, and N replica processes calling it through the SDK. "
            "Phases: healthy, failing (503s, one instance crashes), recovering. Ends with "
            "the guarantees as measured. Exit code 1 if one did not hold; Ctrl-C stops "
            "early and cleanly (exit 0). On a Redis that real services use, give the demo a "
            "--prefix of its own: it resets order-service's breaker and cache there (and "
            "refuses to run if order-service has instances it did not register)."
        ),
    )
    demo.add_argument(
        "--seconds",
        type=_positive,
        default=30.0,
        help="how long the three phases last together, 6 to 3600 (default 30)",
    )
    demo.add_argument(
        "--replicas", type=int, default=3, help="replica processes, 1 to 16 (default 3)"
    )
    demo.add_argument("--json", action="store_true", help="no live view; print the summary as JSON")
    demo.add_argument(
        "--dashboard", action="store_true", help="also serve the live dashboard of the demo's fleet"
    )
    demo.add_argument(
        "--dashboard-port", type=int, default=8050, metavar="PORT", help="default 8050"
    )

    status = sub.add_parser(
        "status", parents=[common], help="every breaker: state, failures, generation"
    )
    status.add_argument("service", nargs="?", metavar="SERVICE", help="only this service")
    _json_flag(status)

    breaker = sub.add_parser(
        "breaker", parents=[common], help="open, close, reset or disable a breaker fleet-wide"
    )
    breaker.add_argument(
        "action",
        choices=["open", "close", "reset", "disable"],
        help=(
            "open: forced_open (refuse every call until reset or --ttl); close: "
            "forced_closed (admit every call; failures are ignored until reset); "
            "reset: back to closed, counting failures again; disable: no breaker"
        ),
    )
    breaker.add_argument("service", metavar="SERVICE")
    breaker.add_argument("--endpoint", metavar="E", help="an endpoint-scoped breaker")
    breaker.add_argument(
        "--ttl", type=_positive, metavar="S", help="the override lapses after S seconds"
    )
    breaker.add_argument(
        "--force", action="store_true", help="act on a breaker no replica has used yet"
    )
    _json_flag(breaker)

    services = sub.add_parser(
        "services", parents=[common], help="registered instances and their health"
    )
    services.add_argument("service", nargs="?", metavar="SERVICE", help="only this service")
    _json_flag(services)

    cache = sub.add_parser("cache", help="the shared response cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    stats = cache_sub.add_parser(
        "stats", parents=[common], help="per service: fleet-wide clear generations"
    )
    stats.add_argument("service", nargs="?", metavar="SERVICE", help="only this service")
    _json_flag(stats)
    clear = cache_sub.add_parser(
        "clear", parents=[common], help="invalidate a service's (or a function's) entries"
    )
    clear.add_argument("service", metavar="SERVICE")
    clear.add_argument("--function", metavar="F", help="only entries of this cached function")
    clear.add_argument("--force", action="store_true", help="even for a service not known")
    _json_flag(clear)

    metrics = sub.add_parser(
        "metrics", parents=[common], help="the fleet's shared state as Prometheus metrics"
    )
    how = metrics.add_mutually_exclusive_group(required=True)
    how.add_argument("--once", action="store_true", help="print the text exposition once")
    how.add_argument("--serve", metavar="HOST:PORT", help="answer GET /metrics on HOST:PORT")

    dashboard = sub.add_parser(
        "dashboard", parents=[common], help="a live web page of the fleet (dashboard extra)"
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8050, help="default 8050")
    return parser
