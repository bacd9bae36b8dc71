"""What crosses a script call: arguments going in, replies coming out.

It owns the encoding of a script's ARGV (:func:`encode_arg`), the checked coercion of
its replies (:func:`reply_int`, :func:`reply_list`, :func:`reply_str`, which every
component uses to read what its scripts return) and the list of Redis commands a script
calls (:func:`script_commands`, named in a NOPERM error). The store itself only sends
and receives; it never interprets a reply.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import StoreError

if TYPE_CHECKING:
    from msfw_redis._store.scripts import LuaScript

__all__ = ["Reply", "encode_arg", "reply_int", "reply_list", "reply_str", "script_commands"]

Reply = int | bytes | str | list[Any] | None

_SCRIPT_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'")
_script_commands: dict[str, tuple[str, ...]] = {}


def script_commands(script: LuaScript) -> tuple[str, ...]:
    """The Redis commands ``script`` calls, upper case and sorted (named in NOPERM errors)."""
    found = _script_commands.get(script.sha)
    if found is None:
        found = tuple(sorted({c.upper() for c in _SCRIPT_CALL.findall(script.source)}))
        _script_commands[script.sha] = found
    return found


def encode_arg(value: object) -> bytes | str | int | float:
    """One ARGV value as redis-py sends it; anything a script could not read is refused."""
    if type(value) is bytes:  # first: hot paths pass their arguments pre-encoded
        return value
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (bytes, str, int)):
        return value
    if isinstance(value, float):
        # repr() keeps full precision and never uses a locale; Lua's tonumber reads it.
        return repr(value)
    raise TypeError(f"cannot pass {type(value).__name__} to a Lua script")


def reply_int(reply: Reply) -> int:
    """A script's integer reply, or a StoreError if it is not one."""
    if isinstance(reply, int):
        return reply
    if isinstance(reply, (bytes, str)):
        try:
            return int(reply)
        except ValueError:
            pass
    raise StoreError(f"expected an integer reply, got {reply!r}")


def reply_list(reply: Reply) -> list[Any]:
    """A script's array reply, or a StoreError if it is not one."""
    if isinstance(reply, list):
        return reply
    raise StoreError(f"expected an array reply, got {reply!r}")


def reply_str(reply: Reply) -> str:
    """A script's string reply, decoded as UTF-8."""
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    if isinstance(reply, str):
        return reply
    if isinstance(reply, int):
        return str(reply)
    raise StoreError(f"expected a string reply, got {reply!r}")
