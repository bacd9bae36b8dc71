"""The inspection and control commands: ``status``, ``breaker``, ``services``,
``cache stats``, ``cache clear``, ``metrics`` and ``dashboard``.

Each takes the :class:`~msfw_redis._cli.command_fleet.CommandFleet`, the parsed
arguments and the output stream, writes a table (or JSON with ``--json``) and returns
the exit code; a failure to report is raised as :class:`~msfw_redis._cli.exits.CliError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from msfw_redis._breaker.views import SERVICE_SCOPE
from msfw_redis._cli.exits import EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, CliError
from msfw_redis._cli.output import Style, format_seconds, print_json, table
from msfw_redis._limits.store import LimitsStore

if TYPE_CHECKING:
    import argparse

    from msfw_redis._breaker.views import CircuitState
    from msfw_redis._cli.command_fleet import CommandFleet
    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["COMMANDS"]


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


async def _status(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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


async def _limits_line(fleet: CommandFleet, service: str) -> str:
    """One line on the service's fleet-wide limits: bulkhead permits and Retry-After windows."""
    limits = LimitsStore(fleet.store)
    in_flight = await limits.bulkhead_in_flight(service)
    now = fleet.store.clock.now_ms()
    gate = {ep: nb for ep, nb in (await limits.gate_read(service)).items() if nb > now}
    closed = ", ".join(
        f"{ep} {format_seconds((nb - now) / 1000)}" for ep, nb in sorted(gate.items())
    )
    return f"limits: bulkhead permits held {in_flight}; retry-after closed: {closed or '-'}\n"


async def _breaker(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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
    state = await breaker.control(action, ttl=args.ttl)  # it lists the breaker too
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


async def _services(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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


async def _cache_stats(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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


async def _cache_clear(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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


async def _metrics(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
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


async def _dashboard(fleet: CommandFleet, args: argparse.Namespace, out: TextIO) -> int:
    from msfw_redis._cli.dashboard import run_dashboard

    out.write(f"dashboard of {fleet.label} at http://{args.host}:{args.port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        await run_dashboard(fleet.store, fleet.reader(), args.host, args.port)
    except RuntimeError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return EXIT_OK


#: The commands by name (``cache stats`` for a subcommand): ``await command(fleet, args,
#: out)`` returns the exit code.
COMMANDS = {
    "metrics": _metrics,
    "dashboard": _dashboard,
    "status": _status,
    "breaker": _breaker,
    "services": _services,
    "cache stats": _cache_stats,
    "cache clear": _cache_clear,
}
