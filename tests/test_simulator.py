"""The LLM simulator over real loopback HTTP: the openai client, Azure shape, rules, faults, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from genaiops.cli import build_parser
from genaiops.cli.simulator import rules_path_from_args
from genaiops.errors import ConfigError, UsageError
from genaiops.simulator import (
    DEFAULT_PORT,
    SIMULATOR_NAME,
    SimulatorServer,
    count_tokens,
    load_rules,
    parse_rules,
)

KEY = "sk-test-very-secret-4242"

# The example of docs/architecture.md, verbatim: the format sample use cases will write.
DOC_RULES = textwrap.dedent(
    r"""
    default_reply: "I am a simulator and have no rule for this prompt."
    tables:                                  # lookup tables: first pattern matching the input wins
      ticket_category:
        - {pattern: "(?i)refund|invoice|charge|billing", value: billing}
        - {pattern: "(?i)password|login|2fa", value: account}
        - {pattern: ".*", value: other}
    rules:                                   # first rule whose `when` matches wins
      - name: careful
        when:
          prompt: "(?is)think step by step.*ticket:\\s*(?P<text>[^\\n]+)"  # regex searched in all messages joined by "\n"
          temperature_max: 0.5               # optional bounds on request parameters
        reply: "{table:ticket_category:text}"   # {group} = named regex group; {table:NAME:group} = lookup of that group
        accuracy: 0.95                       # optional: a deterministic (hash of the request) fraction 1-accuracy
                                             #   answers another value of the table instead
      - name: casual
        when: {prompt: "(?is)ticket:\\s*(?P<text>[^\\n]+)"}
        reply: "{table:ticket_category:text}"
        accuracy: 0.7
    """
)

CATEGORIES = {
    "billing": "I was charged twice, need a refund",
    "account": "cannot login, password reset",
    "other": "the app is slow",
}


def exact_rules(accuracy: float | None = None) -> dict:
    rule = {
        "name": "classify",
        "when": {"prompt": r"(?is)ticket:\s*(?P<text>[^\n]+)"},
        "reply": "{table:cat:text}",
    }
    if accuracy is not None:
        rule["accuracy"] = accuracy
    return {
        "default_reply": "no rule",
        "tables": {
            "cat": [
                {"pattern": "(?i)refund|charge", "value": "billing"},
                {"pattern": "(?i)password|login", "value": "account"},
                {"pattern": ".*", "value": "other"},
            ]
        },
        "rules": [rule],
    }


def http(method: str, url: str, body=None, headers=None, timeout=5.0):
    """(status, headers, parsed JSON body) of a raw request, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, hdrs = resp.read(), resp.status, resp.headers
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, err.headers
    return status, hdrs, json.loads(raw) if raw else None


def ask(client, content: str, **kw):
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **kw
    )


@pytest.fixture
def sim():
    with SimulatorServer(rules=exact_rules()) as server:
        yield server


@pytest.fixture
def client(sim):
    # The settings promptflow-tools uses for an OpenAIConnection (common.normalize_connection_config).
    with openai.OpenAI(
        base_url=sim.openai_base_url, api_key=KEY, max_retries=0, organization=None
    ) as c:
        yield c


# ---------------------------------------------------------------- wire protocol


def test_openai_client_gets_an_honestly_labelled_answer(sim, client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": "Ticket: I need a refund"},
        ],
        temperature=0.0,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "billing"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == SIMULATOR_NAME and completion.system_fingerprint == SIMULATOR_NAME
    assert "simulator" in raw.headers["server"] and "not a real model" in raw.headers["server"]
    assert raw.headers["x-genaiops-simulator-rule"] == "classify"


def test_azure_client_uses_deployment_route_and_api_key_header(sim):
    with openai.AzureOpenAI(
        azure_endpoint=sim.azure_endpoint, api_version="2024-06-01", api_key=KEY, max_retries=0
    ) as az:
        out = az.chat.completions.create(
            model="my-deployment",
            messages=[{"role": "user", "content": "Ticket: forgot my password"}],
        )
    assert out.choices[0].message.content == "account"
    status, _, body = http(
        "POST",
        sim.url + "/openai/deployments/d/chat/completions",
        {"messages": [{"role": "user", "content": "x"}]},
        {"api-key": KEY},
    )
    assert status == 400 and "api-version" in body["error"]["message"]


