"""A real HTTP service on loopback whose responses are scripted per path.

It runs in a background thread (stdlib ``ThreadingHTTPServer``), so it serves
requests from this process's event loop and from other processes alike, and it
behaves like a real peer: real sockets, real latency, real connection resets.
"""

from __future__ import annotations

import json as jsonlib
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["RecordedRequest", "ScriptedService", "Step"]


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted response.

    Attributes:
        status: HTTP status code.
        json: a JSON-serialisable body (sets ``Content-Type: application/json``).
        body: raw body bytes (used when ``json`` is ``None``).
        headers: extra response headers.
        delay: seconds to wait before answering.
        reset: close the connection with a TCP RST instead of answering.
    """

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the service saw it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None


class _Script:
    def __init__(self, steps: list[Step], repeat_last: bool) -> None:
        self.steps = steps
        self.repeat_last = repeat_last
        self.index = 0

    def next(self) -> Step | None:
        if self.index < len(self.steps):
            step = self.steps[self.index]
            self.index += 1
            return step
        if self.repeat_last and self.steps:
            return self.steps[-1]
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-response are what tests provoke on purpose.
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class ScriptedService:
    """A loopback HTTP server with per-path response scripts and hit counters.

    Example::

        with ScriptedService() as svc:
            svc.script("/orders", Step(500), Step(500), Step(200, json=[]))
            ...  # call svc.url + "/orders" three times
            svc.hits("/orders")  # 3

    Paths without a script answer 404 with a JSON body naming the path.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, _Script] = {}
        self._hits: dict[str, int] = defaultdict(int)
        self._requests: dict[str, list[RecordedRequest]] = defaultdict(list)
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def script(self, path: str, *steps: Step, repeat_last: bool = True) -> None:
        """Answer requests to ``path`` with ``steps`` in order; then repeat the last one."""
        with self._lock:
            self._scripts[path] = _Script(list(steps), repeat_last)

    def hits(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all paths when ``None``)."""
        with self._lock:
            if path is None:
                return sum(self._hits.values())
            return self._hits.get(path, 0)

    def requests(self, path: str) -> list[RecordedRequest]:
        """Every request received for ``path``, oldest first."""
        with self._lock:
            return list(self._requests.get(path, []))

    def reset_counters(self) -> None:
        with self._lock:
            self._hits.clear()
            self._requests.clear()

    def _next_step(self, recorded: RecordedRequest) -> Step:
        with self._lock:
            self._hits[recorded.path] += 1
            self._requests[recorded.path].append(recorded)
            script = self._scripts.get(recorded.path)
            step = script.next() if script is not None else None
        if step is None:
            return Step(404, json={"error": "not scripted", "path": recorded.path})
        return step

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
                # algorithm meets the client's delayed ACK and every response waits ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qsl(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                step = service._next_step(recorded)
                if step.delay:
                    time.sleep(step.delay)
                if step.reset:
                    # SO_LINGER with a zero timeout makes close() send RST, not FIN.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = step.body
                headers = dict(step.headers)
                if step.json is not None:
                    payload = jsonlib.dumps(step.json).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.send_response(step.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        return Handler

    def start(self) -> ScriptedService:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ScriptedService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
