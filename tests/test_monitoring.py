"""The embedded trace store: the OTLP/HTTP receiver (real OTel SDK exporter, OTLP/JSON, bad input),
the SQLite store it writes, and the Application Insights reader against a loopback Logs API."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from genaiops.monitoring.receiver import Receiver
from genaiops.monitoring.store import TraceStore
from genaiops.secrets import REDACTOR

CANARY = "sk-canary-7f3a9c0d41e2"


@pytest.fixture
def canary(monkeypatch):
    monkeypatch.setattr(REDACTOR, "_values", set())
    monkeypatch.setattr(REDACTOR, "_pattern", None)
    REDACTOR.add(CANARY)
    return CANARY


def _export_with_sdk(endpoint: str, canary: str) -> tuple[str, str]:
    """Two spans (a root and an LLM child) exported by the real OTel SDK OTLP/HTTP exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({
        "service.name": "classification", "genaiops.use_case": "classification",
        "deployment.environment": "local", "genaiops.image": "sha256:abc"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("score") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        with tracer.start_as_current_span("chat gpt-4o-mini") as child:
            child.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            child.set_attribute("gen_ai.usage.input_tokens", 12)
            child.set_attribute("leak", f"key={canary}")
            child.set_status(Status(StatusCode.ERROR, f"boom {canary}"))
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}", f"{root.get_span_context().span_id:016x}"


def test_receiver_stores_sdk_protobuf_spans_redacted(tmp_path, canary):
    db = tmp_path / "traces" / "spans.sqlite"
    with Receiver(db) as receiver:
        trace_id, root_id = _export_with_sdk(receiver.endpoint, canary)
        assert receiver.received == 2
    spans = TraceStore(db).spans(use_case="classification", environment="local")
    assert [s.name for s in spans] == ["score", "chat gpt-4o-mini"]
    root, child = spans
    assert root.trace_id == child.trace_id == trace_id and root.span_id == root_id
    assert child.parent_span_id == root_id
    assert child.attributes["gen_ai.usage.input_tokens"] == 12
    assert root.resource["genaiops.image"] == "sha256:abc"
    assert child.failed and not root.failed
    assert "***" in child.attributes["leak"] and "***" in child.status_message
    for path in db.parent.iterdir():  # the database and its WAL
        assert canary.encode() not in path.read_bytes(), path


def _json_body(trace_id="5b8efff798038103d269b633813fc60c", span_id="eee19b7ec3c1b174") -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "genaiops.use_case", "value": {"stringValue": "uc"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "score", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000250000000",
            "status": {"code": 2, "message": "failed"},
            "attributes": [{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "7"}},
                           {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}]}]}]}]}