def test_plain_chat_route_and_legacy_completions(sim, client):
    status, _, body = http(
        "POST",
        sim.url + "/chat/completions",
        {"messages": [{"role": "user", "content": "Ticket: slow app"}]},
        {"Authorization": f"Bearer {KEY}"},
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == "other"
    text = client.completions.create(model="gpt-35-turbo-instruct", prompt="Ticket: refund now")
    assert text.object == "text_completion" and text.choices[0].text == "billing"


def test_missing_key_is_401_in_openai_shape(sim):
    status, _, body = http(
        "POST",
        sim.openai_base_url + "/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 401
    assert (
        body["error"]["code"] == "invalid_api_key"
        and body["error"]["type"] == "invalid_request_error"
    )
    assert sim.stats.snapshot()["by_status"] == {"401": 1}


def test_wrong_key_when_one_is_required_is_refused_without_echoing_it():
    with SimulatorServer(api_key="the-right-key") as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError) as info:
                ask(c, "hi")
            assert KEY not in str(info.value)
        with openai.OpenAI(
            base_url=server.openai_base_url, api_key="the-right-key", max_retries=0
        ) as c:
            assert ask(c, "hi").choices[0].message.content


def test_unknown_route_wrong_method_and_bad_json(sim):
    assert http("GET", sim.url + "/v1/nothing")[0] == 404
    assert http("GET", sim.openai_base_url + "/chat/completions")[0] == 405
    req = urllib.request.Request(
        sim.openai_base_url + "/chat/completions",
        data=b"{not json",
        method="POST",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert (
        info.value.code == 400
        and "not valid JSON" in json.loads(info.value.read())["error"]["message"]
    )


def test_streaming_matches_the_plain_answer(client):
    plain = ask(client, "Ticket: I was charged twice, refund me").choices[0].message.content
    chunks = list(
        ask(
            client,
            "Ticket: I was charged twice, refund me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain == "billing"
    assert (
        chunks[-1].usage.total_tokens
        == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )


def test_max_tokens_truncates_with_finish_reason_length():
    with (
        SimulatorServer(rules={"default_reply": "x" * 100}) as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c,
    ):
        out = ask(c, "hi", max_tokens=5)
    assert out.choices[0].message.content == "x" * 20
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 5


# ---------------------------------------------------------------- answers


def test_same_request_same_answer_and_echo_without_rules():
    with (
        SimulatorServer() as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c,
    ):
        first, second, other = (
            ask(c, "what is 2+2?"),
            ask(c, "what is 2+2?"),
            ask(c, "and 3+3?"),
        )
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    assert (
        "simulator" in first.choices[0].message.content
        and "what is 2+2?" in first.choices[0].message.content
    )
    assert other.choices[0].message.content != first.choices[0].message.content


def test_usage_is_ceil_chars_over_4_of_all_messages_and_reply(client):
    messages = [
        {"role": "system", "content": "abcd"},
        {"role": "user", "content": "Ticket: refund"},
    ]
    out = client.chat.completions.create(model="m", messages=messages)
    prompt_chars = len("abcd\nTicket: refund")  # contents joined by "\n": 19 chars
    assert out.usage.prompt_tokens == math.ceil(prompt_chars / 4) == 5
    assert out.usage.completion_tokens == math.ceil(len("billing") / 4) == 2
    assert out.usage.total_tokens == 7
    assert count_tokens("") == 1


def test_accuracy_fraction_is_deterministic_and_near_target(sim):
    sim.rules = parse_rules(exact_rules(accuracy=0.7))
    prompts = [
        (label, f"Ticket: {text} (case {i})")
        for i in range(34)
        for label, text in CATEGORIES.items()
    ][:100]
    with openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0) as c:
        answers = [ask(c, p).choices[0].message.content for _, p in prompts]
        again = [ask(c, p).choices[0].message.content for _, p in prompts[:20]]
    correct = sum(a == label for a, (label, _) in zip(answers, prompts)) / len(prompts)
    assert 0.55 <= correct <= 0.85, correct
    assert again == answers[:20]  # wrong answers are wrong every time
    assert set(answers) <= set(CATEGORIES)  # a wrong answer is another value of the table


@pytest.mark.parametrize("accuracy, expected", [(1.0, 1.0), (0.0, 0.0)])
def test_accuracy_extremes(accuracy, expected):
    rules = parse_rules(exact_rules(accuracy=accuracy))
    answers = [
        (label, rules.answer([{"role": "user", "content": f"Ticket: {text} #{i}"}]).content)
        for i in range(30)
        for label, text in CATEGORIES.items()
    ]
    assert sum(a == label for label, a in answers) / len(answers) == expected


def test_doc_example_format_and_temperature_bounds(tmp_path):
    path = tmp_path / "simulator.yaml"
    path.write_text(DOC_RULES)
    rules = load_rules(path)
    careful = [
        {"role": "system", "content": "Think step by step."},
        {"role": "user", "content": "Ticket: refund please"},
    ]
    assert rules.answer(careful, temperature=0.2).rule == "careful"
    assert rules.answer(careful, temperature=0.9).rule == "casual"  # above temperature_max
    assert rules.answer(careful).rule == "casual"  # no temperature = OpenAI's default 1.0
    assert (
        rules.answer([{"role": "user", "content": "hello"}]).content
        == "I am a simulator and have no rule for this prompt."
    )


def test_temperature_min_and_groups_over_http(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        textwrap.dedent(
            r"""
            rules:
              - name: hot
                when: {prompt: "name: (?P<who>\\w+)", temperature_min: 1.5}
                reply: 'WILD {who}! {"json": true} {{who}}'
              - name: cool
                when: {prompt: "name: (\\w+)"}
                reply: "hello {1}"
            """
        )
    )
    with SimulatorServer(rules_path=path) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c:
            hot = ask(c, "name: Ada", temperature=1.8).choices[0].message.content
            cool = ask(c, "name: Ada", temperature=0.1).choices[0].message.content
        by_rule = server.stats.snapshot()["by_rule"]
    assert hot == 'WILD Ada! {"json": true} {who}'
    assert cool == "hello Ada"
    assert by_rule == {"hot": 1, "cool": 1}


def test_table_miss_falls_through_to_next_rule():
    rules = parse_rules(
        {
            "tables": {"only_refund": [{"pattern": "refund", "value": "billing"}]},
            "rules": [
                {
                    "name": "strict",
                    "when": {"prompt": "(?P<t>.+)"},
                    "reply": "{table:only_refund:t}",
                },
                {"name": "fallback", "reply": "unsure"},
            ],
        }
    )
    assert rules.answer([{"role": "user", "content": "refund"}]).content == "billing"
    assert rules.answer([{"role": "user", "content": "hello"}]).rule == "fallback"


# ---------------------------------------------------------------- latency


def test_latency_is_concurrent():
    with SimulatorServer(latency_ms=200) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c:
            started = time.monotonic()
            ask(c, "warm up")
            single = time.monotonic() - started
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: ask(c, f"request {i}"), range(8)))
            parallel = time.monotonic() - started
        peak = server.stats.snapshot()["peak_in_flight"]
    assert single >= 0.19
    assert parallel < 0.8, parallel  # serial would be 1.6 s
    assert peak >= 4


def test_keepalive_requests_are_not_stalled_by_nagle(client):
    ask(client, "warm up")
    started = time.monotonic()
    for i in range(50):
        ask(client, f"q{i}")
    assert time.monotonic() - started < 1.0  # ~3 ms each; Nagle + delayed ACK made it ~45 ms


def test_jitter_is_deterministic_and_bounded():
    server = SimulatorServer(latency_ms=100, jitter_ms=50)
    delays = {i: server.latency_seconds([{"role": "user", "content": f"q{i}"}]) for i in range(20)}
    assert all(0.1 <= d < 0.15 for d in delays.values())
    assert len(set(delays.values())) > 1
    assert delays[3] == server.latency_seconds([{"role": "user", "content": "q3"}])


# ---------------------------------------------------------------- faults


def test_429_has_retry_after_and_count_is_consumed(sim, client):
    sim.faults.add(kind="429", count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            ask(client, "Ticket: refund")
        assert info.value.response.headers["retry-after"] == "3"
        assert info.value.response.headers["retry-after-ms"] == "3000"
    assert ask(client, "Ticket: refund").choices[0].message.content == "billing"
    snap = sim.stats.snapshot()
    assert snap["by_status"] == {"429": 2, "200": 1} and snap["faults_injected"] == {"429": 2}
    assert len(sim.faults) == 0


def test_500_fault_forever_until_cleared(sim, client):
    sim.faults.add("500")
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            ask(client, "hi")
    sim.faults.clear()
    assert ask(client, "hi").choices[0].message.content == "no rule"


def test_401_fault_echoes_the_presented_key_like_a_careless_endpoint(sim, client):
    sim.faults.add("401", count=1)
    with pytest.raises(openai.AuthenticationError) as info:
        ask(client, "hi")
    assert KEY in str(info.value) and info.value.status_code == 401
    assert ask(client, "hi").choices[0].message.content == "no rule"


def test_fault_match_only_hits_matching_prompts(sim, client):
    sim.faults.add("500", match="(?i)password")
    assert ask(client, "Ticket: refund").choices[0].message.content == "billing"
    with pytest.raises(openai.InternalServerError):
        ask(client, "Ticket: password")


def test_fault_rate_is_an_exact_deterministic_fraction(sim, client):
    sim.faults.add("429", rate=0.25, retry_after=0)
    outcomes = []
    for i in range(12):
        try:
            ask(client, f"q{i}")
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
    assert outcomes == ["ok", "ok", "ok", "429"] * 3


def test_timeout_fault_trips_the_client_timeout_and_stop_is_prompt():
    server = SimulatorServer().start()
    try:
        server.faults.add("timeout", count=1, seconds=5)
        with openai.OpenAI(
            base_url=server.openai_base_url, api_key=KEY, max_retries=0, timeout=0.3
        ) as c:
            with pytest.raises(openai.APITimeoutError):
                ask(c, "slow")
            assert ask(c, "fast").choices[0].message.content
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 2.0  # the sleeping handler is woken, not waited for 5 s


def test_in_process_fault_validation():
    sim = SimulatorServer()
    with pytest.raises(UsageError, match="kind"):
        sim.faults.add("404")
    with pytest.raises(UsageError, match="match"):
        sim.faults.add("500", match="(unclosed")
    with pytest.raises(UsageError, match="rate"):
        sim.faults.add("500", rate=1.5)


def test_http_control_endpoints(sim, client):
    assert http("GET", sim.url + "/health")[2] == {"status": "ok", "simulator": SIMULATOR_NAME}
    status, _, body = http(
        "POST",
        sim.url + "/_simulator/faults",
        {"kind": "429", "count": 1, "retry_after": 0.5, "match": "refund"},
    )
    assert status == 200 and body["faults"][0]["kind"] == "429"
    status, _, body = http(
        "POST", sim.url + "/_simulator/faults", {"faults": [{"kind": "500", "count": 1}]}
    )
    assert [f["kind"] for f in body["faults"]] == ["429", "500"]
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "Ticket: refund")
    assert info.value.response.headers["retry-after"] == "0.5"
    with pytest.raises(openai.InternalServerError):
        ask(client, "Ticket: refund")
    assert http("GET", sim.url + "/_simulator/faults")[2] == {"faults": []}

    status, _, body = http(
        "POST", sim.url + "/_simulator/faults", [{"kind": "500"}, {"kind": "teapot"}]
    )
    assert status == 400 and "teapot" in body["error"]["message"]
    status, _, body = http("POST", sim.url + "/_simulator/faults", {"kind": "500", "cuont": 1})
    assert status == 400 and "cuont" in body["error"]["message"]
    assert http("GET", sim.url + "/_simulator/faults")[2] == {
        "faults": []
    }  # nothing added from a bad batch

    http("POST", sim.url + "/_simulator/faults", {"kind": "500"})
    assert http("DELETE", sim.url + "/_simulator/faults")[2] == {"faults": []}
    assert ask(client, "Ticket: refund").choices[0].message.content == "billing"

    stats = http("GET", sim.url + "/_simulator/stats")[2]
    assert stats["requests"] == 3 and stats["by_status"] == {"429": 1, "500": 1, "200": 1}
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (
        4,
        2,
    )  # tokens count answers only
    assert http("POST", sim.url + "/_simulator/reset")[0] == 200
    assert sim.stats.requests == 0
    assert http("GET", sim.url + "/_simulator/reset")[0] == 405


def test_api_key_never_in_logs_stats_or_errors():
    lines: list[str] = []
    with SimulatorServer(
        rules=exact_rules(), verbose=True, log=lines.append, api_key=KEY
    ) as server:
        server.faults.add("429", count=1, retry_after=0)
        with openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c:
            with pytest.raises(openai.RateLimitError) as limited:
                ask(c, "Ticket: refund")
            ask(c, "Ticket: refund")
        wrong = http(
            "POST",
            server.openai_base_url + "/chat/completions",
            {"messages": []},
            {"Authorization": "Bearer sk-wrong-secret"},
        )
        stats = json.dumps(http("GET", server.url + "/_simulator/stats")[2])
    assert any("POST /v1/chat/completions 200" in line for line in lines)
    assert any(" 429 " in line for line in lines) and any(" 401 " in line for line in lines)
    everything = "\n".join(lines) + stats + json.dumps(wrong[2]) + str(limited.value)
    assert KEY not in everything and "sk-wrong-secret" not in everything


def test_quiet_by_default(capfd):
    lines: list[str] = []
    with SimulatorServer(log=lines.append) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c:
            ask(c, "hi")
        http("GET", server.url + "/v1/nope")
    out, err = capfd.readouterr()
    assert lines == [] and out == "" and err == ""


def test_stop_closes_keepalive_connections_and_threads():
    with (
        SimulatorServer() as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0) as c,
    ):
        ask(c, "hi")  # leaves an idle keep-alive connection open
        server.stop()
        assert not server.running
        leftover = [t for t in threading.enumerate() if t.name.startswith("genaiops-simulator")]
    assert leftover == []


