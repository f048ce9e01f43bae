"""The two sample use cases run for real: promptflow batch runs against the loopback LLM
simulator, then evaluation runs over their outputs.

Runs are expensive (~5 s each with promptflow's own start-up, ~1 s with genaiops', see `pf`), so
each use case makes its runs once in a module-scoped fixture and the tests read them. The fast tests at the top check that datasets, simulator rules and
helper code agree with each other without starting promptflow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from genaiops.simulator import SimulatorServer, load_rules

CATEGORIES = {"billing", "technical", "account", "shipping", "other"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"sample_{path.parent.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _failed_lines(run) -> int:
    return run.properties["system_metrics"]["__pf__.lines.failed"]


def _completed_lines(run) -> int:
    return run.properties["system_metrics"]["__pf__.lines.completed"]


# ------------------------------------------------------------------ fast checks (no promptflow)


@pytest.mark.parametrize("dataset", ["tickets.jsonl", "tickets_pr.jsonl"])
def test_ticket_datasets_are_labelled_with_known_categories(repo_root, dataset):
    rows = _rows(repo_root / "datasets/classification" / dataset)
    assert len(rows) >= (40 if dataset == "tickets.jsonl" else 10)
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["label"] for r in rows} == CATEGORIES
    assert all(r["text"].strip() and "\n" not in r["text"] for r in rows)


@pytest.mark.parametrize("dataset", ["tickets.jsonl", "tickets_pr.jsonl"])
def test_simulator_table_knows_every_ticket(repo_root, dataset):
    """The careful variant's ceiling: the simulator's lookup table must agree with every label,
    so accuracy below 1 comes only from the rules' `accuracy` knob, not from a stale table."""
    table = load_rules(repo_root / "configs/classification/simulator.yaml").tables["ticket_category"]
    wrong = [r["id"] for r in _rows(repo_root / "datasets/classification" / dataset)
             if table.lookup(r["text"]) != r["label"]]
    assert wrong == []


@pytest.mark.parametrize("dataset", ["questions.jsonl", "questions_pr.jsonl"])
def test_qa_datasets_and_simulator_answers_agree(repo_root, dataset):
    rows = _rows(repo_root / "datasets/qa" / dataset)
    assert len(rows) >= (30 if dataset == "questions.jsonl" else 8)
    assert all(r["question"] and r["context"] and r["ground_truth"] for r in rows)
    table = load_rules(repo_root / "configs/qa/simulator.yaml").tables["qa_answer"]
    assert [table.lookup(r["question"]) for r in rows] == [r["ground_truth"] for r in rows]
    # Answerable ground truths are grounded in their context (up to case).
    for r in rows:
        if r["ground_truth"] not in ("I don't know", "Yes", "No", "2 years", "free"):
            assert r["ground_truth"].lower() in r["context"].lower(), r["id"]


def test_normalize_maps_model_replies_to_categories(repo_root):
    normalize = _module(repo_root / "flows/classification/standard/normalize.py").normalize
    assert normalize("Category: Billing.") == "billing"
    assert normalize("  TECHNICAL ") == "technical"
    assert normalize("This is a login problem") == "account"
    assert normalize("I am not sure") == "other"
    assert normalize("") == "other"


def test_classification_eval_nodes_score_and_aggregate(repo_root, monkeypatch):
    flow = repo_root / "flows/classification/evaluation"
    grade = _module(flow / "grade.py").grade
    assert grade("billing", " Billing ") == 1 and grade("billing", "other") == 0
    aggregate_module = _module(flow / "aggregate.py")
    logged = {}
    monkeypatch.setattr(aggregate_module, "log_metric", lambda k, v: logged.__setitem__(k, v))
    result = aggregate_module.aggregate([1, 1, 0, 1], ["billing", "billing", "other", "other"])
    assert result["accuracy"] == 0.75 and result["count"] == 4
    assert result["macro_recall"] == 0.75  # billing 2/2, other 1/2
    assert logged == {"accuracy": 0.75, "macro_recall": 0.75}
    with pytest.raises(ValueError):
        aggregate_module.aggregate([], [])


def test_qa_evaluator_is_plain_python(repo_root):
    evaluator = _module(repo_root / "flows/qa/evaluation/evaluator.py").QAEvaluator()
    exact = evaluator(answer="The 30 days.", ground_truth="30 days")
    assert (exact.exact_match, exact.f1, exact.contains) == (1.0, 1.0, 1.0)
    wrapped = evaluator(answer="Based on the context: 30 days.", ground_truth="30 days")
    assert wrapped.exact_match == 0.0 and wrapped.contains == 1.0 and 0.5 < wrapped.f1 < 0.6
    wrong = evaluator(answer="45 liters", ground_truth="30 days")
    assert (wrong.exact_match, wrong.f1, wrong.contains) == (0.0, 0.0, 0.0)
    assert evaluator.__aggregate__([exact, wrong]) == {"exact_match": 0.5, "f1": 0.5, "contains": 0.5}
    with pytest.raises(ValueError):
        evaluator.__aggregate__([])


