"""Shutting things down quietly, but never silently.

Closing a connection or awaiting a cancelled task at shutdown may fail in ways nobody can
act on (the peer is gone, the loop is closing). Those errors must not mask the shutdown,
yet a bug there should still leave a trace: :func:`logged` records them at DEBUG level.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["logged"]

logger = logging.getLogger("msfw_redis.shutdown")


@contextlib.contextmanager
def logged(what: str) -> Iterator[None]:
    """Run the block; an ``Exception`` from it is logged at DEBUG with ``what``, not raised."""
    try:
        yield
    except Exception:
        logger.debug("%s failed during shutdown", what, exc_info=True)
