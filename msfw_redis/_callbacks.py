"""Calling user callbacks (listeners, handlers) that may be plain or ``async`` functions.

A callback that raises is logged with its name and never stops the callbacks after it or
the caller: the caller's work (delivering an event, raising the original error) stands.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["call_logged"]


async def call_logged(callback: Any, *args: Any, log: logging.Logger, what: str) -> bool:
    """Call ``callback(*args)``, awaiting it if it returns an awaitable.

    Returns True when it completed, False when it raised (the exception is logged with
    ``what`` and the callback's name).
    """
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("%s %r failed", what, callback)
        return False
    return True
