"""`genaiops feedback promote` through the CLI: feedback spans in the embedded store (as the serving
images record them) become reviewed, redacted, PII-scrubbed, deduplicated rows; --apply appends
them to the regressions dataset, and the next PR verdict evaluates them."""

from __future__ import annotations

import json
import secrets
import time

import pytest
from deploy_helpers import PORT, copy_classification_and_port, run_cli

from genaiops.evaluation.summary import Summary
from genaiops.monitoring.store import Span, TraceStore
from genaiops.secrets import REDACTOR
from genaiops.workspace import Workspace

CANARY = "sk-canary-5e6f7a8b9c0d"


def _request(store: TraceStore, text: str, *, rating=None, correction=None, capture=True) -> str:
    trace_id, now = secrets.token_hex(16), time.time_ns()
    resource = {"genaiops.use_case": PORT, "deployment.environment": "local", "genaiops.image": "sha256:x"}
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.response.id": "resp-" + trace_id[:8]}
    if capture:
        attrs |= {"genaiops.inputs": json.dumps({"text": text}), "genaiops.outputs": json.dumps({"category": "other"})}
    spans = [Span(trace_id, secrets.token_hex(8), "invoke_agent uc", now, now + 1000, attributes=attrs,
                  resource=resource)]
    if rating is not None:
        fb = {"genaiops.feedback.trace_id": trace_id, "genaiops.feedback.rating": rating}
        if correction is not None:
            fb["genaiops.feedback.correction"] = json.dumps(correction)
        spans.append(Span(secrets.token_hex(16), secrets.token_hex(8), "gen_ai.user.feedback", now + 2000,
                          now + 3000, attributes=fb, resource=resource))
    store.add_spans(spans)
    return trace_id


@pytest.fixture
def repo(tmp_path, state_dir, monkeypatch):
    monkeypatch.setattr(REDACTOR, "_values", set())
    monkeypatch.setattr(REDACTOR, "_pattern", None)
    root = copy_classification_and_port(tmp_path / "repo")
    (root / f"configs/{PORT}/deployment.yaml").write_text("environments:\n  local:\n    target: docker\n")
    with open(root / f"configs/{PORT}/experiment.yaml", "a") as handle:
        handle.write("monitoring:\n  corrections: {category: label}\n")
    return root


def test_promote_reviews_then_applies_redacted_deduplicated_rows(repo, capsys):
    REDACTOR.add(CANARY)
    store = TraceStore(Workspace.for_repo(repo).traces_db)
    _request(store, "Refund my card please, write to jo@example.com", rating=-1, correction={"category": "billing"})
    _request(store, f"my api key {CANARY} stopped working", rating=-2, correction={"category": "account"})
    _request(store, "Refund my card please, write to jo@example.com", rating=-1, correction={"category": "billing"})
    _request(store, "all good", rating=1)
    _request(store, "no content captured here", rating=-1, capture=False)
    dataset = repo / f"datasets/{PORT}/regressions.jsonl"
    code, out, err = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local"], capsys)
    assert code == 0, out + err
    assert "4 flagged, 2 new row(s), 1 already in" in out and "no inputs recorded" in out
    assert not dataset.exists() and "not applied" in out
    candidates = [json.loads(line) for line in
                  (Workspace.for_repo(repo).feedback_dir(PORT, "local") / "candidates.jsonl").read_text().splitlines()]
    assert {"text": "Refund my card please, write to <email>", "label": "billing"} in candidates
    assert {"text": "my api key *** stopped working", "label": "account"} in candidates

    code, out, _ = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local", "--apply"], capsys)
    assert code == 0 and "applied to" in out
    assert len(dataset.read_text().splitlines()) == 2 and CANARY not in dataset.read_text()
    code, out, _ = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local", "--apply"], capsys)
    assert code == 0 and "0 new row(s), 3 already in" in out and "nothing new" in out
    assert len(dataset.read_text().splitlines()) == 2  # unchanged: nothing to register again


def test_bad_where_is_a_usage_error(repo, capsys):
    code, out, err = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local",
                              "--where", "stars>>2"], capsys)
    assert code == 2 and "--where 'stars>>2' is not" in out + err


