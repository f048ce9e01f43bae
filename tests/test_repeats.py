"""Statistics of repeated calls (genaiops.evaluation.repeats): intervals clustered by row cover
the truth as often as they say; pass@k, flaky rows and paired tests over rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genaiops.evaluation.repeats import (
    flaky_rows,
    paired_rates,
    pass_at_k,
    pass_rate,
    row_pass_at_k,
)
from genaiops.evaluation.stats import wilson

TRIALS, ROWS, REPEATS = 300, 40, 5


def simulate(rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """ROWS rows of a population whose rows differ (p ~ Beta(2, 1): mean 2/3), REPEATS calls
    each: what a stochastic model answers on a dataset, seeded."""
    p = rng.beta(2.0, 1.0, size=ROWS)
    calls = rng.random((ROWS, REPEATS)) < p[:, None]
    return {f"row{i}": calls[i].astype(float).tolist() for i in range(ROWS)}, p


def test_cluster_intervals_cover_the_configured_truth():
    """300 simulated evaluations: the 95% interval of the pass rate covers the population's
    2/3 in 92-98% of trials (measured: 0.947); that of pass@3, E[1 - (1-p)^3] = 0.9, near the
    bound where a percentile bootstrap of 40 rows runs short, in 0.903 (asserted >= 0.88); a
    Wilson interval that takes the 200 calls as independent covers the rate less often (0.833:
    rows share their difficulty)."""
    truth_rate, truth_at3 = 2 / 3, 1 - 2 / ((3 + 1) * (3 + 2))  # E[(1-p)^3] = 2/20 under Beta(2,1)
    rng = np.random.default_rng(7)
    covered = {"rate": 0, "at3": 0, "naive": 0}
    for _ in range(TRIALS):
        outcomes, _ = simulate(rng)
        rate, at3 = pass_rate(outcomes), pass_at_k(outcomes, 3)
        covered["rate"] += rate.ci_low <= truth_rate <= rate.ci_high
        covered["at3"] += at3.ci_low <= truth_at3 <= at3.ci_high
        passes = int(sum(sum(v) for v in outcomes.values()))
        low, high = wilson(passes, ROWS * REPEATS)
        covered["naive"] += low <= truth_rate <= high
    coverage = {name: n / TRIALS for name, n in covered.items()}
    print(f"coverage over {TRIALS} trials: {coverage}")
    assert 0.92 <= coverage["rate"] <= 0.98, coverage
    assert 0.88 <= coverage["at3"] <= 0.98, coverage
    assert coverage["naive"] < coverage["rate"] - 0.03, coverage


def test_pass_at_k_is_the_unbiased_estimator():
    assert row_pass_at_k(0, 5, 1) == 0 and row_pass_at_k(5, 5, 3) == 1
    assert row_pass_at_k(1, 5, 1) == pytest.approx(0.2)
    assert row_pass_at_k(1, 5, 2) == pytest.approx(1 - 6 / 10)  # 1 - C(4,2)/C(5,2)
    assert row_pass_at_k(2, 5, 4) == 1.0  # any 4 of 5 include a pass
    with pytest.raises(ValueError, match="at least 3 repeats"):
        row_pass_at_k(1, 2, 3)
    estimate = pass_at_k({"a": [1, 0, 0, 0, 0], "b": [0, 0, 0, 0, 0]}, 1)
    assert estimate.value == pytest.approx(0.1) and (estimate.rows, estimate.calls) == (2, 10)


def test_flaky_rows_are_those_whose_verdict_varies():
    outcomes = {"steady": [1, 1, 1], "broken": [0, 0, 0], "coin": [1, 0, 1, 0], "mostly": [1, 1, 0]}
    assert [f["row"] for f in flaky_rows(outcomes)] == ["coin", "mostly"]
    assert flaky_rows(outcomes)[0] == {"row": "coin", "passed": 2, "repeats": 4, "pass_rate": 0.5}


def test_paired_rates_compare_row_means_over_common_rows():
    base = {f"r{i}": [1, 1, 1, 1] for i in range(30)}
    worse = {f"r{i}": [1, 0, 0, 1] if i < 20 else [1, 1, 1, 1] for i in range(30)}
    result = paired_rates(base, worse)
    assert result.n == 30 and result.delta == pytest.approx(-20 * 0.5 / 30)
    assert result.p_value < 0.01 and result.ci_high < 0  # shown worse, clustered by row
    same = paired_rates(base, base)
    assert same.delta == 0


# -- the simulator's seeded stochastic mode, through the gateway --------------------------------

RULES = {"rules": [{"name": "category", "when": {"prompt": "(?i)ticket: (.*)"},
                    "reply": "{table:category:1}", "accuracy": 0.7}],
         "tables": {"category": [{"pattern": "(?i)invoice", "value": "billing"},
                                 {"pattern": "(?i)crash", "value": "technical"},
                                 {"pattern": ".", "value": "other"}]}}


def ask(client, url: str, text: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": f"ticket: {text}"}]}
    return client.post(url + "/v1/chat/completions", json=body, timeout=10,
                       headers={"Authorization": "Bearer sim"}).json()[
        "choices"][0]["message"]["content"]


def verdicts(url: str, rows: dict[str, str], repeats: int) -> dict[str, list[float]]:
    import httpx

    with httpx.Client() as client:
        return {text: [float(ask(client, url, text) == label) for _ in range(repeats)]
                for text, label in rows.items()}


def test_a_seeded_stochastic_simulator_makes_repeats_vary_and_flaky_rows_show(tmp_path):
    """spread 0 answers every repeat alike; spread 0.5 varies them per call, reproducibly for
    a seed, and the rows whose verdict varies are reported; record/replay keeps them."""
    from genaiops.gateway import LLMGateway
    from genaiops.gateway.cassette import Cassette
    from genaiops.simulator import SimulatorServer

    rows = {f"invoice {i}": "billing" for i in range(6)} | {f"crash {i}": "technical" for i in range(6)}
    with SimulatorServer(rules=RULES, port=0) as sim:
        steady = verdicts(sim.url, rows, 4)
    assert flaky_rows(steady) == []
    runs = []
    for _ in range(2):
        with SimulatorServer(rules=RULES, port=0, spread=0.5, seed=11) as sim:
            runs.append(verdicts(sim.url, rows, 4))
    assert runs[0] == runs[1]  # seeded: the same calls in the same order, the same answers
    flaky = flaky_rows(runs[0])
    assert flaky, runs[0]
    assert 0 < pass_rate(runs[0]).value < 1

    cassette = Cassette(tmp_path / "c", "record")
    with SimulatorServer(rules=RULES, port=0, spread=0.5, seed=11) as sim, LLMGateway() as gw:
        gw.use_cassette(cassette)
        gw.route("llm", sim.url)
        recorded = verdicts(gw.url_for("flow", "llm"), rows, 4)
    cassette.save()
    with LLMGateway() as gw:  # no simulator: repeats answered by occurrence, in order
        gw.use_cassette(Cassette(tmp_path / "c", "replay"))
        gw.route("llm", "http://replay.invalid")
        assert verdicts(gw.url_for("flow", "llm"), rows, 4) == recorded == runs[0]


def test_the_spread_is_checked():
    from genaiops.errors import UsageError
    from genaiops.simulator import SimulatorServer

    with pytest.raises(UsageError, match="spread must be a number from 0 to 1"):
        SimulatorServer(rules=RULES, spread=1.5)


# -- `repeats:` through the CLI ---------------------------------------------------------------


@pytest.mark.promptflow
def test_repeats_run_each_row_n_times_cluster_by_row_report_flaky_rows_and_replay(
        tmp_path, state_dir, capsys, monkeypatch):
    """tickets_pr with `repeats: 3` against a stochastic simulator (classify right 60% of calls):
    30 lines, intervals clustered by row, pass@3 and the flaky rows in the summary; recorded,
    then replayed with no simulator: the same per-row results."""
    import json

    from deploy_helpers import copy_classification_and_port, run_cli, use_small_pr_overlay

    repo = copy_classification_and_port(tmp_path / "repo")
    use_small_pr_overlay(repo)
    rules = repo / "configs/classification/simulator.yaml"
    rules.write_text(rules.read_text().replace("accuracy: 0.97", "accuracy: 0.6"))
    overlay = repo / "configs/classification/experiment.pr.yaml"
    overlay.write_text(overlay.read_text().replace(
        "    description: 10 labelled tickets, 2 per category (PR smoke set)\n",
        "    description: 10 labelled tickets, 2 per category (PR smoke set)\n    repeats: 3\n")
        + "simulator:\n  rules: configs/classification/simulator.yaml\n  spread: 1\n  seed: 3\n"
        + "gates:\n  - {metric: accuracy, op: '>=', threshold: 0.1, judge: ci_low}\n"
        + "  - {metric: accuracy, op: '>=', threshold: 0.99, judge: ci_low}\n")

    def evaluated(mode: str) -> dict:
        for command in ("experiment", "evaluate"):
            code, out, err = run_cli(["--repo", str(repo), "run", command, "-u", "classification",
                                      "-e", "pr", "--llm", mode, "--json"], capsys)
            assert code in (0, 1), out + err  # 1: a gate may fail on a 60% classifier
        return json.loads(out)

    recorded = evaluated("record")
    metrics = {m["metric"]: m for m in recorded["metrics"] if m["source"] != "builtin"}
    assert metrics["score"]["method"] == "cluster_bootstrap"
    assert metrics["score"]["n"] == 10  # samples are rows (30 lines), for min_samples too
    assert metrics["score_pass_at_3"]["n"] == 10
    assert metrics["score_pass_at_3"]["value"] >= metrics["score"]["value"]
    assert metrics["score_flaky_rows"]["value"] > 0  # P(no flaky row) ~ 3e-6
    assert metrics["score"]["ci_low"] < metrics["score"]["value"] < metrics["score"]["ci_high"]

    flaky = [f for f in recorded["flaky"] if f["score"] == "score"]  # every flaky row, listed
    assert len(flaky) == metrics["score_flaky_rows"]["value"]
    assert all(0 < f["passed"] < f["calls"] == 3 and f["lines"] == [3 * f["row"], 3 * f["row"] + 2]
               for f in flaky), flaky
    report = Path(recorded["report_dir"])
    html = (report / "report.html").read_text(encoding="utf-8")
    assert 'id="flaky"' in html and f"{flaky[0]['passed']} / 3" in html
    assert f"Flaky rows ({len(recorded['flaky'])}" in (report / "summary.md").read_text(encoding="utf-8")

    low, high = [g for g in recorded["gates"] if g["metric"] == "accuracy"]
    assert low["status"] == "pass" and high["status"] == "fail", recorded["gates"]
    assert "on its ci_low" in high["message"]

    replayed = evaluated("replay")
    again = {m["metric"]: m for m in replayed["metrics"] if m["source"] != "builtin"}
    for name in ("score", "score_pass_at_3", "score_flaky_rows"):
        assert again[name]["value"] == metrics[name]["value"], name
    assert replayed["llm"]["mode"] == "replay"


JUDGE = """\
  - name: judge
    flow: flows/classification/judge
    repeats: 3
    datasets:
      - name: tickets_pr_judge
        reference: tickets_pr
        mappings: {text: "${data.text}", prediction: "${run.outputs.category}"}
