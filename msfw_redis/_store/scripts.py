"""The Lua scripts: found on disk, read once, hashed locally.

Scripts live in the top-level ``lua/`` folder of the source tree. The wheel maps that
folder to ``msfw_redis/lua`` (see ``pyproject.toml``), so an installed package finds
them with ``importlib.resources``; an editable checkout finds them beside the package.
Each script's SHA1 is computed here, so calls can use EVALSHA without asking Redis.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["LuaScript", "load_scripts", "lua_dir"]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: its name (file stem), source text and SHA1 hex digest."""

    name: str
    source: str
    sha: str


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


@functools.cache
def load_scripts() -> dict[str, LuaScript]:
    """Read every ``lua/*.lua`` once per process, keyed by file stem."""
    scripts: dict[str, LuaScript] = {}
    for entry in sorted(lua_dir().iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".lua"):
            continue
        source = entry.read_text(encoding="utf-8")
        name = entry.name[: -len(".lua")]
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        scripts[name] = LuaScript(name=name, source=source, sha=sha)
    if not scripts:
        raise RuntimeError("msfw_redis found no Lua scripts; the installation is broken")
    return scripts
