"""The Azure ML registry backend, tested on the wire: the real `MLClient` talks HTTP to a loopback
fake of the workspace REST API (`AZUREML_DEV_URL_MFE`), so we assert the exact requests and bodies.

Blob upload is the one boundary faked above the wire (it needs HTTPS to a storage account): an
`uploader` setting returns an `azureml://` path; the SDK's own upload path is covered by a fake of
the `ml_client.data` / `ml_client.models` operations.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from genaiops import hashing
from genaiops.errors import GenaiopsError, UsageError
from genaiops.registry import AssetSpec, open_registry

pytest.importorskip("azure.ai.ml")

SUB, RG, WS = "00000000-0000-0000-0000-000000000000", "rg-genaiops", "ws-genaiops"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
PAGE_SIZE = 2
COLLECTION = {"data": ("dataUri", "dataType"), "models": ("modelUri", "modelType")}


class FakeWorkspace(ThreadingHTTPServer):
    """Data and model versions of one workspace, with paging, archived versions and 409 on conflicts."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.assets: dict[
            tuple[str, str], dict[str, dict]
        ] = {}  # (collection, name) -> version -> rest
        self.requests: list[dict] = []
        self.preempt: set[tuple[str, str, str]] = set()  # PUTs that lose a race to "another writer"
        self.fail_status: int | None = None
        self.clock = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def add(
        self,
        collection,
        name,
        version,
        *,
        tags=None,
        uri="azureml://x",
        kind="uri_file",
        archived=False,
    ):
        self.clock += 1
        uri_key, type_key = COLLECTION[collection]
        props = {
            uri_key: uri,
            type_key: kind if collection == "data" else "custom_model",
            "tags": tags or {},
            "properties": {},
            "isArchived": archived,
            "isAnonymous": False,
            "description": None,
        }
        if collection == "models":
            props["flavors"] = {}
        rest = {
            "id": f"{WS_PATH}/{collection}/{name}/versions/{version}",
            "name": str(version),
            "type": f"Microsoft.MachineLearningServices/workspaces/{collection}/versions",
            "properties": props,
            "systemData": {
                "createdAt": f"2024-01-01T00:00:{self.clock:02d}Z",
                "createdBy": "fake",
                "createdByType": "User",
            },
        }
        self.assets.setdefault((collection, name), {})[str(version)] = rest
        return rest

    def puts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PUT"]


class _Handler(BaseHTTPRequestHandler):
    server: FakeWorkspace

    def log_message(self, *args):
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": {"code": code, "message": message}})

    def _handle(self) -> None:
        server = self.server
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        server.requests.append(
            {
                "method": self.command,
                "path": split.path,
                "query": query,
                "body": body,
                "auth": self.headers.get("Authorization"),
            }
        )
        if server.fail_status:
            return self._error(
                server.fail_status, "AuthorizationFailed", "The client has no access"
            )
        if not split.path.startswith(WS_PATH + "/"):
            return self._error(404, "NotFound", f"unknown path {split.path}")
        parts = split.path[len(WS_PATH) + 1 :].split("/")
        if parts[0] not in COLLECTION:
            return self._error(404, "NotFound", f"unknown collection {parts[0]}")
        collection = parts[0]
        if len(parts) == 1 and self.command == "GET":
            return self._list_containers(collection)
        name = parts[1]
        if len(parts) == 3 and parts[2] == "versions" and self.command == "GET":
            return self._list_versions(collection, name, query)
        if len(parts) == 4 and parts[2] == "versions":
            version = parts[3]
            if self.command == "GET":
                found = server.assets.get((collection, name), {}).get(version)
                return (
                    self._send(200, found)
                    if found
                    else self._error(404, "NotFound", "no such version")
                )
            if self.command == "PUT":
                return self._put(collection, name, version, body)
        return self._error(405, "MethodNotAllowed", self.command)

    def _list_containers(self, collection):
        value = []
        for (coll, name), versions in sorted(self.server.assets.items()):
            if coll == collection:
                latest = max(versions, key=lambda v: int(v) if v.isdigit() else -1)
                value.append(
                    {
                        "id": f"{WS_PATH}/{collection}/{name}",
                        "name": name,
                        "properties": {"latestVersion": latest, "isArchived": False},
                    }
                )
        self._send(200, {"value": value})

    def _list_versions(self, collection, name, query):
        versions = list(self.server.assets.get((collection, name), {}).values())
        if query.get("listViewType", "ActiveOnly") == "ActiveOnly":
            versions = [v for v in versions if not v["properties"]["isArchived"]]
        if query.get("$orderBy", "").startswith("createdtime"):
            versions.sort(key=lambda v: v["systemData"]["createdAt"], reverse=True)
        if "$top" in query:
            versions = versions[: int(query["$top"])]
        start = int(query.get("$skipToken", 0))
        page = {"value": versions[start : start + PAGE_SIZE]}
        if start + PAGE_SIZE < len(versions):
            next_query = dict(query, **{"$skipToken": str(start + PAGE_SIZE)})
            page["nextLink"] = (
                f"{self.server.url}{WS_PATH}/{collection}/{name}/versions?{urlencode(next_query)}"
            )
        self._send(200, page)

    def _put(self, collection, name, version, body):
        server = self.server
        uri_key, _ = COLLECTION[collection]
        if (collection, name, version) in server.preempt:
            server.preempt.discard((collection, name, version))
            server.add(
                collection,
                name,
                version,
                tags={"content_hash": "sha256:" + "f" * 64},
                uri="azureml://other",
            )
        existing = server.assets.get((collection, name), {}).get(version)
        if existing and existing["properties"][uri_key] != body["properties"][uri_key]:
            return self._error(409, "UserError", "Asset paths cannot be updated.")
        rest = server.add(
            collection,
            name,
            version,
            tags=body["properties"].get("tags"),
            uri=body["properties"][uri_key],
            kind=body["properties"].get("dataType"),
        )
        rest["properties"].update(
            {k: v for k, v in body["properties"].items() if k not in ("tags",)}
        )
        if collection == "models":
            rest["properties"].setdefault("flavors", {})
        self._send(201 if not existing else 200, rest)

    do_GET = do_PUT = do_POST = do_DELETE = _handle


@pytest.fixture
def workspace(monkeypatch):
    server = FakeWorkspace()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", server.url)
    yield server
    server.shutdown()
    server.server_close()


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
    return open_registry("azureml", repo, settings)


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
    reg = registry.register(AssetSpec("classifier", "flow", flow, "the classifier"))
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
        open_registry("azureml", repo)
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
    registry = open_registry("azureml", repo, {"ml_client": client})
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
    registry = open_registry("azureml", tmp_path)
    spec = AssetSpec("genaiops-live-test", "dataset", data, "genaiops live test, safe to delete")
    first = registry.register(spec)
    second = registry.register(spec)
    assert first.created and not second.created
    assert second.uri == first.uri == f"azureml:genaiops-live-test:{first.version}"
