"""The LLM gateway's HTTP side: a loopback proxy that forwards each LLM call to its upstream when
the scheduler grants it a turn, and retries 429s, 5xx and connection errors within the bounds of
`runtime.retries` (attempts and total time).

Routes: `/pools/<pool>/<connection>/<rest>` goes to `<the connection's upstream>/<rest>`, so an
engine's connection points at `http://127.0.0.1:<port>/pools/<pool>/<connection>` (plus `/v1`
for OpenAI-style clients, which the upstream URL carries) and needs nothing else.

What a client sees: the upstream's answer, or, once the bounds are spent, the last failure with
its status, the message prefixed by what the gateway tried, no `Retry-After` and
`x-should-retry: false` (so SDKs do not retry on their own: the gateway already did). Headers and
bodies pass through untouched and are never logged: keys stay between the client and upstream.

Neither the flow (the client) nor the upstream is trusted. Every body the gateway reads is
bounded: requests by `max_request_bytes` (413), answers by `max_answer_bytes` (502, or an error
event ending a stream), error answers are read only `max_error_bytes` far (the message is all
the gateway needs). Every call ends by its deadline, `max_total_sec` after it arrived, waiting
for a turn, attempts and the answer included (`deadline`): then the client gets a 504 (or an
error event ending a stream) and the pool slot is free. Bad requests (invalid JSON, NaN, deep
nesting, absurd `max_tokens`/`n`, a wrong Content-Length, an unknown method) get a JSON 4xx
naming the problem, never a dropped connection or a traceback.

With a cassette (`use_cassette`) the gateway records the answers it relays (`record`) or answers
from the cassette alone and never opens an upstream connection (`replay`; see `cassette`).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

import httpx

import genaiops.gateway.deadline as deadline
from genaiops.gateway.cassette import Cassette, request_key
from genaiops.gateway.limits import Quota
from genaiops.gateway.scheduler import QueueDeadline, SchedulerSettings, Upstream
from genaiops.gateway.served import ServedModels
from genaiops.gateway.stats import GatewayStats
from genaiops.gateway.wire import (
    HOP_BY_HOP,
    BadRequest,
    deployment_of,
    error_message,
    estimated_tokens,
    read_request,
    retry_after_seconds,
)
from genaiops.loopback import LoopbackHTTPServer, ServedInThread

GATEWAY_NAME = "genaiops-llm-gateway"
RETRIABLE_STATUS = frozenset({500, 502, 503, 504})
_ROUTE = re.compile(r"^/pools/([A-Za-z0-9_.-]+)/([^/]+)/(.*)$")
MIB = 1024 * 1024
_BACKOFF_CAP_SEC = 30.0
_CLIENT_IO_SEC = 30.0  # a client that stops sending its body or reading its answer is cut off
_LINGER_SEC, _LINGER_BYTES = 1.0, MIB  # unread request bytes drained before closing (no RST)
_METHODS = ("GET", "POST", "PUT", "DELETE")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_LOOPBACK = ("all://127.0.0.1", "all://localhost", "all://[::1]")


@dataclass(frozen=True)
class RetryBounds:
    """How far one call is retried: `max_attempts` attempts that fail (5xx, connection errors,
    backing off from `backoff_sec`), `max_throttled` 429s (each waited out as its Retry-After
    says), and `max_total_sec` in all, waiting for a turn included."""

    max_attempts: int = 5
    backoff_sec: float = 0.5
    max_total_sec: float = 120.0
    max_throttled: int = 30


@dataclass(frozen=True)
class Route:
    upstream: str  # base URL; the client's path below the connection is appended
    quota: Quota | None = None


@dataclass
class _Failure:
    status: int
    message: str
    error_type: str = "gateway_error"
    code: str | None = None
    param: str | None = None
    final: bool = False  # the answer as it is, without the gateway's account of its attempts


class _Server(LoopbackHTTPServer):
    request_queue_size = 512  # every line worker of every run may call at once

    def __init__(self, address, gateway: LLMGateway):
        self.gateway = gateway
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client that went away is not worth a line
            self.gateway.log(f"{GATEWAY_NAME} error: {type(exc).__name__}")

    def shutdown_request(self, request):
        """Close after draining what the client still sends (bounded), so that an answer given
        before its whole body was read (413, a wrong Content-Length) is not lost to a reset."""
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(_LINGER_SEC / 4)
            until, drained = time.monotonic() + _LINGER_SEC, 0
            while drained < _LINGER_BYTES and time.monotonic() < until:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self.close_request(request)


class LLMGateway(ServedInThread):
    """Start with `with LLMGateway(bounds) as gateway:`; `route()` each connection, then point
    the engine at `url_for(pool, connection)`."""

    thread_name, service = GATEWAY_NAME, "the LLM gateway"

    def __init__(self, bounds: RetryBounds | None = None, settings: SchedulerSettings | None = None,
                 *, upstream_timeout_sec: float = 600.0, log: Callable[[str], None] | None = None,
                 max_request_bytes: int = 64 * MIB, max_answer_bytes: int = 64 * MIB,
                 max_error_bytes: int = 64 * 1024):
        self.bounds = bounds or RetryBounds()
        self.max_request_bytes, self.max_answer_bytes = max_request_bytes, max_answer_bytes
        self.max_error_bytes = max_error_bytes
        self.settings = settings or SchedulerSettings()
        self.stats = GatewayStats()
        self.served = ServedModels()  # what answered, per upstream and deployment
        self._routes: dict[str, Route] = {}
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        self._lock = threading.Lock()
        self._log = log
        direct = httpx.HTTPTransport()
        self.client = httpx.Client(
            timeout=httpx.Timeout(upstream_timeout_sec, connect=30.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=128),
            mounts={pattern: direct for pattern in _LOOPBACK}, follow_redirects=False)
        deadline.install(self.client)
        super().__init__()
        self.cassette: Cassette | None = None

    def use_cassette(self, cassette: Cassette | None) -> None:
        """Record into, or replay from, `cassette` (None: live)."""
        self.cassette = cassette

    # -- lifecycle

    def _bind(self) -> _Server:
        return _Server(("127.0.0.1", 0), self)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self.client.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- routes

    def route(self, connection: str, upstream: str, quota: Quota | None = None) -> None:
        with self._lock:
            self._routes[connection] = Route(upstream.rstrip("/"), quota)

    def url_for(self, pool: str, connection: str) -> str:
        return f"{self.url}/pools/{pool}/{connection}"

    def upstream(self, route: Route, deployment: str) -> Upstream:
        key = (route.upstream, deployment)
        with self._lock:
            upstream = self._upstreams.get(key)
            if upstream is None:
                upstream = self._upstreams[key] = Upstream(key, route.quota, self.settings)
            return upstream

    def lookup(self, connection: str) -> Route | None:
        with self._lock:
            return self._routes.get(connection)

    def served_by(self, connection: str) -> dict:
        """{deployment: {"models", "fingerprints"}} that answered the connection's calls so far."""
        route = self.lookup(connection)
        return self.served.of_upstream(route.upstream) if route else {}

    def snapshot(self) -> dict:
        with self._lock:
            upstreams = dict(self._upstreams)
        return {**self.stats.snapshot(),
                "upstreams": {f"{key[0]} {key[1]}": u.snapshot() for key, u in upstreams.items()}}

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # a header name (RFC 9110 5.1)
_FIELD_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")  # no control characters but HTAB
_STREAM_TYPE = "text/event-stream"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):
        pass  # never: request lines could carry deployment names only, but we keep quiet

    def do_POST(self):
        self._proxy("POST")

    def do_GET(self):
        self._proxy("GET")

    def do_DELETE(self):
        self._proxy("DELETE")

    def do_PUT(self):
        self._proxy("PUT")

    def __getattr__(self, name: str):
        """Any other method (HEAD, PATCH, BREW, ...) is a 405, not the stdlib's 501."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    # -- requests the stdlib refuses, in the gateway's JSON shape

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # "GET /path": no headers, no status line back
            self.send_error(400, "send an HTTP/1.0 or HTTP/1.1 request line")
            return False
        return True

    def send_error(self, code, message=None, explain=None):
        """The stdlib's answer to a broken request line or headers (400, 414, 431, 505), as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the line was unreadable: answer with a status line
            self.request_version = "HTTP/1.0"
        text = message or HTTPStatus(code).phrase
        self.fail(_Failure(int(code), f"{GATEWAY_NAME}: {text}", "invalid_request_error",
                           final=True))

    def _not_allowed(self) -> None:
        self.close_connection = True  # its body, if any, is not read
        self.fail(_Failure(405, f"{GATEWAY_NAME} forwards {', '.join(_METHODS)} requests, not "
                                f"{self.command}", "invalid_request_error", "method_not_allowed",
                           final=True), extra=(("Allow", ", ".join(_METHODS)),))

    def _refuse(self, status: int, message: str, param: str | None = None,
                close: bool = False) -> None:
        self.close_connection = self.close_connection or close
        self.fail(_Failure(status, f"{GATEWAY_NAME}: {message}", "invalid_request_error",
                           "invalid_request", param, final=True))

    # -- forwarding

    def _proxy(self, method: str) -> None:
        """Bound the client's own I/O (its body, our answer) while this request is handled."""
        self.connection.settimeout(_CLIENT_IO_SEC)
        try:
            self._forward(method)
        finally:
            try:
                self.connection.settimeout(None)  # an idle keep-alive connection may wait
            except OSError:
                self.close_connection = True

    def _forward(self, method: str) -> None:
        gateway = self.server.gateway
        body = self._body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        match = _ROUTE.match(path)
        route = gateway.lookup(match.group(2)) if match else None
        if route is None:
            self.fail(_Failure(404, f"{GATEWAY_NAME} has no route {path[:200]!r}: a connection "
                                    "name the LLM session did not register", final=True))
            return
        headers = self._headers()
        if headers is None:
            return
        parsed = None
        if method == "POST" and "json" in (self.headers.get("Content-Type") or "json").lower():
            try:
                parsed = read_request(body)
            except BadRequest as exc:
                self._refuse(exc.status, exc.message, exc.param)
                return
        pool, rest = match.group(1), match.group(3)
        recorder = None
        cassette = gateway.cassette
        if cassette is not None:
            if method != "POST" or not isinstance(parsed, dict):
                if cassette.mode == "replay":
                    self._refuse(400, f"replay serves recorded JSON POST calls only, not {method} "
                                      f"{rest[:200]!r}")
                    return
            else:
                key = request_key(rest, parsed)
                occurrence = cassette.occurrence(key)
                if cassette.mode == "replay":
                    self._replay(cassette, pool, match.group(2), rest, parsed, key, occurrence)
                    return

                def recorder(answer: dict, _key=key, _n=occurrence) -> None:
                    cassette.record(_key, match.group(2), rest, parsed, _n, answer)
        url = f"{route.upstream}/{rest}" + (f"?{query}" if query else "")

        def build() -> httpx.Request:
            return gateway.client.build_request(method, url, headers=headers, content=body)

        try:
            build()
        except (httpx.InvalidURL, ValueError) as exc:
            self._refuse(400, f"the path cannot be forwarded: {str(exc)[:200]}")
            return
        upstream = gateway.upstream(route, deployment_of(rest, parsed))
        cost = (estimated_tokens(parsed) if parsed is not None else 1) if method == "POST" else 0
        _Call(self, gateway, upstream, pool, build, cost, recorder).run()

    def _replay(self, cassette: Cassette, pool: str, connection: str, rest: str, body: dict,
                key: str, occurrence: int) -> None:
        """The recorded answer, or a non-retryable 400 naming the miss; never an upstream call."""
        stats = self.server.gateway.stats
        stats.request(pool)
        answer = cassette.answer(key, occurrence)
        if answer is None:
            miss = cassette.miss(connection, rest, body, key, occurrence)
            stats.outcome("replay_miss")
            self.fail(_Failure(400, f"{GATEWAY_NAME}: replay has no recorded answer for this call "
                                    f"({miss.describe()[:2000]})", "invalid_request_error",
                               "replay_miss", final=True))
            return
        stats.outcome("replayed")
        status = int(answer.get("status", 200))
        if "stream" in answer:
            try:
                self.start_stream(status, [(b"Content-Type", b"text/event-stream")])
                for event in answer["stream"]:
                    self.write_chunk(f"{event}\n\n".encode())
            except OSError:
                self.close_connection = True
                return
            self.end_stream()
            return
        body_out = answer.get("body")
        raw = body_out.encode() if isinstance(body_out, str) else json.dumps(body_out).encode()
        self.answer(status, [(b"Content-Type", b"application/json")], raw)

    def _body(self) -> bytes | None:
        """The request body, read only as far as `max_request_bytes`; None when refused."""
        limit = self.server.gateway.max_request_bytes
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(411, "send the body with a Content-Length (chunked request bodies are "
                              "not supported)", close=True)
            return None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return b""
        text = lengths.pop()
        if lengths:
            self._refuse(400, "the request has conflicting Content-Length headers", close=True)
            return None
        if not _DIGITS.match(text):
            self._refuse(400, f"Content-Length must be a number of bytes, not {text[:40]!r}",
                         close=True)
            return None
        size = int(text)
        if size > limit:
            self._refuse(413, f"the request body of {size:,} bytes is over the gateway's limit of "
                              f"{limit:,} bytes", close=True)
            return None
        chunks, got = [], 0
        try:
            while got < size:
                chunk = self.rfile.read1(min(size - got, MIB))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            self._refuse(408, f"the body stopped after {got:,} of its {size:,} bytes (Content-Length)"
                              f" for {_CLIENT_IO_SEC:g} s", close=True)
            return None
        if got < size:
            self._refuse(400, f"the body ended after {got:,} of the {size:,} bytes its "
                              "Content-Length announced", close=True)
            return None
        return b"".join(chunks)

    def _headers(self) -> list[tuple[bytes, bytes]] | None:
        """The headers to forward, as the bytes that came (latin-1); None when one cannot be."""
        headers = []
        for name, value in self.headers.items():
            name, value = str(name), str(value)
            if name.lower() in HOP_BY_HOP:
                continue
            if not _TOKEN.match(name):
                self._refuse(400, f"the header name {name[:60]!r} is not valid HTTP", close=True)
                return None
            if not _FIELD_VALUE.match(value):
                self._refuse(400, f"the value of header {name!r} holds control characters",
                             close=True)
                return None
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
        headers.append((b"Accept-Encoding", b"identity"))
        return headers

    # -- answers

    def answer(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The upstream's answer, read whole (and bounded), with its own Server and Date headers
        (the simulator says what it is there)."""
        try:
            self.send_response_only(status)
            self._upstream_headers(raw_headers)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its line timed out)

    def start_stream(self, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.send_response_only(status)
        self._upstream_headers(raw_headers)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, chunk: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.flush()

    def end_stream(self, error: str | None = None) -> None:
        """The last chunk; an error first as an SSE event, which OpenAI SDKs raise."""
        try:
            if error is not None:
                event = json.dumps({"error": {"message": error, "type": "gateway_error",
                                              "param": None, "code": "stream_cut"}})
                self.write_chunk(f"\n\ndata: {event}\n\n".encode())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _upstream_headers(self, raw_headers) -> None:
        for key, value in raw_headers:
            name = key.decode("latin-1")
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                self.send_header(name, value.decode("latin-1"))

    def fail(self, failure: _Failure, attempts: int = 0, elapsed: float = 0.0,
             extra: tuple = ()) -> None:
        """The gateway's own answer: the last failure, marked so no SDK retries it again."""
        payload = json.dumps({"error": {"message": failure.message, "type": failure.error_type,
                                        "param": failure.param, "code": failure.code}}).encode()
        try:
            self.send_response(failure.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-should-retry", "false")
            self.send_header("x-genaiops-gateway-attempts", str(attempts))
            self.send_header("x-genaiops-gateway-elapsed-ms", str(int(elapsed * 1000)))
            for name, value in extra:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class _Call:
    """One client request: turns from the scheduler, attempts upstream, the answer to the client,
    all by one deadline."""

    def __init__(self, handler: _Handler, gateway: LLMGateway, upstream: Upstream, pool: str,
                 build: Callable[[], httpx.Request], cost: int,
                 recorder: Callable[[dict], None] | None = None):
        self.handler, self.gateway, self.upstream = handler, gateway, upstream
        self.pool, self.build, self.cost = pool, build, cost
        self.recorder = recorder  # takes a successful answer for the cassette (record mode)
        self.started = time.monotonic()
        self.deadline = self.started + gateway.bounds.max_total_sec
        self.attempts = self.errors = self.throttled = 0

    def run(self) -> None:
        self.gateway.stats.request(self.pool)
        with deadline.bounded_by(self.deadline):
            last = self._attempts()
        if last is not None:
            self._give_up(last)

    def _attempts(self) -> _Failure | None:
        """Attempts until one is answered (None) or the bounds are spent (the last failure)."""
        stats, bounds = self.gateway.stats, self.gateway.bounds
        last: _Failure | None = None
        while True:
            try:
                grant = self.upstream.acquire(self.pool, self.cost, self.deadline)
            except QueueDeadline as exc:
                return last or _Failure(429, f"no turn for this request: {exc}", "requests", "429")
            stats.waited(grant.waited_s)
            self.attempts += 1
            try:
                response = self.gateway.client.send(self.build(), stream=True)
            except httpx.LocalProtocolError:
                self.upstream.failed(grant)
                stats.outcome("refused")
                return _Failure(400, f"{GATEWAY_NAME}: the request cannot be forwarded as HTTP "
                                     "(a header or the path holds characters HTTP does not allow)",
                                "invalid_request_error", final=True)
            except httpx.HTTPError as exc:
                self.upstream.failed(grant)
                if deadline.passed():
                    return self._late("waiting for the upstream's answer")
                stats.outcome("connection_error")
                last = _Failure(502, f"upstream unreachable: {type(exc).__name__}: {exc}")
                if not self._retry_error():
                    return last
                continue
            status = response.status_code
            if status != 429 and status not in RETRIABLE_STATUS:
                return self._answer(self.gateway.served.tap(self.upstream.key, response), grant)
            raw, cut = self._read_error(response)
            last = _Failure(status, f"upstream answered {status}: {error_message(raw)}" +
                            (f" (its body was read only {len(raw):,} bytes far)" if cut else ""),
                            "requests" if status == 429 else "server_error", str(status))
            if status == 429:
                self.upstream.throttled(grant, retry_after_seconds(response.headers), response.headers)
                stats.outcome("throttled")
                self.throttled += 1
                if self.throttled >= bounds.max_throttled:
                    return last
            else:
                self.upstream.failed(grant)
                stats.outcome("server_error")
                if not self._retry_error():
                    return last

    def _read_error(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The start of an error answer (its message), never more than `max_error_bytes`: an
        upstream's 300 MB error page is not read, and its connection is dropped."""
        limit, raw, cut = self.gateway.max_error_bytes, bytearray(), False
        try:
            for chunk in response.iter_raw():
                raw += chunk
                if len(raw) > limit:
                    cut = True
                    break
        except httpx.HTTPError:
            pass  # the message is what came
        finally:
            response.close()
        return bytes(raw[:limit]), cut

    def _answer(self, response: httpx.Response, grant) -> _Failure | None:
        """The answer, read whole within `max_answer_bytes` and the deadline, then relayed (so
        the gateway can still answer with an error) and settled: the pool slot is free before
        the client reads. Streams are relayed as they come."""
        if response.headers.get("content-type", "").lower().startswith(_STREAM_TYPE):
            return self._stream(response, grant)
        limit, body, failure = self.gateway.max_answer_bytes, bytearray(), None
        declared = response.headers.get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > limit:
                failure = self._too_big(f"announces {int(declared):,} bytes")
            else:
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > limit:
                        failure = self._too_big(f"passed {limit:,} bytes")
                        break
        except httpx.HTTPError as exc:
            failure = self._late("reading the upstream's answer") if deadline.passed() else \
                _Failure(502, f"the upstream's answer broke off after {len(body):,} bytes: "
                              f"{type(exc).__name__}")
        finally:
            response.close()
        if failure is not None:
            self.upstream.failed(grant)
            self.gateway.stats.outcome("bad_answer")
            return failure
        if response.status_code < 400:
            # the estimate stays charged: Azure OpenAI counts it (not the answer's usage) against
            # the minute, so a refund here would send faster than the upstream allows
            self.upstream.succeeded(grant, response.headers)
            self.gateway.stats.outcome("answered", retried=self.attempts > 1)
            if self.recorder is not None:
                try:
                    kept = json.loads(bytes(body))
                except ValueError:
                    kept = bytes(body).decode("utf-8", "replace")
                self.recorder({"status": response.status_code, "body": kept})
        else:  # a request the upstream refuses (400, 401, 404): nothing to retry or learn
            self.upstream.failed(grant)
            self.gateway.stats.outcome("refused")
        self.handler.answer(response.status_code, response.headers.raw, bytes(body))
        return None

    def _stream(self, response: httpx.Response, grant) -> None:
        """A stream, chunk by chunk; past `max_answer_bytes` or the deadline it ends with an error
        event (its status and first bytes are already the client's)."""
        limit, sent, problem = self.gateway.max_answer_bytes, 0, None
        kept = bytearray() if self.recorder is not None else None
        try:
            self.handler.start_stream(response.status_code, response.headers.raw)
            for chunk in response.iter_raw():
                sent += len(chunk)
                if sent > limit:
                    problem = f"the stream passed the gateway's limit of {limit:,} bytes"
                    break
                if chunk:
                    self.handler.write_chunk(chunk)
                    if kept is not None:
                        kept += chunk
        except httpx.HTTPError as exc:
            problem = (f"the call's deadline (runtime.retries.max_total_sec "
                       f"{self.gateway.bounds.max_total_sec:g} s) passed" if deadline.passed()
                       else f"the upstream's stream broke off: {type(exc).__name__}")
        except OSError:
            self.handler.close_connection = True  # the client gave up
        finally:
            response.close()
            if problem is None and response.status_code < 400:
                self.upstream.succeeded(grant, response.headers)
            else:
                self.upstream.failed(grant)
            self.gateway.stats.outcome("answered" if problem is None else "bad_answer")
        if kept is not None and problem is None and response.status_code < 400:
            text = bytes(kept).decode("utf-8", "replace").replace("\r\n", "\n")
            self.recorder({"status": response.status_code,
                           "stream": [event for event in text.split("\n\n") if event.strip()]})
        if not self.handler.close_connection:
            self.handler.end_stream(None if problem is None else
                                    f"LLM gateway cut the stream after {sent:,} bytes in "
                                    f"{time.monotonic() - self.started:.1f} s: {problem}")
        return None

    def _too_big(self, what: str) -> _Failure:
        return _Failure(502, f"the upstream's answer {what}, over the gateway's limit of "
                             f"{self.gateway.max_answer_bytes:,} bytes", "upstream_error",
                        "answer_too_large")

    def _late(self, what: str) -> _Failure:
        self.gateway.stats.outcome("deadline")
        return _Failure(504, f"the call's deadline passed while {what}", "timeout", "deadline")

    def _retry_error(self) -> bool:
        """After a failed attempt: back off exponentially and go again, unless that spends the
        attempts or passes the deadline."""
        self.errors += 1
        if self.errors >= self.gateway.bounds.max_attempts:
            return False
        delay = min(self.gateway.bounds.backoff_sec * 2 ** (self.errors - 1), _BACKOFF_CAP_SEC)
        if time.monotonic() + delay >= self.deadline:
            return False
        time.sleep(delay)
        return True

    def _give_up(self, last: _Failure) -> None:
        elapsed = time.monotonic() - self.started
        if not last.final:
            bounds = self.gateway.bounds
            self.gateway.stats.outcome("gave_up")
            last.message = (f"LLM gateway gave up after {self.attempts} attempt(s) ({self.errors} "
                            f"failed, {self.throttled} throttled) in {elapsed:.1f} s "
                            f"(runtime.retries: max_attempts {bounds.max_attempts}, max_throttled "
                            f"{bounds.max_throttled}, max_total_sec {bounds.max_total_sec:g}): "
                            f"{last.message}")
        self.handler.fail(last, self.attempts, elapsed)
