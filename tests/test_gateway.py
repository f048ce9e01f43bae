"""The LLM gateway and its scheduler, against the bundled simulator enforcing an Azure-like quota.

Correctness, not speed: every request gets exactly one answer, retries stay within their bounds
(attempts and total time), quotas are kept or learned, pools are served fairly, keys never leak.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from genaiops.gateway import LLMGateway, Quota, RetryBounds, SchedulerSettings
from genaiops.gateway.limits import QuotaLearner, TokenBucket
from genaiops.gateway.scheduler import QueueDeadline, Upstream
from genaiops.gateway.wire import estimated_tokens, retry_after_seconds
from genaiops.simulator import SimulatorServer
from genaiops.simulator.quota import QuotaBook, QuotaSpec

CANARY = "canary-sk-gw-5d1e"
AZURE_PATH = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-06-01"


def ask(client: httpx.Client, url: str, text: str = "hello", max_tokens: int = 20) -> httpx.Response:
    return client.post(url + AZURE_PATH, headers={"api-key": CANARY},
                       json={"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})


@pytest.fixture
def sim():
    with SimulatorServer() as server:
        yield server


QUICK = RetryBounds(5, 0.01, 30)


def gateway(sim, bounds=QUICK, quota=None, **settings) -> LLMGateway:
    gw = LLMGateway(bounds, SchedulerSettings(**settings)).start()
    gw.route("llm", sim.url, quota)
    return gw


# -- the simulator's quota ------------------------------------------------------------------------

def test_simulated_quota_refuses_over_the_window_with_retry_after_and_remaining_headers():
    book = QuotaBook(QuotaSpec(rpm=600, tpm=6000))  # 10 requests/s, 1000 tokens per 10 s
    decisions = [book.decide("d", 50, now=100.0) for _ in range(11)]
    assert [d.admitted for d in decisions] == [True] * 10 + [False]
    refused = decisions[-1]
    assert refused.retry_after_s == pytest.approx(1.0)  # the oldest leaves the 1 s window
    assert refused.headers()["retry-after-ms"] == "1000"
    assert decisions[9].remaining_requests == 590 and decisions[9].remaining_tokens == 5500
    assert book.decide("other", 50, now=100.0).admitted  # each deployment has its own quota
    assert book.decide("d", 50, now=101.01).admitted  # the request window moved on
    assert not book.decide("d", 500, now=101.02).admitted  # but 1050 estimated tokens > 1000 / 10 s


def test_simulator_answers_429_from_its_quota_over_http(sim):
    with SimulatorServer(quota={"rpm": 120}) as limited, httpx.Client() as client:  # 2 per second
        codes = [ask(client, limited.url).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = ask(client, limited.url)
        assert int(refused.headers["retry-after-ms"]) > 0
        assert "x-ratelimit-remaining-requests" in refused.headers
        assert limited.stats.snapshot()["throttled"] == 2


# -- scheduler units ------------------------------------------------------------------------------

def test_token_bucket_paces_big_requests_without_starving_them():
    bucket = TokenBucket(rate=100.0, capacity=10.0, now=0.0)
    assert bucket.wait(50, 0.0) == 0  # a request above capacity goes when the bucket is full...
    bucket.take(50, 0.0)
    assert bucket.wait(50, 0.0) == pytest.approx(0.5)  # ...and leaves it in debt: (10 + 40) / 100


def test_quota_is_learned_from_remaining_headers():
    learner = QuotaLearner()
    ours = learner.sent(0.0, 100)
    assert learner.observe({"x-ratelimit-remaining-requests": "599",
                            "x-ratelimit-remaining-tokens": "59900"}, ours)
    assert (learner.rpm, learner.tpm) == (600, 60000)
    assert learner.observe({"x-ratelimit-limit-requests": "900"}, learner.sent(1.0, 10))
    assert learner.rpm == 900  # an explicit limit header is the quota itself


def test_aimd_halves_on_429_pauses_for_retry_after_and_grows_on_success():
    upstream = Upstream(("u", "d"), None, SchedulerSettings(initial_concurrency=8))
    grants = [upstream.acquire("flow", 10, time.monotonic() + 5) for _ in range(8)]
    upstream.throttled(grants[0], 0.3, {})
    limit = upstream.snapshot()["pools"]["flow"]["limit"]
    assert limit == 4.0
    upstream.throttled(grants[1], 0.3, {})  # the same burst of 429s: no second halving
    assert upstream.snapshot()["pools"]["flow"]["limit"] == 4.0
    started = time.monotonic()
    for grant in grants[2:]:
        upstream.succeeded(grant, {})
    upstream.acquire("flow", 10, time.monotonic() + 5)
    assert time.monotonic() - started >= 0.25  # nothing was sent before the retry-after ended
    assert upstream.snapshot()["pools"]["flow"]["limit"] > 4.0


def test_queue_deadline_is_kept():
    upstream = Upstream(("u", "d"), Quota(rpm=60), SchedulerSettings(utilization=1.0))  # 1 per s
    upstream.acquire("flow", 1, time.monotonic() + 1)
    started = time.monotonic()
    with pytest.raises(QueueDeadline):
        upstream.acquire("flow", 1, time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.5


def test_pools_take_turns_so_a_flood_cannot_starve_the_judges():
    upstream = Upstream(("u", "d"), Quota(rpm=600), SchedulerSettings(utilization=1.0, burst_sec=0.0))
    first = upstream.acquire("flow", 1, time.monotonic() + 5)
    upstream.throttled(first, 0.6, {})  # everyone waits for the pause to end
    order: list[str] = []
    lock = threading.Lock()

    def call(pool: str) -> None:
        grant = upstream.acquire(pool, 1, time.monotonic() + 30)
        with lock:
            order.append(pool)
        upstream.succeeded(grant, {})

    threads = [threading.Thread(target=call, args=(pool,)) for pool in ["flow"] * 5 + ["evaluators"] * 2]
    for thread in threads:  # the flood queues first
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(30)
    # paced at 10/s after the pause: the pool served least recently goes first, then they alternate
    assert order == ["evaluators", "flow", "evaluators", "flow", "flow", "flow", "flow"]


def test_estimates_and_retry_after_parsing():
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert estimated_tokens(body) == 100 + 4 + 50
    assert estimated_tokens({"messages": [{"role": "user", "content": "hi"}]}) == 1 + 4 + 256
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({}) is None


# -- through HTTP -----------------------------------------------------------------------------------

def test_429_storm_loses_and_duplicates_nothing(sim):
    sim.faults.add(kind="429", rate=0.5, retry_after=0.02)  # every other request, forever
    gw = gateway(sim, RetryBounds(8, 0.01, 30))
    try:
        with ThreadPoolExecutor(12) as pool, httpx.Client() as client:
            texts = [f"question {i}" for i in range(60)]
            answers = list(pool.map(lambda t: ask(client, gw.url_for("flow", "llm"), t), texts))
    finally:
        gw.stop()
    assert [a.status_code for a in answers] == [200] * 60
    assert answers[0].headers["server"].startswith("genaiops-simulator")  # relayed as it came
    echoed = [a.json()["choices"][0]["message"]["content"] for a in answers]
    assert sorted(echoed) == sorted(set(echoed)) and len(echoed) == 60  # one answer each, no mix-up
    stats = sim.stats.snapshot()
    assert stats["by_status"]["200"] == 60  # no request reached the model twice
    assert stats["by_status"]["429"] == stats["requests"] - 60
    assert gw.stats.snapshot()["outcomes"]["throttled"] == stats["by_status"]["429"]


def test_attempts_are_bounded_and_the_answer_stops_sdk_retries(sim):
    sim.faults.add(kind="500", count=None)
    gw = gateway(sim, RetryBounds(3, 0.01, 30))
    try:
        with httpx.Client() as client:
            answer = ask(client, gw.url_for("flow", "llm"))
    finally:
        gw.stop()
    assert answer.status_code == 500
    assert sim.stats.requests == 3
    assert answer.headers["x-should-retry"] == "false"
    assert "retry-after" not in answer.headers and "retry-after-ms" not in answer.headers
    message = answer.json()["error"]["message"]
    assert "LLM gateway gave up after 3 attempt(s) (3 failed, 0 throttled)" in message
    assert "upstream answered 500" in message


def test_throttled_attempts_are_bounded(sim):
    sim.faults.add(kind="429", count=None, retry_after=0.01)
    gw = gateway(sim, RetryBounds(2, 0.01, 30, max_throttled=4))
    try:
        with httpx.Client() as client:
            answer = ask(client, gw.url_for("flow", "llm"))
    finally:
        gw.stop()
    assert answer.status_code == 429 and sim.stats.requests == 4  # 429s do not spend max_attempts
    assert "(0 failed, 4 throttled)" in answer.json()["error"]["message"]


def test_total_time_is_bounded(sim):
    sim.faults.add(kind="429", count=None, retry_after=0.4)
    gw = gateway(sim, RetryBounds(100, 0.01, 1.0, max_throttled=100))
    started = time.monotonic()
    try:
        with httpx.Client() as client:
            answer = ask(client, gw.url_for("flow", "llm"))
    finally:
        gw.stop()
    elapsed = time.monotonic() - started
    assert answer.status_code == 429 and answer.headers["x-should-retry"] == "false"
    assert elapsed < 1.0 + 1.5  # the bound, plus one answer in flight (slack for a loaded machine)
    assert 2 <= sim.stats.requests <= 3  # 0 s, then after each 0.4 s pause
    assert "max_total_sec 1" in answer.json()["error"]["message"]


def test_configured_quota_is_kept_without_429s(sim):
    with SimulatorServer(quota={"rpm": 1200, "tpm": 120000}) as limited:  # 20 requests/s
        gw = gateway(limited, quota=Quota(rpm=1200, tpm=120000))
        try:
            with ThreadPoolExecutor(16) as pool, httpx.Client() as client:
                started = time.monotonic()
                answers = list(pool.map(lambda i: ask(client, gw.url_for("flow", "llm"), f"q{i}"),
                                        range(60)))
                elapsed = time.monotonic() - started
        finally:
            gw.stop()
        assert all(a.status_code == 200 for a in answers)
        assert limited.stats.snapshot()["throttled"] <= 1
        assert elapsed >= (60 - 2) / 20 * 0.9  # paced at the quota, not faster


def test_unknown_quota_is_learned_and_then_kept(sim):
    with SimulatorServer(quota={"rpm": 600}) as limited:  # 10 requests/s, nothing configured
        gw = gateway(limited)
        try:
            with ThreadPoolExecutor(16) as pool, httpx.Client() as client:
                answers = list(pool.map(lambda i: ask(client, gw.url_for("flow", "llm"), f"q{i}"),
                                        range(50)))
        finally:
            gw.stop()
        assert all(a.status_code == 200 for a in answers)
        quota = next(iter(gw.snapshot()["upstreams"].values()))["quota"]
        assert quota["source"] == "learned" and 600 <= quota["rpm"] <= 620
        assert limited.stats.snapshot()["throttled"] <= 4  # only before the first answers


def test_streaming_answers_pass_through(sim):
    gw = gateway(sim)
    try:
        with httpx.Client() as client:
            answer = client.post(gw.url_for("flow", "llm") + AZURE_PATH, headers={"api-key": CANARY},
                                 json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    finally:
        gw.stop()
    assert answer.status_code == 200
    assert answer.text.rstrip().endswith("data: [DONE]")


def test_unknown_connection_is_a_404_naming_it(sim):
    gw = gateway(sim)
    try:
        answer = httpx.post(gw.url_for("flow", "nope") + AZURE_PATH, json={})
    finally:
        gw.stop()
    assert answer.status_code == 404 and "nope" in answer.json()["error"]["message"]


def test_the_key_never_reaches_stats_logs_or_errors(sim):
    lines: list[str] = []
    sim.faults.add(kind="500", count=None)
    gw = LLMGateway(RetryBounds(2, 0.01, 5), log=lines.append).start()
    gw.route("llm", sim.url)
    try:
        with httpx.Client() as client:
            answer = ask(client, gw.url_for("flow", "llm"))
    finally:
        gw.stop()
    assert CANARY not in answer.text + str(dict(answer.headers)) + str(gw.snapshot()) + "".join(lines)
