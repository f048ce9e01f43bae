"""deployment.yaml: validation with file/line/field, overlays, variant choice and staging,
kubernetes manifests; and that the CLI turns config mistakes into exit 2 without a traceback."""

from __future__ import annotations

import json

import pytest
import yaml
from deploy_helpers import REPO, copy_use_case, run_cli

from genaiops.config import load_experiment
from genaiops.config.deployment import DEFAULT_BASE_IMAGE, load_deployment
from genaiops.config.schema import DEPLOYMENT_SCHEMA
from genaiops.deploy.image import ImageRef, _lock
from genaiops.deploy.targets import DeployRequest, SmokeSpec
from genaiops.deploy.targets.base import check_smoke
from genaiops.deploy.targets.kubernetes import KubernetesTarget, manifests
from genaiops.deploy.variant import choose_variant
from genaiops.engines.promptflow.flowspec import read_flow
from genaiops.engines.promptflow.serving import requirements
from genaiops.errors import ConfigError, UsageError
from genaiops.phases.context import PhaseContext
from genaiops.workspace.integrity import seal

CANARY = "canary-k8s-9876543210"


@pytest.fixture
def repo(tmp_path):
    return copy_use_case(tmp_path / "repo", "classification")


def _write(repo, text, name="deployment.yaml"):
    (repo / "configs/classification" / name).write_text(text)


AZURE = {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE_NAME": "ws",
         "GENAIOPS_IMAGE_REGISTRY": "myacr.azurecr.io"}


def test_sample_config_loads_every_environment():
    config = load_deployment(REPO, "classification", environ=AZURE)
    assert {n: e.target for n, e in config.environments.items()} == \
        {"local": "docker", "staging": "kubernetes", "dev": "aml", "prod": "aml"}
    assert config.environment("prod").requires_approval and config.environment("prod").approval_ttl_minutes == 60
    assert config.expect_outputs == ("category", "summary")
    for env in ("dev", "prod"):
        assert config.image_registry_for(config.environment(env)) == "myacr.azurecr.io"
        assert config.environment(env).settings["secrets"] == {
            "LLM_API_KEY": "azureml://connections/llm/credentials/key"}
    qa = load_deployment(REPO, "qa", "local", environ={})
    assert qa.environment("local").settings["port"] == 8090 and qa.expect_outputs == ("answer",)


def test_the_base_image_is_public_unless_the_machine_names_its_own():
    assert load_deployment(REPO, "classification", "local", environ={}).base_image == "python:3.11-slim-bookworm"
    assert load_deployment(REPO, "qa", "local", environ={"GENAIOPS_BASE_IMAGE": "genaiops/base:bookworm"}) \
        .base_image == "genaiops/base:bookworm"


@pytest.mark.parametrize("use_case", ["classification", "qa"])
def test_azure_environments_need_their_variables_and_only_when_deployed(use_case):
    """`local` needs no Azure variable; `dev`/`prod` name every missing one (no default hides it)."""
    assert load_deployment(REPO, use_case, "local", environ={}).environment("local").target == "docker"
    for env in ("dev", "prod"):
        with pytest.raises(ConfigError) as info:
            load_deployment(REPO, use_case, env, environ={})
        missing = {p.message.split()[2] for p in info.value.problems if "is not set" in p.message}
        assert missing == {"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME",
                           "GENAIOPS_IMAGE_REGISTRY"}
        assert all(f"environments.{env}." in p.field for p in info.value.problems)
        config = load_deployment(REPO, use_case, env, environ=AZURE)
        assert config.environment(env).settings["workspace"] == {
            "subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws"}


def test_secret_references_are_validated(repo):
    _write(repo, "environments:\n  dev:\n    target: aml\n    secrets:\n      llm_key: azureml://connections/llm/credentials/key\n"
                 "      LLM_API_KEY: https://example.com/key\n")
    with pytest.raises(ConfigError) as info:
        load_deployment(repo, "classification", "dev")
    text = "\n".join(p.render() for p in info.value.problems)
    assert "environments.dev.secrets" in text and "llm_key" in text and "https://example.com/key" in text


