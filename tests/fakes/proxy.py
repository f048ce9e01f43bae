"""An HTTPS (CONNECT) proxy on 127.0.0.1 for `HTTPS_PROXY`: connections to hosts it intercepts
(e.g. `*.blob.core.windows.net`) end in a loopback fake, with TLS terminated by a certificate of the
test CA; every other host is tunnelled to where it was going, so unrelated traffic (pip's index)
behaves as without the proxy. This is the wire-level stand-in for a DNS entry we cannot add."""

from __future__ import annotations

import fnmatch
import select
import socket
import socketserver
import ssl
from http.server import BaseHTTPRequestHandler

from fakes.http import Background


class InterceptingProxy(Background, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, routes: dict[str, tuple[type[BaseHTTPRequestHandler], object]], context: ssl.SSLContext):
        """`routes`: host pattern -> (handler class, the `server` object its handler sees)."""
        super().__init__(("127.0.0.1", 0), _ConnectHandler)
        self.routes = routes
        self.context = context
        self.intercepted: list[str] = []
        self.tunnelled: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ConnectHandler(socketserver.BaseRequestHandler):
    server: InterceptingProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = (line.split(" ") + ["", ""])[:3]
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        route = next((r for pattern, r in self.server.routes.items() if fnmatch.fnmatch(host, pattern)), None)
        if route is None:
            return self._tunnel(host, int(port or 443))
        self.server.intercepted.append(host)
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        handler, backend = route
        tls = self.server.context.wrap_socket(self.request, server_side=True)
        try:
            handler(tls, self.client_address, backend)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def _tunnel(self, host: str, port: int) -> None:
        self.server.tunnelled.append(host)
        try:
            upstream = socket.create_connection((host, port), timeout=30)
        except OSError:
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [self.request, upstream]
        with upstream:
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)
