"""Threaded HTTP(S) plumbing: turns sockets into `Request`s for a dispatcher and writes `Response`s back.

stdlib only. The TLS handshake runs in the per-connection worker thread (not in the accept loop), so a
slow or broken client cannot stall everyone else; HTTP/1.1 keep-alive lets SDK connection pools reuse
connections, as they do against Azure.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devtools.emulator.http_types import Request, Response

Dispatcher = Callable[[Request], Response]
_SLASHES = re.compile(r"/{2,}")


class TlsPerConnectionServer(ThreadingHTTPServer):
    """A threaded server that does each TLS handshake in the connection's own thread (plain HTTP without `tls`)."""

    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(secured, client_address, self)  # type: ignore[arg-type]
        finally:
            secured.close()


class _Server(TlsPerConnectionServer):
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, tls: ssl.SSLContext | None) -> None:
        self.dispatcher = dispatcher
        self.tls = tls
        self.base_url = ""
        super().__init__(address, _Handler)

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging: tests and benchmarks make thousands of calls."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = _SLASHES.sub("/", unquote(split.path)).rstrip("/") or "/"
        request = Request(method=self.command, path=path, query=dict(parse_qsl(split.query, keep_blank_values=True)),
                          headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                          base_url=self.server.base_url)
        try:
            response = self.server.dispatcher(request)
        except Exception as err:  # never drop a connection without an answer: the SDK would retry blindly
            response = Response(500, {"error": {"code": "InternalServerError", "message": f"emulator bug: {err!r}"}})
        self._write(response)

    def _write(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            if response.body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


class HttpServer:
    """One listening socket on 127.0.0.1 with an ephemeral port, served from a background thread."""

    def __init__(self, dispatcher: Dispatcher, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), dispatcher, tls)
        scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self.base_url = f"{scheme}://{host}:{self.port}"
        self._server.base_url = self.base_url
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"emulator-{scheme}-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
