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
"""

from __future__ import annotations

import json
import re
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from genaiops.gateway.limits import Quota
from genaiops.gateway.scheduler import QueueDeadline, SchedulerSettings, Upstream
from genaiops.gateway.served import ServedModels
from genaiops.gateway.stats import GatewayStats
from genaiops.gateway.wire import (
    HOP_BY_HOP,
    deployment_of,
    error_message,
    estimated_tokens,
    parse_body,
    retry_after_seconds,
)

GATEWAY_NAME = "genaiops-llm-gateway"
RETRIABLE_STATUS = frozenset({500, 502, 503, 504})
_ROUTE = re.compile(r"^/pools/([A-Za-z0-9_.-]+)/([^/]+)/(.*)$")
_MAX_BODY = 64 * 1024 * 1024
_BACKOFF_CAP_SEC = 30.0
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # every line worker of every run may call at once

    def __init__(self, address, gateway: LLMGateway):
        self.gateway = gateway
        super().__init__(address, _Handler)

    def server_bind(self):
        """Like HTTPServer.server_bind without its reverse DNS lookup, which can hang offline."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client that went away is not worth a line
            self.gateway.log(f"{GATEWAY_NAME} error: {type(exc).__name__}")


class LLMGateway:
    """Start with `with LLMGateway(bounds) as gateway:`; `route()` each connection, then point
    the engine at `url_for(pool, connection)`."""

    def __init__(self, bounds: RetryBounds | None = None, settings: SchedulerSettings | None = None,
                 *, upstream_timeout_sec: float = 600.0, log: Callable[[str], None] | None = None):
        self.bounds = bounds or RetryBounds()
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> LLMGateway:
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), self)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name=GATEWAY_NAME, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(5)
        self.client.close()

    def __enter__(self) -> LLMGateway:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the LLM gateway is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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

    # -- forwarding

    def _proxy(self, method: str) -> None:
        gateway = self.server.gateway
        path, _, query = self.path.partition("?")
        match = _ROUTE.match(path)
        route = gateway.lookup(match.group(2)) if match else None
        body = self._body()
        if body is None:
            return
        if route is None:
            self.fail(_Failure(404, f"{GATEWAY_NAME} has no route {path!r}: a connection "
                                        "name the LLM session did not register"), 0, 0.0)
            return
        pool, rest = match.group(1), match.group(3)
        url = f"{route.upstream}/{rest}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("Accept-Encoding", "identity"))
        parsed = parse_body(body) if method == "POST" else None
        upstream = gateway.upstream(route, deployment_of(rest, parsed))
        _Call(self, gateway, upstream, pool, method, url, headers, body,
              estimated_tokens(parsed) if method == "POST" else 0).run()

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if not 0 <= size <= _MAX_BODY:
            self.close_connection = True
            self.fail(_Failure(400, "send a valid Content-Length"), 0, 0.0)
            return None
        return self.rfile.read(size) if size else b""

    def relay(self, response: httpx.Response) -> None:
        """The upstream's answer as it comes (chunk by chunk for streams), its own Server and Date
        headers included (the simulator says what it is there)."""
        self.log_request(response.status_code)
        self.send_response_only(response.status_code)
        for key, value in response.headers.multi_items():
            if key.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                self.send_header(key, value)
        length = response.headers.get("content-length")
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            for chunk in response.iter_raw():
                self.wfile.write(chunk)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in response.iter_raw():
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def fail(self, failure: _Failure, attempts: int, elapsed: float) -> None:
        """The gateway's own answer: the last failure, marked so no SDK retries it again."""
        payload = json.dumps({"error": {"message": failure.message, "type": failure.error_type,
                                        "param": None, "code": failure.code}}).encode()
        try:
            self.send_response(failure.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-should-retry", "false")
            self.send_header("x-genaiops-gateway-attempts", str(attempts))
            self.send_header("x-genaiops-gateway-elapsed-ms", str(int(elapsed * 1000)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class _Call:
    """One client request: turns from the scheduler, attempts upstream, the answer to the client."""

    def __init__(self, handler: _Handler, gateway: LLMGateway, upstream: Upstream, pool: str,
                 method: str, url: str, headers: list, body: bytes, cost: int):
        self.handler, self.gateway, self.upstream = handler, gateway, upstream
        self.pool, self.method, self.url, self.headers, self.body = pool, method, url, headers, body
        self.cost = cost
        self.started = time.monotonic()
        self.deadline = self.started + gateway.bounds.max_total_sec
        self.attempts = self.errors = self.throttled = 0

    def run(self) -> None:
        stats, bounds = self.gateway.stats, self.gateway.bounds
        stats.request(self.pool)
        last: _Failure | None = None
        while True:
            try:
                grant = self.upstream.acquire(self.pool, self.cost, self.deadline)
            except QueueDeadline as exc:
                last = last or _Failure(429, f"no turn for this request: {exc}", "requests", "429")
                break
            stats.waited(grant.waited_s)
            self.attempts += 1
            try:
                response = self.gateway.client.send(
                    self.gateway.client.build_request(self.method, self.url, headers=self.headers,
                                                      content=self.body), stream=True)
            except httpx.HTTPError as exc:
                self.upstream.failed(grant)
                stats.outcome("connection_error")
                last = _Failure(502, f"upstream unreachable: {type(exc).__name__}: {exc}")
                if not self._retry_error():
                    break
                continue
            status = response.status_code
            if status != 429 and status not in RETRIABLE_STATUS:
                self._answer(response, grant)
                return
            response.read()
            response.close()
            last = _Failure(status, f"upstream answered {status}: {error_message(response.content)}",
                            "requests" if status == 429 else "server_error", str(status))
            if status == 429:
                self.upstream.throttled(grant, retry_after_seconds(response.headers), response.headers)
                stats.outcome("throttled")
                self.throttled += 1
                if self.throttled >= bounds.max_throttled:
                    break
            else:
                self.upstream.failed(grant)
                stats.outcome("server_error")
                if not self._retry_error():
                    break
        self._give_up(last)

    def _answer(self, response: httpx.Response, grant) -> None:
        try:
            self.handler.relay(self.gateway.served.tap(self.upstream.key, response))
        except OSError:
            self.handler.close_connection = True  # the client gave up (e.g. its line timed out)
        finally:
            response.close()
            if response.status_code < 400:
                self.upstream.succeeded(grant, response.headers)
                self.gateway.stats.outcome("answered", retried=self.attempts > 1)
            else:  # a request the upstream refuses (400, 401, 404): nothing to retry or learn
                self.upstream.failed(grant)
                self.gateway.stats.outcome("refused")

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

    def _give_up(self, last: _Failure | None) -> None:
        elapsed = time.monotonic() - self.started
        bounds = self.gateway.bounds
        self.gateway.stats.outcome("gave_up")
        last = last or _Failure(429, "no attempt was possible")
        last.message = (f"LLM gateway gave up after {self.attempts} attempt(s) ({self.errors} failed, "
                        f"{self.throttled} throttled) in {elapsed:.1f} s (runtime.retries: "
                        f"max_attempts {bounds.max_attempts}, max_throttled {bounds.max_throttled}, "
                        f"max_total_sec {bounds.max_total_sec:g}): {last.message}")
        self.handler.fail(last, self.attempts, elapsed)
