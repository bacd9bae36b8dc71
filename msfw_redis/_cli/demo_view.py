"""The demo's screen: the live view, the progress lines and the final summary.

On a terminal the live view is redrawn in place about twice a second. Elsewhere (a
pipe, a CI log) the demo prints one progress line per second and the full view once
at the end, so the log reads top to bottom. Everything here is pure text formatting.
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, TextIO

from msfw_redis._cli.demo_plan import DEAD_INSTANCE, SERVICE
from msfw_redis._cli.output import Style, count, format_seconds, table, visible_len

if TYPE_CHECKING:
    from msfw_redis._cli.demo_report import DemoState, Guarantee

__all__ = ["LiveScreen", "phase_line", "progress_line", "render_summary", "render_view"]

_PHASE_NOTES = {
    "starting": "starting the store, the service and the replicas",
    "healthy": "order-service answers; a new cold catalogue key every {wave:g}s",
    "failing": "/orders answers 503 and instance order-2 has crashed",
    "recovering": "order-service answers again; probes close the breaker",
    "done": "finished",
}


def phase_line(state: DemoState, style: Style) -> str:
    """The phase, the clock and what the service does now."""
    phase = state.phase
    note = _PHASE_NOTES[phase].format(wave=state.plan.wave)
    if state.interrupted:
        note = "interrupted (Ctrl-C): stopped early"

    clock = f"{min(state.elapsed, state.plan.seconds):4.1f}s of {state.plan.seconds:g}s"
    label = style.state(phase.upper(), phase if phase != "healthy" else "healthy")
    return f"phase {label}  {clock}  {style.dim(note)}"


def _replica_rows(state: DemoState, style: Style) -> list[str]:
    rows: list[list[object]] = []
    for index in sorted(state.replicas):
        r = state.replicas[index]
        sees = f"{r.get('breaker_state', '?')} g{r.get('breaker_gen', 0)}"
        rows.append(
            [
                f"r{index + 1}",
                r.get("pid"),
                r["calls"],
                r["ok"],
                r["failed"],
                r["rejected"],
                style.state(sees, str(r.get("breaker_state"))),
                r["cache_served"],
                r["cache_origin"],
            ]
        )
    if len(rows) > 1:
        rows.append(
            [
                "all",
                "",
                *(state.total(k) for k in ("calls", "ok", "failed", "rejected")),
                "",
                state.total("cache_served"),
                state.total("cache_origin"),
            ]
        )
    headers = [
        "replica", "pid", "calls", "ok", "failed", "rejected", "breaker seen",
        "cache served", "origin fills",
    ]  # fmt: skip
    return table(headers, rows, style)


def _breaker_lines(state: DemoState, style: Style) -> list[str]:
    fleet = state.fleet
    if fleet is None:
        head = "breaker   order-service  (not read yet)"
    else:
        retry = f"  retry in {fleet.retry_after:.1f}s" if fleet.retry_after else ""
        head = (
            f"breaker   {SERVICE}  {style.state(fleet.state)}  generation {fleet.generation}"
            f"  failures {fleet.failure_count}{retry}"
        )
    trips = len(state.transitions.trips())
    origin = state.origin
    detail = (
        f"          {count(trips, 'trip')}, "
        f"{count(state.transitions.count('half_open'), 'half-open period')}, "
        f"{count(origin.probes, 'probe')} "
        f"reached the service (at most {origin.max_probes_in_flight} at once, limit "
        f"{state.plan.half_open_max_calls})"
    )
    return [head, detail]


def _cache_line(state: DemoState) -> str:
    keys = count(len(state.cold_keys), "cold key")
    requests = count(state.total("cache_requests"), "request")
    calls = count(sum(state.origin.catalog.values()), "origin call")
    served = state.total("cache_served")
    return f"cache     {keys}, {requests}, {calls}, {served} served from the shared cache"


def _registry_lines(state: DemoState, style: Style) -> list[str]:
    health = state.health
    if health is None:
        verdict = "not probed yet"
    else:
        word = "healthy" if health.healthy else "unhealthy"
        verdict = (
            f"{style.state(word)} ({health.healthy_members} of {health.members} "
            "instances pass their health check)"
        )
    lines = [f"registry  {SERVICE} {verdict}"]
    ids = set()
    for inst in sorted(state.instances, key=lambda i: i.instance_id):
        ids.add(inst.instance_id)
        beat = "-"
        if inst.last_heartbeat is not None and state.server_now is not None:
            beat = f"last heartbeat {max(0.0, state.server_now - inst.last_heartbeat):.1f}s ago"
        lines.append(
            f"          {inst.instance_id}  {inst.host}:{inst.port}  "
            f"{style.state(inst.status)}  {beat}"
        )
    if state.crashed_at is not None and DEAD_INSTANCE not in ids:
        after = (state.evicted_at or state.elapsed) - state.crashed_at
        lines.append(
            f"          {DEAD_INSTANCE}  evicted {after:.1f}s after it crashed at "
            f"{state.crashed_at:.1f}s"
        )
    return lines


def render_view(state: DemoState, style: Style) -> list[str]:
    """The full view as lines."""
    title = f"msfw-redis demo, {state.plan.replicas} replicas, store {state.store_label}"
    return [
        style.bold(title),
        phase_line(state, style),
        "",
        *_replica_rows(state, style),
        "",
        *_breaker_lines(state, style),
        _cache_line(state),
        *_registry_lines(state, style),
    ]


def progress_line(state: DemoState) -> str:
    """One line for logs (no terminal): the moment's key figures."""
    fleet = state.fleet
    breaker = f"{fleet.state} g{fleet.generation}" if fleet else "-"
    return (
        f"{state.elapsed:5.1f}s {state.phase:<10} breaker {breaker:<14} "
        f"calls {state.total('calls'):>6} ok {state.total('ok'):>6} "
        f"failed {state.total('failed'):>4} rejected {state.total('rejected'):>5}  "
        f"probes {state.origin.probes:>2}  cache origin {sum(state.origin.catalog.values()):>3} "
        f"served {state.total('cache_served'):>5}  instances {len(state.instances)}"
    )


