"""Serving traces without Docker: the promptflow image's WSGI entry (`genaiops_pf_serve`) and the
shared `genaiops_telemetry`, run in a child process (a tracer provider is process-wide) with the real
OTel SDK exporting to the embedded receiver. The inner app stands in for promptflow's flask app: it
makes a child span the way promptflow's tracing does (llm.usage.*, content in `inputs`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from genaiops.monitoring.receiver import Receiver
from genaiops.monitoring.store import RES_IMAGE, TraceStore

ENGINES = Path(__file__).resolve().parents[1] / "src" / "genaiops" / "engines"
CANARY = "sk-canary-91b2c3d4e5f6"

CHILD = textwrap.dedent("""
    import json, sys
    from werkzeug.test import Client
    from opentelemetry import trace
    import genaiops_pf_serve, genaiops_telemetry

    def inner(environ, start_response):
        body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        with trace.get_tracer("promptflow").start_as_current_span("openai_chat") as span:
            span.set_attribute("llm.usage.prompt_tokens", 10)
            span.set_attribute("llm.usage.completion_tokens", 3)
            span.set_attribute("llm.response.model", "gpt-4o-mini")
            span.set_attribute("inputs", json.dumps(body))
        if body.get("text") == "fail":
            start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "application/json")])
            return [json.dumps({"error": "upstream said key " + sys.argv[1]}).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"category": "account"}).encode()]

    telemetry = genaiops_telemetry.setup()
    client = Client(genaiops_pf_serve.Traced(inner, telemetry))
    ok = client.post("/score", json={"text": "my key is " + sys.argv[1]})
    bad = client.post("/score", json={"text": "fail"})
    fb = client.post("/feedback", json={"trace_id": ok.headers["x-genaiops-trace-id"], "rating": -1,
                                       "label": "wrong", "correction": {"category": "billing"}})
    junk = client.post("/feedback", data=b"[1]", content_type="application/json")
    telemetry.flush()
    print(json.dumps({"ok": [ok.status_code, ok.get_json(), ok.headers["x-genaiops-trace-id"],
                             ok.headers["x-genaiops-response-id"]],
                      "bad": bad.status_code, "feedback": fb.status_code,
                      "junk": [junk.status_code, junk.get_json()]}))
""")


def _serve(tmp_path, capture: bool) -> tuple[dict, TraceStore]:
    db = tmp_path / "spans.sqlite"
    with Receiver(db) as receiver:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ENGINES), str(ENGINES / "promptflow"),
                                                            os.environ.get("PYTHONPATH", "")]),
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "classification",
               "OTEL_RESOURCE_ATTRIBUTES": "genaiops.use_case=classification,deployment.environment=local,"
                                           "genaiops.image=sha256%3Aabc,genaiops.variant=classify.careful",
               "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true" if capture else "false",
               "LLM_API_KEY": CANARY}
        done = subprocess.run([sys.executable, "-c", CHILD, CANARY], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), TraceStore(db)


def test_score_spans_follow_genai_conventions_without_content(tmp_path):
    answer, store = _serve(tmp_path, capture=False)
    status, outputs, trace_id, response_id = answer["ok"]
    assert status == 200 and outputs == {"category": "account"}
    assert answer["bad"] == 500 and answer["feedback"] == 202
    assert answer["junk"][0] == 400 and "JSON object" in answer["junk"][1]["error"]
    spans = store.spans(use_case="classification", environment="local")
    roots = {s.trace_id: s for s in spans if s.name == "invoke_agent classification"}
    root = roots[trace_id]
    assert root.resource[RES_IMAGE] == "sha256:abc" and root.resource["genaiops.variant"] == "classify.careful"
    a = root.attributes
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.response.id"] == response_id
    assert a["gen_ai.usage.input_tokens"] == 10 and a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "gpt-4o-mini"
    assert "genaiops.inputs" not in a and not root.failed
    (child,) = [s for s in spans if s.trace_id == trace_id and s.name == "openai_chat"]
    assert child.parent_span_id == root.span_id and "inputs" not in child.attributes
    (failed,) = [s for s in roots.values() if s.failed]
    assert failed.attributes["error.type"] == "http.500" and CANARY not in failed.status_message
    (feedback,) = [s for s in spans if s.name == "gen_ai.user.feedback"]
    assert feedback.attributes["genaiops.feedback.trace_id"] == trace_id
    assert feedback.attributes["genaiops.feedback.rating"] == -1
    assert "genaiops.feedback.correction" not in feedback.attributes  # content: not allowed here
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes()


def test_content_is_captured_redacted_only_when_allowed(tmp_path):
    answer, store = _serve(tmp_path, capture=True)
    trace_id = answer["ok"][2]
    spans = store.spans(trace_ids=[trace_id])
    (root,) = [s for s in spans if s.name.startswith("invoke_agent")]
    assert json.loads(root.attributes["genaiops.inputs"]) == {"text": "my key is ***"}
    assert json.loads(root.attributes["genaiops.outputs"]) == {"category": "account"}
    (child,) = [s for s in spans if s.name == "openai_chat"]
    assert "***" in child.attributes["inputs"]
    (feedback,) = [s for s in store.spans() if s.name == "gen_ai.user.feedback"]
    assert json.loads(feedback.attributes["genaiops.feedback.correction"]) == {"category": "billing"}
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes()
