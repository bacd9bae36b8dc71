"""The Lua scripts: found on disk, assembled with their includes, hashed locally.

Scripts live in the top-level ``lua/`` folder of the source tree, shared helpers in
``lua/lib/`` (one helper, one file). The wheel maps that folder to ``msfw_redis/lua``
(see ``pyproject.toml``), so an installed package finds them with
``importlib.resources``; an editable checkout finds them beside the package.

A script pulls in a helper with a line ``-- @include "lib/name.lua"``, in the manner of
BullMQ's script loader: the line is replaced by the helper's text, resolved recursively
(a helper may include others), each file at most once per script (its first include
wins, later ones vanish), so a helper is defined before the code that uses it. Include
paths are relative to the ``lua/`` folder. A cycle or a missing file is an
:class:`IncludeError` naming the chain or the file. Each script's SHA1 is computed here
over the assembled text, the text Redis runs, so calls can use EVALSHA without asking
Redis.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["IncludeError", "LuaScript", "assemble", "load_scripts", "lua_dir", "scripts_in"]

# A directive is a whole line: `-- @include "lib/name.lua"` (two or three dashes).
_DIRECTIVE = re.compile(r"^---?[ \t]*@include\b")
_INCLUDE = re.compile(r"^---?[ \t]*@include[ \t]+\"([^\"]+)\"[ \t]*;?[ \t]*$")
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class IncludeError(RuntimeError):
    """A ``-- @include`` line cannot be resolved: a missing file, a cycle or a bad path."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: its name (file stem), assembled source text and SHA1 hex digest.

    ``includes`` lists the helper files inlined into ``source``, in the order they appear.
    """

    name: str
    source: str
    sha: str
    includes: tuple[str, ...] = ()


def lua_dir() -> Traversable:
    """The folder holding the ``*.lua`` files, for an installed wheel or a checkout."""
    packaged = importlib.resources.files("msfw_redis").joinpath("lua")
    if packaged.is_dir():
        return packaged
    # Editable install or plain checkout: lua/ sits beside the package directory.
    checkout = Path(__file__).resolve().parents[2] / "lua"
    if checkout.is_dir():
        return checkout
    raise RuntimeError(
        "msfw_redis cannot find its Lua scripts: neither msfw_redis/lua (installed wheel) "
        f"nor {checkout} (source checkout) exists; the installation is broken"
    )


def _include_target(reference: str, where: str) -> str:
    """The normalised path of an include, refusing anything outside the script folder."""
    parts = reference.split("/")
    if not reference.endswith(".lua") or not all(_PATH_PART.match(p) for p in parts):
        raise IncludeError(
            f"bad include path {reference!r} at {where}: expected a relative path "
            'inside lua/ ending in .lua, such as "lib/name.lua"'
        )
    return "/".join(parts)


def _read(root: Traversable, path: str) -> str | None:
    entry = root.joinpath(*path.split("/"))
    if not entry.is_file():
        return None
    return entry.read_text(encoding="utf-8")


def _expand(
    root: Traversable, path: str, chain: tuple[str, ...], emitted: list[str], text: str
) -> str:
    """``text`` (the file at ``path``) with its includes replaced, depth first."""
    chain = (*chain, path)
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        bare = line.rstrip("\r\n")
        if not _DIRECTIVE.match(bare):
            out.append(line)
            continue
        where = f"{path} line {lineno}"
        match = _INCLUDE.match(bare)
        if match is None:
            raise IncludeError(f'malformed include at {where}: write -- @include "lib/name.lua"')
        target = _include_target(match.group(1), where)
        if target in chain:
            raise IncludeError(f"include cycle: {' -> '.join((*chain, target))}")
        if target in emitted:
            # Already inlined earlier in this script: defining it twice would shadow it.
            continue
        body = _read(root, target)
        if body is None:
            raise IncludeError(f"include not found: {target} (included from {where})")
        emitted.append(target)
        expanded = _expand(root, target, chain, emitted, body)
        out.append(expanded if expanded.endswith("\n") else expanded + "\n")
    return "".join(out)


def assemble(root: Traversable, path: str) -> tuple[str, tuple[str, ...]]:
    """The text of the script at ``path`` (relative to ``root``) with every include resolved.

    Returns the assembled text and the included files in order of appearance. Raises
    :class:`IncludeError` for a missing include, a cycle or a bad include line.
    """
    text = _read(root, path)
    if text is None:
        raise IncludeError(f"script not found: {path}")
    emitted: list[str] = []
    return _expand(root, path, (), emitted, text), tuple(emitted)


def scripts_in(root: Traversable) -> dict[str, LuaScript]:
    """Assemble every top-level ``*.lua`` in ``root``, keyed by file stem.

    Sub-folders (``lib/``) hold helpers, which are not scripts of their own.
    """
    scripts: dict[str, LuaScript] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".lua") or not entry.is_file():
            continue
        source, includes = assemble(root, entry.name)
        name = entry.name[: -len(".lua")]
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        scripts[name] = LuaScript(name=name, source=source, sha=sha, includes=includes)
    return scripts


@functools.cache
def load_scripts() -> dict[str, LuaScript]:
    """Read and assemble the package's scripts once per process, keyed by file stem."""
    scripts = scripts_in(lua_dir())
    if not scripts:
        raise RuntimeError("msfw_redis found no Lua scripts; the installation is broken")
    return scripts
