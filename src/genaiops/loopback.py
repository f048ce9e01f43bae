"""What genaiops' in-process HTTP services share (the LLM simulator, the LLM gateway, the OTLP
receiver): a threaded server that binds without a reverse DNS lookup, served by one daemon thread,
started and stopped once, usable as a context manager."""

from __future__ import annotations

import socketserver
import threading
from http.server import ThreadingHTTPServer
from typing import TypeVar

_Served = TypeVar("_Served", bound="ServedInThread")


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A thread per connection (daemon: a hung client never holds the process)."""

    daemon_threads = True

    def server_bind(self):
        """Like HTTPServer.server_bind without its reverse DNS lookup, which can hang offline."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def close_connections(self, timeout: float) -> None:
        """Called by `ServedInThread.stop` between shutdown and close; nothing to do by default."""


class ServedInThread:
    """The lifecycle of one `LoopbackHTTPServer`: `start()` binds (`_bind`) and serves it in a
    daemon thread named `thread_name`, `stop()` shuts it down, closes it and joins the thread;
    both may be called again. Subclasses say how to bind and what "not running" raises."""

    thread_name, service = "genaiops-loopback", "the loopback server"

    def __init__(self):
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> LoopbackHTTPServer:
        raise NotImplementedError

    def _not_running(self) -> Exception:
        return RuntimeError(f"{self.service} is not running")

    def start(self: _Served) -> _Served:
        if self._httpd is None:
            httpd = self._bind()
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections(timeout)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self: _Served) -> _Served:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise self._not_running()
        return self._httpd.server_address[1]
