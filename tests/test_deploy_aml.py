"""Azure ML target at the SDK boundary: fake `online_endpoints` / `online_deployments` operation
objects record every call; we assert the exact entities and traffic dicts (Azure cannot be reached).
The wire-level path (the real MLClient against a loopback workspace) runs in the pipeline contract
test (`test_pipeline_contract.py`)."""

from __future__ import annotations

import copy
import json

import pytest
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.core.exceptions import ResourceNotFoundError
from deploy_helpers import REPO

from genaiops.config.deployment import load_deployment
from genaiops.deploy.image import ImageRef
from genaiops.deploy.targets import DeployRequest, SmokeSpec
from genaiops.deploy.targets.aml import AzureMLTarget
from genaiops.errors import UsageError

CANARY = "canary-aml-0123456789"
DIGEST = "sha256:" + "c" * 64
IMAGE_ID = "sha256:" + "d" * 64
REGISTRY = "myacr.azurecr.io"
REFERENCE = f"{REGISTRY}/genaiops/classification@{DIGEST}"
VARIABLES = {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg", "AZUREML_WORKSPACE_NAME": "ws",
             "GENAIOPS_IMAGE_REGISTRY": REGISTRY}


class _Poller:
    def __init__(self, value=None):
        self.value = value

    def result(self):
        return self.value


class FakeEndpoints:
    def __init__(self, existing: ManagedOnlineEndpoint | None, answer: str):
        self.existing, self.answer, self.calls = existing, answer, []

    def get(self, name):
        self.calls.append(("get", name))
        if self.existing is None:
            raise ResourceNotFoundError("not found")
        return copy.deepcopy(self.existing)

    def begin_create_or_update(self, endpoint):
        self.calls.append(("create_or_update", endpoint.name, dict(endpoint.traffic or {}),
                           dict(endpoint.mirror_traffic or {})))
        self.existing = copy.deepcopy(endpoint)
        return _Poller(endpoint)

    def invoke(self, endpoint_name, deployment_name, request_file):
        with open(request_file) as handle:
            body = json.load(handle)
        self.calls.append(("invoke", endpoint_name, deployment_name, body))
        return self.answer


class FakeDeployments:
    def __init__(self):
        self.calls, self.created = [], []
        self.tags: dict[str, dict] = {}  # existing deployments' tags

    def get(self, name, endpoint_name):
        self.calls.append(("get", name))
        return ManagedOnlineDeployment(name=name, endpoint_name=endpoint_name, tags=self.tags.get(name, {}))

    def begin_create_or_update(self, deployment):
        self.created.append(deployment)
        self.calls.append(("create_or_update", deployment.name))
        return _Poller(deployment)

    def begin_delete(self, name, endpoint_name):
        self.calls.append(("delete", name, endpoint_name))
        return _Poller()


class FakeMLClient:
    def __init__(self, endpoint=None, answer='{"category": "billing", "summary": "s"}'):
        self.online_endpoints = FakeEndpoints(endpoint, answer)
        self.online_deployments = FakeDeployments()


def _request(env="prod", traffic=10, mirror=0, reference=REFERENCE) -> DeployRequest:
    config = load_deployment(REPO, "classification", env, environ=VARIABLES)
    environment = config.environment(env).model_copy(update={"traffic_percent": traffic, "mirror_percent": mirror})
    image = ImageRef(tag="genaiops/classification:abc", image_id=IMAGE_ID, artifact_key="k", built=False,
                     labels={"flow_hash": "sha256:f"}, reference=reference)
    return DeployRequest(use_case="classification", env=environment, config=config, image=image,
                         variant="classify.careful", smoke=SmokeSpec({"text": "refund"}, ("category", "summary")),
                         connection_env={"LLM_API_KEY": CANARY, "LLM_BASE_URL": "https://x/v1"},
                         secret_env_names=("LLM_API_KEY",))


def _existing(traffic: dict) -> ManagedOnlineEndpoint:
    endpoint = ManagedOnlineEndpoint(name="classification-prod", auth_mode="aad_token")
    endpoint.traffic = dict(traffic)
    return endpoint


def _deploy(client, request):
    pushed = []

    def pusher(tag, registry, progress):
        pushed.append((tag, registry))
        return f"{registry}/genaiops/classification", DIGEST

    outcome = AzureMLTarget(ml_client=client, pusher=pusher).deploy(request)
    return outcome, pushed


