"""A loopback Azure ML workspace REST API (`AZUREML_DEV_URL_MFE` points the real `MLClient` here).

What it serves, per workspace it knows (subscription / resource group / workspace name):
- data and model versions: paging, archived versions, 409 when a version's path would change;
- the default datastore and its SAS (uploads go to the Blob fake behind the CONNECT proxy);
- environments (the SDK registers an anonymous one for an image), online endpoints and deployments
  with the ARM long-running-operation contract (`provisioningState`), traffic and mirror traffic;
- the scoring route of each endpoint.

With `run_containers=True` an online deployment is *run*: the fake pulls its image reference
(`<registry>/<name>@sha256:...`, from the registry fake) and starts it with docker, after resolving
its secret-injection references the way Azure ML does when the container starts:
`${{azureml://connections/<c>/credentials/<k>}}` needs the endpoint's
`enforce_access_to_default_secret_stores: enabled`; `${{keyvault:https://...}}` needs a
`Key Vault Secrets User` assignment for the endpoint's identity. An unresolved reference fails the
deployment (`provisioningState: Failed`), as the service does. Scoring requests are forwarded to the
container of the deployment named in `azureml-model-deployment`. Emulation, documented: the
container runs with `--network host` and the platform's `PORT` replaced by a free port (Azure ML maps
its port 8080 itself).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from fakes.http import FakeServer, JsonHandler

API_PREFIX = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
COLLECTION = {"data": ("dataUri", "dataType"), "models": ("modelUri", "modelType")}
PAGE_SIZE = 2
DATASTORE = "workspaceblobstore"
SECRET_REF = re.compile(r"^\$\{\{(.+)\}\}$")
CONTAINER_LABEL = "io.genaiops.fake-aml"


def workspace_path(sub: str, rg: str, ws: str) -> str:
    return API_PREFIX.format(sub=sub, rg=rg, ws=ws)


class Workspace:
    """The state of one workspace."""

    def __init__(self, sub: str, rg: str, name: str, storage_account: str):
        self.sub, self.rg, self.name, self.storage_account = sub, rg, name, storage_account
        self.path = workspace_path(sub, rg, name)
        self.assets: dict[tuple[str, str], dict[str, dict]] = {}  # (collection, name) -> version -> rest
        self.environments: dict[tuple[str, str], dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.deployments: dict[tuple[str, str], dict] = {}
        self.connections: dict[str, dict] = {}  # name -> {"credentials": {key: value}}
        self.role_assignments: set[tuple[str, str]] = set()  # (role, principal id)


class FakeAzureML(FakeServer):
    def __init__(self, context=None, *, sub: str, rg: str, ws: str, storage_account: str = "genaiopsstore",
                 run_containers: bool = False, key_vault: dict | None = None, docker_env: dict | None = None):
        super().__init__(_Handler, context)
        self.workspaces: dict[str, Workspace] = {}
        self.default = self.add_workspace(sub, rg, ws, storage_account)
        self.run_containers = run_containers
        self.docker_env = dict(docker_env or {})  # the workspace's pull identity (e.g. DOCKER_CONFIG)
        self.key_vault = dict(key_vault or {})  # "https://<vault>.vault.azure.net/secrets/<n>/<v>" -> value
        self.containers: dict[tuple[str, str, str], tuple[str, int]] = {}  # (ws, endpoint, deployment)
        self.preempt: set[tuple[str, str, str]] = set()  # PUTs that lose a race to "another writer"
        self.fail_status: int | None = None
        self.clock = 0

    def add_workspace(self, sub: str, rg: str, ws: str, storage_account: str = "genaiopsstore") -> Workspace:
        workspace = Workspace(sub, rg, ws, storage_account)
        self.workspaces[workspace.path] = workspace
        return workspace

    # -- the registry-facing helpers tests use ------------------------------------------------------
    @property
    def assets(self):
        return self.default.assets

    def add(self, collection, name, version, *, tags=None, uri="azureml://x", kind="uri_file", archived=False,
            workspace: Workspace | None = None):
        workspace = workspace or self.default
        self.clock += 1
        uri_key, type_key = COLLECTION[collection]
        props = {uri_key: uri, type_key: kind if collection == "data" else "custom_model", "tags": tags or {},
                 "properties": {}, "isArchived": archived, "isAnonymous": False, "description": None}
        if collection == "models":
            props["flavors"] = {}
        rest = {"id": f"{workspace.path}/{collection}/{name}/versions/{version}", "name": str(version),
                "type": f"Microsoft.MachineLearningServices/workspaces/{collection}/versions",
                "properties": props,
                "systemData": {"createdAt": f"2024-01-01T00:00:{self.clock % 60:02d}Z", "createdBy": "fake",
                               "createdByType": "User"}}
        workspace.assets.setdefault((collection, name), {})[str(version)] = rest
        return rest

    def puts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PUT"]

    def image_of_deployment(self, workspace: Workspace, deployment: dict) -> str:
        """The image a deployment runs: its environment's `image`."""
        env_id = str(deployment.get("properties", {}).get("environmentId") or "")
        match = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env_id)
        env = workspace.environments.get(match.groups()) if match else None
        if env is None:
            raise RuntimeError(f"deployment environment {env_id or '(none)'} does not exist")
        return str(env["properties"].get("image") or "")

    # -- containers -----------------------------------------------------------------------------------
    def stop_containers(self) -> None:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={CONTAINER_LABEL}={self.server_port}"],
                             capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)

    def stop(self) -> None:
        super().stop()
        if self.run_containers:
            self.stop_containers()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Handler(JsonHandler):
    server: FakeAzureML

    def _prepare(self) -> None:
        super()._prepare()
        self.server.requests[-1]["auth"] = self.headers.get("Authorization")

    def route(self) -> None:
        server = self.server
        if server.fail_status:
            return self.error(server.fail_status, "AuthorizationFailed", "The client has no access")
        if self.path_only.startswith("/score/"):
            return self._score(self.path_only.split("/")[2], self.path_only.split("/")[3])
        workspace = next((w for p, w in server.workspaces.items() if self.path_only.startswith(p + "/")
                          or self.path_only == p), None)
        if workspace is None:
            return self.error(404, "ResourceNotFound", f"unknown workspace in {self.path_only}")
        parts = [p for p in self.path_only[len(workspace.path):].split("/") if p]
        if not parts:
            return self._workspace(workspace)
        if parts[0] in COLLECTION:
            return self._assets(workspace, parts)
        if parts[0] == "datastores":
            return self._datastores(workspace, parts)
        if parts[0] == "environments":
            return self._environments(workspace, parts)
        if parts[0] == "onlineEndpoints":
            return self._online(workspace, parts)
        return self.error(404, "NotFound", f"fake Azure ML does not serve {self.command} {self.path_only}")

    # -- workspace ------------------------------------------------------------------------------
    def _workspace(self, workspace: Workspace) -> None:
        self.send(200, {"id": workspace.path, "name": workspace.name, "location": "westeurope",
                        "type": "Microsoft.MachineLearningServices/workspaces",
                        "properties": {"storageAccount": f"{workspace.path}/storage/{workspace.storage_account}",
                                       "discoveryUrl": f"{self.server.url}/discovery"}})

    # -- data and models ------------------------------------------------------------------------
    def _assets(self, workspace: Workspace, parts: list[str]) -> None:
        collection = parts[0]
        if len(parts) == 1 and self.command == "GET":
            value = []
            for (coll, name), versions in sorted(workspace.assets.items()):
                if coll == collection:
                    latest = max(versions, key=lambda v: int(v) if v.isdigit() else -1)
                    value.append({"id": f"{workspace.path}/{collection}/{name}", "name": name,
                                  "properties": {"latestVersion": latest, "isArchived": False}})
            return self.send(200, {"value": value})
        name = parts[1]
        if len(parts) == 3 and parts[2] == "versions" and self.command == "GET":
            return self._list_versions(workspace, collection, name)
        if len(parts) == 4 and parts[2] == "versions":
            version = parts[3]
            if self.command == "GET":
                found = workspace.assets.get((collection, name), {}).get(version)
                return self.send(200, found) if found else self.error(404, "NotFound", "no such version")
            if self.command == "PUT":
                return self._put_asset(workspace, collection, name, version)
        return self.error(405, "MethodNotAllowed", self.command)

    def _list_versions(self, workspace: Workspace, collection: str, name: str) -> None:
        query = self.query
        versions = list(workspace.assets.get((collection, name), {}).values())
        if query.get("listViewType", "ActiveOnly") == "ActiveOnly":
            versions = [v for v in versions if not v["properties"]["isArchived"]]
        if query.get("$orderBy", "").startswith("createdtime"):
            versions.sort(key=lambda v: v["systemData"]["createdAt"], reverse=True)
        if "$top" in query:
            versions = versions[: int(query["$top"])]
        start = int(query.get("$skipToken", 0))
        page = {"value": versions[start: start + PAGE_SIZE]}
        if start + PAGE_SIZE < len(versions):
            from urllib.parse import urlencode

            page["nextLink"] = (f"{self.server.url}{workspace.path}/{collection}/{name}/versions?"
                                f"{urlencode(dict(query, **{'$skipToken': str(start + PAGE_SIZE)}))}")
        self.send(200, page)

    def _put_asset(self, workspace: Workspace, collection: str, name: str, version: str) -> None:
        server, body = self.server, self.body
        uri_key, _ = COLLECTION[collection]
        if (collection, name, version) in server.preempt:
            server.preempt.discard((collection, name, version))
            server.add(collection, name, version, tags={"content_hash": "sha256:" + "f" * 64},
                       uri="azureml://other", workspace=workspace)
        existing = workspace.assets.get((collection, name), {}).get(version)
        if existing and existing["properties"][uri_key] != body["properties"][uri_key]:
            return self.error(409, "UserError", "Asset paths cannot be updated.")
        rest = server.add(collection, name, version, tags=body["properties"].get("tags"),
                          uri=body["properties"][uri_key], kind=body["properties"].get("dataType"),
                          workspace=workspace)
        rest["properties"].update({k: v for k, v in body["properties"].items() if k != "tags"})
        if collection == "models":
            rest["properties"].setdefault("flavors", {})
        self.send(201 if not existing else 200, rest)

    # -- datastore ------------------------------------------------------------------------------
    def _datastore(self, workspace: Workspace) -> dict:
        return {"id": f"{workspace.path}/datastores/{DATASTORE}", "name": DATASTORE,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {"datastoreType": "AzureBlob", "accountName": workspace.storage_account,
                               "containerName": "azureml-blobstore", "endpoint": "core.windows.net",
                               "protocol": "https", "isDefault": True,
                               "credentials": {"credentialsType": "AccountKey"}}}

    def _datastores(self, workspace: Workspace, parts: list[str]) -> None:
        if len(parts) == 1 and self.command == "GET":
            return self.send(200, {"value": [self._datastore(workspace)]})
        if len(parts) >= 2 and parts[1] != DATASTORE:
            return self.error(404, "NotFound", f"no datastore {parts[1]}")
        if len(parts) == 2 and self.command == "GET":
            return self.send(200, self._datastore(workspace))
        if len(parts) == 3 and parts[2] == "listSecrets" and self.command == "POST":
            return self.send(200, {"secretsType": "Sas", "sasToken": "sv=2023-01-03&sig=fake"})
        return self.error(405, "MethodNotAllowed", self.command)

    # -- environments ---------------------------------------------------------------------------
    def _environments(self, workspace: Workspace, parts: list[str]) -> None:
        if len(parts) == 4 and parts[2] == "versions":
            key = (parts[1], parts[3])
            if self.command == "PUT":
                rest = {"id": f"{workspace.path}/environments/{parts[1]}/versions/{parts[3]}", "name": parts[3],
                        "type": "Microsoft.MachineLearningServices/workspaces/environments/versions",
                        "properties": {**(self.body or {}).get("properties", {}), "provisioningState": "Succeeded"}}
                workspace.environments[key] = rest
                return self.send(201, rest)
            found = workspace.environments.get(key)
            return self.send(200, found) if found else self.error(404, "NotFound", "no such environment")
        return self.error(404, "NotFound", f"environments: {self.path_only}")

    # -- online endpoints and deployments -------------------------------------------------------
    def _online(self, workspace: Workspace, parts: list[str]) -> None:
        name = parts[1] if len(parts) > 1 else None
        if name is None:
            return self.send(200, {"value": list(workspace.endpoints.values())})
        if len(parts) == 2:
            return self._endpoint(workspace, name)
        if len(parts) == 3 and parts[2] == "token" and self.command == "POST":
            return self.send(200, {"accessToken": "fake-endpoint-token", "tokenType": "Bearer",
                                   "expiryTimeUtc": int(time.time()) + 3600})
        if parts[2] == "deployments":
            if name not in workspace.endpoints:
                return self.error(404, "NotFound", f"no endpoint {name}")
            if len(parts) == 3:
                return self.send(200, {"value": [d for (e, _), d in workspace.deployments.items() if e == name]})
            return self._deployment(workspace, name, parts[3])
        return self.error(404, "NotFound", self.path_only)

    def _endpoint(self, workspace: Workspace, name: str) -> None:
        if self.command == "GET":
            found = workspace.endpoints.get(name)
            return self.send(200, found) if found else self.error(404, "NotFound", f"endpoint {name} not found")
        if self.command == "PUT":
            existing = workspace.endpoints.get(name)
            body = self.body or {}
            props = dict(body.get("properties") or {})
            identity = dict(body.get("identity") or {"type": "SystemAssigned"})
            if existing:
                identity.update({k: existing["identity"][k] for k in ("principalId", "tenantId")})
            else:
                identity.update(principalId=str(uuid.uuid4()), tenantId=str(uuid.uuid4()))
            props.update(provisioningState="Succeeded",
                         scoringUri=f"{self.server.url}/score/{workspace.name}/{name}",
                         traffic={k: int(v) for k, v in (props.get("traffic") or {}).items()},
                         mirrorTraffic={k: int(v) for k, v in (props.get("mirrorTraffic") or {}).items()})
            for slot in list(props["traffic"]) + list(props["mirrorTraffic"]):
                if (name, slot) not in workspace.deployments:
                    return self.error(400, "BadRequest", f"traffic names deployment {slot} that does not exist")
            rest = {"id": f"{workspace.path}/onlineEndpoints/{name}", "name": name,
                    "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                    "location": body.get("location") or "westeurope", "kind": body.get("kind"),
                    "tags": body.get("tags") or {}, "identity": identity, "properties": props}
            workspace.endpoints[name] = rest
            return self.send(201 if not existing else 200, rest)
        if self.command == "DELETE":
            workspace.endpoints.pop(name, None)
            return self.send(200, {})
        return self.error(405, "MethodNotAllowed", self.command)

    def _deployment(self, workspace: Workspace, endpoint: str, name: str) -> None:
        key = (endpoint, name)
        if self.command == "GET":
            found = workspace.deployments.get(key)
            return self.send(200, found) if found else self.error(404, "NotFound", f"deployment {name} not found")
        if self.command == "DELETE":
            workspace.deployments.pop(key, None)
            self._stop(workspace, endpoint, name)
            return self.send(200, {})
        if self.command != "PUT":
            return self.error(405, "MethodNotAllowed", self.command)
        body = self.body or {}
        props = dict(body.get("properties") or {})
        state, message = "Succeeded", ""
        if self.server.run_containers:
            try:
                self._start(workspace, endpoint, name, props)
            except RuntimeError as exc:
                state, message = "Failed", str(exc)
        props.update(provisioningState=state)
        props.setdefault("scaleSettings", {"scaleType": "Default"})
        rest = {"id": f"{workspace.path}/onlineEndpoints/{endpoint}/deployments/{name}", "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                "location": body.get("location") or "westeurope", "tags": body.get("tags") or {},
                "sku": body.get("sku") or {"name": "Default", "capacity": 1}, "properties": props}
        if state == "Failed":
            return self.error(400, "DeploymentFailed", message)
        workspace.deployments[key] = rest
        self.send(201, rest)

    # -- running a deployment -------------------------------------------------------------------
    def _resolve(self, workspace: Workspace, endpoint: str, value: str) -> str:
        match = SECRET_REF.match(value)
        if not match:
            return value
        ref = match.group(1)
        identity = workspace.endpoints[endpoint]["identity"]
        connection = re.fullmatch(r"azureml://connections/([^/]+)/credentials/([^/]+)", ref)
        if connection:
            props = workspace.endpoints[endpoint]["properties"].get("properties") or {}
            if str(props.get("enforce_access_to_default_secret_stores", "")).lower() != "enabled":
                raise RuntimeError(f"the endpoint identity {identity['principalId']} may not read "
                                   f"workspace connection secrets ({ref})")
            found = workspace.connections.get(connection.group(1), {}).get("credentials", {}).get(connection.group(2))
            if found is None:
                raise RuntimeError(f"secret reference {ref} does not resolve")
            return found
        if ref.startswith("keyvault:"):
            if ("Key Vault Secrets User", identity["principalId"]) not in workspace.role_assignments:
                raise RuntimeError(f"the endpoint identity {identity['principalId']} has no role on the key vault")
            if ref[len("keyvault:"):] not in self.server.key_vault:
                raise RuntimeError(f"secret reference {ref} does not resolve")
            return self.server.key_vault[ref[len("keyvault:"):]]
        raise RuntimeError(f"unknown secret reference {ref}")

    def _start(self, workspace: Workspace, endpoint: str, name: str, props: dict) -> None:
        image = self.server.image_of_deployment(workspace, {"properties": props})
        if "@sha256:" not in image:
            raise RuntimeError(f"image {image!r} is not referenced by digest")
        env = {k: self._resolve(workspace, endpoint, str(v))
               for k, v in (props.get("environmentVariables") or {}).items()}
        pulled = subprocess.run(["docker", "pull", image], capture_output=True, text=True, timeout=600, check=False,
                                env={**os.environ, **self.server.docker_env})
        if pulled.returncode != 0:
            raise RuntimeError(f"image pull failed: {pulled.stderr.strip()[-300:]}")
        self._stop(workspace, endpoint, name)
        port = _free_port()
        env["PORT"] = str(port)
        args = ["docker", "run", "-d", "--network", "host", "--label", f"{CONTAINER_LABEL}={self.server.server_port}"]
        for key in sorted(env):
            args += ["-e", key]
        started = subprocess.run([*args, image], capture_output=True, text=True, timeout=120, check=False,
                                 env={"PATH": "/usr/bin:/bin", **env})
        if started.returncode != 0:
            raise RuntimeError(f"container start failed: {started.stderr.strip()[-300:]}")
        container = started.stdout.strip()
        self.server.containers[(workspace.name, endpoint, name)] = (container, port)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container],
                                     capture_output=True, text=True, check=False).stdout.strip()
            if running != "true":
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(1)
        logs = subprocess.run(["docker", "logs", "--tail", "20", container], capture_output=True, text=True,
                              check=False)
        raise RuntimeError(f"container never became healthy: {(logs.stdout + logs.stderr)[-800:]}")

    def _stop(self, workspace: Workspace, endpoint: str, name: str) -> None:
        found = self.server.containers.pop((workspace.name, endpoint, name), None)
        if found:
            subprocess.run(["docker", "rm", "-f", found[0]], capture_output=True, check=False)

    def _score(self, ws_name: str, endpoint: str) -> None:
        workspace = next((w for w in self.server.workspaces.values() if w.name == ws_name), None)
        if workspace is None or endpoint not in workspace.endpoints:
            return self.error(404, "NotFound", "no such endpoint")
        if not str(self.headers.get("Authorization", "")).startswith("Bearer "):
            return self.error(401, "Unauthorized", "no token")
        deployment = self.headers.get("azureml-model-deployment")
        if not deployment:
            traffic = workspace.endpoints[endpoint]["properties"].get("traffic") or {}
            deployment = max(traffic, key=traffic.get) if traffic else None
        found = self.server.containers.get((workspace.name, endpoint, deployment or ""))
        if found is None:
            return self.error(404, "NotFound", f"deployment {deployment} serves nothing")
        request = urllib.request.Request(f"http://127.0.0.1:{found[1]}/score", data=self.raw_body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return self.send(answer.status, answer.read())
        except urllib.error.HTTPError as exc:
            return self.send(exc.code, exc.read())