def test_problems_name_file_line_and_field(repo):
    _write(repo, "environments:\n  dev:\n    target: dokker\n    port: 80800\n  Prod:\n    target: aml\n"
                 "    Traffic: 10\nsmoke:\n  timeout_sec: -1\n")
    with pytest.raises(ConfigError) as info:
        load_deployment(repo, "classification", "dev")
    rendered = [p.render() for p in info.value.problems]
    text = "\n".join(rendered)
    assert "configs/classification/deployment.yaml:3: environments.dev.target: 'dokker' is not allowed" in text
    assert "use one of: docker, aml, kubernetes" in text
    assert "deployment.yaml:4: environments.dev.port" in text
    assert "environments.Prod: invalid key 'Prod'" in text
    assert "deployment.yaml:7: environments.Prod.Traffic" in text
    assert "deployment.yaml:9: smoke.timeout_sec" in text


def test_blank_key_and_missing_env_var_and_bad_yaml(repo, monkeypatch):
    _write(repo, 'environments:\n  dev:\n    target: docker\n    "": 1\n')
    with pytest.raises(ConfigError, match="invalid key ''"):
        load_deployment(repo, "classification")
    monkeypatch.delenv("NOPE_PORT", raising=False)
    _write(repo, "environments:\n  dev:\n    target: docker\n    endpoint: ${env:NOPE_ENDPOINT}\n")
    with pytest.raises(ConfigError, match="deployment.yaml:4: environments.dev.endpoint: environment variable "
                                          "NOPE_ENDPOINT is not set"):
        load_deployment(repo, "classification")
    _write(repo, "environments:\n  dev: [\n")
    with pytest.raises(ConfigError, match="deployment.yaml:3: malformed YAML"):
        load_deployment(repo, "classification")


def test_overlay_replaces_whole_blocks(repo):
    _write(repo, "image: {name: team/classifier}\nenvironments:\n  qa:\n    target: docker\n    port: 9000\n",
           "deployment.qa.yaml")
    config = load_deployment(repo, "classification", "qa")
    assert set(config.environments) == {"qa"}  # the base block is replaced, not merged
    assert config.image_name == "team/classifier" and config.base_image == DEFAULT_BASE_IMAGE
    assert [p.name for p in config.files] == ["deployment.yaml", "deployment.qa.yaml"]
    with pytest.raises(UsageError, match="environment 'dev' is not in"):
        config.environment("dev")


def test_environment_names_come_from_their_keys_and_cannot_be_written(repo):
    _write(repo, "registry: {backend: azureml, workspace: ws}\n"
                 "environments:\n  dev:\n    target: docker\n    port: 8080\n")
    config = load_deployment(repo, "classification")
    dev = config.environment("dev")
    assert (dev.name, dev.target, dev.settings) == ("dev", "docker", {"port": 8080})
    assert config.registry == {"backend": "azureml", "workspace": "ws"}  # passed on as written
    assert (config.image_name, config.smoke_timeout_sec, config.expect_outputs) == \
        ("genaiops/classification", 60.0, None)
    assert config.smoke_request == repo / "configs/classification/sample-request.json"
    _write(repo, "environments:\n  dev:\n    target: docker\n    name: other\n")
    with pytest.raises(ConfigError, match="yaml:4: environments.dev.name: unknown key 'name'"):
        load_deployment(repo, "classification")


def test_missing_smoke_request_is_located(repo):
    _write(repo, "smoke: {request: configs/nope.json}\nenvironments: {dev: {target: docker}}\n")
    with pytest.raises(ConfigError, match="deployment.yaml:1: smoke.request: smoke request file "
                                          "'configs/nope.json' not found inside the repo"):
        load_deployment(repo, "classification")


def test_exported_schema_is_the_one_validation_uses(repo, monkeypatch):
    monkeypatch.setitem(DEPLOYMENT_SCHEMA["properties"]["environments"], "maxProperties", 1)
    with pytest.raises(ConfigError) as info:
        load_deployment(repo, "classification", environ=AZURE)
    assert [(p.field, p.line) for p in info.value.problems] == [("environments", 14)]


def test_cli_config_errors_exit_2_without_traceback(repo, state_dir, capsys):
    _write(repo, "environments:\n  local:\n    target: docker\n    colour: blue\n")
    code, out, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "local"], capsys)
    assert code == 2
    assert "deployment.yaml:4: environments.local.colour: unknown key 'colour'" in err
    assert "Traceback" not in err
    (repo / "configs/classification/deployment.yaml").unlink()
    code, out, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "local",
                              "--json"], capsys)
    assert code == 2 and "unknown environment 'local'" in json.loads(out)["error"]  # declared nowhere
    (repo / "configs/classification/experiment.local.yaml").write_text("evaluators: []\n")
    code, out, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "local",
                              "--json"], capsys)
    assert code == 2 and "deployment.yaml not found" in json.loads(out)["error"]


