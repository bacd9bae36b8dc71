"""The ``msfw-redis`` command (also ``python -m msfw_redis``).

Commands::

    msfw-redis demo [--seconds S] [--replicas N] [--json]
    msfw-redis status [SERVICE] [--json]
    msfw-redis breaker open|close|reset|disable SERVICE [--endpoint E] [--ttl S] [--force]
    msfw-redis services [SERVICE] [--json]
    msfw-redis cache stats [SERVICE] [--json]
    msfw-redis cache clear SERVICE [--function F] [--force]
    msfw-redis metrics --once | --serve HOST:PORT
    msfw-redis dashboard [--host 127.0.0.1] [--port 8050]

Every command takes ``--redis-url`` (default ``$MSFW_REDIS_URL``, else the embedded
store) and ``--prefix`` (default ``msfw``), before or after the command name.

Exit codes: 0 success; 1 an unknown service, or a demo guarantee that did not hold;
2 a usage error or an unreachable store (one line on stderr, never a traceback).

The inspection commands build the components they need on one store and start no
background work: no health probing, no heartbeats, no pub/sub connection. Every change
goes through the same Lua scripts the SDK uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, TextIO

from msfw_redis._cli.command_fleet import CommandFleet
from msfw_redis._cli.commands import COMMANDS
from msfw_redis._cli.exits import EXIT_USAGE, CliError
from msfw_redis._cli.parser import PROG, build_parser
from msfw_redis._exceptions import StoreError
from msfw_redis._store.connection import DEFAULT_STORE_URL, ENV_REDIS_URL
from msfw_redis._store.keys import DEFAULT_KEY_PREFIX, canonical_service_name

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main"]


async def _run_command(name: str, args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "service", None) is not None:
        # order_service and order-service name one service: the CLI uses the key's form.
        try:
            args.service = canonical_service_name(args.service)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    async with CommandFleet(args.redis_url, args.prefix) as fleet:
        try:
            return await COMMANDS[name](fleet, args, out)
        except StoreError as exc:
            raise CliError(f"the store at {fleet.label} failed: {exc}", EXIT_USAGE) from None
        except ValueError as exc:  # an invalid service or endpoint name
            raise CliError(str(exc), EXIT_USAGE) from None


def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from msfw_redis._cli.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        seconds=args.seconds,
        replicas=args.replicas,
        redis_url=args.redis_url,
        prefix=args.prefix,
        json=args.json,
        dashboard=args.dashboard,
        dashboard_port=args.dashboard_port,
    )
    try:
        return run_demo(options, out)
    except DemoError as exc:
        raise CliError(str(exc), exc.exit_code) from None


def _configure_logging(verbose: bool) -> logging.Handler:
    """Library logs go to stderr only with --verbose; otherwise nowhere (a warning must
    not turn the one-line error into two, or scribble over the live view)."""
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    logging.getLogger("msfw_redis").addHandler(handler)
    return handler


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``msfw-redis`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    ``out`` and ``err`` default to stdout and stderr (tests pass buffers).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    demo = args.command == "demo"
    if getattr(args, "redis_url", None) is None:
        args.redis_url = os.environ.get(ENV_REDIS_URL) or (None if demo else DEFAULT_STORE_URL)
    if getattr(args, "prefix", None) is None:
        args.prefix = DEFAULT_KEY_PREFIX
    handler = _configure_logging(bool(getattr(args, "verbose", False)))
    try:
        if demo:
            return _run_demo(args, out)
        name = "cache " + args.cache_command if args.command == "cache" else args.command
        return asyncio.run(_run_command(name, args, out))
    except CliError as exc:
        err.write(f"{PROG}: {exc}\n")
        err.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``msfw-redis status | head``): stop quietly, and keep
        # Python from complaining about the lost pipe when it flushes stdout at exit.
        if out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        logging.getLogger("msfw_redis").removeHandler(handler)
