"""The loopback OpenAI-compatible LLM SIMULATOR: canned, deterministic answers, never a real model.

It exists so flows, tests and benchmarks run offline against the same wire protocol the
`openai` client and promptflow-tools speak. Every response says what it is: the `Server`
header, `model` and `system_fingerprint` are "genaiops-simulator".

Routes (completion routes need a non-empty key in `Authorization: Bearer` or `api-key`):

    POST /v1/chat/completions, /chat/completions                          OpenAI shape
    POST /openai/deployments/<deployment>/chat/completions?api-version=   Azure OpenAI shape
    POST /v1/completions, /completions, /openai/deployments/<d>/completions   legacy text completions
    GET  /health
    GET  /_simulator/stats        POST /_simulator/reset  (stats only)
    GET|POST|DELETE /_simulator/faults   (POST body: one fault object, a list, or {"faults": [...]})
    GET|POST|DELETE /_simulator/drift    (POST body: {"rules": {...}, "error_rate": 0.3, "latency_ms": 400})

Drift mode (`start_drift`, `genaiops simulator --drift-*`) stands in for a model or deployment that
changed after it was approved: a second rules set answers, a fraction of answers fail with 500, and
answers come later; `stop_drift` restores the approved behaviour.

Not simulated: tools / function calling, logprobs, stop sequences, content filters.
`max_tokens` (or `max_completion_tokens`) truncates the reply to max_tokens*4 characters with
finish_reason "length"; `n` > 1 repeats the same deterministic answer; `stream: true` sends
SSE chunks (one per word) and, with `stream_options.include_usage`, a final usage chunk.

Quota (optional, `quota=QuotaSpec(rpm=..., tpm=...)`): each deployment (the Azure route's
deployment, else the body's `model`) gets Azure's rate limits over short windows, 429 with
`retry-after-ms`, and `x-ratelimit-remaining-*` headers (see `quota`).

Latency: each answer waits `latency_ms + jitter_ms * u` where u in [0, 1) comes from the
request's hash (deterministic); handlers run in their own threads, so N concurrent requests
take about one latency, not N. Requests are never logged unless `verbose`, and then only
method, path, status and duration: API keys are read to check them and then dropped, except by
the `401` fault, which echoes the key in its error body on purpose (a test of leak handling).
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from genaiops.errors import GenaiopsError, UsageError
from genaiops.loopback import LoopbackHTTPServer, ServedInThread
from genaiops.simulator.faults import FaultSet, fault_from_dict
from genaiops.simulator.quota import QuotaBook, QuotaSpec, estimated_tokens
from genaiops.simulator.rules import (
    Rules,
    Spread,
    count_tokens,
    load_rules,
    parse_rules,
    prompt_text,
    request_digest,
    unit_from,
)
from genaiops.simulator.stats import Stats

SIMULATOR_NAME = "genaiops-simulator"
SERVER_HEADER = f"{SIMULATOR_NAME}/0.1 (LLM simulator, not a real model)"
_MAX_BODY = 16 * 1024 * 1024
_IDLE_TIMEOUT_SEC = 120  # an idle keep-alive connection is closed after this
_AZURE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|completions)$")
_OPENAI = {
    "/v1/chat/completions": "chat/completions",
    "/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/completions": "completions",
}


class _HTTPServer(LoopbackHTTPServer):
    """Threads per connection, tracked so `stop()` can close idle keep-alive connections and join."""

    request_queue_size = 128  # a burst of concurrent workers must not overflow the listen backlog

    def __init__(self, address, handler, sim: SimulatorServer):
        self.sim = sim
        self._conn_lock = threading.Lock()
        self._active: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="genaiops-simulator-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._active[thread] = request
        thread.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._active.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float) -> None:
        with self._conn_lock:
            active = dict(self._active)
        for sock in active.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # client went away or the server is stopping: nothing to report
        self.sim._log(f"simulator connection error: {type(exc).__name__}: {exc}")


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class SimulatorServer(ServedInThread):
    """An in-process LLM simulator on a loopback port. Use as a context manager or start()/stop()."""

    thread_name = "genaiops-simulator"

    def __init__(
        self,
        rules_path: Path | str | None = None,
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rules: Rules | dict | None = None,
        jitter_ms: float = 0,
        api_key: str | None = None,
        quota: QuotaSpec | dict | None = None,
        verbose: bool = False,
        log: Callable[[str], None] | None = None,
        model: str = SIMULATOR_NAME,
        spread: float = 0.0,
        seed: int = 0,
    ):
        if rules is not None and rules_path is not None:
            raise UsageError("give the simulator rules_path or rules, not both")
        if isinstance(rules, dict):
            rules = parse_rules(rules)
        self.rules: Rules = (
            rules if rules is not None else (load_rules(rules_path) if rules_path else Rules())
        )
        try:  # the seeded stochastic mode (see rules.Spread); 0: every answer is deterministic
            self.spread = Spread(spread, seed) if spread else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for name, value in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise UsageError(f"simulator {name} must be a number >= 0, not {value!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise UsageError(
                f"simulator port must be an integer 0-65535 (0 = any free port), not {port!r}"
            )
        self.latency_ms = float(latency_ms)
        self.jitter_ms = float(jitter_ms)
        self.model = str(model)  # the `model` answers report (a deployment's upgrade, in tests)
        self.host = host
        self._requested_port = port
        self._api_key = api_key  # when set, only this key is accepted; never logged or returned
        self.verbose = verbose
        self._log_fn = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.faults = FaultSet()
        self.quota = QuotaBook(QuotaSpec(**quota) if isinstance(quota, dict) else quota)
        self.stats = Stats()
        self._stopping = threading.Event()
        self._drift: dict | None = None  # what start_drift replaced, to restore
        super().__init__()

    # -- lifecycle

    def _bind(self) -> _HTTPServer:
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        try:
            httpd = cls((self.host, self._requested_port), _Handler, self)
        except OSError as exc:
            raise UsageError(
                f"the LLM simulator cannot listen on {self.host}:{self._requested_port}: {exc.strerror or exc}",
                hint="pick another --port (0 = any free port) or stop what is using it",
            ) from None
        self._stopping.clear()
        return httpd

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut sleeps (latency, timeout faults) short, close connections, join threads."""
        self._stopping.set()
        super().stop(timeout)

    # -- drift mode

    def start_drift(self, rules: Rules | dict | None = None, error_rate: float = 0.0,
                    latency_ms: float = 0.0) -> dict:
        """Answer from `rules` (else the same rules), fail `error_rate` of answers with 500, add
        `latency_ms` to every answer - until `stop_drift`."""
        if isinstance(rules, dict):
            rules = parse_rules(rules, source="<drift rules>")
        for name, value, top in (("error_rate", error_rate, 1.0), ("latency_ms", latency_ms, None)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (top is not None and value > top):
                raise UsageError(f"drift {name} must be a number >= 0{' and <= 1' if top else ''}, not {value!r}")
        self.stop_drift()
        fault = self.faults.add("500", rate=float(error_rate)) if error_rate else None
        self._drift = {"rules": self.rules, "latency_ms": self.latency_ms, "fault": fault,
                       "state": {"rules": rules is not None, "error_rate": float(error_rate),
                                 "latency_ms": float(latency_ms)}}
        if rules is not None:
            self.rules = rules
        self.latency_ms += float(latency_ms)
        return self.drift_state()

    def stop_drift(self) -> None:
        drift, self._drift = self._drift, None
        if drift is None:
            return
        self.rules, self.latency_ms = drift["rules"], drift["latency_ms"]
        if drift["fault"] is not None:
            self.faults.remove(drift["fault"])

    def drift_state(self) -> dict:
        return {"drift": self._drift is not None, **(self._drift["state"] if self._drift else {})}

    # -- addresses

    def _not_running(self) -> Exception:
        return UsageError("the simulator is not running; call start() first")

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For `openai.OpenAI(base_url=...)` and promptflow's OpenAIConnection(base_url=...)."""
        return self.url + "/v1"

    @property
    def azure_endpoint(self) -> str:
        """For `openai.AzureOpenAI(azure_endpoint=...)` and AzureOpenAIConnection(api_base=...)."""
        return self.url

    # -- used by the handler

    def _log(self, line: str) -> None:
        try:
            self._log_fn(line)
        except Exception:  # noqa: BLE001, S110 - a broken log sink must not break answering
            pass

    def _check_key(self, key: str | None) -> str | None:
        """None when the key is acceptable, else the 401 message (which never contains the key)."""
        if not key:
            return (
                "Missing API key: send 'Authorization: Bearer <key>' (OpenAI) or 'api-key: <key>' (Azure). "
                "The genaiops simulator accepts any non-empty key unless started with one."
            )
        if self._api_key is not None and not hmac.compare_digest(
            key.encode(), self._api_key.encode()
        ):
            return "Incorrect API key provided to the genaiops simulator."
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def latency_seconds(self, messages: list) -> float:
        """The delay before answering these messages: latency_ms plus a jitter fixed by their hash."""
        return (self.latency_ms + self.jitter_ms * unit_from(request_digest(messages), 16)) / 1000.0


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT_SEC
    disable_nagle_algorithm = (
        True  # headers and body are two writes: Nagle + delayed ACK cost ~40 ms each
    )
    server: _HTTPServer

    def version_string(self) -> str:
        return SERVER_HEADER

    def log_message(self, format, *args):
        pass  # quiet by default; `verbose` logs one sanitized line per request in _dispatch

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- plumbing

    @property
    def sim(self) -> SimulatorServer:
        return self.server.sim

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path, _, query = self.path.partition("?")
        self._status = 0
        self._counting = False
        try:
            body = self._read_body()
            self._route(method, path, query, body)
        except _BadRequest as exc:
            self._error(exc.status, exc.message, code=exc.code)
        except Exception as exc:  # noqa: BLE001 - a simulator bug: answer 500, one line in the log
            self.sim._log(
                f"simulator internal error on {method} {path}: {type(exc).__name__}: {exc}"
            )
            self._error(
                500,
                f"genaiops simulator internal error: {type(exc).__name__}",
                err_type="server_error",
            )
        finally:
            if self.sim.verbose:
                ms = (time.monotonic() - started) * 1000
                self.sim._log(f"[{SIMULATOR_NAME}] {method} {path} {self._status} {ms:.0f}ms")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise _BadRequest(
                    411, "send a Content-Length header (chunked request bodies are not supported)"
                )
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise _BadRequest(400, "invalid Content-Length header") from None
        if size < 0 or size > _MAX_BODY:
            self.close_connection = True
            raise _BadRequest(413, f"request body over {_MAX_BODY} bytes")
        return self.rfile.read(size)

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        if path == "/health":
            return self._only(method, "GET") or self._json(
                200, {"status": "ok", "simulator": SIMULATOR_NAME}
            )
        if path == "/_simulator/stats":
            return self._only(method, "GET") or self._json(200, self.sim.stats.snapshot())
        if path == "/_simulator/reset":
            if not self._only(method, "POST"):
                self.sim.stats.reset()
                self._json(200, {"reset": True, "simulator": SIMULATOR_NAME})
            return None
        if path == "/_simulator/faults":
            return self._faults(method, body)
        if path == "/_simulator/drift":
            return self._drift(method, body)
        azure = _AZURE.match(path)
        kind = azure.group(2) if azure else _OPENAI.get(path)
        if kind is None:
            raise _BadRequest(404, f"the genaiops simulator has no route {path}", code="not_found")
        if self._only(method, "POST"):
            return None
        if azure and not re.search(r"(^|&)api-version=[^&]+", query):
            raise _BadRequest(
                400,
                "missing api-version query parameter (Azure OpenAI shape)",
                code="missing_api_version",
            )
        self.sim.stats.begin()
        self._counting = True
        try:
            self._completion(kind == "chat/completions", body, azure.group(1) if azure else None)
        except _BadRequest as exc:
            self._error(exc.status, exc.message, code=exc.code)
        finally:
            self._count_status(self._status or 500)  # 0 = a bug; _dispatch answers 500
            self.sim.stats.end()
        return None

    def _only(self, method: str, allowed: str) -> bool:
        """True (and a 405 sent) when the method is wrong."""
        if method == allowed:
            return False
        self._error(
            405, f"use {allowed} here", code="method_not_allowed", headers={"Allow": allowed}
        )
        return True

    def _faults(self, method: str, body: bytes) -> None:
        faults = self.sim.faults
        if method == "GET":
            return self._json(200, {"faults": faults.snapshot()})
        if method == "DELETE":
            faults.clear()
            return self._json(200, {"faults": []})
        if method != "POST":
            self._only(method, "POST")
            return None
        data = self._parse_json(body)
        items = data.get("faults") if isinstance(data, dict) and "faults" in data else data
        items = items if isinstance(items, list) else [items]
        try:
            parsed = [fault_from_dict(item) for item in items]  # validate all before adding any
        except GenaiopsError as exc:
            raise _BadRequest(400, exc.message, code="invalid_fault") from None
        for fault in parsed:
            faults.add_fault(fault)
        return self._json(200, {"faults": faults.snapshot()})

    def _drift(self, method: str, body: bytes) -> None:
        if method == "GET":
            return self._json(200, self.sim.drift_state())
        if method == "DELETE":
            self.sim.stop_drift()
            return self._json(200, self.sim.drift_state())
        if self._only(method, "POST"):
            return None
        data = self._parse_json(body)
        if not isinstance(data, dict) or set(data) - {"rules", "error_rate", "latency_ms"}:
            raise _BadRequest(400, 'send {"rules": {...}, "error_rate": 0.3, "latency_ms": 400} (each optional)',
                              code="invalid_drift")
        try:
            state = self.sim.start_drift(data.get("rules"), data.get("error_rate", 0.0), data.get("latency_ms", 0.0))
        except GenaiopsError as exc:
            raise _BadRequest(400, exc.message.splitlines()[0][:500], code="invalid_drift") from None
        return self._json(200, state)

    # -- completions

    def _completion(self, chat: bool, body: bytes, deployment: str | None) -> None:
        key = self._api_key_header()
        refusal = self.sim._check_key(key)
        if refusal:
            raise _BadRequest(401, refusal, code="invalid_api_key")
        data = self._parse_json(body)
        if not isinstance(data, dict):
            raise _BadRequest(400, "the request body must be a JSON object")
        messages = _messages(data) if chat else _prompt_messages(data)
        temperature = _number_param(data, "temperature")
        max_tokens = _number_param(data, "max_completion_tokens") or _number_param(
            data, "max_tokens"
        )
        n = int(_number_param(data, "n") or 1)
        if not 1 <= n <= 128:
            raise _BadRequest(400, "n must be between 1 and 128", code="invalid_value")
        text = prompt_text(messages)

        fault = self.sim.faults.take(text)
        if fault is not None:
            self.sim.stats.fault(fault.kind)
            if fault.kind == "401":  # deliberately careless: the body repeats the key it refuses
                return self._error(
                    401,
                    f"Incorrect API key provided: {key}. (fault injected by {SIMULATOR_NAME})",
                    code="invalid_api_key",
                )
            if fault.kind == "429":
                seconds = fault.retry_after
                return self._error(
                    429,
                    f"Rate limit reached (fault injected by {SIMULATOR_NAME}). Retry after {seconds:g} seconds.",
                    err_type="requests",
                    code="rate_limit_exceeded",
                    headers={
                        "Retry-After": f"{seconds:g}",
                        "retry-after-ms": str(int(seconds * 1000)),
                    },
                )
            if fault.kind == "500":
                return self._error(
                    500,
                    f"The server had an error (fault injected by {SIMULATOR_NAME}).",
                    err_type="server_error",
                )
            self.sim._sleep(fault.seconds)  # "timeout": answer late, normally

        headers = {}
        if self.sim.quota.enabled:  # charged on arrival, by estimate, like Azure
            deployment = deployment or str(data.get("model") or "default")
            charge = estimated_tokens(count_tokens(text), max_tokens, n)
            decision = self.sim.quota.decide(deployment, charge)
            headers.update(decision.headers())
            if decision.admitted:
                self.sim.stats.charged(charge)
            if not decision.admitted:
                self.sim.stats.throttled()
                wait_ms = headers["retry-after-ms"]
                return self._error(
                    429,
                    f"Rate limit of simulated deployment {deployment!r} exceeded "
                    f"({self.sim.quota.spec.rpm} RPM / {self.sim.quota.spec.tpm} TPM quota of the "
                    f"{SIMULATOR_NAME}). Retry after {wait_ms} ms.",
                    err_type="requests", code="429", headers=headers)

        answer = self.sim.rules.answer(messages, temperature, self.sim.spread)
        digest = request_digest(messages)
        self.sim._sleep(self.sim.latency_seconds(messages))
        content, finish = answer.content, "stop"
        if max_tokens is not None and count_tokens(content) > max_tokens:
            content, finish = content[: max(0, int(max_tokens)) * 4], "length"
        prompt_tokens = count_tokens(text)
        completion_tokens = count_tokens(content) * n
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        self.sim.stats.answered(answer.rule, prompt_tokens, completion_tokens)
        number = self.sim.stats.requests
        prefix = "chatcmpl" if chat else "cmpl"
        ident = f"{prefix}-sim-{number}-{digest.hex()[:12]}"
        headers["x-genaiops-simulator-rule"] = answer.rule or "<default>"
        if data.get("stream") is True:
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            return self._stream(
                chat, ident, content, finish, n, usage if include_usage else None, headers
            )
        base = {
            "id": ident,
            "created": int(time.time()),
            "model": self.sim.model,
            "system_fingerprint": SIMULATOR_NAME,
        }
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ]
            payload = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
        else:
            choices = [
                {"index": i, "text": content, "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ]
            payload = {**base, "object": "text_completion", "choices": choices, "usage": usage}
        self._json(200, payload, headers)
        return None

    def _api_key_header(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            return auth[7:].strip()
        return self.headers.get("api-key", "").strip() or None

    def _stream(self, chat, ident, content, finish, n, usage, headers) -> None:
        base = {
            "id": ident,
            "created": int(time.time()),
            "model": self.sim.model,
            "system_fingerprint": SIMULATOR_NAME,
        }
        obj = "chat.completion.chunk" if chat else "text_completion"
        pieces = re.findall(r"\s*\S+\s*", content) or [content]
        events = []
        for i in range(n):
            if chat:
                events.append(
                    {
                        **base,
                        "object": obj,
                        "choices": [
                            {
                                "index": i,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            for piece in pieces:
                delta = {"delta": {"content": piece}} if chat else {"text": piece}
                events.append(
                    {
                        **base,
                        "object": obj,
                        "choices": [{"index": i, **delta, "finish_reason": None}],
                    }
                )
            last = {"delta": {}} if chat else {"text": ""}
            events.append(
                {**base, "object": obj, "choices": [{"index": i, **last, "finish_reason": finish}]}
            )
        if usage is not None:
            events.append({**base, "object": obj, "choices": [], "usage": usage})
        self._status = 200
        self._count_status(200)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            for event in events:
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # -- responses

    def _parse_json(self, body: bytes):
        if not body:
            raise _BadRequest(400, "empty request body; send JSON")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(400, f"the request body is not valid JSON: {exc}") from None

    def _count_status(self, status: int) -> None:
        """Count a completion's status before its response leaves, so a client that has the
        response always sees it in the stats."""
        if getattr(self, "_counting", False):
            self._counting = False
            self.sim.stats.status(status)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self._status = status
        self._count_status(status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # client gave up (e.g. after a timeout fault) or the server is stopping
            self.close_connection = True

    def _error(
        self, status, message, *, err_type="invalid_request_error", code=None, headers=None
    ) -> None:
        """An error in the OpenAI shape, which the openai client turns into the matching exception."""
        self._json(
            status,
            {"error": {"message": message, "type": err_type, "param": None, "code": code}},
            headers,
        )


def _messages(data: dict) -> list:
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest(400, "'messages' must be a non-empty list", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest(
                400, f"messages[{i}] must be an object with a 'role'", code="invalid_value"
            )
    return messages


def _prompt_messages(data: dict) -> list:
    prompt = data.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        prompt = "\n".join(prompt)
    if not isinstance(prompt, str):
        raise _BadRequest(
            400, "'prompt' must be a string or a list of strings", code="invalid_value"
        )
    return [{"role": "user", "content": prompt}]


def _number_param(data: dict, name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(400, f"'{name}' must be a number", code="invalid_value")
    return float(value)
