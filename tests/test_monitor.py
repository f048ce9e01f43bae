"""`genaiops monitor` through the CLI: a real evaluation (the Agent Framework port, `-e pr`) is the
approved one, a deployment of its variant is on the audit chain, and the embedded store holds that
image's request spans; steady traffic passes, failing traffic is drift naming the metric and both
figures, thin traffic is said to be too thin, and nothing deployed is a usage error."""

from __future__ import annotations

import json
import re
import secrets
import time

import pytest
from deploy_helpers import PORT, copy_classification_and_port, run_cli

from genaiops.deploy import audit
from genaiops.evaluation.summary import Summary
from genaiops.monitoring.store import STATUS_ERROR, Span, TraceStore
from genaiops.workspace import Workspace

pytestmark = pytest.mark.agent_framework
ARTIFACT = "sha256:" + "ab" * 32
# the sample's LLM judge (flows/classification/judge, a promptflow flow that calls the model): it
# needs no ground truth, so monitor runs it on the sampled requests through the gateway
JUDGE = """  - name: judge
    flow: flows/classification/judge
    reference_free: true
    datasets:
      - name: {dataset}_judge
        reference: {dataset}
        mappings: {{text: "${{data.text}}", prediction: "${{run.outputs.category}}"}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = copy_classification_and_port(tmp_path_factory.mktemp("repo"))
    (root / f"configs/{PORT}/deployment.yaml").write_text(
        "environments:\n  local:\n    target: docker\n    port: 18080\n")
    # a reference-free code evaluator: is the answer one of the categories? (no ground truth needed)
    (root / "flows/classification/known.py").write_text(
        "def known(category):\n    return {'known': int(category in {'billing', 'technical', 'account', "
        "'shipping', 'other'})}\n")
    for name, dataset in (("experiment.pr.yaml", "tickets_pr"), ("experiment.yaml", "tickets")):
        path = root / f"configs/{PORT}/{name}"
        path.write_text(path.read_text().replace("evaluators:\n", f"""evaluators:
  - name: known_category
    code: flows/classification/known.py:known
    reference_free: true
    datasets:
      - name: {dataset}_known
        reference: {dataset}
        mappings: {{category: "${{run.outputs.category}}"}}
