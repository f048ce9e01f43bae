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
    assert calls[-1] == ("invoke", "classification-prod", "blue", {"text": "refund"})
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
    client = FakeMLClient(endpoint=_existing({"blue": 90, "green": 10}))
    outcome, _ = _deploy(client, _request(traffic=100))
    assert outcome.ok
    # blue holds most traffic, so the new one replaces green; blue ends with 0 and is deleted last
    assert client.online_deployments.calls == [("create_or_update", "green"), ("delete", "blue", "classification-prod")]
    traffic_calls = [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert traffic_calls == [{"green": 100, "blue": 0}]


def test_failed_smoke_rolls_traffic_back_and_deletes_the_new_deployment():
    client = FakeMLClient(endpoint=_existing({"blue": 100}), answer='{"error": "boom"}')
    outcome, _ = _deploy(client, _request(traffic=10))
    assert not outcome.ok and "missing outputs" in outcome.message
    traffic_calls = [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert traffic_calls == [{"green": 10, "blue": 90}, {"blue": 100}]
    assert client.online_deployments.calls == [("create_or_update", "green"), ("delete", "green", "classification-prod")]
    assert outcome.details["rolled_back_to"] == {"blue": 100}


def test_failed_smoke_of_an_overwritten_slot_gives_its_share_back_to_the_previous_one():
    client = FakeMLClient(endpoint=_existing({"blue": 90, "green": 10}), answer="not json")
    outcome, _ = _deploy(client, _request(traffic=50))
    assert not outcome.ok
    traffic_calls = [c[2] for c in client.online_endpoints.calls if c[0] == "create_or_update"]
    assert traffic_calls == [{"green": 50, "blue": 50}, {"blue": 100}]
    assert client.online_deployments.calls[-1] == ("delete", "green", "classification-prod")


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