def render_summary(state: DemoState, guarantees: list[Guarantee], style: Style) -> list[str]:
    """The guarantees as measured, with a verdict line."""
    head = (
        f"What this run measured ({state.plan.replicas} replicas, "
        f"{format_seconds(min(state.elapsed, state.plan.seconds))}"
        f"{', interrupted' if state.interrupted else ''}):"
    )
    lines = ["", style.bold(head)]
    for g in guarantees:
        mark = {True: style.state("ok", "ok"), False: style.state("FAIL"), None: "--"}[g.held]
        lines.append(f"  [{mark}] {g.claim}")
        lines.append(f"         {g.detail}")
    judged = [g for g in guarantees if g.held is not None]
    if judged and all(g.held for g in judged):
        if len(judged) == len(guarantees):
            verdict = "Every guarantee held."
        else:
            verdict = f"{len(judged)} of {len(guarantees)} guarantees measured; all held."
    elif not judged:
        verdict = "Interrupted before anything could be measured."
    else:
        failed = sum(1 for g in judged if not g.held)
        verdict = f"{failed} guarantee{'s' if failed != 1 else ''} did NOT hold."
    lines.append(style.bold(verdict))
    return lines


class LiveScreen:
    """Redraws the view in place on a terminal (cursor up, clear, print)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._rows = 0

    def draw(self, lines: list[str]) -> None:
        width = max(20, shutil.get_terminal_size().columns)
        out = []
        if self._rows:
            out.append(f"\x1b[{self._rows}F\x1b[J")
        out.extend(line + "\n" for line in lines)
        self._stream.write("".join(out))
        self._stream.flush()
        self._rows = sum(max(1, math.ceil(visible_len(line) / width)) for line in lines)