@pytest.mark.agent_framework
def test_the_next_pr_verdict_evaluates_promoted_rows(repo, capsys):
    store = TraceStore(Workspace.for_repo(repo).traces_db)
    _request(store, "I was charged twice for my invoice", rating=-1, correction={"category": "billing"})
    _request(store, "I cannot log in, my password reset fails", rating=-1, correction={"category": "account"})
    code, out, _ = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local", "--apply"], capsys)
    assert code == 0 and "2 new row(s)" in out
    overlay = repo / f"configs/{PORT}/experiment.pr.yaml"
    overlay.write_text(overlay.read_text().replace("evaluators:", f"""\
  - name: regressions
    source: datasets/{PORT}/regressions.jsonl
    mappings:
      text: ${{data.text}}
evaluators:""") + """\
      - name: regressions_eval
        reference: regressions
        mappings:
          groundtruth: ${data.label}
          prediction: ${run.outputs.category}
""")
    code, out, err = run_cli(["--repo", str(repo), "run", "verdict", "-u", PORT, "-e", "pr", "--no-progress"], capsys)
    assert code in (0, 1), out + err
    [path] = (Workspace.for_repo(repo).root / "reports" / PORT).glob("*/summary.json")
    summary = Summary.from_json(path.read_text())
    scored = [m for m in summary.metrics if m.dataset == "regressions" and m.evaluator == "accuracy"]
    assert scored and scored[0].n == 2, [(m.dataset, m.evaluator, m.metric) for m in summary.metrics]


@pytest.mark.agent_framework
def test_feedback_without_a_correction_is_scored_by_reference_free_evaluators_and_skipped_by_the_others(repo, capsys):
    """A flagged answer nobody corrected becomes an inputs-only row: the next PR verdict runs the
    flow on it, the reference-free evaluator scores it, and accuracy (which needs the label) skips
    it with the reason - neither a config error nor a silent drop."""
    (repo / "flows/classification/known.py").write_text(
        "def known(category):\n    return {'known': int(category in {'billing', 'technical', 'account', "
        "'shipping', 'other'})}\n")
    store = TraceStore(Workspace.for_repo(repo).traces_db)
    _request(store, "I was charged twice for my invoice", rating=-1, correction={"category": "billing"})
    _request(store, "I cannot log in, my password reset fails", rating=-1)  # no correction
    dataset = repo / f"datasets/{PORT}/regressions.jsonl"
    code, out, _ = run_cli(["--repo", str(repo), "feedback", "promote", "-u", PORT, "-e", "local", "--apply"], capsys)
    assert code == 0 and "2 new row(s)" in out and "1 new row(s) without a correction: inputs only" in out, out
    assert {"text": "I cannot log in, my password reset fails"} in [json.loads(x) for x in dataset.read_text().splitlines()]
    overlay = repo / f"configs/{PORT}/experiment.pr.yaml"
    overlay.write_text(overlay.read_text().replace("evaluators:", f"""\
  - name: regressions
    source: datasets/{PORT}/regressions.jsonl
    mappings:
      text: ${{data.text}}
evaluators:
  - name: known_category
    code: flows/classification/known.py:known
    reference_free: true
    datasets:
      - name: regressions_known
        reference: regressions
        mappings: {{category: "${{run.outputs.category}}"}}""") + """\
      - name: regressions_eval
        reference: regressions
        mappings:
          groundtruth: ${data.label}
          prediction: ${run.outputs.category}
""")
    code, out, err = run_cli(["--repo", str(repo), "run", "verdict", "-u", PORT, "-e", "pr", "--no-progress"], capsys)
    assert code in (0, 1) and "Traceback" not in out + err, out + err
    [path] = (Workspace.for_repo(repo).root / "reports" / PORT).glob("*/summary.json")
    summary = Summary.from_json(path.read_text())
    on_regressions = {(m.evaluator, m.metric): m for m in summary.metrics if m.dataset == "regressions"}
    known = on_regressions[("known_category", "known")]
    assert known.n == known.n_valid == 2 and known.n_error == 0  # both rows, the uncorrected one too
    grades = [m for (evaluator, _), m in on_regressions.items() if evaluator == "accuracy"]
    assert grades and all((m.n, m.n_valid, m.n_error) == (2, 1, 1) for m in grades), on_regressions
    block = next(b for b in summary.scores if b.dataset == "regressions" and b.evaluator == "accuracy")
    [reason] = block.errors.values()
    assert reason.startswith("not scored: no ground truth: the row has no 'label'") and "accuracy needs" in reason
