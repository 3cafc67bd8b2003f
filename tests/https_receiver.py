"""A local HTTPS webhook receiver for delivery tests (loopback only, trustme certificates).

Usage:

    with HttpsReceiver() as rx:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", rx.ca_path)   # requests trusts the test CA
        rx.fail_next(2, 429, headers={"Retry-After": "7"})     # scripted answers, then 200
        ... POST to rx.url("/hook/secret?sig=abc") ...
        rx.requests[-1].body, rx.requests[-1].headers

`go_down()` stops listening and drops open connections (new ones are refused); `come_up()` listens
again on the same port, so a client keeps the same URL across an outage. With `keep_alive=True` the
receiver speaks HTTP/1.1 persistent connections (like Slack/Teams do) and `connections` counts how
many TLS connections clients opened, which shows whether a client pools them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import trustme


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ScriptedAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0  # wait before answering, to provoke client read timeouts


class HttpsReceiver:
    """Records every request; answers `default` unless answers were scripted with `fail_next`."""

    def __init__(self, default: ScriptedAnswer | None = None, host: str = "127.0.0.1", *,
                 keep_alive: bool = False) -> None:
        self.host = host
        self.keep_alive = keep_alive
        self.connections = 0
        self._open: set[socket.socket] = set()
        self.default = default or ScriptedAnswer(200, {"Content-Type": "text/plain"}, b"ok")
        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()
        self._script: deque[ScriptedAnswer] = deque()
        self._requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.ca_path = ""

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> HttpsReceiver:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="https-receiver-")
        self.ca_path = os.path.join(self._tmpdir.name, "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        self.come_up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.go_down()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def come_up(self) -> None:
        """Starts listening (on the previous port after `go_down`, so URLs stay valid)."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_cert.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"https-receiver-{self.port}", daemon=True)
        self._thread.start()

    def go_down(self) -> None:
        """Stops listening and closes the socket: new connections are refused until `come_up`."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            still_open, self._open = list(self._open), set()
        for conn in still_open:  # persistent connections would otherwise keep being served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # --- behaviour and inspection ---------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def fail_next(self, count: int, status: int, *, headers: Mapping[str, str] | None = None,
                  body: bytes = b"", delay_s: float = 0.0) -> None:
        """The next `count` requests get `status` (with `headers`/`body`), later ones the default."""
        with self._lock:
            self._script.extend(
                ScriptedAnswer(status, dict(headers or {}), body, delay_s) for _ in range(count))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    def _answer_for(self, request: RecordedRequest) -> ScriptedAnswer:
        with self._lock:
            self._requests.append(request)
            return self._script.popleft() if self._script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if receiver.keep_alive else "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1
                    receiver._open.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._open.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = receiver._answer_for(
                    RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                if not receiver.keep_alive:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer.body)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                """Silent: request lines carry the webhook path, which tests treat as a secret."""

        return Handler
