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


PF_CHILD = textwrap.dedent("""
    import json, sys
    from promptflow.client import PFClient
    from promptflow.entities import OpenAIConnection
    PFClient().connections.create_or_update(OpenAIConnection(name="llm", api_key=sys.argv[1], base_url=sys.argv[2]))
    import genaiops_pf_serve
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor

    raw = []  # promptflow's spans as made, before genaiops' exporter filters them

    class Keep(SpanProcessor):
        def on_end(self, span):
            raw.append({"name": span.name, "attributes": sorted(span.attributes or {}),
                        "events": [e.name for e in span.events]})

    app = genaiops_pf_serve.create_app()
    trace.get_tracer_provider().add_span_processor(Keep())
    client = app.test_client()
    answers = [client.post("/score", json={"text": text}) for text in
               ("I was charged twice for my March subscription.", "The app crashes when I open settings.")]
    trace.get_tracer_provider().force_flush(10000)
    print(json.dumps({"status": [a.status_code for a in answers], "outputs": [a.get_json() for a in answers],
                      "trace_ids": [a.headers["x-genaiops-trace-id"] for a in answers], "raw": raw}))
""")
REPO = Path(__file__).resolve().parents[1]
CONTENT_ATTRIBUTES = {"inputs", "output", "prompt.template", "prompt.variables", "llm.generated_message"}


