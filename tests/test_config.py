"""Config loading, overlays, ${env:} resolution and validation, driven through the real CLI."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from pydantic import Field, ValidationError
from repo_factory import CONFIG, make_repo, write

from genaiops.cli import main
from genaiops.config import load_experiment
from genaiops.config.filemodel import LoadContext
from genaiops.config.layered import build, read_checked
from genaiops.config.model import ExperimentConfig, Gate
from genaiops.config.schema import DEPLOYMENT_SCHEMA, EXPERIMENT_SCHEMA
from genaiops.config.schemagen import file_schema
from genaiops.config.yamlsrc import load_yaml_file
from genaiops.errors import ConfigError


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("DEMO_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    return make_repo(tmp_path / "repo")


def validate(repo, capsys, *extra):
    code = main(["--repo", str(repo), "validate", "--use-case", "demo", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_valid_config_loads_with_typed_fields(repo):
    config = load_experiment(repo, "demo")
    assert config.flow_kind == "dag"
    assert config.flow == repo / "flows/demo/standard"
    assert config.datasets[0].source == repo / "datasets/demo/rows.jsonl"
    assert config.evaluators[0].datasets[0].source_rel == "datasets/demo/rows.jsonl"
    assert config.connections[0].uses_simulator
    assert config.gates[0].threshold == 0.5


def test_validate_ok_exit_0_and_json(repo, capsys):
    code, output = validate(repo, capsys, "--json")
    assert code == 0
    assert json.loads(output)["use_cases"][0]["ok"] is True


def test_overlay_replaces_whole_blocks(repo):
    write(repo / "datasets/demo/pr.jsonl", '{"text": "x", "label": "x"}\n')
    write(repo / "configs/demo/experiment.pr.yaml", """\
        datasets:
          - name: pr_rows
            source: datasets/demo/pr.jsonl
            mappings: {text: "${data.text}"}
        evaluators: []
        """)
    base = load_experiment(repo, "demo")
    pr = load_experiment(repo, "demo", "pr")
    assert [d.name for d in base.datasets] == ["rows"]
    assert [d.name for d in pr.datasets] == ["pr_rows"]  # replaced, not merged
    assert pr.evaluators == ()
    assert pr.gates == base.gates  # blocks the overlay does not name stay
    assert [f.name for f in pr.files] == ["experiment.yaml", "experiment.pr.yaml"]


def test_env_without_overlay_file_uses_base(repo):
    write(repo / "configs/demo/deployment.yaml", "environments: {dev: {target: docker}}\n")
    assert load_experiment(repo, "demo", "dev").files == (repo / "configs/demo/experiment.yaml",)


def test_unknown_env_exits_2_and_suggests_the_nearest(repo, capsys):
    """A typo must not silently run the base config: environments are declared by overlays,
    deployment.yaml and the optional `environments:` list."""
    write(repo / "configs/demo/experiment.pr.yaml", "evaluators: []\n")
    write(repo / "configs/demo/deployment.yaml", "environments: {prod: {target: docker}}\n")
    code, output = validate(repo, capsys, "--env", "prd")
    assert code == 2
    assert "unknown environment 'prd'" in output and "did you mean 'prod'" in output
    assert "pr, prod" in output  # the declared set
    code = main(["--repo", str(repo), "run", "experiment", "-u", "demo", "-e", "prd"])
    assert code == 2 and "unknown environment 'prd'" in capsys.readouterr().err
    write(repo / "configs/demo/experiment.yaml", CONFIG + "environments: [staging]\n")
    assert load_experiment(repo, "demo", "staging").env == "staging"
    assert load_experiment(repo, "demo", "prod").env == "prod"


def test_validate_without_env_checks_every_overlay(repo, capsys):
    write(repo / "configs/demo/experiment.pr.yaml", "datasets:\n  - name: pr\n    source: ../x.jsonl\n")
    code, output = validate(repo, capsys)
    assert code == 2
    assert "configs/demo/experiment.pr.yaml:3: datasets[0].source" in output
    code, output = validate(repo, capsys, "--json")
    checked = {(r["use_case"], r["env"]): r["ok"] for r in json.loads(output)["use_cases"]}
    assert checked == {("demo", None): True, ("demo", "pr"): False}


def test_an_overlay_needing_unset_variables_is_skipped_only_when_not_asked_for(repo, capsys):
    """An Azure environment's overlay reads variables its pipeline sets: `validate` alone names
    them and goes on; `validate -e dev`, and a base config missing one, still fail."""
    write(repo / "configs/demo/experiment.dev.yaml", "registry:\n  backend: azureml\n"
          "  subscription_id: ${env:DEMO_SUBSCRIPTION}\n")
    code, output = validate(repo, capsys)
    assert code == 0 and "skipped  demo -e dev  (reads DEMO_SUBSCRIPTION, not set here" in output
    code, output = validate(repo, capsys, "--json")
    [base, dev] = json.loads(output)["use_cases"]
    assert base["ok"] and dev == {"use_case": "demo", "env": "dev", "ok": True, "needs": ["DEMO_SUBSCRIPTION"]}
    code, output = validate(repo, capsys, "-e", "dev")
    assert code == 2 and "environment variable DEMO_SUBSCRIPTION is not set" in output
    write(repo / "configs/demo/experiment.dev.yaml", "registry:\n  backend: azureml\n"
          "  subscription_id: ${env:DEMO_SUBSCRIPTION}\n  colour: blue\n")  # a second kind of problem
    code, output = validate(repo, capsys)
    assert code == 2 and "INVALID  demo -e dev" in output


def test_env_reference_resolves_from_environment_then_dotenv(repo, monkeypatch):
    assert load_experiment(repo, "demo").connections[0].api_key == "simulator-key"  # default
    (repo / ".env").write_text("DEMO_KEY=from-dotenv\n")
    assert load_experiment(repo, "demo").connections[0].api_key == "from-dotenv"
    monkeypatch.setenv("DEMO_KEY", "from-environment")
    assert load_experiment(repo, "demo").connections[0].api_key == "from-environment"


def test_missing_env_variable_names_it(repo, capsys):
    write(repo / "configs/demo/experiment.yaml",
          CONFIG.replace("${env:DEMO_KEY:-simulator-key}", "${env:DEMO_KEY}"))
    code, output = validate(repo, capsys)
    assert code == 2
    assert "environment variable DEMO_KEY is not set" in output
    assert "configs/demo/experiment.yaml:8: connections[0].api_key" in output
    (repo / ".env").write_text("DEMO_KEY=abc123\n")
    assert validate(repo, capsys)[0] == 0


def test_secret_never_in_summary(repo, monkeypatch):
    monkeypatch.setenv("DEMO_KEY", "canary-secret-0451")
    config = load_experiment(repo, "demo")
    assert "canary-secret-0451" in config.secrets()
    assert "canary-secret-0451" not in json.dumps(config.summary())


def _escape_outside(repo):
    outside = repo.parent / "outside.jsonl"
    outside.write_text('{"text": "x"}\n')
    return CONFIG.replace("datasets/demo/rows.jsonl", "../outside.jsonl")


def _absolute_outside(repo):
    outside = repo.parent / "abs.jsonl"
    outside.write_text('{"text": "x"}\n')
    return CONFIG.replace("datasets/demo/rows.jsonl", str(outside))


def _bad_json_dataset(repo):
    write(repo / "datasets/demo/broken.jsonl", '{"text": "x",\n')
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/broken.jsonl")


def _flow_without_flow_file(repo):
    (repo / "flows/demo/empty").mkdir(parents=True)
    return CONFIG.replace("flow: flows/demo/standard", "flow: flows/demo/empty")


def _not_jsonl(repo):
    write(repo / "datasets/demo/rows.csv", "text\nhello\n")
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/rows.csv")


def _bad_line_in_the_middle(repo):
    rows = ['{"text": "a"}', '{"text": "b"}', '{"text": "c",', '{"text": "d"}', '{"text": "e"}']
    write(repo / "datasets/demo/mid.jsonl", "\n".join(rows) + "\n")
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/mid.jsonl")


def _row_not_an_object(repo):
    write(repo / "datasets/demo/list.jsonl", '{"text": "a", "label": "a"}\n[1, 2]\n')
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/list.jsonl")


def _column_missing_in_a_later_row(repo):
    write(repo / "datasets/demo/partial.jsonl",
          '{"text": "a", "label": "a"}\n{"label": "b"}\n{"text": "c", "label": "c"}\n')
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/partial.jsonl")


def _evaluator_rows_misaligned(repo):
    write(repo / "datasets/demo/labels.jsonl", '{"label": "a"}\n{"label": "b"}\n{"label": "c"}\n')
    return CONFIG.replace("        reference: rows\n",
                          "        reference: rows\n        source: datasets/demo/labels.jsonl\n")


def _key_column_missing(repo):
    write(repo / "datasets/demo/keyed.jsonl", '{"id": 1, "label": "a"}\n{"label": "b"}\n')
    return CONFIG.replace("        reference: rows\n", "        reference: rows\n"
                          "        source: datasets/demo/keyed.jsonl\n        key_column: id\n")


def _key_values_differ(repo):
    write(repo / "datasets/demo/rows.jsonl", '{"id": 1, "text": "a", "label": "a"}\n'
                                             '{"id": 2, "text": "b", "label": "b"}\n')
    write(repo / "datasets/demo/keyed.jsonl", '{"id": 2, "label": "a"}\n{"id": 3, "label": "b"}\n')
    return CONFIG.replace("        reference: rows\n", "        reference: rows\n"
                          "        source: datasets/demo/keyed.jsonl\n        key_column: id\n")


def _evaluator_declares_a_builtin_name(repo):
    dag = (repo / "flows/demo/evaluation/flow.dag.yaml").read_text()
    write(repo / "flows/demo/evaluation/flow.dag.yaml", dag.replace("  score:", "  error_rate:"))
    return CONFIG + '  - {metric: error_rate, op: "==", threshold: 0}\n'


def _init_on_a_dag_evaluator(repo):
    return CONFIG.replace("    flow: flows/demo/evaluation\n",
                          "    flow: flows/demo/evaluation\n    init: {strict: true}\n")


def _empty_dataset(repo):
    write(repo / "datasets/demo/empty.jsonl", "\n")
    return CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/empty.jsonl")


# (id, config text or builder, expected message fragment, expected "file:line" or None)
MALFORMED = [
    ("unclosed-bracket", CONFIG.replace("mappings:\n      text: ${data.text}",
                                        "mappings: [text\n"), "malformed YAML", "experiment.yaml:"),
    ("tab-indent", "name: demo\n\tflow: x\n", "malformed YAML", "experiment.yaml:2"),
    ("duplicate-key", CONFIG + "flow: flows/demo/standard\n", "duplicate key", "experiment.yaml:25: flow"),
    ("top-level-list", "- name: demo\n", "expected a mapping", "experiment.yaml:1"),
    ("missing-flow", CONFIG.replace("flow: flows/demo/standard\n", ""),
     "'flow' is a required property", None),
    ("unknown-key", CONFIG.replace("datasets:\n  - name: rows", "datsets: []\ndatasets:\n  - name: rows"),
     "unknown key 'datsets'", "experiment.yaml:9: datsets"),
    ("wrong-type", CONFIG + "runtime:\n  max_parallel: four\n", "expected integer", "runtime.max_parallel"),
    ("workers-neither-number-nor-auto", CONFIG + "runtime:\n  worker_count: four\n",
     "'four' does not match ^auto$", "runtime.worker_count"),
    ("bad-connection-type", CONFIG.replace("type: open_ai", "type: gpt"), "'gpt' is not allowed",
     "connections[0].type"),
    ("malformed-env-ref", CONFIG.replace("${env:DEMO_KEY:-simulator-key}", "${env:}"),
     "malformed reference", "connections[0].api_key"),
    ("flow-missing", CONFIG.replace("flows/demo/standard", "flows/demo/nope"), "does not exist", "flow"),
    ("flow-without-flow-file", _flow_without_flow_file, "has no flow.dag.yaml", "flow"),
    ("dataset-escapes-repo", _escape_outside, "outside the repository", "datasets[0].source"),
    ("dataset-absolute-outside", _absolute_outside, "outside the repository", "datasets[0].source"),
    ("dataset-missing", CONFIG.replace("datasets/demo/rows.jsonl", "datasets/demo/none.jsonl"),
     "does not exist", "datasets[0].source"),
    ("dataset-bad-json", _bad_json_dataset, "not valid JSON", "datasets/demo/broken.jsonl:1"),
    ("dataset-not-jsonl", _not_jsonl, "is not a .jsonl file", "datasets[0].source"),
    ("dataset-empty", _empty_dataset, "is empty", "datasets[0].source"),
    ("duplicate-dataset", CONFIG.replace("evaluators:", "  - name: rows\n    source: datasets/demo/rows.jsonl\n"
                                         "evaluators:"), "duplicate dataset name 'rows'", "datasets[1].name"),
    ("unknown-reference", CONFIG.replace("reference: rows", "reference: rowz"), "no dataset named 'rowz'",
     "evaluators[0].datasets[0].reference"),
    ("unknown-column", CONFIG.replace("${data.text}", "${data.txt}"),
     "has no column 'txt'", "datasets/demo/rows.jsonl:1"),
    ("dataset-bad-line-in-the-middle", _bad_line_in_the_middle, "not valid JSON",
     "datasets/demo/mid.jsonl:3"),
    ("dataset-row-not-an-object", _row_not_an_object, "is not a JSON object",
     "datasets/demo/list.jsonl:2"),
    ("column-missing-in-a-later-row", _column_missing_in_a_later_row, "has no column 'text'",
     "datasets/demo/partial.jsonl:2"),
    ("evaluator-rows-misaligned", _evaluator_rows_misaligned, "has 3 rows but dataset 'rows'",
     "evaluators[0].datasets[0].source"),
    ("key-column-missing", _key_column_missing, "has no column 'id'", "datasets/demo/keyed.jsonl:2"),
    ("key-values-differ", _key_values_differ, "no row of datasets/demo/rows.jsonl has id 3",
     "datasets/demo/keyed.jsonl:2"),
    ("duplicate-gate-name", CONFIG + '  - {metric: accuracy, op: ">=", threshold: 0.5}\n',
     "duplicate gate name 'accuracy >= 0.5'", "gates[1]"),
    ("gate-unknown-namespace", CONFIG.replace("metric: accuracy", "metric: buitin.error_rate"),
     "'buitin' is neither `builtin` nor an evaluator", "gates[0].metric"),
    ("gate-unknown-builtin", CONFIG.replace("metric: accuracy", "metric: builtin.accuracy"),
     "'accuracy' is not a built-in metric", "gates[0].metric"),
    ("gate-namespace-and-evaluator-disagree",
     CONFIG.replace("metric: accuracy,", "metric: builtin.error_rate, evaluator: exact,"),
     "names evaluator 'exact' but its metric is builtin.error_rate", "gates[0]"),
    ("gate-metric-two-sources-declare", _evaluator_declares_a_builtin_name,
     "'error_rate' is ambiguous: reported by builtin and exact; write builtin.error_rate or "
     "exact.error_rate", "gates[1].metric"),
    ("primary-metric-unknown-namespace", CONFIG + "evaluation: {primary_metric: exatc.score}\n",
     "'exatc' is neither `builtin` nor an evaluator", "evaluation.primary_metric"),
    ("env-var-bad-name", CONFIG + "environment_variables: {1X: a}\n", "invalid key '1X'",
     "environment_variables.1X"),
    ("env-var-unknown-connection", CONFIG + "environment_variables: {X: '${nope.api_base}'}\n",
     "no connection named 'nope'", "environment_variables.X"),
    ("init-on-a-dag-evaluator", _init_on_a_dag_evaluator, "`init` applies to evaluator flows that take",
     "evaluators[0].init"),
    ("unknown-flow-input", CONFIG.replace("      text: ${data.text}", "      query: ${data.text}"),
     "flow has no input 'query'", "datasets[0].mappings.query"),
    ("unknown-run-output", CONFIG.replace("${run.outputs.category}", "${run.outputs.label}"),
     "the standard flow has no output 'label'", "evaluators[0].datasets[0].mappings.prediction"),
    ("evaluator-flow-and-code", CONFIG.replace("    flow: flows/demo/evaluation",
                                               "    flow: flows/demo/evaluation\n    code: e.py:score"),
     "exactly one of `flow`, `code` or `kind: azure_ai_evaluation`", "evaluators[0]"),
    ("bad-gate-op", CONFIG.replace('op: ">="', 'op: "=>"'), "'=>' is not allowed", "gates[0].op"),
    ("name-mismatch", CONFIG.replace("name: demo", "name: other"), "differs from the use case folder",
     "experiment.yaml:1"),
    ("api-base-not-url", CONFIG.replace("api_base: simulator", "api_base: localhost:8000"),
     "is not a URL", "connections[0].api_base"),
    ("run-ref-in-standard", CONFIG.replace("      text: ${data.text}", "      text: ${run.outputs.x}"),
     "refers to a run", "datasets[0].mappings.text"),
]


@pytest.mark.parametrize("case_id,config,fragment,where", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_exit_2_with_location(repo, capsys, case_id, config, fragment, where):
    text = config(repo) if callable(config) else config
    write(repo / "configs/demo/experiment.yaml", text)
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert fragment in output
    if where:
        assert where in output
    assert "Traceback" not in output
    # the same problem through the library raises ConfigError with structured problems
    with pytest.raises(ConfigError) as info:
        load_experiment(repo, "demo")
    assert any(fragment in p.message for p in info.value.problems)


def test_every_problem_is_reported_at_once(repo, capsys):
    text = CONFIG.replace("type: open_ai", "type: gpt").replace('op: ">="', 'op: "=>"')
    write(repo / "configs/demo/experiment.yaml", text)
    code, output = validate(repo, capsys, "--json")
    problems = json.loads(output)["use_cases"][0]["problems"]
    assert code == 2
    assert {p["field"] for p in problems} == {"connections[0].type", "gates[0].op"}
    assert all(p["line"] and p["file"].endswith("experiment.yaml") for p in problems)


def test_overlay_error_names_the_overlay_file(repo, capsys):
    write(repo / "configs/demo/experiment.pr.yaml", "datasets:\n  - name: pr\n    source: ../x.jsonl\n")
    code, output = validate(repo, capsys, "--env", "pr")
    assert code == 2
    assert "configs/demo/experiment.pr.yaml:3: datasets[0].source" in output


def test_unknown_use_case_is_usage_error(repo, capsys):
    code = main(["--repo", str(repo), "validate", "--use-case", "nope"])
    output = capsys.readouterr().err
    assert code == 2
    assert "unknown use case 'nope'" in output and "demo" in output


def test_bad_flag_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate", "--no-such-flag"])
    assert info.value.code == 2


def test_no_repository_is_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    assert "no flow repository found" in capsys.readouterr().err


# -- the models are the single source of the format ------------------------------------------------

def test_exported_schema_is_the_one_validation_uses(repo, monkeypatch):
    assert file_schema(ExperimentConfig) is EXPERIMENT_SCHEMA
    monkeypatch.setitem(EXPERIMENT_SCHEMA["properties"], "description", {"type": "integer"})
    with pytest.raises(ConfigError) as info:
        load_experiment(repo, "demo")
    [problem] = info.value.problems
    assert (problem.field, problem.line) == ("description", 2)
    assert problem.message == "expected integer, got str"


def test_a_model_field_change_shows_up_in_the_schema_and_its_problems(repo):
    class WithOwner(ExperimentConfig):
        owner: Annotated[str, Field(pattern="^[a-z]+$")]

    schema = file_schema(WithOwner)
    assert schema["properties"]["owner"] == {"pattern": "^[a-z]+$", "type": "string"}
    assert "owner" in schema["required"] and "owner" not in EXPERIMENT_SCHEMA["properties"]
    base = repo / "configs/demo/experiment.yaml"

    def problems(model):
        with pytest.raises(ConfigError) as info:
            read_checked(model, base, None, repo, "", {})
        return [p.render() for p in info.value.problems]

    assert problems(WithOwner) == ["configs/demo/experiment.yaml:1: owner: 'owner' is a required "
                                   "property (fix: add it)"]
    write(base, CONFIG + "owner: Bob\n")
    assert problems(WithOwner) == ["configs/demo/experiment.yaml:25: owner: 'Bob' does not match "
                                   "^[a-z]+$"]
    assert problems(ExperimentConfig)[0].startswith(
        "configs/demo/experiment.yaml:25: owner: unknown key 'owner'")


def _objects(node):
    """Every JSON object in a schema, nested ones included."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    for value in node if isinstance(node, list) else ():
        yield from _objects(value)


