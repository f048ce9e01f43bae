"""The LLM gateway against hostile requests (flow code is untrusted) and hostile upstreams (the
LLM endpoint may misbehave): every body it reads is bounded, every call ends by its deadline,
absurd estimates are refused and unused ones refunded, and bad input gets a JSON 4xx, never a
dropped connection or a traceback.

Upstreams are the bundled simulator (fault injection) or a tiny loopback server written here for
what the simulator cannot do (hang, drip, send hundreds of MB). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from genaiops.gateway import LLMGateway, Quota, RetryBounds
from genaiops.gateway.limits import QuotaLearner
from genaiops.simulator import SimulatorServer

AZURE_PATH = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-06-01"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sim():
    with SimulatorServer() as server:
        yield server


class LoopbackUpstream:
    """A raw HTTP upstream on 127.0.0.1: reads each request, then runs `behave(conn, stop)`."""

    def __init__(self, behave):
        self.behave, self.stop = behave, threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536) or b"\r\n\r\n"
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += conn.recv(65536)
            self.behave(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> LoopbackUpstream:
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def huge(status: int, size: int, chunked: bool = False, content_type: str = "application/json"):
    """An answer of `size` bytes, sent from one reused buffer (the test allocates nothing big)."""
    def behave(conn, stop):
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n%s\r\n\r\n"
                     % (status, content_type.encode(), framing))
        block, left = b"x" * (1024 * 1024), size
        while left > 0 and not stop.is_set():
            piece = block[:min(left, len(block))]
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            left -= len(piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    return behave


def hang(conn, stop):
    stop.wait(60)


def drip(head: bytes, unit: bytes):
    """Sends `head`, then `unit` every 0.2 s: each read is quick, the answer never ends."""
    def behave(conn, stop):
        conn.sendall(head)
        while not stop.wait(0.2):
            conn.sendall(unit)
    return behave


ONE_ATTEMPT = RetryBounds(1, 0.01, 30)


def gateway(upstream_url: str, bounds=ONE_ATTEMPT, quota=None, log=None,
            **limits) -> LLMGateway:
    gw = LLMGateway(bounds, log=log, **limits).start()
    gw.route("llm", upstream_url, quota)
    return gw


def post(gw: LLMGateway, body, timeout: float = 20.0, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gw.url_for("flow", "llm") + AZURE_PATH, content=content, timeout=timeout,
                      headers={"Content-Type": "application/json", "api-key": "k"}, **kwargs)


def upstream_state(gw: LLMGateway) -> dict:
    return next(iter(gw.snapshot()["upstreams"].values()))


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- memory: every body read is bounded ------------------------------------------------------------

def test_huge_error_bodies_are_read_only_as_far_as_their_message():
    """Four concurrent 500s with 100 MB bodies once cost the gateway 4 x 100 MB (and more)."""
    peak, done = [resident_bytes()], threading.Event()
    baseline = peak[0]

    def watch():
        while not done.wait(0.01):
            peak.append(resident_bytes())

    with LoopbackUpstream(huge(500, 100 * 1024 * 1024)) as upstream:
        gw = gateway(upstream.url)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: post(gw, {"messages": MESSAGES}), range(4)))
        finally:
            done.set()
            watcher.join()
            gw.stop()
    assert [a.status_code for a in answers] == [500] * 4
    assert "its body was read only 65,536 bytes far" in answers[0].json()["error"]["message"]
    assert max(peak) - baseline < 64 * 1024 * 1024


@pytest.mark.parametrize("chunked", [False, True])
def test_an_answer_over_the_limit_is_a_502_naming_it(chunked):
    with LoopbackUpstream(huge(200, 3 * 1024 * 1024, chunked)) as upstream:
        gw = gateway(upstream.url, max_answer_bytes=1024 * 1024)
        try:
            answer = post(gw, {"messages": MESSAGES})
            state = upstream_state(gw)
        finally:
            gw.stop()
    assert answer.status_code == 502 and answer.headers["x-should-retry"] == "false"
    message = answer.json()["error"]["message"]
    assert "over the gateway's limit of 1,048,576 bytes" in message
    assert ("announces 3,145,728 bytes" in message) != chunked
    assert state["pools"]["flow"]["in_flight"] == 0


def test_a_stream_over_the_limit_ends_with_an_error_event():
    with LoopbackUpstream(huge(200, 3 * 1024 * 1024, True, "text/event-stream")) as upstream:
        gw = gateway(upstream.url, max_answer_bytes=1024 * 1024)
        try:
            answer = post(gw, {"messages": MESSAGES, "stream": True})
        finally:
            gw.stop()
    assert answer.status_code == 200 and len(answer.content) < 1024 * 1024 + 4096
    event = json.loads(answer.text.rstrip().rsplit("data: ", 1)[1])
    assert "passed the gateway's limit of 1,048,576 bytes" in event["error"]["message"]


def test_a_request_over_the_limit_is_a_413_naming_it(sim):
    gw = gateway(sim.url, max_request_bytes=1024 * 1024)
    try:
        big = post(gw, {"messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]})
        fine = post(gw, {"messages": MESSAGES})
    finally:
        gw.stop()
    assert big.status_code == 413
    assert "over the gateway's limit of 1,048,576 bytes" in big.json()["error"]["message"]
    assert fine.status_code == 200 and sim.stats.requests == 1


# -- run denial: estimates bounded and refunded, every call ends by its deadline ------------------

def test_absurd_estimates_are_refused_with_the_field_named(sim):
    gw = gateway(sim.url, RetryBounds(2, 0.01, 3), Quota(tpm=60_000))
    try:
        refused = [post(gw, {"messages": MESSAGES, **extra}) for extra in
                   ({"max_tokens": 1e300}, {"n": 1_000_000}, {"max_completion_tokens": -5},
                    {"max_tokens": "lots"}, {"n": 0}, {"model": ["a"]})]
        started = time.monotonic()
        fine = post(gw, {"messages": MESSAGES, "max_tokens": 20})
        waited = time.monotonic() - started
    finally:
        gw.stop()
    assert [r.status_code for r in refused] == [400] * 6
    params = [r.json()["error"]["param"] for r in refused]
    assert params == ["max_tokens", "n", "max_completion_tokens", "max_tokens", "n", "model"]
    assert "max_tokens must be a whole number from 0 to 1,000,000, not 1e+300" in \
        refused[0].json()["error"]["message"]
    assert sim.stats.requests == 1  # none of them reached the model
    assert fine.status_code == 200 and waited < 2.0


@pytest.mark.parametrize("fault", ["401", "500"])
def test_refused_and_failed_calls_give_their_estimate_back(sim, fault):
    sim.faults.add(kind=fault, count=1)
    gw = gateway(sim.url, RetryBounds(1, 0.01, 3), Quota(tpm=6000))  # 95 tokens/s planned
    try:
        first = post(gw, {"messages": MESSAGES, "max_tokens": 100_000})  # charged 5,700: 60 s
        debt = upstream_state(gw)["tpm_debt_s"]
        second = post(gw, {"messages": MESSAGES, "max_tokens": 20})
    finally:
        gw.stop()
    assert first.status_code == int(fault)
    assert debt == 0 and second.status_code == 200


def test_an_answer_keeps_its_charge_as_the_upstream_counts_it(sim):
    """Azure OpenAI counts a request's estimate (prompt + max_tokens), not its usage, against the
    minute: refunding the unused part would send faster than the upstream allows."""
    gw = gateway(sim.url, RetryBounds(1, 0.01, 3), Quota(tpm=6000))
    try:
        first = post(gw, {"messages": MESSAGES, "max_tokens": 1000})
        debt = upstream_state(gw)["tpm_debt_s"]
    finally:
        gw.stop()
    used = first.json()["usage"]["total_tokens"]
    assert first.status_code == 200 and used < 100
    assert debt > 900 / 95  # the estimate, not the usage, is owed


def test_one_request_is_charged_at_most_a_minute_of_quota(sim):
    gw = gateway(sim.url, RetryBounds(1, 0.01, 3), Quota(tpm=6000))
    try:  # a stream without usage keeps its charge: capped at 5,700 tokens, 60 s at 95/s
        answer = post(gw, {"messages": MESSAGES, "max_tokens": 1_000_000, "stream": True})
        debt = upstream_state(gw)["tpm_debt_s"]
    finally:
        gw.stop()
    assert answer.status_code == 200
    assert 50 < debt <= 60.0  # uncapped: 1,000,005 / 95 = 2.9 hours


@pytest.mark.parametrize("behave", [
    hang,
    drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", b"{"),
    drip(b"HTTP/1.1 200 OK\r\n", b"x-drip: 1\r\n"),
], ids=["hung", "body-drip", "header-drip"])
def test_a_call_ends_at_its_deadline_whatever_the_upstream_does(behave):
    with LoopbackUpstream(behave) as upstream:
        gw = gateway(upstream.url, RetryBounds(3, 0.01, 1.5))
        started = time.monotonic()
        try:
            answer = post(gw, {"messages": MESSAGES}, timeout=15)
            elapsed = time.monotonic() - started
            state = upstream_state(gw)
        finally:
            gw.stop()
    assert answer.status_code == 504 and answer.headers["x-should-retry"] == "false"
    message = answer.json()["error"]["message"]
    assert "max_total_sec 1.5" in message and "the call's deadline passed while" in message
    assert elapsed < 1.5 + 1.5  # the bound, plus slack for a loaded machine
    assert state["pools"]["flow"]["in_flight"] == 0  # the pool slot is free


def test_a_dripping_stream_ends_at_the_deadline_with_an_error_event():
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    with LoopbackUpstream(drip(head, b"a\r\ndata: {}\n\n\r\n")) as upstream:
        gw = gateway(upstream.url, RetryBounds(3, 0.01, 1.5))
        started = time.monotonic()
        try:
            answer = post(gw, {"messages": MESSAGES, "stream": True}, timeout=15)
            elapsed = time.monotonic() - started
            state = upstream_state(gw)
        finally:
            gw.stop()
    assert answer.status_code == 200 and answer.text.count("data: {}") >= 3
    event = json.loads(answer.text.rstrip().rsplit("data: ", 1)[1])
    assert "max_total_sec 1.5 s) passed" in event["error"]["message"]
    assert elapsed < 1.5 + 1.5 and state["pools"]["flow"]["in_flight"] == 0


def test_an_upstream_cannot_pause_or_throttle_the_gateway_for_ever(sim):
    """A Retry-After of days pauses at most a minute; an `inf`, `nan` or 1e-300 quota is no quota."""
    sim.faults.add(kind="429", count=1, retry_after=1e9)
    gw = gateway(sim.url, RetryBounds(1, 0.01, 1, max_throttled=1))
    try:
        answer = post(gw, {"messages": MESSAGES})
        paused = upstream_state(gw)["paused_for_s"]
    finally:
        gw.stop()
    assert answer.status_code == 429 and 0 < paused <= 60
    learner = QuotaLearner()
    for rpm, tpm in (("inf", "nan"), ("1e-300", "0.5"), ("-5", "1e999")):
        assert not learner.observe({"x-ratelimit-limit-requests": rpm,
                                    "x-ratelimit-limit-tokens": tpm}, learner.sent(0.0, 10))
    assert learner.quota.known is False


# -- crashes: bad input is a 400 naming the problem ------------------------------------------------

@pytest.mark.parametrize(("body", "named"), [
    (b'{"messages": [], "max_tokens": NaN}', "max_tokens must be a whole number"),
    (b'{"messages": [], "max_tokens": Infinity}', "max_tokens must be a whole number"),
    (b'{"messages": [], "temperature": -Infinity}', "temperature is not a finite number"),
    (b'{"messages": [], "temperature": 1e999}', "temperature is not a finite number"),
    (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
    (b'{"messages": ' + b"[" * 500 + b"]" * 500 + b"}", "nested deeper than 128 levels"),
    (b'{"messages": [}', "not valid JSON"),
], ids=["nan", "inf", "neg-inf", "overflow", "deep-100000", "deep-500", "bad-json"])
def test_bad_json_is_a_400_naming_the_problem(sim, body, named):
    lines: list[str] = []
    gw = gateway(sim.url, log=lines.append)
    try:
        answer = post(gw, body)
    finally:
        gw.stop()
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/json"
    assert named in answer.json()["error"]["message"]
    assert lines == [] and sim.stats.requests == 0


# -- fuzz: 1,200 malformed requests, each answered -------------------------------------------------

def _cases(rng: random.Random, route: str) -> list[tuple[str, bytes, bool]]:
    """(what, raw request, must be 4xx) - must-be-4xx when the gateway itself has to refuse it;
    the others reach the simulator, which may accept them, but never get a 5xx."""
    good = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    odd_values = [None, True, -1, 0, 1.5, "x", [], {}, [[[]]], 10**30, -1e308, "\ud800", "😀" * 3]
    odd_numbers = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" * 5000]

    def request(method=b"POST", path=None, body=b"", headers=(), length=None):
        path = route.encode() if path is None else path
        length = len(body) if length is None else length
        lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: 127.0.0.1",
                 b"Content-Type: application/json", *headers]
        if length != "none":
            lines.append(b"Content-Length: %s" % (str(length).encode()
                                                    if not isinstance(length, bytes) else length))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def bad_json():
        text = json.dumps(good).encode()
        cut = rng.randrange(1, len(text) - 1)
        choice = rng.randrange(5)
        return [text[:cut], text + b"}", text.replace(b":", b"", 1), bytes(rng.randrange(256)
                for _ in range(rng.randrange(1, 200))), b"{" + text][choice]

    def wrong_type():
        field = rng.choice(["max_tokens", "max_completion_tokens", "n", "model"])
        value = rng.choice([v for v in odd_values if v is not None and (v != 0 or field == "n")])
        if field in ("max_tokens", "max_completion_tokens") and isinstance(value, int) \
                and not isinstance(value, bool) and 0 <= value <= 1_000_000:
            value = -1
        if field == "model" and isinstance(value, str) and value != "\ud800":
            value = 42
        return json.dumps({**good, field: value}).encode()

    def odd_number():
        field = rng.choice(["max_tokens", "n", "temperature", "max_completion_tokens"])
        return b'{"messages": [], "%s": %s}' % (field.encode(), rng.choice(odd_numbers))

    def deep():
        depth = rng.choice([129, 200, 1000, 5000, 50_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return b'{"messages": ' + opener * depth + b"1" + closer * depth + b"}"

    def unicode_mess():
        return rng.choice([
            json.dumps({**good, "model": "\udc80" + "x"}).encode(),  # a lone surrogate as model
            b'{"messages": [{"role": "user", "content": "\xed\xa0\x80\xff"}]}',  # not UTF-8
            b'{"messages": [], "model": "\xc0\xaf"}',  # an overlong encoding
        ])

    cases: list[tuple[str, bytes, bool]] = []
    makers = [("bad-json", bad_json), ("wrong-type", wrong_type), ("odd-number", odd_number),
              ("deep", deep), ("unicode", unicode_mess)]
    for _ in range(700):
        what, make = rng.choice(makers)
        cases.append((what, request(body=make()), True))
    for _ in range(150):  # wrong Content-Length: longer than the body (truncated), absurd, garbage
        body = json.dumps(good).encode()
        length = rng.choice([len(body) + rng.randrange(1, 100), b"-1", b"abc", b"1e3",
                             b"99999999999999999999", b"0x10", b"", b"12, 13"])
        cases.append(("content-length", request(body=body, length=length), True))
    for _ in range(100):  # unknown paths (valid HTTP)
        path = rng.choice([b"/", b"/pools", b"/pools/flow/nope/x", b"/pools/flow/llm",
                           b"/%ff%fe", b"/pools/../../etc/passwd", b"/" + b"a" * 5000,
                           "/pools/flow/\u00e9/x".encode("utf-8")])
        cases.append(("path", request(method=b"GET", path=path), True))
    for _ in range(100):  # unknown methods, with and without a body
        method = rng.choice([b"PATCH", b"HEAD", b"OPTIONS", b"TRACE", b"BREW", b"CONNECT"])
        cases.append(("method", request(method=method, body=rng.choice([b"", b'{"a": 1}'])), True))
    for _ in range(100):  # broken request lines and headers
        raw = rng.choice([b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"POST / HTTP/1.1 extra\r\n\r\n",
                          b"POST " + route.encode() + b" HTTP/1.1\r\nbad header line\r\n\r\n",
                          b"POST " + route.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked"
                          b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                          b"GET /x\r\n\r\n",
                          request(headers=[b"X-Bad: a\x01b"], body=b"{}"),
                          request(headers=[b"X-Fold: a", b" folded"], body=b"{}"),
                          request(headers=[b"X-\xff: 1"], body=b"{}"),
                          request(headers=[b"Content-Length: 3"], body=b"{}")])
        cases.append(("request-line", raw, True))
    for _ in range(20):  # a byte order mark: read as UTF-8, forwarded
        cases.append(("bom", request(body=b"\xef\xbb\xbf" + json.dumps(good).encode()), False))
    for _ in range(100):  # valid JSON the gateway forwards: the simulator decides, never a 5xx
        body = {**good, "messages": rng.choice([[], "hi", [1], [{"role": "user"}],
                                                 [{"role": "user", "content": "\ud800"}],
                                                 [{"role": "x", "content": {"a": [1]}}]]),
                "temperature": rng.choice(odd_values[1:])}
        cases.append(("forwarded", request(body=json.dumps(body).encode()), False))
    return cases


def _exchange(port: int, raw: bytes) -> bytes:
    """Send `raw`, half-close (a truncated body ends here), read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(raw)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway answered and closed before reading it all: read its answer
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_fuzz_malformed_requests_always_get_an_answer(sim, capfd):
    lines: list[str] = []
    gw = gateway(sim.url, RetryBounds(2, 0.01, 10), log=lines.append)
    route = "/pools/flow/llm" + AZURE_PATH
    cases = _cases(random.Random(20), route)
    port = int(gw.url.rsplit(":", 1)[1])
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda case: _exchange(port, case[1]), cases))
        good = post(gw, {"messages": MESSAGES, "max_tokens": 5})
    finally:
        gw.stop()
    elapsed = time.monotonic() - started
    assert len(cases) >= 1000 and elapsed < 30
    problems = []
    for (what, raw, refused), answer in zip(cases, answers, strict=True):
        status = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
        if status is None:
            problems.append(f"{what}: no HTTP answer to {raw[:80]!r}: {answer[:80]!r}")
            continue
        code = int(status.group(1))
        if code >= 500 or (refused and not 400 <= code < 500):
            problems.append(f"{what}: {code} for {raw[:80]!r}: {answer[-200:]!r}")
        elif code >= 400 and b"HEAD " not in raw[:5]:  # the first answer's body: a JSON error
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)\r\ncontent-length: (\d+)", head).group(1))
            assert "message" in json.loads(rest[:length])["error"], what
    assert problems == [], f"{len(problems)} bad answers, e.g.\n" + "\n".join(problems[:10])
    err = capfd.readouterr().err
    assert "Traceback" not in err and lines == []
    assert good.status_code == 200