""" + (JUDGE.format(dataset=dataset) if name == "experiment.pr.yaml" else ""), 1))
    # env `judged`: the base config plus the judge, and a margin on its agreement
    base = (root / f"configs/{PORT}/experiment.yaml").read_text()
    evaluators = base[base.index("evaluators:\n"):base.index("runtime:")]
    (root / f"configs/{PORT}/experiment.judged.yaml").write_text(
        evaluators + JUDGE.format(dataset="tickets")
        + "monitoring:\n  margins: {builtin.error_rate: 0.05, judge.agrees: 0.2}\n")
    with open(root / f"configs/{PORT}/experiment.yaml", "a") as handle:
        handle.write("monitoring:\n  margins: {builtin.error_rate: 0.05, known_category.known: 0.1}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAIOPS_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        patch.setenv("GENAIOPS_TRUST_DIR", str(tmp_path_factory.mktemp("trust")))
        patch.delenv("GENAIOPS_AUDIT_KEY", raising=False)
        from genaiops.cli import main

        assert main(["--repo", str(root), "audit", "init"]) == 0
        assert main(["--repo", str(root), "run", "verdict", "-u", PORT, "-e", "pr", "--no-progress"]) == 0
        workspace = Workspace.for_repo(root)
        [path] = (workspace.root / "reports" / PORT).glob("*/summary.json")
        summary = Summary.from_json(path.read_text())
        audit.audit_log(workspace).append({
            "event": "deployed", "ok": True, "use_case": PORT, "env": "local", "target": "docker",
            "artifact": ARTIFACT, "variant": {"label": summary.best.variant},
            "image": {"image_id": ARTIFACT, "labels": {"summary_digest": summary.digest()}}})
        yield {"root": root, "workspace": workspace, "summary": summary}


def _traffic(world, env: str, n: int, failed: int = 0, tokens: int = 250, category: str = "account",
             artifact: str = ARTIFACT) -> None:
    """`n` requests of the deployed image (the first `failed` of them failed) in `env`, their
    inputs and outputs recorded (content capture on); the tickets are about an account."""
    now = time.time_ns()
    spans = []
    for i in range(n):
        start = now - (i + 1) * 1_000_000_000
        spans.append(Span(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8), name="invoke_agent uc",
                          start_ns=start, end_ns=start + 150_000_000, status_code=STATUS_ERROR if i < failed else 0,
                          attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": tokens - 20,
                                      "gen_ai.usage.output_tokens": 20, "gen_ai.response.model": "gpt-4o-mini",
                                      "genaiops.inputs": json.dumps({"text": f"I cannot log in to my account {i}"}),
                                      "genaiops.outputs": json.dumps({"category": category, "summary": "s"})},
                          resource={"genaiops.use_case": PORT, "deployment.environment": env,
                                    "genaiops.image": artifact}))
    TraceStore(world["workspace"].traces_db).add_spans(spans)


def _monitor(world, capsys, env="local", *extra):
    code, out, err = run_cli(["--repo", str(world["root"]), "monitor", "-u", PORT, "-e", env, *extra], capsys)
    return code, out + err


def test_steady_traffic_passes_and_writes_reports_and_evaluation_events(world, capsys):
    _traffic(world, "local", 30)
    code, text = _monitor(world, capsys, "local", "--sample", "0.5", "--json")
    assert code == 0, text
    result = json.loads(text[text.index("{"):])
    assert result["verdict"] == "pass" and result["requests"] == 30
    assert result["approved_from"] == world["summary"].id
    checks = {c["metric"]: c for c in result["checks"]}
    assert checks["builtin.error_rate"]["status"] == "pass" and checks["builtin.error_rate"]["approved"] == 0
    assert checks["builtin.tokens_per_request"]["value"] == 250
    assert checks["builtin.cost_per_request"]["value"] > 0  # the use case's prices
    known = checks["known_category.known"]  # the reference-free evaluator, on the sample only
    assert known["value"] == 1 and known["approved"] == 1 and known["status"] == "pass"
    assert known["n"] == result["sampled"] and 0 < result["sampled"] < 30
    events = TraceStore(world["workspace"].traces_db).events(name="gen_ai.evaluation.result")
    names = [e["attributes"]["gen_ai.evaluation.name"] for e in events]
    assert names.count("known_category.known") == names.count("builtin.success") == result["sampled"]
    for name in ("monitor.json", "monitor.md", "junit.xml", "report.html"):
        assert (world["workspace"].root / result["report_dir"] / name).is_file()


def test_failing_traffic_is_drift_naming_the_metric(world, capsys, tmp_path):
    (world["root"] / f"configs/{PORT}/deployment.yaml").write_text(
        "environments:\n  local:\n    target: docker\n    port: 18080\n  drifty:\n    target: docker\n    port: 18090\n")
    audit.audit_log(world["workspace"]).append({
        "event": "deployed", "ok": True, "use_case": PORT, "env": "drifty", "artifact": ARTIFACT,
        "variant": {"label": world["summary"].best.variant},
        "image": {"labels": {"summary_digest": world["summary"].digest()}}})
    _traffic(world, "drifty", 30, failed=9)
    code, text = _monitor(world, capsys, "drifty")
    assert code == 1, text
    assert "verdict: DRIFT" in text
    assert "builtin.error_rate 0.3 (95% CI" in text and "vs approved 0, margin 0.05" in text


def test_answers_a_reference_free_evaluator_rejects_are_drift(world, capsys):
    (world["root"] / f"configs/{PORT}/deployment.yaml").write_text(
        "environments:\n  local:\n    target: docker\n    port: 18080\n  odd:\n    target: docker\n    port: 18094\n")
    audit.audit_log(world["workspace"]).append({
        "event": "deployed", "ok": True, "use_case": PORT, "env": "odd", "artifact": ARTIFACT,
        "variant": {"label": world["summary"].best.variant},
        "image": {"labels": {"summary_digest": world["summary"].digest()}}})
    _traffic(world, "odd", 30, category="refunds?")  # not a category: a changed model's answer
    code, text = _monitor(world, capsys, "odd")
    assert code == 1, text
    assert "known_category.known 0 (95% CI" in text and "vs approved 1, margin 0.1" in text


def _deploy(world, env: str, artifact: str) -> None:
    (world["root"] / f"configs/{PORT}/deployment.yaml").write_text(
        f"environments:\n  local:\n    target: docker\n    port: 18080\n  {env}:\n    target: docker\n"
        "    port: 18096\n")
    audit.audit_log(world["workspace"]).append({
        "event": "deployed", "ok": True, "use_case": PORT, "env": env, "artifact": artifact,
        "variant": {"label": world["summary"].best.variant},
        "image": {"labels": {"summary_digest": world["summary"].digest()}}})


def test_llm_judge_scores_the_sample_through_the_gateway_and_its_drift_fails(world, capsys):
    """The judge flow runs on the sampled requests (the simulator answers it through the gateway's
    evaluators pool); answers it disagrees with are drift of `judge.agrees`, named with both figures."""
    approved = world["summary"].find_metric(world["summary"].best.variant, "agrees", evaluator="judge")
    assert approved is not None and approved.value >= 0.7  # the verdict ran the judge too
    _deploy(world, "judged", ARTIFACT)
    _traffic(world, "judged", 24)  # account tickets answered `account`: the judge agrees
    code, text = _monitor(world, capsys, "judged", "--sample", "0.6", "--json")
    assert code == 0, text
    result = json.loads(text[text.index("{"):])
    checks = {c["metric"]: c for c in result["checks"]}
    agrees = checks["judge.agrees"]
    assert agrees["status"] == "pass" and agrees["n"] == result["sampled"] > 0 and agrees["value"] >= 0.8
    assert agrees["approved"] == approved.value
    assert result["llm_calls"] == {"evaluators": result["sampled"]}  # one judge call per sampled request
    events = TraceStore(world["workspace"].traces_db).events(name="gen_ai.evaluation.result")
    assert sum(e["attributes"]["gen_ai.evaluation.name"] == "judge.agrees" for e in events) == result["sampled"]

    other = "sha256:" + "cd" * 32  # a new image whose answers the judge rejects
    _deploy(world, "judged", other)
    _traffic(world, "judged", 24, category="shipping", artifact=other)
    code, text = _monitor(world, capsys, "judged")
    assert code == 1, text
    assert "verdict: DRIFT" in text
    assert re.search(r"drift: judge\.agrees (0|0\.0\d+) \(95% CI", text), text  # the judge is right 95% of the time
    assert f"vs approved {approved.value:.4g}, margin 0.2: worse beyond the margin" in text


def test_thin_traffic_is_not_judged(world, capsys):
    (world["root"] / f"configs/{PORT}/deployment.yaml").write_text(
        "environments:\n  local:\n    target: docker\n    port: 18080\n  thin:\n    target: docker\n    port: 18092\n")
    audit.audit_log(world["workspace"]).append({
        "event": "deployed", "ok": True, "use_case": PORT, "env": "thin", "artifact": ARTIFACT,
        "variant": {"label": world["summary"].best.variant}, "image": {"labels": {}}})
    _traffic(world, "thin", 4, failed=4)
    code, text = _monitor(world, capsys, "thin")
    assert code == 0, text
    assert "too thin to judge: 4 request(s)" in text and "min_requests is 20" in text


def test_nothing_deployed_is_a_usage_error(world, capsys):
    code, text = _monitor(world, capsys, "pr")
    assert code == 2 and "nothing of classification_maf is deployed to 'pr'" in text


def test_llm_judge_calls_are_recorded_and_replayed(world, capsys):
    """`monitor --llm record` keeps the judge's answers in the cassette; `--llm replay` scores the same
    sample from it, with no simulator or endpoint, to the same figure."""
    other = "sha256:" + "ef" * 32
    _deploy(world, "judged", other)
    _traffic(world, "judged", 21, artifact=other)
    figures = []
    for mode in ("record", "replay"):
        code, text = _monitor(world, capsys, "judged", "--llm", mode, "--json")
        assert code == 0, text
        result = json.loads(text[text.index("{"):])
        figures.append((result["sampled"], {c["metric"]: c["value"] for c in result["checks"]}["judge.agrees"]))
    assert figures[0] == figures[1] and figures[0][0] == 21
