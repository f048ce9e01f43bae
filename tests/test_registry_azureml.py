"""The Azure ML registry backend, tested on the wire: the real `MLClient` talks HTTP to a loopback
fake of the workspace REST API (`fakes.azureml`, via `AZUREML_DEV_URL_MFE`), so we assert the exact
requests and bodies. (Over HTTPS with the SDK's own blob upload: test_pipeline_contract.py.)

Blob upload is the one boundary faked above the wire (it needs HTTPS to a storage account): an
`uploader` setting returns an `azureml://` path; the SDK's own upload path is covered by a fake of
the `ml_client.data` / `ml_client.models` operations.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from fakes.azureml import FakeAzureML, workspace_path

from genaiops import hashing
from genaiops.engines import open_engine
from genaiops.errors import GenaiopsError, UsageError
from genaiops.project import Project
from genaiops.registry import AssetSpec

pytest.importorskip("azure.ai.ml")

SUB, RG, WS = "00000000-0000-0000-0000-000000000000", "rg-genaiops", "ws-genaiops"
WS_PATH = workspace_path(SUB, RG, WS)


@pytest.fixture
def workspace(monkeypatch):
    with FakeAzureML(sub=SUB, rg=RG, ws=WS) as server:
        monkeypatch.setenv("AZUREML_DEV_URL_MFE", server.url)
        yield server


class FakeCredential:
    """Stands in for azure-identity; the token never leaves the loopback."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", 4_102_444_800)