def _serve_promptflow(tmp_path, capture: bool) -> tuple[dict, list, str]:
    """The classification DAG served by promptflow's own app through `genaiops_pf_serve` (the
    serving image's modules, as the image has them), against the simulator."""
    import shutil

    from genaiops.simulator import SimulatorServer

    serving, flow, home = tmp_path / "serving", tmp_path / "flow", tmp_path / "home"
    serving.mkdir()
    home.mkdir()
    for module in (ENGINES / "genaiops_telemetry.py", ENGINES / "promptflow" / "genaiops_pf_serve.py"):
        shutil.copy(module, serving / module.name)
    shutil.copytree(REPO / "flows/classification/standard", flow)
    db = tmp_path / "spans.sqlite"
    with SimulatorServer(rules_path=REPO / "configs/classification/simulator.yaml", latency_ms=0) as sim, \
            Receiver(db) as receiver:
        env = {**os.environ, "HOME": str(home), "TMPDIR": str(home), "PYTHONPATH": str(serving),
               "PROMPTFLOW_PROJECT_PATH": str(flow),
               "PF_DISABLE_TELEMETRY": "true", "PF_TRACING_SKIP_LOCAL_SETUP": "true",
               "PF_BUILTIN_TRACE_EXPORTERS_DISABLE": "true",
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "classification",
               "OTEL_RESOURCE_ATTRIBUTES": "genaiops.use_case=classification,deployment.environment=local",
               "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true" if capture else "false"}
        env.pop("PF_HOME_DIRECTORY", None)
        done = subprocess.run([sys.executable, "-c", PF_CHILD, "sk-" + "x" * 20, sim.openai_base_url], env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == [200, 200] and all(o["category"] for o in answer["outputs"]), answer["outputs"]
    spans = [s for s in TraceStore(db).spans() if s.trace_id in answer["trace_ids"]]
    return answer, spans, done.stderr


def test_promptflow_node_and_llm_spans_serialize_no_content_when_capture_is_off(tmp_path):
    """B10: promptflow's tracing doubled a request's CPU, mostly serializing content the exporter
    drops. With capture off its spans are made without that content, yet the exported tree keeps
    the node spans, models and token usage (and no per-span warnings reach the node logs)."""
    answer, spans, stderr = _serve_promptflow(tmp_path, capture=False)
    raw_promptflow = [r for r in answer["raw"] if r["name"] in {"flow", "summarize", "classify", "normalize",
                                                               "openai_chat"}]
    assert len(raw_promptflow) == 2 * 6, [r["name"] for r in answer["raw"]]
    for made in raw_promptflow:
        assert not CONTENT_ATTRIBUTES & set(made["attributes"]), made
        assert not [e for e in made["events"] if e.startswith("promptflow.")], made
    assert "Invalid type NoneType" not in stderr
    for trace_id in answer["trace_ids"]:
        tree = [s for s in spans if s.trace_id == trace_id]
        (root,) = [s for s in tree if s.name == "invoke_agent classification"]
        assert root.attributes["gen_ai.usage.input_tokens"] > 0 and root.attributes["gen_ai.usage.output_tokens"] > 0
        assert root.attributes["gen_ai.response.model"] and root.attributes["genaiops.llm_calls"] == 2
        nodes = {s.attributes.get("node_name") for s in tree if s.attributes.get("span_type") == "Function"}
        assert nodes == {"summarize", "classify", "normalize"}
        llm = [s for s in tree if s.name == "openai_chat"]
        assert len(llm) == 2 and all(s.attributes["llm.usage.prompt_tokens"] > 0 for s in llm)
        assert all(s.attributes["llm.response.model"] for s in llm)
        # one tree, without the flask server span that repeated the root one level down
        assert not [s for s in tree if s.name.startswith("POST ")], sorted(s.name for s in tree)
        assert {s.parent_span_id for s in tree} - {s.span_id for s in tree} == {""}


def test_promptflow_spans_keep_their_content_when_capture_is_on(tmp_path):
    answer, spans, _stderr = _serve_promptflow(tmp_path, capture=True)
    llm = [r for r in answer["raw"] if r["name"] == "openai_chat"]
    assert len(llm) == 4 and all({"inputs", "output", "llm.generated_message"} <= set(r["attributes"]) for r in llm)
    (root,) = [s for s in spans if s.trace_id == answer["trace_ids"][0] and s.name.startswith("invoke_agent")]
    assert json.loads(root.attributes["genaiops.inputs"]) == {"text": "I was charged twice for my March subscription."}
    (summarize,) = [s for s in spans if s.trace_id == answer["trace_ids"][0] and s.name == "summarize"]
    assert "prompt.template" in summarize.attributes and "output" in summarize.attributes


LIGHT_CHILD = textwrap.dedent("""
    import json, sys
    from genaiops.engines.promptflow.genaiops_pf_serve import lighten_promptflow_tracing
    from promptflow.tracing import trace
    from promptflow.tracing._tracer import Tracer

    shown = []

    class Ticket:  # promptflow serializes what it cannot encode with str()
        def __str__(self):
            shown.append(1)
            return "ticket"

    @trace
    def classify(ticket):
        return {"category": "billing", "ticket": ticket}

    if sys.argv[1] == "light":
        lighten_promptflow_tracing(capture=True, run_traces=True)
    outside = classify(Ticket())
    outside_shown = len(shown)
    Tracer.start_tracing("run-1", "classify")  # a batch line's node: its api_calls are kept
    classify(Ticket())
    api_calls = Tracer.end_tracing("run-1")
    print(json.dumps({"outside_shown": outside_shown, "answer": outside["category"],
                      "api_calls": [c["name"] for c in api_calls], "inputs": api_calls[0]["inputs"]}))
""")


def test_batch_workers_serialize_no_content_into_spans_nothing_records():
    """B11: a batch worker has no tracer provider, yet promptflow serialized every traced call's
    inputs and outputs into its (non-recording) spans; with genaiops' configuration it does not,
    and the run's own traces (`api_calls`: token counts per node) are kept."""
    env = {**os.environ, "PF_DISABLE_TRACING": "false", "PF_TRACING_SKIP_LOCAL_SETUP": "true"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    runs = {}
    for mode in ("plain", "light"):
        done = subprocess.run([sys.executable, "-c", LIGHT_CHILD, mode], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["plain"]["outside_shown"] > 0  # what the configuration saves
    assert runs["light"]["outside_shown"] == 0 and runs["light"]["answer"] == "billing"
    assert runs["light"]["api_calls"] == runs["plain"]["api_calls"] == ["classify"]
    assert runs["light"]["inputs"] == {"ticket": "ticket"}
