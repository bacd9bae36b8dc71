"""The ``msfw-redis`` command (also ``python -m msfw_redis``).

Commands::

    msfw-redis demo [--seconds S] [--replicas N] [--json]
    msfw-redis status [SERVICE] [--json]
    msfw-redis breaker open|close|reset|disable SERVICE [--endpoint E] [--ttl S] [--force]
    msfw-redis services [SERVICE] [--json]
    msfw-redis cache stats [SERVICE] [--json]
    msfw-redis cache clear SERVICE [--function F] [--force]
    msfw-redis metrics --once | --serve HOST:PORT
    msfw-redis dashboard [--host 127.0.0.1] [--port 8050]

Every command takes ``--redis-url`` (default ``$MSFW_REDIS_URL``, else the embedded
store) and ``--prefix`` (default ``msfw``), before or after the command name.

Exit codes: 0 success; 1 an unknown service, or a demo guarantee that did not hold;
2 a usage error or an unreachable store (one line on stderr, never a traceback).

The inspection commands build the components they need on one store and start no
background work: no health probing, no heartbeats, no pub/sub connection. Every change
goes through the same Lua scripts the SDK uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from msfw_redis._breaker.hub import SERVICE_SCOPE, BreakerHub, CircuitState
from msfw_redis._cache.cache import ResponseCache
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._cli.output import Style, format_seconds, print_json, redact_url, table
from msfw_redis._exceptions import ConfigurationError, StoreError
from msfw_redis._limits.store import LimitsStore
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.connection import DEFAULT_STORE_URL, ENV_REDIS_URL
from msfw_redis._store.keys import DEFAULT_KEY_PREFIX, canonical_service_name
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["main"]

PROG = "msfw-redis"
#: Seconds any one Redis operation of the CLI may take: an unreachable store fails fast.
CLI_OP_TIMEOUT = 1.0

EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure the CLI reports as one line on stderr, with an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- the store and the components -----------------------------------------------------------


class _Fleet:
    """The components a command needs, on one store, with no background tasks."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.label = redact_url(url)
        self.prefix = prefix
        try:
            self.store = Store.from_url(url, op_timeout=CLI_OP_TIMEOUT, key_prefix=prefix)
        except (ConfigurationError, ValueError) as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        self.hub = BreakerHub(self.store, None)
        self.registry = ServiceRegistry(self.store, None)
        self.health = HealthMonitor(self.store, self.registry, None)
        self.cache = ResponseCache(self.store, None)

    async def __aenter__(self) -> _Fleet:
        try:
            await self.store.start()
        except StoreError as exc:
            await self.store.aclose()
            raise CliError(f"cannot reach the store at {self.label}: {exc}", EXIT_USAGE) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cache.aclose()
        try:
            await self.hub.aclose()
        except StoreError as err:
            logging.getLogger("msfw_redis.cli").debug("breaker flush on exit failed: %s", err)
        await self.store.aclose()

    def reader(self) -> FleetReader:
        return FleetReader(self.store, self.hub, self.registry, self.health)

    @property
    def private(self) -> bool:
        return self.url.startswith("memory://")

    def empty_hint(self) -> str:
        if self.private:
            return (
                "memory:// is a store private to this one process, so it is empty here; "
                f"pass --redis-url (or set {ENV_REDIS_URL}) to inspect a fleet's Redis"
            )
        return f"nothing recorded under prefix {self.prefix!r} at {self.label}"

    async def known_services(self) -> set[str]:
        """Services in the registry index or with a breaker in the breaker index."""
        names = set(await self.registry.services())
        names.update(state.service for state in await self.hub.fleet())
        return names

    async def require_known(self, service: str, *, force: bool = False) -> None:
        if force:
            return
        known = await self.known_services()
        if service in known:
            return
        listing = ", ".join(sorted(known)) if known else "none"
        raise CliError(
            f"unknown service {service!r}: no registry entry and no breaker under prefix "
            f"{self.prefix!r} at {self.label} (known services: {listing})",
            EXIT_UNKNOWN,
        )


# -- commands --------------------------------------------------------------------------------


def _state_row(state: CircuitState) -> dict[str, Any]:
    return {
        "service": state.service,
        "endpoint": state.endpoint,
        "state": state.state,
        "failures": state.failure_count,
        "failures_at_trip": state.failures_at_trip,
        "successes": state.success_count,
        "generation": state.generation,
        # None: forced open without a TTL, which never lapses by itself.
        "retry_after": None if state.retry_after is None else round(state.retry_after, 3),
        "opened_at": state.opened_at,
    }