def loopback_auth_policy():
    """The SDK's bearer policy refuses plain http; this one sets the header without that check."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class Policy(SansIOHTTPPolicy):
        def on_request(self, request):
            request.http_request.headers["Authorization"] = "Bearer fake-token"

    return Policy()


class RecordingUploader:
    """The storage boundary: content-addressed datastore paths, recorded instead of uploaded."""

    def __init__(self):
        self.calls = []

    def __call__(self, snap, spec):
        self.calls.append((spec.name, snap.content_hash, [e.rel for e in snap.files]))
        hexdigest = snap.content_hash.split(":")[1]
        return (
            f"azureml://datastores/workspaceblobstore/paths/genaiops/{hexdigest}/{snap.root.name}"
        )


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "datasets").mkdir(parents=True)
    (root / "datasets" / "tickets.jsonl").write_text('{"text": "refund"}\n')
    flow = root / "flows" / "uc" / "standard"
    flow.mkdir(parents=True)
    (flow / "flow.dag.yaml").write_text("inputs: {}\n")
    (flow / "prompt.jinja2").write_text("user: {{text}}\n")
    return root


@pytest.fixture
def uploader():
    return RecordingUploader()


@pytest.fixture
def registry(workspace, repo, uploader):
    settings = {
        "subscription_id": SUB,
        "resource_group": RG,
        "workspace_name": WS,
        "credential": FakeCredential(),
        "client_kwargs": {"authentication_policy": loopback_auth_policy()},
        "uploader": uploader,
    }
    return Project.at(repo).registry("azureml", settings)


def tickets(repo) -> AssetSpec:
    return AssetSpec("tickets", "dataset", repo / "datasets" / "tickets.jsonl", "labelled tickets")


def versions_path(collection, name):
    return f"{WS_PATH}/{collection}/{name}/versions"


def test_new_dataset_is_put_with_explicit_version_and_hash_tag(
    registry, workspace, repo, uploader, monkeypatch
):
    monkeypatch.setenv("BUILD_BUILDID", "99")
    reg = registry.register(tickets(repo))
    content_hash = hashing.hash_file(repo / "datasets" / "tickets.jsonl")
    hexdigest = content_hash.split(":")[1]

    assert (reg.uri, reg.version, reg.created, reg.content_hash) == (
        "azureml:tickets:1",
        1,
        True,
        content_hash,
    )
    lists = [
        (r["path"], r["query"].get("listViewType"))
        for r in workspace.requests
        if r["method"] == "GET"
    ]
    assert lists == [
        (versions_path("data", "tickets"), "All"),
        (versions_path("models", "tickets"), "All"),
    ]
    [put] = workspace.puts()
    assert put["path"] == versions_path("data", "tickets") + "/1"
    assert put["auth"] == "Bearer fake-token"
    props = put["body"]["properties"]
    assert props["dataType"] == "uri_file"
    assert (
        props["dataUri"]
        == f"azureml://datastores/workspaceblobstore/paths/genaiops/{hexdigest}/tickets.jsonl"
    )
    assert props["description"] == "labelled tickets"
    assert props["tags"] == {
        "content_hash": content_hash,
        "source": "datasets/tickets.jsonl",
        "build_id": "99",
    } | ({"git_commit": reg.tags["git_commit"]} if "git_commit" in reg.tags else {})
    assert uploader.calls == [("tickets", content_hash, ["tickets.jsonl"])]


def test_unchanged_content_is_found_by_hash_without_any_write(registry, workspace, repo, uploader):
    first = registry.register(tickets(repo))
    workspace.requests.clear()
    again = registry.register(tickets(repo))
    assert (again.version, again.created, again.uri) == (1, False, first.uri)
    assert workspace.puts() == [] and len(uploader.calls) == 1


def test_match_by_hash_not_latest_across_pages_and_archived(registry, workspace, repo):
    content_hash = hashing.hash_file(repo / "datasets" / "tickets.jsonl")
    workspace.add("data", "tickets", "1", tags={"content_hash": "sha256:" + "1" * 64})
    workspace.add("data", "tickets", "2", tags={"content_hash": "sha256:" + "2" * 64})
    workspace.add(
        "data", "tickets", "3", tags={"content_hash": content_hash}, archived=True
    )  # on page 2
    workspace.add("data", "tickets", "7", tags={"content_hash": "sha256:" + "7" * 64})
    workspace.add(
        "data", "tickets", "nightly", tags={"content_hash": content_hash}
    )  # not a pin we can use
    workspace.add("data", "tickets", "5")  # registered by hand, no tags

    reg = registry.register(tickets(repo))
    assert (reg.uri, reg.created) == ("azureml:tickets:3", False)
    assert workspace.puts() == []
    skip_tokens = [
        r["query"].get("$skipToken")
        for r in workspace.requests
        if r["path"] == versions_path("data", "tickets")
    ]
    assert skip_tokens == [None, "2", "4"]  # every page was read

    (repo / "datasets" / "tickets.jsonl").write_text("new content\n")
    new = registry.register(tickets(repo))
    assert (new.uri, new.created) == ("azureml:tickets:8", True)  # max(int versions) + 1
    assert [p["path"].rsplit("/", 1)[1] for p in workspace.puts()] == ["8"]


def test_flow_is_registered_as_a_promptflow_custom_model(registry, workspace, repo, uploader):
    flow = repo / "flows" / "uc" / "standard"
    (flow / "__pycache__").mkdir()
    (flow / "__pycache__" / "x.pyc").write_bytes(b"cache")
    properties = open_engine("promptflow").registration_properties(flow)  # what build passes
    reg = registry.register(AssetSpec("classifier", "flow", flow, "the classifier",
                                      properties=properties))
    assert (reg.uri, reg.kind, reg.created) == ("azureml:classifier:1", "flow", True)
    [put] = workspace.puts()
    assert put["path"] == versions_path("models", "classifier") + "/1"
    props = put["body"]["properties"]
    assert props["modelType"] == "custom_model"
    assert props["properties"] == {
        "is-promptflow": "true",
        "azureml.promptflow.dag-file": "flow.dag.yaml",
    }
    assert props["tags"]["content_hash"] == hashing.hash_tree(flow)
    assert props["modelUri"].endswith(f"/paths/genaiops/{reg.content_hash.split(':')[1]}/standard")
    assert uploader.calls[0][2] == ["flow.dag.yaml", "prompt.jinja2"]  # caches never uploaded
    workspace.requests.clear()
    assert registry.register(AssetSpec("classifier", "flow", flow)).created is False
    assert workspace.puts() == []


def test_lost_race_for_a_version_retries_with_the_next(registry, workspace, repo):
    workspace.preempt.add(("data", "tickets", "1"))
    reg = registry.register(tickets(repo))
    assert reg.uri == "azureml:tickets:2" and reg.created
    assert [p["path"].rsplit("/", 1)[1] for p in workspace.puts()] == ["1", "2"]


def test_versions_get_and_list(registry, workspace, repo):
    registry.register(tickets(repo))
    (repo / "datasets" / "tickets.jsonl").write_text("v2\n")
    registry.register(tickets(repo))
    registry.register(AssetSpec("classifier", "flow", repo / "flows" / "uc" / "standard"))
    assert [r.uri for r in registry.versions("tickets")] == [
        "azureml:tickets:1",
        "azureml:tickets:2",
    ]
    assert registry.get("tickets").version == 2
    assert registry.get("tickets", 1).tags["source"] == "datasets/tickets.jsonl"
    with pytest.raises(UsageError, match="no version 4"):
        registry.get("tickets", 4)
    with pytest.raises(UsageError, match="no asset named 'nope'"):
        registry.get("nope")
    assert registry.list_assets() == [
        {"name": "classifier", "kind": "flow", "latest_version": 1, "versions": 1},
        {"name": "tickets", "kind": "dataset", "latest_version": 2, "versions": 2},
    ]


def test_dataset_name_taken_by_a_flow_is_a_usage_error(registry, workspace, repo):
    workspace.add("models", "tickets", "1", tags={"content_hash": "sha256:" + "0" * 64})
    with pytest.raises(UsageError, match="already a flow"):
        registry.register(tickets(repo))


def test_service_errors_become_one_clear_message(registry, workspace, repo):
    workspace.fail_status = 403
    with pytest.raises(GenaiopsError, match=r"HTTP 403.*no access") as err:
        registry.register(tickets(repo))
    assert "AZUREML_WORKSPACE_NAME" in str(err.value)


def test_missing_workspace_settings_name_the_variables(repo, monkeypatch):
    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    with pytest.raises(
        UsageError, match="needs AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"
    ) as err:
        Project.at(repo).registry("azureml")
    assert err.value.exit_code == 2


def test_credential_choice(monkeypatch):
    from azure.identity import AzureCliCredential, DefaultAzureCredential

    from genaiops.registry.azureml_client import make_credential

    monkeypatch.setenv("AZURE_CLI_CREDENTIAL", "1")
    assert isinstance(make_credential({}), AzureCliCredential)
    monkeypatch.delenv("AZURE_CLI_CREDENTIAL")
    assert isinstance(make_credential({}), DefaultAzureCredential)


# -- the SDK-upload path, at the operations boundary ------------------------------------------


class FakeOperations:
    """`ml_client.data` / `ml_client.models`: records entities; snapshots staged folders at call time."""

    def __init__(self, existing=()):
        self.existing = list(existing)
        self.created = []
        self.staged_files = None

    def list(self, name=None, *, list_view_type=None):
        return [e for e in self.existing if e.name == name]

    def create_or_update(self, entity):
        path = Path(entity.path)
        if path.is_dir():
            self.staged_files = sorted(
                p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()
            )
        self.created.append(entity)
        return entity


class FakeMLClient:
    def __init__(self):
        self.data = FakeOperations()
        self.models = FakeOperations()


def test_without_uploader_the_sdk_gets_the_local_file_and_a_staged_flow_copy(repo):
    from azure.ai.ml.entities import Data, Model

    client = FakeMLClient()
    registry = Project.at(repo).registry("azureml", {"ml_client": client})
    data_path = repo / "datasets" / "tickets.jsonl"
    reg = registry.register(tickets(repo))
    [entity] = client.data.created
    assert isinstance(entity, Data)
    assert (entity.name, entity.version, entity.type) == ("tickets", "1", "uri_file")
    assert Path(entity.path) == data_path.resolve()
    assert entity.tags["content_hash"] == reg.content_hash == hashing.hash_file(data_path)

    flow = repo / "flows" / "uc" / "standard"
    (flow / ".genaiopsignore").write_text("notes/\n")
    (flow / "notes").mkdir()
    (flow / "notes" / "todo.md").write_text("x")
    client.models.existing = [Model(name="classifier", version="4", path="azureml://x", tags={})]
    flow_reg = registry.register(AssetSpec("classifier", "flow", flow))
    [model] = client.models.created
    assert isinstance(model, Model)
    assert (model.name, model.version, model.type, flow_reg.uri) == (
        "classifier",
        "5",
        "custom_model",
        "azureml:classifier:5",
    )
    assert client.models.staged_files == [".genaiopsignore", "flow.dag.yaml", "prompt.jinja2"]
    assert not Path(model.path).exists()  # the staging copy is removed after the upload


# -- live --------------------------------------------------------------------------------------

LIVE_ENV = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")


@pytest.mark.azure_live
@pytest.mark.skipif(
    not all(os.environ.get(v) for v in LIVE_ENV),
    reason="live Azure ML test: set "
    + ", ".join(LIVE_ENV)
    + " and sign in (az login / service principal)",
)
def test_live_register_twice_gives_one_version(tmp_path):
    data = tmp_path / "genaiops-live.jsonl"
    data.write_text(json.dumps({"run": str(uuid.uuid4())}) + "\n")
    registry = Project.at(tmp_path).registry("azureml")
    spec = AssetSpec("genaiops-live-test", "dataset", data, "genaiops live test, safe to delete")
    first = registry.register(spec)
    second = registry.register(spec)
    assert first.created and not second.created
    assert second.uri == first.uri == f"azureml:genaiops-live-test:{first.version}"
