"""`genaiops new`: every kind scaffolds a use case that validates and runs, never overwrites,
and rejects bad names. One real promptflow run proves the DAG scaffold works end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from genaiops.engines import open_engine
from genaiops.errors import UsageError
from genaiops.scaffold import TEMPLATES, kinds, scaffold_use_case
from genaiops.simulator import SimulatorServer
from genaiops.workspace import files as fsutil

KINDS = tuple(kinds())  # every kind an engine offers

COMMON = {
    "configs/{n}/experiment.yaml",
    "configs/{n}/experiment.pr.yaml",
    "configs/{n}/simulator.yaml",
    "configs/{n}/sample-request.json",
    "datasets/{n}/{n}.jsonl",
}
DAG_EVALUATION = {"flows/{n}/evaluation/flow.dag.yaml", "flows/{n}/evaluation/grade.py",
                  "flows/{n}/evaluation/aggregate.py"}
BY_KIND = {
    "dag": DAG_EVALUATION | {"flows/{n}/standard/flow.dag.yaml", "flows/{n}/standard/classify_precise.jinja2",
            "flows/{n}/standard/classify_quick.jinja2", "flows/{n}/standard/requirements.txt"},
    "flex": DAG_EVALUATION | {"flows/{n}/standard/flow.flex.yaml", "flows/{n}/standard/classifier.py",
             "flows/{n}/standard/classify.prompty", "flows/{n}/standard/requirements.txt"},
    "prompty": DAG_EVALUATION | {"flows/{n}/standard/classify.prompty"},
    "python": {"flows/{n}/standard/flow.py", "flows/{n}/evaluation/grade.py"},
}


@pytest.fixture
def repo(tmp_path) -> Path:
    """An empty flow repository."""
    for top in ("flows", "configs", "datasets"):
        (tmp_path / top).mkdir()
    return tmp_path


def _relative(root: Path, paths) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_creates_a_complete_use_case(repo, kind):
    name = f"reviews-{kind}"
    created = scaffold_use_case(repo, name, kind)
    expected = {p.format(n=name) for p in COMMON | BY_KIND[kind]}
    assert _relative(repo, created) == expected
    assert all(p.is_absolute() and p.is_file() for p in created)
    on_disk = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert on_disk == expected  # nothing else written (no temp files, no __pycache__)

    config = yaml.safe_load((repo / f"configs/{name}/experiment.yaml").read_text())
    assert config["name"] == name
    assert (repo / config["flow"].split(":")[0]).exists()
    assert (repo / config["simulator"]["rules"]).is_file()
    rows = [json.loads(line) for line in (repo / f"datasets/{name}/{name}.jsonl").read_text().splitlines()]
    assert len(rows) >= 5 and {"id", "text", "label"} <= set(rows[0])
    assert json.loads((repo / f"configs/{name}/sample-request.json").read_text()) == {"text": rows[0]["text"]}
    # Flex and prompty use parameter variants; DAG flows use node variants only.
    assert ("variants" in config) == (kind != "dag")

    spec = open_engine(config["engine"]).read_flow(repo / config["flow"])
    assert spec.kind == kind
    if kind == "dag":
        assert spec.node_variants == {"classify": ("precise", ("precise", "quick"))}


@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_text_is_rendered_but_prompts_keep_their_placeholders(repo, kind):
    created = scaffold_use_case(repo, "tone", kind)
    for path in created:
        text = path.read_text()
        assert "{{ name }}" not in text and "__name__" not in str(path), path
        if path.suffix in (".jinja2", ".prompty"):
            assert "{{text}}" in text  # the prompt's own jinja placeholder survived rendering
            assert "{% raw %}" not in text and "{% endraw %}" not in text
    prompt_files = [p for p in created if p.suffix in (".jinja2", ".prompty", ".py")]
    assert prompt_files


@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_config_validates(repo, kind, monkeypatch):
    """What `genaiops validate` checks: paths exist, mapping columns exist, with and without the PR overlay."""
    from genaiops.config import load_experiment

    for var in ("LLM_API_TYPE", "LLM_API_BASE", "LLM_API_KEY", "LLM_API_VERSION"):
        monkeypatch.delenv(var, raising=False)
    scaffold_use_case(repo, "tone", kind)
    assert load_experiment(repo, "tone") is not None
    assert load_experiment(repo, "tone", "pr") is not None


def test_scaffold_refuses_to_overwrite(repo):
    scaffold_use_case(repo, "tone", "dag")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    with pytest.raises(UsageError) as err:
        scaffold_use_case(repo, "tone", "flex")
    message = str(err.value)
    assert "flows/tone" in message and "configs/tone" in message and "datasets/tone" in message
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_scaffold_refuses_when_any_use_case_folder_exists(repo):
    (repo / "configs/tone").mkdir()
    with pytest.raises(UsageError, match="configs/tone"):
        scaffold_use_case(repo, "tone", "dag")
    assert not (repo / "flows/tone").exists() and not (repo / "datasets/tone").exists()


@pytest.mark.parametrize("name", ["Tone", "1tone", "t", "to ne", "../tone", "tone/x", "t" * 42, "", "tone.v2"])
def test_scaffold_rejects_bad_names(repo, name):
    with pytest.raises(UsageError, match="invalid use case name"):
        scaffold_use_case(repo, name, "dag")
    assert not any(repo.rglob("*.yaml"))


def test_scaffold_rejects_unknown_kind(repo):
    with pytest.raises(UsageError, match="unknown flow kind"):
        scaffold_use_case(repo, "tone", "notebook")


def test_scaffold_leaves_nothing_behind_when_a_write_fails(repo, monkeypatch):
    real_write = fsutil.atomic_write_text
    calls = []

    def failing_write(path, text):
        calls.append(path)
        if len(calls) == 4:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr("genaiops.scaffold.atomic_write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        scaffold_use_case(repo, "tone", "dag")
    assert len(calls) == 4
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == ["configs", "datasets", "flows"]


def test_every_template_is_shipped_as_package_data(repo_root):
    """A template whose extension pyproject's package-data does not list would vanish from the wheel."""
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["genaiops"]
    suffixes = tuple(p.replace("**/*", "") for p in patterns)
    folders = {TEMPLATES, *(layer for _engine, spec in kinds().values() for layer in spec.layers)}
    templates = [p for folder in folders for p in folder.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    assert templates
    assert [p for p in templates if not p.name.endswith(suffixes)] == []


# ------------------------------------------------------------------ real runs against the simulator


def _connect(kind: str, sim) -> None:
    from promptflow.client import PFClient
    from promptflow.entities import AzureOpenAIConnection, OpenAIConnection

    if kind == "azure":
        conn = AzureOpenAIConnection(name="llm", api_key="sim-key", api_base=sim.azure_endpoint,
                                     api_version="2024-06-01")
    else:
        conn = OpenAIConnection(name="llm", api_key="sim-key", base_url=sim.openai_base_url)
    PFClient().connections.create_or_update(conn)


@pytest.mark.promptflow
def test_scaffolded_dag_runs_and_evaluates(repo, monkeypatch):
    from promptflow.client import PFClient

    monkeypatch.setenv("PF_WORKER_COUNT", "2")
    scaffold_use_case(repo, "tone", "dag")
    config = yaml.safe_load((repo / "configs/tone/experiment.yaml").read_text())
    dataset = config["datasets"][0]
    evaluator = config["evaluators"][0]
    data = repo / dataset["source"]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    pf = PFClient()
    with SimulatorServer(rules_path=repo / config["simulator"]["rules"]) as sim:
        _connect("openai", sim)
        run = pf.run(flow=str(repo / config["flow"]), data=str(data), column_mapping=dataset["mappings"])
        assert sim.stats.snapshot()["by_rule"] == {"precise": len(rows)}
    evaluation = pf.run(flow=str(repo / evaluator["flow"]), data=str(data), run=run,
                        column_mapping=evaluator["datasets"][0]["mappings"])
    for r in (run, evaluation):
        assert r.status == "Completed"
        assert r.properties["system_metrics"]["__pf__.lines.failed"] == 0
        assert r.properties["system_metrics"]["__pf__.lines.completed"] == len(rows)
    outputs = pf.get_details(run)["outputs.sentiment"].tolist()
    assert set(outputs) <= {"positive", "negative", "neutral"}
    accuracy = pf.get_metrics(evaluation)["accuracy"]
    assert accuracy == pytest.approx(sum(o == r["label"] for o, r in zip(outputs, rows)) / len(rows), abs=1e-4)
    assert accuracy >= config["gates"][0]["threshold"]


@pytest.mark.promptflow
@pytest.mark.parametrize("connection", ["openai", "azure"])
def test_scaffolded_flex_and_prompty_answer_through_either_connection(repo, connection):
    """In-process (no batch run): the flex class and the standalone prompty both reach the
    simulator through whichever connection type `llm` is, with no edit to the flow."""
    from promptflow.core import Prompty

    scaffold_use_case(repo, "tone-flex", "flex")
    scaffold_use_case(repo, "tone-prompty", "prompty")
    text = "Terrible battery life, a complete waste of money."
    with SimulatorServer(rules_path=repo / "configs/tone-flex/simulator.yaml") as sim:
        _connect(connection, sim)
        spec = importlib.util.spec_from_file_location(
            f"scaffold_classifier_{connection}", repo / "flows/tone-flex/standard/classifier.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.Classifier(temperature=0.0)(text=text).sentiment == "negative"
        prompty = Prompty.load(source=repo / "flows/tone-prompty/standard/classify.prompty")
        assert prompty(text=text) == "negative"
        assert sim.stats.snapshot()["by_rule"] == {"precise": 2}