@pytest.mark.parametrize("schema", [EXPERIMENT_SCHEMA, DEPLOYMENT_SCHEMA],
                         ids=["experiment", "deployment"])
def test_generated_schema_keeps_errors_precise(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    parts = list(_objects(schema))
    assert not [p for p in parts if "anyOf" in p]  # "not valid under any of the given schemas"
    assert not [p for p in parts if "patternProperties" in p]  # would let bad keys through
    assert not [p for p in parts if "enum" in p and "type" in p]  # one problem per bad value
    assert not [p for p in parts if p.get("type") == "null" or p.get("default", "") is None]
    assert [k for k in schema if k in ("type", "required")] == ["type", "required"]


def test_the_models_build_the_typed_objects_and_keep_numbers_as_written(repo):
    text = CONFIG.replace("threshold: 0.5", "threshold: 1").replace(
        "simulator-key}\n", "simulator-key}\n    model: gpt-4o\n    auth_mode: key\n")
    write(repo / "configs/demo/experiment.yaml", text + "runtime: {retries: {backoff_sec: 2}}\n")
    config = load_experiment(repo, "demo")
    assert config.gates[0] == Gate(metric="accuracy", op=">=", threshold=1)
    assert type(config.gates[0].threshold) is int and config.summary()["gates"] == ["accuracy >= 1"]
    retries = config.runtime.retries
    assert type(retries.backoff_sec) is int and retries.max_attempts == 5
    assert config.connections[0].extra == {"auth_mode": "key", "model": "gpt-4o"}
    public = {"name": "llm", "type": "open_ai", "api_base": "simulator", "auth_mode": "key",
              "model": "gpt-4o"}
    assert config.connections[0].public() == public
    assert config.simulator.port == 8765 and config.simulator.rules is None
    assert (config.use_case, config.env, config.repo_root) == ("demo", None, repo.resolve())
    with pytest.raises(ValidationError, match="frozen"):
        config.name = "other"


def test_a_model_the_schema_disagrees_with_still_gives_located_problems(repo):
    """Defence in depth: data that skipped the schema is rejected by the model, still located."""
    config_file = "configs/demo/experiment.yaml"
    data, sources = load_yaml_file(repo / config_file, config_file)
    data["gates"][0]["op"] = "=>"
    with pytest.raises(ConfigError) as info:
        build(ExperimentConfig, data, sources, LoadContext(repo, "demo", None, ()))
    [problem] = info.value.problems
    assert (str(problem.file), problem.line, problem.field) == (config_file, 24, "gates[0].op")
    assert "'>='" in problem.message