def test_no_docker_daemon_is_a_clear_error(repo, state_dir, trust_dir, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker CLI on PATH
    code, _, err = run_cli(["--repo", str(repo), "run", "deploy", "-u", "classification", "-e", "local",
                              "--variant", "default"], capsys)
    assert code == 1
    assert "cannot build the image: the docker CLI is not installed" in err and "setup-docker.sh" in err
    assert "Traceback" not in err


def test_variant_best_pointer_default_fallback_and_explicit(repo, state_dir):
    ctx = PhaseContext.for_config(load_experiment(repo, "classification"))
    fallback = choose_variant(ctx, "best")
    assert fallback.source == "default" and "no evaluation pointer" in fallback.note
    assert fallback.nodes == {"summarize": "full", "classify": "careful"}
    ctx.workspace.best_pointer("classification").parent.mkdir(parents=True)  # naming it made none
    ctx.workspace.best_pointer("classification").write_text(json.dumps(seal({
        "variant": "summarize.brief+classify.terse", "flow_hash": "sha256:x", "summary_digest": "sha256:s",
        "variant_spec": {"nodes": {"summarize": "brief", "classify": "terse"}, "init": {}}})))
    best = choose_variant(ctx, "best")
    assert best.source == "best" and best.summary_digest == "sha256:s"
    staged = ctx.engine.stage_for_serving(ctx.flow, best.spec(), state_dir / "staged")
    assert read_flow(staged).node_variants == {"summarize": ("brief", ("full", "brief")),
                                               "classify": ("terse", ("careful", "terse"))}
    explicit = choose_variant(ctx, "classify.terse")
    assert explicit.nodes == {"summarize": "full", "classify": "terse"} and explicit.source == "explicit"
    with pytest.raises(UsageError, match="unknown variant 'nope'"):
        choose_variant(ctx, "classify.nope")


def test_flex_variant_bakes_init_defaults(tmp_path, state_dir):
    repo = copy_use_case(tmp_path / "repo", "qa")
    ctx = PhaseContext.for_config(load_experiment(repo, "qa"))
    chosen = choose_variant(ctx, "detailed")
    staged = ctx.engine.stage_for_serving(ctx.flow, chosen.spec(), tmp_path / "staged")
    init = yaml.safe_load((staged / "flow.flex.yaml").read_text())["init"]
    assert init["style"] == {"type": "string", "default": "detailed"}
    assert init["temperature"]["default"] == 0.7


@pytest.mark.promptflow
def test_flex_serving_bundle_holds_the_connection_its_code_looks_up(tmp_path, state_dir):
    """A flex flow names its connection in code, so `pf flow build` exports none: the container
    would start without `llm` ("Connection 'llm' is not found")."""
    repo = copy_use_case(tmp_path / "repo", "qa")
    ctx = PhaseContext.for_config(load_experiment(repo, "qa"))
    staged = ctx.engine.stage_for_serving(ctx.flow, choose_variant(ctx, "concise").spec(), tmp_path / "staged")
    ctx.engine.serving_bundle(staged, tmp_path / "bundle", [
        {"name": "llm", "type": "open_ai", "endpoint": "http://127.0.0.1:9/v1", "api_version": None}])
    connection = yaml.safe_load((tmp_path / "bundle/connections/llm.yaml").read_text())
    assert (connection["type"], connection["name"]) == ("open_ai", "llm")
    assert connection["api_key"] == "${env:LLM_API_KEY}" and connection["base_url"] == "http://127.0.0.1:9/v1"


def _classification_bundle(tmp_path) -> None:
    """The classification DAG's default variant built for serving into `tmp_path/bundle`."""
    repo = copy_use_case(tmp_path / "repo", "classification")
    ctx = PhaseContext.for_config(load_experiment(repo, "classification"))
    staged = ctx.engine.stage_for_serving(ctx.flow, choose_variant(ctx, "default").spec(), tmp_path / "staged")
    ctx.engine.serving_bundle(staged, tmp_path / "bundle", [
        {"name": "llm", "type": "open_ai", "endpoint": "http://127.0.0.1:9/v1", "api_version": None}])


@pytest.mark.promptflow
def test_the_serving_bundle_holds_no_bytecode_whatever_the_environment(tmp_path, state_dir, monkeypatch):
    """`pf flow build` imports a DAG's Python tools from its output: on a machine that writes
    bytecode (a hosted agent) the bundle would hold __pycache__, which the image scan refuses."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    _classification_bundle(tmp_path)
    assert (tmp_path / "bundle/flow/normalize.py").is_file()
    assert not [p for p in (tmp_path / "bundle").rglob("*") if "__pycache__" in p.parts or p.suffix == ".pyc"]


@pytest.mark.promptflow
def test_the_serving_build_leaves_nothing_in_the_temp_folder(tmp_path, state_dir, monkeypatch):
    """promptflow's SDK makes an Azure Monitor retry folder in its temp folder on import (telemetry
    off too); `pf flow build` runs with the throwaway HOME as its temp folder, which goes with it."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    _classification_bundle(tmp_path)
    assert (tmp_path / "bundle/flow/flow.dag.yaml").is_file()
    assert [p.name for p in private_tmp.iterdir()] == []


