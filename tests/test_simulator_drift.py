"""Simulator drift mode: a second rules set, a raised error rate and added latency, set in code, over
HTTP and restored; bad drift requests are 400 with a reason."""

from __future__ import annotations

import time

import httpx

from genaiops.simulator import SimulatorServer

RULES = {"rules": [{"name": "ok", "when": {"prompt": "ticket"}, "reply": "billing"}]}
DRIFTED = {"rules": [{"name": "changed", "when": {"prompt": "ticket"}, "reply": "other"}]}


def _ask(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, timeout=10,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ticket: refund"}]})


def test_drift_over_http_changes_answers_errors_and_latency_then_restores():
    with SimulatorServer(rules=RULES) as sim:
        assert _ask(sim.url).json()["choices"][0]["message"]["content"] == "billing"
        state = httpx.post(sim.url + "/_simulator/drift", json={"rules": DRIFTED, "error_rate": 0.5,
                                                                "latency_ms": 150}).json()
        assert state == {"drift": True, "rules": True, "error_rate": 0.5, "latency_ms": 150.0}
        started = time.monotonic()
        answers = [_ask(sim.url) for _ in range(10)]
        assert sum(a.status_code == 500 for a in answers) == 5
        assert time.monotonic() - started >= 5 * 0.15  # the added latency of the 5 answers
        assert {a.json()["choices"][0]["message"]["content"] for a in answers if a.status_code == 200} == {"other"}
        assert httpx.delete(sim.url + "/_simulator/drift").json() == {"drift": False}
        assert [_ask(sim.url).status_code for _ in range(4)] == [200] * 4
        assert _ask(sim.url).json()["choices"][0]["message"]["content"] == "billing"
        assert sim.latency_ms == 0


def test_bad_drift_requests_are_400_with_a_reason():
    with SimulatorServer(rules=RULES) as sim:
        too_high = httpx.post(sim.url + "/_simulator/drift", json={"error_rate": 2})
        unknown = httpx.post(sim.url + "/_simulator/drift", json={"errors": 0.3})
        bad_rules = httpx.post(sim.url + "/_simulator/drift", json={"rules": {"rules": [{"name": 1}]}})
        assert too_high.status_code == unknown.status_code == bad_rules.status_code == 400
        assert "error_rate" in too_high.text and "Traceback" not in bad_rules.text
        assert httpx.get(sim.url + "/_simulator/drift").json() == {"drift": False}