def test_first_deploy_creates_endpoint_and_sends_all_traffic():
    client = FakeMLClient(endpoint=None)
    outcome, pushed = _deploy(client, _request(traffic=10))
    assert outcome.ok, outcome.message
    assert pushed == []  # the evidence's image is already in the registry, by digest
    calls = client.online_endpoints.calls
    assert calls[0] == ("get", "classification-prod")
    created = calls[1]
    assert created[:3] == ("create_or_update", "classification-prod", {})
    assert client.online_endpoints.existing.identity.type == "system_assigned"
    # secret injection from a workspace connection: the endpoint's identity may read it
    assert client.online_endpoints.existing.properties == {"enforce_access_to_default_secret_stores": "enabled"}
    assert ("create_or_update", "classification-prod", {"blue": 100}, {}) in calls
    deployment: ManagedOnlineDeployment = client.online_deployments.created[0]
    assert deployment.name == "blue" and deployment.endpoint_name == "classification-prod"
    assert deployment.environment.image == REFERENCE  # by digest, never a mutable tag
    assert deployment.environment.inference_config["scoring_route"] == {"path": "/score", "port": 8080}
    assert deployment.instance_type == "Standard_DS3_v2" and deployment.instance_count == 1
    assert deployment.tags["artifact"] == DIGEST
    assert deployment.environment_variables == {
        "LLM_API_KEY": "${{azureml://connections/llm/credentials/key}}", "LLM_BASE_URL": "https://x/v1",
        "PORT": "8080"}
    assert CANARY not in json.dumps(deployment._to_dict(), default=str)
    # issue 21.4: the smoke test reaches the new deployment before any traffic goes to it
    invoke = calls.index(("invoke", "classification-prod", "blue", {"text": "refund"}))
    assert invoke < calls.index(("create_or_update", "classification-prod", {"blue": 100}, {}))
    assert client.online_deployments.calls == [("create_or_update", "blue")]  # nothing deleted


