"""The CLI's exit codes and the one error it reports: a line on stderr, never a traceback."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "CliError"]

#: 0 success; 1 an unknown service, or a demo guarantee that did not hold; 2 a usage
#: error or an unreachable store.
EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure the CLI reports as one line on stderr, with an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
