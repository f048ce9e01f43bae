"""The embedded OTLP/HTTP trace receiver: `POST /v1/traces` on a loopback port -> the trace store.

Started for a local deploy or `monitor` (deployed containers run with `--network host`, so
`http://127.0.0.1:<port>` is their `OTEL_EXPORTER_OTLP_ENDPOINT`). Accepts
`application/x-protobuf` and `application/json` (OTLP/HTTP), optionally gzip-encoded, bodies up to
`max_body` bytes (413 beyond, after decompression too); malformed input is 400 with a one-line
reason, an unknown media type 415. Nothing of a request is logged.
"""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from genaiops.errors import UsageError
from genaiops.loopback import LoopbackHTTPServer, ServedInThread
from genaiops.monitoring.otlp import OtlpError, decode_json, decode_protobuf
from genaiops.monitoring.store import TraceStore

MAX_BODY = 8 * 1024 * 1024
TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class _Handler(BaseHTTPRequestHandler):
    server_version = "genaiops-otlp"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # never log requests
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        # OTLP: a google.rpc.Status; JSON is what every client can read
        if close:
            self.close_connection = True
        self._reply(status, json.dumps({"code": 3, "message": message}).encode("utf-8"), JSON)

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, b'{"status": "healthy"}', JSON)
        else:
            self._error(404, f"no route GET {self.path[:100]}")

    def do_POST(self):
        receiver: Receiver = self.server.receiver
        if self.path.split("?", 1)[0] != TRACES_PATH:
            return self._error(404, f"no route POST {self.path[:100]} (OTLP traces go to {TRACES_PATH})", True)
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media not in (PROTOBUF, JSON):
            return self._error(415, f"Content-Type must be {PROTOBUF} or {JSON}", True)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(411, "a Content-Length is required", True)
        if length < 0 or length > receiver.max_body:
            return self._error(413, f"the body is {length} bytes; at most {receiver.max_body}", True)
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(body, receiver.max_body + 1)
            except zlib.error as exc:
                return self._error(400, f"the gzip body does not decompress: {exc}")
            if len(body) > receiver.max_body or inflater.unconsumed_tail:
                return self._error(413, f"the body decompresses to more than {receiver.max_body} bytes")
        elif encoding != "identity":
            return self._error(415, f"Content-Encoding {encoding[:40]!r} is not supported (gzip or none)")
        try:
            spans = decode_protobuf(body) if media == PROTOBUF else decode_json(body)
        except OtlpError as exc:
            receiver.rejected += 1
            return self._error(400, str(exc)[:500])
        receiver.store.add_spans(spans)
        receiver.received += len(spans)
        if media == PROTOBUF:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceResponse,
            )

            return self._reply(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)
        return self._reply(200, b"{}", JSON)


class _Server(LoopbackHTTPServer):
    def __init__(self, address, receiver):
        self.receiver = receiver
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        pass  # a client that went away; nothing of a request is printed


class Receiver(ServedInThread):
    """An OTLP/HTTP receiver on a loopback port writing to the trace store at `db`."""

    thread_name = "genaiops-otlp"

    def __init__(self, db: Path, host: str = "127.0.0.1", port: int = 0, max_body: int = MAX_BODY):
        self.store = TraceStore(db)
        self.host, self._port, self.max_body = host, port, max_body
        self.received = 0
        self.rejected = 0
        super().__init__()

    def _bind(self) -> _Server:
        try:
            return _Server((self.host, self._port), self)
        except OSError as exc:
            raise UsageError(f"the trace receiver cannot listen on {self.host}:{self._port}: {exc.strerror or exc}",
                             hint="pick another port (0 = any free port)") from None

    def _not_running(self) -> Exception:
        return UsageError("the trace receiver is not running")

    @property
    def endpoint(self) -> str:
        """The `OTEL_EXPORTER_OTLP_ENDPOINT` for exporters (they append /v1/traces)."""
        return f"http://{self.host}:{self.port}"


def serve(db: Path, port: int, out, host: str = "127.0.0.1") -> int:
    """`genaiops monitor --receive`: the receiver in the foreground until Ctrl-C or SIGTERM, for a
    local deployment that keeps serving after `run deploy` (whose own receiver lives only for the
    smoke test). Returns 0 after saying how many spans it stored."""
    import signal

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with Receiver(db, host=host, port=port) as receiver:
            out(f"trace receiver on {receiver.endpoint}{TRACES_PATH} -> {db} (Ctrl-C stops it)")
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    out(f"trace receiver stopped: {receiver.received} span(s) stored, {receiver.rejected} export(s) rejected")
    return 0


__all__ = ["MAX_BODY", "TRACES_PATH", "Receiver", "serve"]