def test_second_deploy_splits_traffic_new_x_previous_100_minus_x():
    client = FakeMLClient(endpoint=_existing({"blue": 100}))
    outcome, _ = _deploy(client, _request(traffic=10))
    assert outcome.ok
    assert client.online_deployments.created[0].name == "green"
    traffic_calls = [c for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert traffic_calls == [("create_or_update", "classification-prod", {"green": 10, "blue": 90}, {})]
    assert outcome.details["traffic"] == {"green": 10, "blue": 90}
    assert client.online_deployments.calls == [("create_or_update", "green")]  # blue keeps 90 %


def test_full_cutover_deletes_old_deployment_only_after_success():
    client = FakeMLClient(endpoint=_existing({"blue": 100}))
    outcome, _ = _deploy(client, _request(traffic=100))
    assert outcome.ok
    assert client.online_deployments.calls == [("create_or_update", "green"), ("delete", "blue", "classification-prod")]
    traffic_calls = [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert traffic_calls == [{"green": 100, "blue": 0}]


def test_failed_smoke_moves_no_traffic_and_deletes_the_new_deployment():
    """Issue 21.4: the smoke test runs at 0 %; a failing deployment never served a request."""
    client = FakeMLClient(endpoint=_existing({"blue": 100}), answer='{"error": "boom"}')
    outcome, _ = _deploy(client, _request(traffic=10))
    assert not outcome.ok and "missing outputs" in outcome.message and "no traffic was moved" in outcome.message
    assert [c for c in client.online_endpoints.calls if c[0] == "create_or_update"] == []
    assert client.online_deployments.calls == [("create_or_update", "green"), ("delete", "green", "classification-prod")]
    assert outcome.details["rolled_back_to"] == {"blue": 100}


def test_a_failed_first_deploy_never_takes_traffic():
    client = FakeMLClient(endpoint=None, answer="not json")
    outcome, _ = _deploy(client, _request(traffic=10))
    assert not outcome.ok
    assert [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"] == [{}]  # the endpoint only
    assert client.online_deployments.calls[-1] == ("delete", "blue", "classification-prod")


def test_an_unpromoted_canary_is_never_overwritten_by_the_next_release():
    """Issue 21.4: every release used to overwrite the 10 % slot, so the first release kept 90 % for good."""
    client = FakeMLClient(endpoint=_existing({"blue": 90, "green": 10}))
    outcome, _ = _deploy(client, _request(traffic=10))
    assert not outcome.ok and "the canary green was neither promoted nor rolled back" in outcome.message
    assert "genaiops promote -u classification -e prod" in outcome.message
    assert client.online_deployments.calls == [] and outcome.details["canary_pending"] == "green"


@pytest.mark.parametrize("action,after,deleted", [("promote", {"green": 100, "blue": 0}, "blue"),
                                                  ("rollback", {"blue": 100, "green": 0}, "green")])
def test_promote_or_roll_back_the_canary(action, after, deleted):
    client = FakeMLClient(endpoint=_existing({"blue": 90, "green": 10}))
    client.online_deployments.tags["green"] = {"artifact": DIGEST}
    settings = _request().env.settings
    moved = AzureMLTarget(ml_client=client).shift_traffic(settings, "classification", "prod", action)
    assert [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"] == [after]
    assert client.online_deployments.calls[-1] == ("delete", deleted, "classification-prod")
    assert moved["canary"] == "green" and moved["artifact"] == DIGEST and moved["deleted"] == deleted
    assert moved["traffic_before"] == {"blue": 90, "green": 10}


@pytest.mark.parametrize("traffic", [{"blue": 100}, {"blue": 50, "green": 50}, {}])
def test_nothing_to_promote_is_a_usage_error(traffic):
    client = FakeMLClient(endpoint=_existing(traffic))
    with pytest.raises(UsageError, match="nothing to promote"):
        AzureMLTarget(ml_client=client).shift_traffic(_request().env.settings, "classification", "prod", "promote")
    assert [c for c in client.online_endpoints.calls if c[0] == "create_or_update"] == []


def test_mirror_traffic_shadows_new_deployment():
    client = FakeMLClient(endpoint=_existing({"blue": 100}))
    outcome, _ = _deploy(client, _request(traffic=0, mirror=20))
    assert outcome.ok
    calls = [c for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert calls == [("create_or_update", "classification-prod", {"blue": 100, "green": 0}, {"green": 20})]
    with pytest.raises(UsageError, match="mirror_percent needs traffic_percent: 0"):
        _deploy(FakeMLClient(endpoint=_existing({"blue": 100})), _request(traffic=10, mirror=20))


def test_aml_needs_an_image_registry():
    request = _request()
    request.env = request.env.model_copy(update={"image_registry": None})
    with pytest.raises(UsageError, match="needs a container registry") as info:
        _deploy(FakeMLClient(), request)
    assert "GENAIOPS_IMAGE_REGISTRY" in info.value.hint


def test_a_local_build_is_pushed_and_deployed_by_digest():
    client = FakeMLClient()
    outcome, pushed = _deploy(client, _request(reference=""))
    assert outcome.ok and pushed == [("genaiops/classification:abc", REGISTRY)]
    assert client.online_deployments.created[0].environment.image == REFERENCE


def test_an_image_from_another_registry_is_refused():
    with pytest.raises(UsageError, match="not in myacr.azurecr.io"):
        _deploy(FakeMLClient(), _request(reference=f"other.azurecr.io/x@{DIGEST}"))


@pytest.mark.parametrize("secrets,message", [
    ({}, "gives no secret reference for LLM_API_KEY"),
    ({"LLM_API_KEY": "azureml://connections/llm/credentials/key",
      "OTHER_KEY": "azureml://connections/x/credentials/key"}, "secrets the connections do not use: OTHER_KEY"),
])
def test_every_secret_needs_exactly_one_reference(secrets, message):
    request = _request()
    request.env = request.env.model_copy(update={"secrets": secrets})
    client = FakeMLClient()
    with pytest.raises(UsageError, match=message):
        _deploy(client, request)
    assert client.online_deployments.calls == [] and client.online_endpoints.calls == []


def test_key_vault_references_are_injected_without_the_connection_grant():
    request = _request()
    ref = "keyvault:https://kv-genaiops.vault.azure.net/secrets/llm-api-key/0123abcd"
    request.env = request.env.model_copy(update={"secrets": {"LLM_API_KEY": ref}})
    client = FakeMLClient()
    outcome, _ = _deploy(client, request)
    assert outcome.ok
    assert client.online_deployments.created[0].environment_variables["LLM_API_KEY"] == "${{" + ref + "}}"
    assert client.online_endpoints.existing.properties == {}


def test_promote_and_rollback_through_the_cli_are_audit_records(tmp_path, monkeypatch, capsys):
    """Issue 21.4: promotion is a deliberate step by a named person, in the audit chain."""
    from deploy_helpers import copy_use_case, run_cli

    from genaiops.deploy.audit import audit_log
    from genaiops.workspace import Workspace

    root = copy_use_case(tmp_path / "repo", "classification")
    for name, value in {**VARIABLES, "GENAIOPS_STATE_DIR": str(tmp_path / "state"),
                        "GENAIOPS_TRUST_DIR": str(tmp_path / "trust"), "GENAIOPS_AUDIT_KEY": "k" * 64}.items():
        monkeypatch.setenv(name, value)
    client = FakeMLClient(endpoint=_existing({"blue": 90, "green": 10}))
    client.online_deployments.tags["green"] = {"artifact": DIGEST}
    monkeypatch.setattr(AzureMLTarget, "_client_for", staticmethod(lambda workspace: client))
    code, out, err = run_cli(["--repo", str(root), "promote", "-u", "classification", "-e", "prod", "--by", "riley",
                              "--note", "canary healthy for a day"], capsys)
    assert code == 0, err
    assert "now serves {'green': 100}" in out and "deleted blue" in out
    [record] = audit_log(Workspace.for_repo(root)).read()
    assert (record["event"], record["by"], record["artifact"], record["canary"]) == ("promoted", "riley", DIGEST, "green")
    assert record["traffic_before"] == {"blue": 90, "green": 10} and record["note"] == "canary healthy for a day"
    code, out, err = run_cli(["--repo", str(root), "rollback", "-u", "classification", "-e", "prod", "--by", "riley"],
                             capsys)
    assert code == 2 and "nothing to rollback: endpoint classification-prod serves {'green': 100" in err
    code, out, err = run_cli(["--repo", str(root), "promote", "-u", "classification", "-e", "local", "--by", "r"],
                             capsys)
    assert code == 2 and "acts on the traffic split of an Azure ML endpoint" in err