def test_sample_requests_match_flow_inputs(repo_root):
    assert set(json.loads((repo_root / "configs/classification/sample-request.json").read_text())) == {"text"}
    assert set(json.loads((repo_root / "configs/qa/sample-request.json").read_text())) == {"question", "context"}


# ------------------------------------------------------------------ real promptflow runs


@contextlib.contextmanager
def _two_workers():
    """2 workers, not promptflow's 4: on a 2-core machine worker start-up dominates a run."""
    old = os.environ.get("PF_WORKER_COUNT")
    os.environ["PF_WORKER_COUNT"] = "2"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PF_WORKER_COUNT", None)
        else:
            os.environ["PF_WORKER_COUNT"] = old


@pytest.fixture(scope="module")
def pf():
    """promptflow's client, its batch runs started the way genaiops' workers start them
    (`fastbatch`): each run's manager process forked from a forkserver that imported promptflow
    once, instead of a fresh interpreter importing it again (~2.4 s of CPU a run), and the batch
    engine's 1 s polling sleeps at most 0.05 s. The flows, their line processes and promptflow's
    batch engine are unchanged; both patches are undone after this module."""
    from promptflow.batch import _batch_engine
    from promptflow.client import PFClient
    from promptflow.executor import _line_execution_process_pool, _process_manager

    from genaiops.engines.promptflow import fastbatch

    saved = [(module, name, getattr(module, name)) for module, name in
             ((_batch_engine, "asyncio"), (_line_execution_process_pool, "asyncio"), (_process_manager, "time"))]
    saved.append((_process_manager.ForkProcessManager, "start_processes",
                  _process_manager.ForkProcessManager.__dict__["start_processes"]))
    assert fastbatch.shorten_polls() and fastbatch.use_forkserver(), "promptflow's batch modules changed shape"
    try:
        yield PFClient()
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _use_openai(pf, sim) -> None:
    from promptflow.entities import OpenAIConnection

    pf.connections.create_or_update(OpenAIConnection(name="llm", api_key="sim-key", base_url=sim.openai_base_url))


def _use_azure(pf, sim) -> None:
    from promptflow.entities import AzureOpenAIConnection

    pf.connections.create_or_update(AzureOpenAIConnection(
        name="llm", api_key="sim-key", api_base=sim.azure_endpoint, api_version="2024-06-01"))


@pytest.fixture(scope="module")
def classification(repo_root, pf):
    """Default variants (summarize.full + classify.careful) and classify.terse, each evaluated."""
    flow = repo_root / "flows/classification/standard"
    data = repo_root / "datasets/classification/tickets.jsonl"
    with _two_workers(), SimulatorServer(rules_path=repo_root / "configs/classification/simulator.yaml") as sim:
        _use_openai(pf, sim)
        runs = {
            "careful": pf.run(flow=str(flow), data=str(data), column_mapping={"text": "${data.text}"}),
            "terse": pf.run(flow=str(flow), data=str(data), column_mapping={"text": "${data.text}"},
                            variant="${classify.terse}"),
        }
        stats = sim.stats.snapshot()
        evals = {
            name: pf.run(flow=str(repo_root / "flows/classification/evaluation"), data=str(data), run=run,
                         column_mapping={"groundtruth": "${data.label}",
                                         "prediction": "${run.outputs.category}"})
            for name, run in runs.items()
        }
        yield SimpleNamespace(sim=sim, runs=runs, evals=evals, stats=stats, rows=_rows(data), flow=flow)


@pytest.mark.promptflow
def test_classification_runs_complete_every_line(classification):
    n = len(classification.rows)
    for run in (*classification.runs.values(), *classification.evals.values()):
        assert run.status == "Completed"
        assert _failed_lines(run) == 0
        assert _completed_lines(run) == n


@pytest.mark.promptflow
def test_classification_outputs_are_categories(classification, pf):
    details = pf.get_details(classification.runs["careful"])
    assert len(details) == len(classification.rows)
    assert set(details["outputs.category"]) <= CATEGORIES
    # Lines come back in dataset order; the careful variant gets the first ticket right.
    assert details["inputs.text"].tolist() == [r["text"] for r in classification.rows]
    assert details["outputs.category"].iloc[0] == "billing"
    assert details["outputs.summary"].iloc[0].startswith("The customer writes: I was charged twice")
    # terse answers "Category: Billing"; the normalize node must have cleaned that up.
    assert set(pf.get_details(classification.runs["terse"])["outputs.category"]) <= CATEGORIES