def test_port_in_use_is_a_usage_error():
    with SimulatorServer() as first, pytest.raises(UsageError, match="cannot listen"):
        SimulatorServer(port=first.port).start()


# ---------------------------------------------------------------- rules validation


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "simulator.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            """
            rules:
              - reply: ok
              - when: {prompt: "(unclosed"}
                reply: ok
            """,
            ["simulator.yaml:4: rules[1].when.prompt", "invalid regular expression"],
        ),
        (
            'rules:\n  - {when: {prompt: "(?P<t>.+)"}, reply: "{table:nope:t}"}\n',
            ["rules[0].reply", "unknown table 'nope'"],
        ),
        (
            'rules:\n  - {when: {prompt: "(?P<t>.+)"}, reply: "{text}"}\n',
            ["rules[0].reply", "group 'text'"],
        ),
        (
            'tables: {t: [{pattern: x, value: a}]}\nrules:\n  - {when: {prompt: "(?P<g>.+)"}, reply: "{table:t:g}", accuracy: 0.5}\n',
            ["rules[0].accuracy", "fewer than 2 distinct values"],
        ),
        ("rules:\n  - {reply: ok, accuracy: 1.5}\n", ["rules[0].accuracy", "between 0 and 1"]),
        ("rules:\n  - {reply: ok, accuracy: 0.5}\n", ["rules[0].accuracy", "needs a {table"]),
        ("rules:\n  - {when: {prompt: x}}\n", ["rules[0].reply", "missing"]),
        (
            "rules:\n  - {reply: ok, when: {temperature_max: hot}}\n",
            ["rules[0].when.temperature_max", "must be a number"],
        ),
        (
            "rules:\n  - {reply: ok, when: {temperature_min: 1, temperature_max: 0.5}}\n",
            ["temperature_min"],
        ),
        (
            "rules:\n  - {name: a, reply: ok}\n  - {name: a, reply: ok}\n",
            ["rules[1].name", "duplicate"],
        ),
        ("rulez: []\n", ["rulez", "unknown key"]),
        ("tables: {t: [{pattern: x, value: yes}]}\n", ["tables.t[0].value", "quote it"]),
        ("tables: {t: []}\n", ["tables.t", "non-empty list"]),
        ("default_reply: [1]\n", ["default_reply", "must be a string"]),
        ("rules: [\n", ["not valid YAML"]),
        ("- just a list\n", ["must be a mapping"]),
    ],
)
def test_bad_rules_file_names_the_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message
    assert info.value.exit_code == 2


def test_all_problems_reported_at_once(tmp_path):
    path = write(tmp_path, 'rules:\n  - {reply: "{a}"}\n  - {reply: ok, accuracy: -1}\n')
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert [p.field for p in info.value.problems] == ["rules[0].reply", "rules[1].accuracy"]
    assert [p.line for p in info.value.problems] == [2, 3]


def test_missing_rules_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        SimulatorServer(rules_path=tmp_path / "nope.yaml")


# ---------------------------------------------------------------- promptflow-tools


@pytest.mark.promptflow
def test_promptflow_tools_llm_classes_get_answers_and_honour_retry_after():
    """The real promptflow-tools OpenAI/AzureOpenAI tool code against the simulator (no flow run)."""
    from promptflow.connections import AzureOpenAIConnection, OpenAIConnection
    from promptflow.tools.aoai import AzureOpenAI
    from promptflow.tools.openai import OpenAI

    with SimulatorServer(rules=exact_rules()) as server:
        server.faults.add("429", count=1, retry_after=0.05)  # promptflow-tools retries this itself
        openai_tool = OpenAI(OpenAIConnection(api_key=KEY, base_url=server.openai_base_url))
        out = openai_tool.chat(
            prompt="system:\nClassify.\nuser:\nTicket: {{text}}",
            model="gpt-4o-mini",
            text="refund me",
        )
        aoai_tool = AzureOpenAI(
            AzureOpenAIConnection(
                api_key=KEY, api_base=server.azure_endpoint, api_version="2024-06-01"
            )
        )
        out_az = aoai_tool.chat(
            prompt="user:\nTicket: {{text}}", deployment_name="gpt", text="lost password"
        )
        snap = server.stats.snapshot()
    assert (out, out_az) == ("billing", "account")
    assert snap["by_status"] == {"429": 1, "200": 2}


# ---------------------------------------------------------------- CLI


def start_cli(*args: str, env=None) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genaiops.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return proc, lines
    proc.kill()
    proc.wait()
    pytest.fail("simulator CLI did not print its banner: " + "\n".join(lines) + proc.stderr.read())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_banner_serves_and_stops_cleanly(tmp_path, sig):
    rules = write(tmp_path, DOC_RULES)
    proc, lines = start_cli("--rules", str(rules), "--latency-ms", "5")
    try:
        banner = "\n".join(lines)
        assert "SIMULATOR, NOT A REAL MODEL" in banner and "2 rules, 1 tables" in banner
        base_url = next(l.split("base_url=")[1].split()[0] for l in lines if "base_url=" in l)
        with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0) as c:
            assert ask(c, "Ticket: my invoice is wrong").choices[0].message.content in {
                "billing",
                "account",
                "other",
            }
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped after 1 requests" in out and KEY not in out + err


def test_cli_use_case_resolves_rules_in_repo(tmp_path, monkeypatch):
    (tmp_path / "configs" / "tickets").mkdir(parents=True)
    (tmp_path / "configs" / "tickets" / "simulator.yaml").write_text(DOC_RULES)
    monkeypatch.setenv("GENAIOPS_REPO", str(tmp_path))
    parser = build_parser()
    args = parser.parse_args(["simulator", "--use-case", "tickets"])
    assert args.port == DEFAULT_PORT == 8765
    assert rules_path_from_args(args) == tmp_path / "configs" / "tickets" / "simulator.yaml"
    with pytest.raises(UsageError, match="tickets") as info:
        rules_path_from_args(parser.parse_args(["simulator", "--use-case", "nope"]))
    assert "configs/nope/simulator.yaml" in str(info.value)
    with pytest.raises(UsageError, match="not both"):
        rules_path_from_args(parser.parse_args(["simulator", "-u", "tickets", "--rules", "y"]))


def test_cli_use_case_rules_come_from_the_repo_flag(tmp_path, monkeypatch):
    repo = tmp_path / "elsewhere"
    (repo / "configs" / "tickets").mkdir(parents=True)
    (repo / "configs" / "tickets" / "simulator.yaml").write_text(DOC_RULES)
    monkeypatch.delenv("GENAIOPS_REPO", raising=False)
    monkeypatch.chdir(tmp_path)  # no repository here: only --repo can find the rules
    expected = repo / "configs" / "tickets" / "simulator.yaml"
    for argv in (["--repo", str(repo), "simulator", "-u", "tickets"],
                 ["simulator", "-u", "tickets", "--repo", str(repo)]):
        assert rules_path_from_args(build_parser().parse_args(argv)) == expected


def test_banner_labels_the_simulator_and_warns_off_loopback():
    from genaiops.simulator.foreground import banner

    with SimulatorServer(None, host="0.0.0.0", latency_ms=5, jitter_ms=2) as sim:
        text = banner(sim, None)
    assert "LLM SIMULATOR, NOT A REAL MODEL" in text
    assert "rules         none (echo replies)" in text
    assert "5 ms + up to 2 ms jitter" in text
    assert "WARNING       listening on 0.0.0.0, not loopback only" in text
    assert text.endswith("Press Ctrl-C to stop.")
    assert "quota         none" in text


def test_cli_quota_flags_reach_the_banner():
    from genaiops.cli import build_parser
    from genaiops.simulator.foreground import banner

    args = build_parser().parse_args(["simulator", "--rpm", "600", "--tpm", "60000"])
    with SimulatorServer(None, quota={"rpm": args.rpm, "tpm": args.tpm}) as sim:
        assert "quota         600 RPM / 60000 TPM per deployment" in banner(sim, None)


def test_foreground_serve_prints_through_the_given_output_and_stops_on_sigint():
    from genaiops.simulator.foreground import serve

    lines: list[str] = []
    handler_before = signal.getsignal(signal.SIGINT)

    def interrupt_once_ready(text: str) -> None:
        lines.append(text)
        if text.endswith("Press Ctrl-C to stop."):
            raise KeyboardInterrupt  # what Ctrl-C raises when the handler is not ours

    assert serve(None, port=0, out=interrupt_once_ready) == 0
    assert "SIMULATOR, NOT A REAL MODEL" in lines[0]
    assert lines[-1] == f"{SIMULATOR_NAME} stopped after 0 requests (0 simulated tokens)."
    assert signal.getsignal(signal.SIGINT) is handler_before  # our handlers are gone again


def test_cli_bad_rules_exits_2_with_one_message(tmp_path):
    rules = write(tmp_path, "rules:\n  - {reply: ok, accuracy: 2}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "genaiops.simulator", "--port", "0", "--rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 2
    assert "rules[0].accuracy" in proc.stderr and "Traceback" not in proc.stderr


def test_import_is_cheap():
    code = "import sys, genaiops.simulator; print(sorted({m.split('.')[0] for m in sys.modules} & {'openai', 'promptflow', 'httpx', 'jinja2', 'azure'}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    ).stdout
    assert out.strip() == "[]"
