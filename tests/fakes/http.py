"""Shared plumbing of the loopback fakes: a threaded HTTP(S) server started and stopped as a context
manager, and a request handler with JSON helpers and a request log."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Background:
    """A socketserver served from a daemon thread: `start()`/`stop()`, or `with server:`."""

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FakeServer(Background, ThreadingHTTPServer):
    """`with FakeServer(Handler) as server:` serves on 127.0.0.1:<free port> in a thread; with an
    `ssl.SSLContext` it speaks HTTPS. `requests` keeps what every handler saw."""

    daemon_threads = True

    def __init__(self, handler, context: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), handler)
        self.context = context
        self.requests: list[dict] = []
        self.lock = threading.RLock()

    def get_request(self):
        sock, address = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, address

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.server_port}"


class JsonHandler(BaseHTTPRequestHandler):
    """Parses path, query and JSON body into `self.path_only`, `self.query`, `self.body`, logs the
    request on the server, then calls `self.route()`."""

    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, *args) -> None:
        pass

    def _prepare(self) -> None:
        split = urlsplit(self.path)
        self.path_only = split.path
        self.query = {k: v[0] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        try:
            self.body = json.loads(self.raw_body) if self.raw_body else None
        except ValueError:
            self.body = None
        with self.server.lock:
            self.server.requests.append({"method": self.command, "path": self.path_only, "query": self.query,
                                         "body": self.body, "headers": dict(self.headers)})

    def _dispatch(self) -> None:
        self._prepare()
        with self.server.lock:
            self.route()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def route(self) -> None:  # pragma: no cover - every fake defines its routes
        raise NotImplementedError

    def send(self, status: int, body=None, headers: dict | None = None, content_type="application/json") -> None:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": content_type, "x-ms-request-id": str(uuid.uuid4()),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, code: str, message: str) -> None:
        self.send(status, {"error": {"code": code, "message": message}})
