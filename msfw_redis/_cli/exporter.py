"""``msfw-redis metrics``: the fleet's shared state in the Prometheus text format.

One scrape serves the whole fleet, whichever replica is alive, because the numbers are
the ones Redis holds (see :mod:`msfw_redis._cli.fleet_view`). The names follow
Resilience4j's Micrometer names with the prefix ``msfw_``, like
:class:`msfw_redis.contrib.prometheus.MsfwCollector`, but count fleet-wide totals:

- ``msfw_circuitbreaker_state{name,service,state}``: 1 for the current state, else 0;
- ``msfw_circuitbreaker_generation{name,service}``, ``msfw_circuitbreaker_trips_total``,
  ``msfw_circuitbreaker_active_probes`` and
  ``msfw_circuitbreaker_calls_total{name,service,kind}`` (kind successful or failed);
- ``msfw_registry_instances{service,status}`` and ``msfw_health_status{service}``
  (1 healthy, 0 unhealthy, absent when never probed);
- ``msfw_fleet_cache_requests{service,result,window}``: cache lookups by result (hit,
  miss, stale, coalesced, bypass) over the last ``window`` minutes, fleet-wide, and
  ``msfw_fleet_cache_hit_ratio{service,window}`` (0 to 1), for services with data;
- ``msfw_store_up`` (0/1).

The server is a plain asyncio one (no dependency): ``GET /metrics`` reads the fleet
once per scrape and answers; anything else is a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING

from msfw_redis._cli.fleet_view import BREAKER_STATES, FleetView

if TYPE_CHECKING:
    from msfw_redis._cli.fleet_view import FleetReader

__all__ = ["CONTENT_TYPE", "parse_hostport", "render_text", "serve"]

logger = logging.getLogger("msfw_redis.cli")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_LIMIT = 8192
_READ_TIMEOUT = 5.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def render_text(view: FleetView) -> str:
    """The view as Prometheus text exposition (format 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("msfw_store_up", "gauge", "1 when the exporter could read the shared store")
    lines.append(f"msfw_store_up {int(view.store_up)}")

    family("msfw_circuitbreaker_state", "gauge", "1 for the breaker's current state")
    for b in view.breakers:
        for state in BREAKER_STATES:
            labels = _labels(name=b.name, service=b.service, state=state)
            lines.append(f"msfw_circuitbreaker_state{labels} {int(b.state == state)}")
    family("msfw_circuitbreaker_generation", "gauge", "transitions so far, fleet-wide")
    for b in view.breakers:
        lines.append(
            f"msfw_circuitbreaker_generation{_labels(name=b.name, service=b.service)} "
            f"{b.generation}"
        )
    family("msfw_circuitbreaker_trips", "counter", "CLOSED to OPEN transitions, fleet-wide")
    for b in view.breakers:
        lines.append(
            f"msfw_circuitbreaker_trips_total{_labels(name=b.name, service=b.service)} {b.trips}"
        )
    family("msfw_circuitbreaker_active_probes", "gauge", "half-open probes in flight")
    for b in view.breakers:
        lines.append(
            f"msfw_circuitbreaker_active_probes{_labels(name=b.name, service=b.service)} "
            f"{b.active_probes}"
        )
    family("msfw_circuitbreaker_calls", "counter", "outcomes recorded fleet-wide")
    for b in view.breakers:
        for kind, value in (("successful", b.total_successes), ("failed", b.total_failures)):
            labels = _labels(name=b.name, service=b.service, kind=kind)
            lines.append(f"msfw_circuitbreaker_calls_total{labels} {value}")

    family("msfw_registry_instances", "gauge", "registered instances by status")
    for svc in view.services:
        counts = Counter(str(i["status"]) for i in svc.instances)
        for status in ("healthy", "recovering", "unhealthy", "suspect"):
            labels = _labels(service=svc.service, status=status)
            lines.append(f"msfw_registry_instances{labels} {counts[status]}")
    family("msfw_health_status", "gauge", "1 healthy, 0 unhealthy (shared verdict)")
    for svc in view.services:
        if svc.healthy is not None:
            lines.append(f"msfw_health_status{_labels(service=svc.service)} {int(svc.healthy)}")
    # Gauges, not counters: a sum over a sliding window can go down.
    family("msfw_fleet_cache_requests", "gauge", "cache lookups by result over the window")
    for c in view.caches:
        for result, value in c.counts.items():
            labels = _labels(service=c.service, result=result, window=f"{c.window_minutes}m")
            lines.append(f"msfw_fleet_cache_requests{labels} {value}")
    family("msfw_fleet_cache_hit_ratio", "gauge", "hit, stale and coalesced over all lookups")
    for c in view.caches:
        labels = _labels(service=c.service, window=f"{c.window_minutes}m")
        lines.append(f"msfw_fleet_cache_hit_ratio{labels} {c.hit_ratio}")
    return "\n".join(lines) + "\n"


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to a pair, or ValueError naming the problem."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port_s)


async def _answer(reader: FleetReader, rd: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(_READ_TIMEOUT):
            head = await rd.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        wr.close()
        return
    parts = head.split(b"\r\n", 1)[0].split()
    path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
    if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD") and path == b"/metrics":
        body = render_text(await reader.read()).encode()
        status, ctype = "200 OK", CONTENT_TYPE
    else:
        body, status, ctype = b"not found; try /metrics\n", "404 Not Found", "text/plain"
    wr.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    if parts[:1] != [b"HEAD"]:
        wr.write(body)
    with contextlib.suppress(OSError):
        await wr.drain()
    wr.close()


async def serve(
    reader: FleetReader, host: str, port: int, *, started: asyncio.Event | None = None
) -> None:
    """Answer ``GET /metrics`` on ``host:port`` until cancelled."""

    async def handle(rd: asyncio.StreamReader, wr: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, rd, wr)
        except Exception:
            logger.exception("metrics request failed")
            wr.close()

    server = await asyncio.start_server(handle, host, port, limit=_REQUEST_LIMIT)
    async with server:
        if started is not None:
            started.set()
        await server.serve_forever()