def test_requirements_are_pinned_and_serving_deps_added(tmp_path):
    (tmp_path / "requirements.txt").write_text("promptflow==1.18.5\n# comment\nrequests>=2\n")
    assert requirements(tmp_path) == ["promptflow==1.18.5", "requests>=2", "keyrings.alt", "gunicorn==22.0.0",
                                      "opentelemetry-exporter-otlp-proto-http>=1.20,<1.39"]
    wheels = [tmp_path / "promptflow_core-1.18.5-py3-none-any.whl", tmp_path / "Flask-3.1.3-py3-none-any.whl"]
    assert _lock(wheels).splitlines()[1:] == ["flask==3.1.3", "promptflow-core==1.18.5"]


@pytest.mark.parametrize("status,body,ok,reason", [
    (200, b'{"category": "billing", "summary": "x"}', True, None),
    (500, b'{"error": "boom"}', False, "HTTP 500"),
    (200, b"<html>", False, "not JSON"),
    (200, b'{"category": ""}', False, "missing outputs ['summary'] empty outputs ['category']"),
])
def test_smoke_check(status, body, ok, reason):
    result = check_smoke(status, body, ("category", "summary"))
    assert result["ok"] is ok
    if reason:
        assert reason in result["reason"]


def test_kubernetes_manifests_reference_secrets_and_have_probes(repo, workspace):
    config = load_deployment(repo, "classification", "staging")
    request = DeployRequest(
        use_case="classification", env=config.environment("staging"), config=config,
        image=ImageRef(tag="genaiops/classification:abc", image_id="sha256:" + "d" * 64, artifact_key="k",
                       built=False, labels={"flow_hash": "sha256:f"}),
        variant="classify.careful", smoke=SmokeSpec({}, ("category",)),
        connection_env={"LLM_API_KEY": CANARY, "LLM_BASE_URL": "https://llm.example/v1"},
        secret_env_names=("LLM_API_KEY",))
    outcome = KubernetesTarget(workspace).deploy(request)
    assert outcome.ok, outcome.message
    text = (workspace.deploy_dir("classification") / "staging/kubernetes.yaml").read_text()
    assert CANARY not in text
    deployment, service = yaml.safe_load_all(text)
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["namespace"] == "genaiops" and deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "genaiops/classification:abc"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["LLM_API_KEY"] == {"name": "LLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "classification-llm", "key": "LLM_API_KEY"}}}
    assert env["LLM_BASE_URL"]["value"] == "https://llm.example/v1"
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # the manifest check itself catches an inlined secret
    docs = manifests(request)
    docs[0]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": CANARY})
    from genaiops.deploy.targets.kubernetes import _check

    assert _check(docs, request)["ok"] is False


def test_two_checkouts_never_share_an_image_tag(tmp_path):
    """Image tags carry the state folder's namespace: a second checkout on the same docker daemon
    builds under its own tag and cannot move the tag of an image approved in the first."""
    from genaiops.deploy.image import ImageBuilder
    from genaiops.workspace import Workspace

    first, second = (Workspace.for_repo(tmp_path / name) for name in ("one", "two"))
    key = "sha256:" + "ab" * 32
    tags = [ImageBuilder(engine=None, name="genaiops/classification", base_image="b", work_dir=tmp_path,
                         wheel_cache=tmp_path, namespace=ws.tag_namespace).tag_for(key)
            for ws in (first, second, first)]
    assert tags[0] != tags[1] and tags[0] == tags[2]
    assert all(tag.startswith("genaiops/classification:abababababababab-") for tag in tags)