async def _status(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    service = args.service
    if service is not None:
        await fleet.require_known(service)
    states = await fleet.hub.fleet(service)
    rows = [_state_row(s) for s in states]
    if args.json:
        print_json(rows, out)
        return EXIT_OK
    style = Style(out)
    if not rows:
        what = f"no breaker recorded for {service!r} yet" if service else "no breakers recorded"
        out.write(f"{what}; {fleet.empty_hint()}\n" if not service else f"{what}\n")
        return EXIT_OK
    lines = table(
        ["service", "endpoint", "state", "failures", "at-trip", "generation", "retry-after"],
        [
            [
                r["service"],
                r["endpoint"] or SERVICE_SCOPE,
                style.state(r["state"]),
                r["failures"],
                r["failures_at_trip"] or "-",
                r["generation"],
                "until reset"
                if r["retry_after"] is None
                else format_seconds(r["retry_after"])
                if r["retry_after"]
                else "-",
            ]
            for r in rows
        ],
        style,
    )
    out.write("\n".join(lines) + "\n")
    if service is not None:
        out.write(await _limits_line(fleet, service))
    return EXIT_OK


async def _limits_line(fleet: _Fleet, service: str) -> str:
    """One line on the service's fleet-wide limits: bulkhead permits and Retry-After windows."""
    limits = LimitsStore(fleet.store)
    in_flight = await limits.bulkhead_in_flight(service)
    now = fleet.store.clock.now_ms()
    gate = {ep: nb for ep, nb in (await limits.gate_read(service)).items() if nb > now}
    closed = ", ".join(
        f"{ep} {format_seconds((nb - now) / 1000)}" for ep, nb in sorted(gate.items())
    )
    return f"limits: bulkhead permits held {in_flight}; retry-after closed: {closed or '-'}\n"


async def _breaker(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    service, endpoint, action = args.service, args.endpoint, args.action
    if action == "reset" and args.ttl is not None:
        raise CliError("reset takes no --ttl: it returns the breaker to CLOSED for good", 2)
    try:
        breaker = fleet.hub.get(service, endpoint)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    existing = {(s.service, s.endpoint) for s in await fleet.hub.fleet(service)}
    if (service, endpoint) not in existing and not args.force:
        await fleet.require_known(service)
        where = f"endpoint {endpoint!r} of {service!r}" if endpoint else f"{service!r}"
        endpoints = sorted(e or SERVICE_SCOPE for s, e in existing)
        raise CliError(
            f"no breaker recorded for {where} (this service has: "
            f"{', '.join(endpoints) or 'none'}); pass --force to create it",
            EXIT_UNKNOWN,
        )
    state = await breaker.control(action, ttl=args.ttl)
    if (service, endpoint) not in existing:
        await fleet.hub.index(breaker)
    if args.json:
        print_json(_state_row(state), out)
        return EXIT_OK
    label = service if endpoint is None else f"{service} {endpoint}"
    until = f" for {format_seconds(args.ttl)}" if args.ttl else ""
    if not args.ttl and state.state in ("forced_open", "forced_closed", "disabled"):
        until = " until `msfw-redis breaker reset`"
    note = "; failures are ignored" if state.state == "forced_closed" else ""
    style = Style(out)
    out.write(
        f"{label}: breaker is now {style.state(state.state)} fleet-wide{until}{note} "
        f"(generation {state.generation}); every replica follows it at once\n"
    )
    return EXIT_OK


def _instance_row(inst: ServiceInstance, now: float) -> dict[str, Any]:
    data = inst.model_dump(mode="json")
    beat = inst.last_heartbeat
    data["heartbeat_age"] = None if beat is None else round(max(0.0, now - beat), 3)
    return data


async def _services(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    if args.service is not None:
        await fleet.require_known(args.service)
        names = [args.service]
    else:
        names = await fleet.registry.services()
    now = fleet.store.clock.now_ms() / 1000.0
    report = []
    for name in names:
        listing = await fleet.registry.list_service(name)
        health = await fleet.health.state(name)
        report.append(
            {
                "service": name,
                # No instance means nothing to be healthy: unknown, not healthy.
                "healthy": None if health is None or not listing.instances else health.healthy,
                "healthy_instances": None if health is None else health.healthy_members,
                "instances": [_instance_row(i, now) for i in listing.instances or ()],
            }
        )
    if args.json:
        print_json(report, out)
        return EXIT_OK
    if not report:
        out.write(f"no services registered; {fleet.empty_hint()}\n")
        return EXIT_OK
    style = Style(out)
    rows: list[list[object]] = []
    for svc in report:
        verdict = {True: "healthy", False: "unhealthy", None: "unknown"}[svc["healthy"]]
        instances = svc["instances"] or [None]
        for inst in instances:
            if inst is None:
                rows.append([svc["service"], style.state(verdict), "-", "-", "-", "-", "-"])
                continue
            rows.append(
                [
                    svc["service"],
                    style.state(verdict),
                    inst["instance_id"],
                    inst["url"],
                    style.state(inst["status"]),
                    inst["version"] or "-",
                    "external" if inst["external"] else format_seconds(inst["heartbeat_age"]),
                ]
            )
    headers = ["service", "health", "instance", "address", "status", "version", "heartbeat"]
    out.write("\n".join(table(headers, rows, style)) + "\n")
    return EXIT_OK


async def _cache_stats(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    if args.service is not None:
        generations = await fleet.store.hgetall(fleet.cache.generation_key(args.service))
        if not generations:
            await fleet.require_known(args.service)
        names = [args.service]
    else:
        names = sorted(await fleet.known_services())
    report = []
    for name in names:
        raw = await fleet.store.hgetall(fleet.cache.generation_key(name))
        fields = {k.decode(): int(v) for k, v in raw.items()}
        report.append(
            {
                "service": name,
                "generation": fields.pop("_", 0),
                "cleared_functions": len(fields),
            }
        )
    if args.json:
        print_json(report, out)
        return EXIT_OK
    if not report:
        out.write(f"no services known; {fleet.empty_hint()}\n")
        return EXIT_OK
    lines = table(
        ["service", "generation", "cleared functions"],
        [[r["service"], r["generation"], r["cleared_functions"]] for r in report],
        Style(out),
    )
    out.write("\n".join(lines) + "\n")
    out.write(
        "generation counts fleet-wide clears of the whole service; hit and miss counters "
        "are kept per process (ServiceSDK.metrics())\n"
    )
    return EXIT_OK


async def _cache_clear(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    service, function = args.service, args.function
    await fleet.require_known(service, force=args.force)
    if function is None:
        generation = await fleet.cache.clear_service(service)
        what = f"every cached response of {service}"
    else:
        generation = await fleet.cache.clear_function(service, function)
        what = f"every cached result of {function} in {service}"
    if args.json:
        print_json({"service": service, "function": function, "generation": generation}, out)
        return EXIT_OK
    out.write(f"cleared {what} fleet-wide (generation {generation})\n")
    return EXIT_OK


async def _metrics(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    from msfw_redis._cli.exporter import parse_hostport, render_text, serve

    reader = fleet.reader()
    if args.serve is None:
        out.write(render_text(await reader.read()))
        return EXIT_OK
    try:
        host, port = parse_hostport(args.serve)
    except ValueError as exc:
        raise CliError(f"--serve: {exc}", EXIT_USAGE) from None
    out.write(f"serving the fleet's metrics at http://{args.serve}/metrics (Ctrl-C stops)\n")
    out.flush()
    try:
        await serve(reader, host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.serve}: {exc}", EXIT_USAGE) from None
    return EXIT_OK


async def _dashboard(fleet: _Fleet, args: argparse.Namespace, out: TextIO) -> int:
    from msfw_redis._cli.dashboard import run_dashboard

    out.write(f"dashboard of {fleet.label} at http://{args.host}:{args.port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        await run_dashboard(fleet.store, fleet.reader(), args.host, args.port)
    except RuntimeError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return EXIT_OK


_COMMANDS = {
    "metrics": _metrics,
    "dashboard": _dashboard,
    "status": _status,
    "breaker": _breaker,
    "services": _services,
    "cache stats": _cache_stats,
    "cache clear": _cache_clear,
}


async def _run_command(name: str, args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "service", None) is not None:
        # order_service and order-service name one service: the CLI uses the key's form.
        try:
            args.service = canonical_service_name(args.service)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    async with _Fleet(args.redis_url, args.prefix) as fleet:
        try:
            return await _COMMANDS[name](fleet, args, out)
        except StoreError as exc:
            raise CliError(f"the store at {fleet.label} failed: {exc}", EXIT_USAGE) from None
        except ValueError as exc:  # an invalid service or endpoint name
            raise CliError(str(exc), EXIT_USAGE) from None


def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from msfw_redis._cli.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        seconds=args.seconds,
        replicas=args.replicas,
        redis_url=args.redis_url,
        prefix=args.prefix,
        json=args.json,
        dashboard=args.dashboard,
        dashboard_port=args.dashboard_port,
    )
    try:
        return run_demo(options, out)
    except DemoError as exc:
        raise CliError(str(exc), exc.exit_code) from None


# -- the parser --------------------------------------------------------------------------------


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


def _configure_logging(verbose: bool) -> logging.Handler:
    """Library logs go to stderr only with --verbose; otherwise nowhere (a warning must
    not turn the one-line error into two, or scribble over the live view)."""
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    logging.getLogger("msfw_redis").addHandler(handler)
    return handler


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``msfw-redis`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    ``out`` and ``err`` default to stdout and stderr (tests pass buffers).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    demo = args.command == "demo"
    if getattr(args, "redis_url", None) is None:
        args.redis_url = os.environ.get(ENV_REDIS_URL) or (None if demo else DEFAULT_STORE_URL)
    if getattr(args, "prefix", None) is None:
        args.prefix = DEFAULT_KEY_PREFIX
    handler = _configure_logging(bool(getattr(args, "verbose", False)))
    try:
        if demo:
            return _run_demo(args, out)
        name = "cache " + args.cache_command if args.command == "cache" else args.command
        return asyncio.run(_run_command(name, args, out))
    except CliError as exc:
        err.write(f"{PROG}: {exc}\n")
        err.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``msfw-redis status | head``): stop quietly, and keep
        # Python from complaining about the lost pipe when it flushes stdout at exit.
        if out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        logging.getLogger("msfw_redis").removeHandler(handler)
