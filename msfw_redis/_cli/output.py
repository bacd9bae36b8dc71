"""How the ``msfw-redis`` command writes: aligned tables, JSON, and colour on a terminal.

Plain aligned text is the format everywhere; a terminal (a TTY without ``NO_COLOR``) also
gets bold headers and coloured states. ``--json`` output is for scripts: one JSON
document on stdout, nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Style",
    "count",
    "format_seconds",
    "print_json",
    "redact_url",
    "table",
    "visible_len",
]

_STATE_COLOURS = {
    "closed": "32",
    "healthy": "32",
    "ok": "32",
    "open": "31",
    "forced_open": "31",
    "unhealthy": "31",
    "failing": "31",
    "FAIL": "31",
    "half_open": "33",
    "recovering": "33",
    "suspect": "33",
    "forced_closed": "36",
    "disabled": "36",
}


class Style:
    """ANSI styling when writing to a terminal; the identity otherwise."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        stream = stream or sys.stdout
        if enabled is None:
            enabled = stream.isatty() and not os.environ.get("NO_COLOR")
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and code else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def state(self, text: str, label: str | None = None) -> str:
        """``text`` in the colour of state ``label`` (default: ``text`` itself)."""
        return self._wrap(_STATE_COLOURS.get(label or text, ""), text)


def visible_len(text: str) -> int:
    """Length without ANSI escape sequences."""
    length, escape = 0, False
    for ch in text:
        if escape:
            escape = ch != "m"
        elif ch == "\x1b":
            escape = True
        else:
            length += 1
    return length


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    style: Style | None = None,
    *,
    indent: str = "",
) -> list[str]:
    """Rows as lines of left-aligned columns two spaces apart (numbers right-aligned)."""
    style = style or Style(enabled=False)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], visible_len(text))
    numeric = [
        bool(rows) and all(isinstance(row[i], (int, float)) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, text in enumerate(values):
            pad = " " * (widths[i] - visible_len(text))
            out.append(pad + text if numeric[i] else text + pad)
        return (indent + "  ".join(out)).rstrip()

    head = line([h.upper() for h in headers])
    return [style.bold(head) if style.enabled else head, *(line(row) for row in cells)]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def count(n: int, noun: str) -> str:
    """``1 probe``, ``2 probes``: ``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_seconds(seconds: float | None) -> str:
    """``1.5s``, ``2m05s`` or ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def print_json(data: Any, stream: TextIO | None = None) -> None:
    """One JSON document, indented, on stdout."""
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    out.flush()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
