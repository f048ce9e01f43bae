"""The loop after deploy on real Docker, both engines: a PR verdict approves the variant, deploy it
locally with the embedded trace receiver listening, send real HTTP requests, find each request's
span tree in the store with the GenAI attributes and the deployment's resource attributes;
`monitor` passes; the simulator drifts (a second rules set): `monitor` exits 1 naming the metric;
feedback on a drifted answer is promoted into the regressions dataset and the next PR verdict
scores it. A canary secret (the LLM key) reaches no span, store row or report.
Skips like tests/test_deploy_docker.py without a docker daemon or base image."""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.request

import pytest
from deploy_helpers import copy_classification_and_port, run_cli, use_small_pr_overlay
from test_deploy_docker import REASON, _free_pair

from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.deploy.targets.base import slug
from genaiops.monitoring.receiver import Receiver
from genaiops.monitoring.store import TraceStore
from genaiops.simulator import SimulatorServer

pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"docker: {REASON}"), pytest.mark.docker,
              pytest.mark.timeout(900)]
CANARY = "canary-" + secrets.token_hex(12)
RUN_ID = secrets.token_hex(3)


def _post(url: str, body: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read()), dict(resp.headers)


@pytest.mark.parametrize("use_case", ["classification", "classification_maf"])
def test_deployed_image_sends_traces_to_the_embedded_store(use_case, tmp_path, capsys, monkeypatch):
    root = copy_classification_and_port(tmp_path / "repo")
    use_small_pr_overlay(root)  # the 10-row set: its `evaluators:` block takes the reference-free one
    state, trust = tmp_path / "state", tmp_path / "trust"
    port, otlp_port = _free_pair(), _free_pair()
    env = f"mon{RUN_ID}"
    image_name = f"genaiops-test/mon-{use_case.replace('_', '-')}-{RUN_ID}"
    (root / f"configs/{use_case}/deployment.yaml").write_text(f"""\
image:
  name: {image_name}
  base_image: {os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)}
smoke:
  request: configs/{use_case}/sample-request.json
  expect_outputs: [category, summary]
environments:
  {env}:
    target: docker
    port: {port}
    workers: 1
    otlp_port: {otlp_port}
    capture_content: true
""")
    # a reference-free evaluator (no ground truth): does the summary keep a word of the ticket?
    (root / "flows/classification/faithful.py").write_text(
        "import re\n\ndef faithful(text, summary):\n"
        "    words = lambda s: set(re.findall(r'[a-z]{4,}', (s or '').lower()))\n"
        "    return {'faithful': int(bool(words(text) & words(summary)))}\n")
    for name, dataset in (("experiment.pr.yaml", "tickets_pr"), ("experiment.yaml", "tickets")):
        path = root / f"configs/{use_case}/{name}"
        path.write_text(path.read_text().replace("evaluators:\n", f"""evaluators:
  - name: faithful
    code: flows/classification/faithful.py:faithful
    reference_free: true
    datasets:
      - name: {dataset}_faithful
        reference: {dataset}
        mappings: {{text: "${{data.text}}", summary: "${{run.outputs.summary}}"}}
""", 1))
    with open(root / f"configs/{use_case}/experiment.yaml", "a") as handle:
        handle.write("monitoring:\n  min_requests: 20\n  margins: {builtin.error_rate: 0.05, faithful.faithful: 0.1}\n"
                     "  corrections: {category: label}\n")
    tickets = [json.loads(line)["text"] for line in (root / "datasets/classification/tickets.jsonl").read_text().splitlines()]
    monkeypatch.delenv("GENAIOPS_AUDIT_KEY", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    for key, value in dict(GENAIOPS_STATE_DIR=str(state), LLM_API_KEY=CANARY, GENAIOPS_TRUST_DIR=str(trust),
                           GENAIOPS_WHEEL_CACHE="/tmp/genaiops-test-wheels").items():
        monkeypatch.setenv(key, value)
    assert run_cli(["--repo", str(root), "audit", "init"], capsys)[0] == 0
    sim = SimulatorServer(rules_path=root / "configs/classification/simulator.yaml", api_key=CANARY).start()
    db = state / "traces" / "spans.sqlite"
    receiver = Receiver(db, port=otlp_port).start()
    try:
        code, out, err = run_cli(["--repo", str(root), "run", "verdict", "-u", use_case, "-e", "pr",
                                  "--no-progress"], capsys)
        assert code == 0, out + err
        started = time.monotonic()
        code, out, err = run_cli(["--repo", str(root), "run", "deploy", "-u", use_case, "-e", env,
                                  "--simulator-url", sim.url, "--json"], capsys)
        assert code == 0, out + err
        result = json.loads(out)
        deploy_s = time.monotonic() - started
        status, outputs, headers = _post(f"http://127.0.0.1:{port}/score", {"text": "I forgot my password"})
        assert status == 200 and outputs["category"] == "account"
        trace_id = headers["x-genaiops-trace-id"]
        fb = _post(f"http://127.0.0.1:{port}/feedback", {"trace_id": trace_id, "rating": -1, "label": "wrong"})
        assert fb[0] == 202
        store = TraceStore(db)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            spans = store.spans(use_case=use_case, environment=env)
            if any(s.trace_id == trace_id and s.name.startswith("invoke_agent") and not s.parent_span_id
                   for s in spans) and \
                    any(s.name == "gen_ai.user.feedback" for s in spans):
                break
            time.sleep(0.5)
        tree = [s for s in spans if s.trace_id == trace_id]
        (root_span,) = [s for s in tree if s.name.startswith("invoke_agent") and not s.parent_span_id]
        a = root_span.attributes
        assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.response.id"] == headers[
            "x-genaiops-response-id"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0, a
        assert a["gen_ai.response.model"], a
        assert root_span.resource["genaiops.image"] == result["artifact"]
        assert root_span.resource["genaiops.flow_hash"] == result["flow_hash"]
        assert root_span.resource["genaiops.variant"] == result["variant"]["label"]
        assert len(tree) > 1, [s.name for s in tree]  # the engine's own spans are children
        assert json.loads(a["genaiops.inputs"]) == {"text": "I forgot my password"}  # capture_content: true
        with capsys.disabled():
            print(f"\nFIGURES {use_case}: deploy {deploy_s:.1f}s, {len(tree)} spans in the /score trace: "
                  f"{sorted({s.name for s in tree})}, tokens {a['gen_ai.usage.input_tokens']}/"
                  f"{a['gen_ai.usage.output_tokens']}")
        # steady traffic: monitor passes against the approved (PR) evaluation
        for text in tickets[:24]:
            assert _post(f"http://127.0.0.1:{port}/score", {"text": text})[0] == 200
        time.sleep(2)  # the exporters' batch delay
        code, out, err = run_cli(["--repo", str(root), "monitor", "-u", use_case, "-e", env], capsys)
        with capsys.disabled():
            print(out)
        assert code == 0 and "verdict: PASS" in out, out + err
        assert "faithful.faithful" in out
        # drift: the model behind the endpoint changed (no rule answers the prompts any more)
        sim.start_drift(rules={"default_reply": "Xyzzy plugh.", "rules": []})
        drifted = [_post(f"http://127.0.0.1:{port}/score", {"text": text}) for text in tickets[24:46]]
        time.sleep(2)
        code, out, err = run_cli(["--repo", str(root), "monitor", "-u", use_case, "-e", env], capsys)
        with capsys.disabled():
            print(out)
        assert code == 1 and "verdict: DRIFT" in out, out + err
        assert "faithful.faithful" in out.split("verdict: DRIFT", 1)[1] and "vs approved 1" in out
        # feedback on a drifted answer -> the regressions dataset -> the next PR verdict scores it
        status, _outputs, drifted_headers = drifted[0]
        assert _post(f"http://127.0.0.1:{port}/feedback", {"trace_id": drifted_headers["x-genaiops-trace-id"],
                                                             "rating": -1, "label": "drifted", "correction": {"category": "account"}})[0] == 202
        time.sleep(2)
        code, out, err = run_cli(["--repo", str(root), "feedback", "promote", "-u", use_case, "-e", env,
                                  "--where", "label==drifted", "--apply"], capsys)
        assert code == 0 and "applied to" in out, out + err
        sim.stop_drift()
        overlay = root / f"configs/{use_case}/experiment.pr.yaml"
        overlay.write_text(overlay.read_text().replace("evaluators:", f"""\
  - name: regressions
    source: datasets/{use_case}/regressions.jsonl
    mappings:
      text: ${{data.text}}
evaluators:""", 1) + """\
      - name: regressions_eval
        reference: regressions
        mappings:
          groundtruth: ${data.label}
          prediction: ${run.outputs.category}
""")
        code, out, err = run_cli(["--repo", str(root), "run", "verdict", "-u", use_case, "-e", "pr",
                                  "--no-progress"], capsys)
        newest = max((state / "reports" / use_case).glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
        metrics = json.loads(newest.read_text())["metrics"]
        assert any(m["dataset"] == "regressions" and m["evaluator"] == "accuracy" and m["n"] == 1
                   for m in metrics), out + err
        for path in [*db.parent.iterdir(), *(state / "monitor").rglob("*.*")]:
            assert CANARY.encode() not in path.read_bytes(), path
    finally:
        receiver.stop()
        sim.stop()
        ids = dockercli.text("ps", "-aq", "--filter", f"label=io.genaiops.deployment={slug(use_case, env)}")
        if ids:
            dockercli.docker("rm", "-f", *ids.split(), check=False)
        tags = dockercli.text("images", "-q", image_name).split()
        if tags:
            dockercli.docker("rmi", "-f", *sorted(set(tags)), check=False)
