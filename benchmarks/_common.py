"""Shared pieces of the benchmarks: servers, timing, tables, JSON, command counts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from msfw_redis.testing import RedisServer, find_server_binary


@dataclass
class Context:
    """What every benchmark gets: the server URL, the mode and a progress printer."""

    redis_url: str
    quick: bool
    server_kind: str
    started: float = field(default_factory=time.monotonic)

    def progress(self, text: str) -> None:
        """One status line (rewritten in place on a terminal), with the elapsed time."""
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K" + line[:120])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Result:
    """One benchmark's table: rows of column -> value, plus notes."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: further tables of the same benchmark, rendered (and dumped) after this one
    subtables: list[Result] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def render(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
            if isinstance(v, int) and not isinstance(v, bool):
                return f"{v:,}"
            return str(v)

        cells = [[fmt(r.get(c, "")) for c in self.columns] for r in self.rows]
        widths = [
            max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
            for i, c in enumerate(self.columns)
        ]
        line = (
            "| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)) + " |"
        )
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        body = [
            "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
            for row in cells
        ]
        out = [f"### {self.title}", "", line, sep, *body]
        if self.notes:
            out += ["", *[f"- {n}" for n in self.notes]]
        for sub in self.subtables:
            out += ["", sub.render()]
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "rows": self.rows,
            "notes": self.notes,
            "subtables": [sub.as_json() for sub in self.subtables],
        }


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def spread(samples: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """``min-max`` of repeated measurements, for a table cell."""
    return f"{fmt.format(min(samples))}-{fmt.format(max(samples))}"


def tidy(value: float) -> float | int:
    """An integral float as an int, so that a median of counts prints as a count."""
    return int(value) if float(value).is_integer() else value


def ratio(value: float | None, baseline: float | None) -> str:
    """``value / baseline`` as ``"12.3x"``, or ``"-"`` when either is missing or zero."""
    if value is None or baseline is None or baseline == 0:
        return "-"
    return f"{value / baseline:,.2f}x"


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; fine for the small samples here."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, str]]:
    """The given URL, or a throwaway server from the same finder the tests use."""
    if url:
        yield url, "external"
        return
    binary = find_server_binary()
    if binary is None:
        raise SystemExit("no redis-server or valkey-server found; pass --redis-url")
    with RedisServer(binary) as server:
        version = redis.Redis.from_url(server.url).info("server").get("redis_version", "?")
        yield server.url, f"{binary.kind} {version}"


def command_counts(url: str) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` (for deltas around a run)."""
    client = redis.Redis.from_url(url)
    try:
        info = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def command_delta(
    before: dict[str, int], after: dict[str, int], *, ignore: tuple[str, ...] = ("info",)
) -> int:
    """Total commands between two ``command_counts`` snapshots."""
    return sum(after.get(k, 0) - before.get(k, 0) for k in after if k not in ignore)


def time_loop(fn: Callable[[], Any], n: int) -> float:
    """Seconds for n sequential calls of a sync function."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def dump(path: str, results: list[Result], meta: dict[str, Any]) -> None:
    payload = {"meta": meta, "results": [r.as_json() for r in results]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