"""


@pytest.mark.promptflow
def test_evaluator_repeats_call_the_judge_n_times_per_line_and_cluster_by_row(
        tmp_path, state_dir, capsys, monkeypatch):
    """An LLM judge with `repeats: 3` on the 10-row PR set, against a stochastic simulator (the
    judge right 60% of calls): 30 judge calls, each its own cassette answer; its score is
    clustered by row (n = 10) with pass@3 and flaky rows; replayed with no simulator: the same.
    An edited judge prompt then fails the replay naming the evaluation run, lines and node."""
    import json

    from deploy_helpers import copy_classification_and_port, run_cli, use_small_pr_overlay

    from genaiops.gateway.cassette import load_entries

    repo = copy_classification_and_port(tmp_path / "repo")
    overlay = use_small_pr_overlay(repo)
    rules = repo / "configs/classification/simulator.yaml"
    rules.write_text(rules.read_text().replace("accuracy: 0.95", "accuracy: 0.6"))
    overlay.write_text(overlay.read_text() + JUDGE
                       + "simulator:\n  rules: configs/classification/simulator.yaml\n"
                       + "  spread: 1\n  seed: 3\n")

    def evaluated(mode: str) -> dict:
        for command in ("experiment", "evaluate"):
            code, out, err = run_cli(["--repo", str(repo), "run", command, "-u", "classification",
                                      "-e", "pr", "--llm", mode, "--json"], capsys)
            assert code in (0, 1), out + err  # 1: a gate may fail
        return json.loads(out)

    recorded = evaluated("record")
    metrics = {m["metric"]: m for m in recorded["metrics"] if m["evaluator"] == "judge"}
    assert metrics["agrees"]["method"] == "cluster_bootstrap"
    assert metrics["agrees"]["n"] == 10  # samples are rows, not the 30 judge calls
    assert metrics["agrees_pass_at_3"]["value"] >= metrics["agrees"]["value"]
    assert metrics["agrees_flaky_rows"]["value"] > 0  # a 60% judge: P(no flaky row) ~ 3e-6
    judged = [e for e in load_entries(repo / "cassettes/classification").values()
              if "review the triage" in json.dumps(e["request"]["body"]).lower()]
    assert sum(len(e["answers"]) for e in judged) == 30  # each repeat its own recorded call
    assert {len(e["answers"]) for e in judged} == {3}  # the same request, answered by occurrence
    accuracy = {m["metric"]: m for m in recorded["metrics"] if m["evaluator"] == "accuracy"}
    assert accuracy["score"]["n"] == 10 and accuracy["score"]["method"] != "cluster_bootstrap"

    replayed = evaluated("replay")
    again = {m["metric"]: m for m in replayed["metrics"] if m["evaluator"] == "judge"}
    for name in ("agrees", "agrees_pass_at_3", "agrees_flaky_rows"):
        assert again[name]["value"] == metrics[name]["value"], name

    # an edited judge prompt: the miss names the evaluation run, its lines, the node and the diff
    judge = repo / "flows/classification/judge/judge.jinja2"
    judge.write_text(judge.read_text().replace("You review the triage", "You audit the triage"))
    code, out, err = run_cli(["--repo", str(repo), "run", "evaluate", "-u", "classification",
                              "-e", "pr", "--llm", "replay", "--json"], capsys)
    assert code == 2, out + err
    error = json.loads(out)["error"]
    assert "no recorded answer" in error and "evaluation run " in error, error
    assert "(evaluator judge on " in error and "line 0" in error and "(node judge)" in error, error
    assert "-  You review the triage" in error and "+  You audit the triage" in error, error


def test_evaluator_repeats_must_be_a_positive_integer(tmp_path, state_dir, capsys):
    import json

    from deploy_helpers import copy_classification_and_port, run_cli, use_small_pr_overlay

    repo = copy_classification_and_port(tmp_path / "repo")
    overlay = use_small_pr_overlay(repo)
    overlay.write_text(overlay.read_text() + JUDGE.replace("repeats: 3", "repeats: 0"))
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "classification",
                              "-e", "pr", "--json"], capsys)
    assert code == 2, out + err
    error = json.loads(out)["error"]
    assert "experiment.pr.yaml" in error and "repeats" in error, error
    line = overlay.read_text().splitlines().index("    repeats: 0") + 1
    assert f"experiment.pr.yaml:{line}: evaluators[1].repeats" in error, error


@pytest.mark.promptflow
@pytest.mark.agent_framework
def test_compare_pairs_rows_not_repeats(tmp_path, state_dir, capsys):
    """`compare` of the promptflow flow and its Agent Framework port, both with `repeats: 3` on
    the 10-row PR set against a stochastic simulator: the parity test pairs the 10 rows on their
    mean over repeats (a paired bootstrap over row means), never the 30 calls as if independent."""
    import json

    from deploy_helpers import PORT, SMALL_PR_OVERLAY, copy_classification_and_port, run_cli

    repo = copy_classification_and_port(tmp_path / "repo")
    rules = repo / "configs/classification/simulator.yaml"
    rules.write_text(rules.read_text().replace("accuracy: 0.97", "accuracy: 0.6"))
    overlay = SMALL_PR_OVERLAY.replace(
        "    description: 10 labelled tickets, 2 per category (PR smoke set)\n",
        "    description: 10 labelled tickets, 2 per category (PR smoke set)\n    repeats: 3\n") \
        + "simulator:\n  rules: configs/classification/simulator.yaml\n  spread: 1\n  seed: 3\n"
    for use_case in ("classification", PORT):
        (repo / f"configs/{use_case}/experiment.pr.yaml").write_text(overlay)
    code, out, err = run_cli(["--repo", str(repo), "compare", "-e", "pr", "--baseline",
                              "classification", "--candidate", PORT, "--margin", "0.5",
                              "--min-samples", "5", "--json"], capsys)
    assert code in (0, 1), out + err
    [metric] = json.loads(out)["metrics"]
    assert metric["metric"] == "accuracy" and metric["n"] == 10, metric  # rows, not 30 calls
    assert metric["n_unpaired"] == 0
    assert metric["method"] == "paired_bootstrap", metric  # row means are fractions of 3 calls
    assert metric["baseline"]["value"] is not None and metric["candidate"]["value"] is not None