def test_receiver_accepts_otlp_json_and_gzip_and_dedupes(tmp_path):
    db = tmp_path / "spans.sqlite"
    with Receiver(db) as receiver:
        url = receiver.endpoint + "/v1/traces"
        body = json.dumps(_json_body()).encode()
        assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 200
        again = httpx.post(url, content=gzip.compress(body),  # an exporter's retry: stored once
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert again.status_code == 200
    (span,) = TraceStore(db).spans(use_case="uc")
    assert span.trace_id == "5b8efff798038103d269b633813fc60c" and span.span_id == "eee19b7ec3c1b174"
    assert span.attributes == {"gen_ai.usage.output_tokens": 7, "tags": ["a"]}
    assert span.failed and span.duration_s == pytest.approx(0.25)


@pytest.mark.parametrize(("content_type", "body", "status", "says"), [
    ("application/x-protobuf", b"\xff\xff\xff\xff garbage", 400, "protobuf"),
    ("application/json", b"{not json", 400, "not JSON"),
    ("application/json", b"[1, 2]", 400, "JSON object"),
    ("application/json", json.dumps(_json_body(trace_id="zz")).encode(), 400, "traceId"),
    ("application/json", json.dumps(_json_body(span_id="abcd")).encode(), 400, "spanId must be 8 bytes"),
    ("text/plain", b"hello", 415, "Content-Type"),
])
def test_receiver_rejects_bad_input_with_a_reason(tmp_path, content_type, body, status, says):
    db = tmp_path / "spans.sqlite"
    with Receiver(db) as receiver:
        answer = httpx.post(receiver.endpoint + "/v1/traces", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status
    message = answer.json()["message"]
    assert says in message and "Traceback" not in message
    assert TraceStore(db).spans() == []


def test_receiver_bounds_bodies_and_gzip_bombs(tmp_path):
    with Receiver(tmp_path / "spans.sqlite", max_body=1000) as receiver:
        url = receiver.endpoint + "/v1/traces"
        big = httpx.post(url, content=b"x" * 5000, headers={"Content-Type": "application/json"})
        bomb = httpx.post(url, content=gzip.compress(b"{" + b" " * 100_000 + b"}"),
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        wrong_path = httpx.post(receiver.endpoint + "/v1/logs", content=b"{}",
                                headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and "at most 1000" in big.json()["message"]
    assert bomb.status_code == 413
    assert wrong_path.status_code == 404


# -- Application Insights ------------------------------------------------------------------------

class _FakeLogsApi(BaseHTTPRequestHandler):
    """`POST /v1/workspaces/{id}/query` answering like the Log Analytics query API."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body))
        props = json.dumps({"genaiops.use_case": "uc", "deployment.environment": "prod",
                            "genaiops.image": "sha256:abc", "gen_ai.usage.input_tokens": "30"})
        answer = {"tables": [{"name": "PrimaryResult", "columns": [
            {"name": "TimeGenerated", "type": "datetime"}, {"name": "OperationId", "type": "string"},
            {"name": "Id", "type": "string"}, {"name": "ParentId", "type": "string"},
            {"name": "Name", "type": "string"}, {"name": "DurationMs", "type": "real"},
            {"name": "Success", "type": "bool"}, {"name": "ResultCode", "type": "string"},
            {"name": "Properties", "type": "dynamic"}, {"name": "Type", "type": "string"}],
            "rows": [["2026-12-06T10:00:00Z", "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174",
                      "5b8efff798038103d269b633813fc60c", "POST /score", 250.0, False, "500", props,
                      "AppRequests"]]}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_app_insights_reader_queries_the_logs_api(monkeypatch):
    pytest.importorskip("azure.monitor.query")
    from azure.core.credentials import AccessToken
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy

    from genaiops.monitoring.reader import AppInsightsReader

    class Credential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("fake-token", 2**31)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLogsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        reader = AppInsightsReader("ws-1", credential=Credential(), endpoint=endpoint,
                                   authentication_policy=BearerTokenCredentialPolicy(Credential(), "x/.default"))
        (span,) = reader.spans(use_case="uc", environment="prod", image="sha256:abc", enforce_https=False)
    finally:
        server.shutdown()
        server.server_close()
    path, body = _FakeLogsApi.seen[-1]
    assert path.startswith("/v1/workspaces/ws-1/query")
    assert 'Properties["genaiops.use_case"]) == "uc"' in body["query"] and "AppDependencies" in body["query"]
    assert span.trace_id == "5b8efff798038103d269b633813fc60c" and span.parent_span_id == ""
    assert span.failed and span.duration_s == pytest.approx(0.25)
    assert span.resource == {"genaiops.use_case": "uc", "deployment.environment": "prod",
                             "genaiops.image": "sha256:abc"}


def test_monitor_receive_keeps_the_receiver_running_until_sigterm(tmp_path, state_dir):
    """`genaiops monitor --receive` (a real process): listens on the environment's otlp_port, stores
    what the containers export, and stops cleanly on SIGTERM saying how much it stored."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from deploy_helpers import PORT, copy_classification_and_port

    from genaiops.workspace import Workspace

    root = copy_classification_and_port(tmp_path / "repo")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (root / f"configs/{PORT}/deployment.yaml").write_text(
        f"environments:\n  local:\n    target: docker\n    otlp_port: {port}\n")
    process = subprocess.Popen([sys.executable, "-m", "genaiops", "--repo", str(root), "monitor", "-u", PORT,
                                "-e", "local", "--receive"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "GENAIOPS_STATE_DIR": str(state_dir)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/traces", json=_json_body(), timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.2)
        assert answer.status_code == 200
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out + err
    assert f"trace receiver on http://127.0.0.1:{port}/v1/traces" in out
    assert "trace receiver stopped: 1 span(s) stored" in out
    (span,) = TraceStore(Workspace.for_repo(root).traces_db).spans(use_case="uc")
    assert span.span_id == "eee19b7ec3c1b174"
