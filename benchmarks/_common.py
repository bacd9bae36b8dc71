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

    def progress(self, text: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K" + text[:120])
        else:
            sys.stderr.write(text + "\n")
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

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def render(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
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
        return "\n".join(out)


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


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
    payload = {
        "meta": meta,
        "results": [
            {"name": r.name, "title": r.title, "rows": r.rows, "notes": r.notes} for r in results
        ],
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