@pytest.mark.promptflow
def test_classification_variants_score_differently(classification, pf):
    careful = pf.get_metrics(classification.evals["careful"])
    terse = pf.get_metrics(classification.evals["terse"])
    assert careful["accuracy"] >= 0.9
    assert 0.55 <= terse["accuracy"] <= 0.8
    assert careful["accuracy"] - terse["accuracy"] >= 0.15
    assert 0 < careful["macro_recall"] <= 1
    # Per-line scores agree with the metric.
    scores = pf.get_details(classification.evals["careful"])["outputs.score"]
    assert len(scores) == len(classification.rows)
    assert scores.mean() == pytest.approx(careful["accuracy"], abs=1e-4)


@pytest.mark.promptflow
def test_classification_variant_prompts_reached_the_simulator(classification):
    by_rule = classification.stats["by_rule"]
    n = len(classification.rows)
    assert by_rule == {"summarize_full": 2 * n, "classify_careful": n, "classify_terse": n}


@pytest.mark.promptflow
def test_classification_flow_runs_on_an_azure_openai_connection(classification, pf, tmp_path):
    """Same flow, only the connection type changes: the LLM nodes must use `deployment_name`."""
    flow = tmp_path / "flow"  # pf.test writes .promptflow/ into the flow folder: use a copy
    shutil.copytree(classification.flow, flow)
    before = classification.sim.stats.snapshot()["by_rule"].get("classify_careful", 0)
    _use_azure(pf, classification.sim)
    result = pf.test(flow=str(flow), inputs={"text": "My package was marked as delivered but it is not at my door."},
                     variant="${summarize.brief}")
    assert result["category"] == "shipping"
    assert result["summary"].startswith("Main problem: My package was marked as delivered")
    assert classification.sim.stats.snapshot()["by_rule"]["classify_careful"] == before + 1


@pytest.fixture(scope="module")
def qa(repo_root, pf):
    """The two config variants of the flex flow; concise through an Azure OpenAI connection,
    detailed through an OpenAI one, so the same flow code proves both client paths."""
    flow = repo_root / "flows/qa/standard"
    data = repo_root / "datasets/qa/questions.jsonl"
    mapping = {"question": "${data.question}", "context": "${data.context}"}
    config_variants = {v["name"]: v["init"] for v in _config_variants(repo_root / "configs/qa/experiment.yaml")}
    with _two_workers():
        with SimulatorServer(rules_path=repo_root / "configs/qa/simulator.yaml") as sim:
            _use_azure(pf, sim)
            runs = {"concise": pf.run(flow=str(flow), data=str(data), column_mapping=mapping,
                                      init=config_variants["concise"])}
            _use_openai(pf, sim)
            runs["detailed"] = pf.run(flow=str(flow), data=str(data), column_mapping=mapping,
                                      init=config_variants["detailed"])
            stats = sim.stats.snapshot()
        evals = {
            name: pf.run(flow=str(repo_root / "flows/qa/evaluation"), data=str(data), run=run,
                         column_mapping={"answer": "${run.outputs.answer}",
                                         "ground_truth": "${data.ground_truth}"})
            for name, run in runs.items()
        }
    return SimpleNamespace(runs=runs, evals=evals, stats=stats, rows=_rows(data))


def _config_variants(path: Path) -> list[dict]:
    import yaml

    return yaml.safe_load(path.read_text())["variants"]


@pytest.mark.promptflow
def test_qa_runs_complete_every_line(qa):
    for run in (*qa.runs.values(), *qa.evals.values()):
        assert run.status == "Completed"
        assert _failed_lines(run) == 0
        assert _completed_lines(run) == len(qa.rows)
    # Both styles' prompts were recognised by the simulator (none fell through to the default reply).
    assert qa.stats["by_rule"] == {"concise": len(qa.rows), "detailed": len(qa.rows)}


@pytest.mark.promptflow
def test_qa_answers_follow_the_style(qa, pf):
    concise = pf.get_details(qa.runs["concise"])["outputs.answer"].tolist()
    detailed = pf.get_details(qa.runs["detailed"])["outputs.answer"].tolist()
    truths = [r["ground_truth"] for r in qa.rows]
    assert sum(a == t for a, t in zip(concise, truths)) >= 0.9 * len(truths)
    assert all(a.startswith("Based on the context: ") for a in detailed)
    assert concise != detailed


@pytest.mark.promptflow
def test_qa_variants_score_differently(qa, pf):
    concise = pf.get_metrics(qa.evals["concise"])
    detailed = pf.get_metrics(qa.evals["detailed"])
    assert set(concise) == set(detailed) == {"exact_match", "f1", "contains"}
    assert concise["exact_match"] >= 0.9 and concise["f1"] >= 0.9
    assert detailed["exact_match"] == 0.0
    assert 0.3 <= detailed["f1"] <= 0.7
    assert detailed["contains"] >= 0.75
    assert concise["f1"] - detailed["f1"] >= 0.2
    lines = pf.get_details(qa.evals["concise"])
    assert lines["outputs.f1"].mean() == pytest.approx(concise["f1"], abs=1e-3)
