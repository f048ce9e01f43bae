"""Azure ML managed online endpoint: blue/green deployments with A/B (or mirrored) traffic.

- The endpoint is created when missing (Entra token auth for callers, system-assigned identity).
- The new deployment goes in the slot (blue/green) that serves no traffic, and is smoke-tested there
  at 0 % (`online_endpoints.invoke(deployment_name=new)` reaches a deployment whatever its share)
  before any traffic moves: on failure it is deleted and nothing else changed.
- Then traffic: first deploy 100 % new; later `traffic_percent` X to the new one (the canary),
  100 - X to the previous one; `mirror_percent` (with X = 0) shadows live traffic to it instead.
  Deployments left without traffic are deleted.
- A canary is never overwritten by the next release: while two deployments share the traffic a
  deploy is refused until someone promotes the canary to 100 % or rolls it back
  (`genaiops promote|rollback`, `shift_traffic` here; a record of the audit chain).
- The image is referenced by digest, `<registry>/<name>@sha256:...`, never by a tag: the one built
  once and promoted (`run deploy --evidence`), or, without evidence, the local build pushed to the
  environment's `image_registry` first.
- No secret goes into the deployment. The container gets the connections' non-secret settings as
  environment variables and each secret one (e.g. `LLM_API_KEY`) as an Azure ML secret-injection
  reference from the environment's `secrets:` (`${{azureml://connections/llm/credentials/key}}` or
  `${{keyvault:https://<vault>.vault.azure.net/secrets/<name>/<version>}}`), resolved with the
  endpoint's identity when the container starts. For connection references the endpoint is created
  with `enforce_access_to_default_secret_stores`, which grants its system identity the workspace's
  connection-secret reader role; a Key Vault needs `Key Vault Secrets User` for that identity
  (docs/azure-devops.md). A secret without a reference is an error, not a container without a key.
- The client is the workspace's `MLClient` (`registry.azureml_client`: AzureCliCredential inside
  `AzureCLI@2`, else DefaultAzureCredential; `AZUREML_DEV_URL_MFE` reaches a loopback test double).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

from genaiops.deploy.targets.base import DeployOutcome, DeployRequest, check_smoke
from genaiops.errors import UsageError
from genaiops.secrets import redact

SLOTS = ("blue", "green")
PORT = 8080


class AzureMLTarget:
    name = "aml"

    def __init__(self, ml_client=None, pusher=None, progress=None):
        from genaiops.deploy.push import push_by_digest

        self._ml_client = ml_client
        self.pusher = pusher or push_by_digest  # (local tag, registry, progress) -> (repository, digest)
        self.progress = progress or (lambda message: None)

    def deploy(self, request: DeployRequest) -> DeployOutcome:
        """Every Azure failure becomes one message naming what was being done (no traceback); what
        the SDK prints goes to stderr, so `--json` output stays one JSON document."""
        from genaiops.registry.azureml import azure_errors

        with azure_errors(f"deploying {request.use_case} to {request.env.name}"), \
                contextlib.redirect_stdout(sys.stderr):
            return self._deploy(request)

    def _deploy(self, request: DeployRequest) -> DeployOutcome:
        from azure.ai.ml.entities import (
            Environment,
            IdentityConfiguration,
            ManagedOnlineDeployment,
            ManagedOnlineEndpoint,
            OnlineRequestSettings,
            ProbeSettings,
        )
        from azure.core.exceptions import ResourceNotFoundError

        s = request.env.settings
        workspace = s.get("workspace") or {}
        endpoint_name = s.get("endpoint") or f"{request.use_case}-{request.env.name}".replace("_", "-")[:32]
        image = self._image_reference(request)
        env_vars = self.container_environment(request)
        client = self._ml_client or self._client_for(workspace)
        endpoints, deployments = client.online_endpoints, client.online_deployments
        try:
            endpoint = endpoints.get(endpoint_name)
        except ResourceNotFoundError:
            self.progress(f"creating endpoint {endpoint_name} ...")
            uses_connections = any(ref.startswith("azureml://") for ref in (s.get("secrets") or {}).values())
            endpoints.begin_create_or_update(ManagedOnlineEndpoint(
                name=endpoint_name, auth_mode="aad_token",
                identity=IdentityConfiguration(type="system_assigned"),
                properties={"enforce_access_to_default_secret_stores": "enabled"} if uses_connections else {},
                tags={"use_case": request.use_case, "env": request.env.name})).result()
            endpoint = endpoints.get(endpoint_name)
        old_traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        old_mirror = {k: int(v) for k, v in (getattr(endpoint, "mirror_traffic", None) or {}).items()}
        live = [k for k, v in sorted(old_traffic.items(), key=lambda kv: -kv[1]) if v > 0]
        if len(live) > 1:
            return DeployOutcome(False, self.name, endpoint_name,
                                 f"endpoint {endpoint_name} still splits traffic {old_traffic}: the canary "
                                 f"{live[-1]} was neither promoted nor rolled back; promote it "
                                 f"(genaiops promote -u {request.use_case} -e {request.env.name} --by <you>) or roll "
                                 f"it back (genaiops rollback ...) before the next release", None,
                                 {"endpoint": endpoint_name, "traffic": old_traffic, "canary_pending": live[-1]})
        previous = live[0] if live else None
        new = "green" if previous == "blue" else "blue"

        deployment = ManagedOnlineDeployment(
            name=new, endpoint_name=endpoint_name,
            environment=Environment(image=image, inference_config={
                "liveness_route": {"path": "/health", "port": PORT},
                "readiness_route": {"path": "/health", "port": PORT},
                "scoring_route": {"path": "/score", "port": PORT}}),
            instance_type=s.get("instance_type", "Standard_DS3_v2"),
            instance_count=int(s.get("instance_count", 1)),
            environment_variables=env_vars,
            request_settings=OnlineRequestSettings(request_timeout_ms=90000),
            liveness_probe=ProbeSettings(initial_delay=30, period=10),
            readiness_probe=ProbeSettings(initial_delay=10, period=10),
            tags={"artifact": request.image.artifact, "variant": request.variant,
                  "flow_hash": request.image.labels.get("flow_hash", "")})
        traffic, mirror = self.split(previous, new, int(s.get("traffic_percent", 100)),
                                     int(s.get("mirror_percent", 0)))
        self.progress(f"creating deployment {endpoint_name}/{new} (no traffic until its smoke test passes) ...")
        deployments.begin_create_or_update(deployment).result()
        smoke = self._smoke(endpoints, endpoint_name, new, request)
        identity = getattr(getattr(endpoint, "identity", None), "principal_id", None)
        details = {"endpoint": endpoint_name, "deployment": new, "previous": previous, "image": image,
                   "traffic": traffic, "mirror_traffic": mirror, "identity_principal_id": identity}
        if not smoke["ok"]:
            self.progress("smoke test failed at 0 % traffic: deleting the new deployment ...")
            if new in old_mirror:  # it shadowed traffic before: stop mirroring to a deleted deployment
                self._set_traffic(endpoints, endpoints.get(endpoint_name), old_traffic,
                                  {k: v for k, v in old_mirror.items() if k != new})
            deployments.begin_delete(name=new, endpoint_name=endpoint_name).result()
            details.update(traffic=old_traffic, rolled_back_to=old_traffic)
            return DeployOutcome(False, self.name, endpoint_name,
                                 f"smoke test failed: {smoke.get('reason')}; no traffic was moved "
                                 f"({old_traffic or 'none'})", smoke, details)
        self.progress(f"smoke test passed at 0 %: traffic {traffic}" + (f", mirror {mirror}" if mirror else ""))
        self._set_traffic(endpoints, endpoints.get(endpoint_name), traffic, mirror)
        keep = {k for k, v in {**traffic, **mirror}.items() if v > 0}
        removed = []
        for name in sorted(set(old_traffic) | set(old_mirror)):
            if name not in keep:
                deployments.begin_delete(name=name, endpoint_name=endpoint_name).result()
                removed.append(name)
        details["deleted"] = removed
        return DeployOutcome(True, self.name, endpoint_name, f"deployed {new} with traffic {traffic}",
                             smoke, details)

    def shift_traffic(self, settings: dict, use_case: str, env_name: str, action: str) -> dict:
        """`promote`: the canary (the deployment with the smaller share) gets 100 % and the other is
        deleted; `rollback`: the other gets 100 % back and the canary is deleted. Needs exactly two
        deployments sharing the traffic. Returns what moved, for the audit record."""
        from genaiops.registry.azureml import azure_errors

        if action not in ("promote", "rollback"):
            raise ValueError(action)
        with azure_errors(f"{action} of {use_case} in {env_name}"), contextlib.redirect_stdout(sys.stderr):
            endpoint_name = settings.get("endpoint") or f"{use_case}-{env_name}".replace("_", "-")[:32]
            client = self._ml_client or self._client_for(settings.get("workspace") or {})
            endpoints, deployments = client.online_endpoints, client.online_deployments
            endpoint = endpoints.get(endpoint_name)
            before = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
            live = sorted((k for k, v in before.items() if v > 0), key=lambda k: -before[k])
            if len(live) != 2 or before[live[0]] == before[live[1]]:
                raise UsageError(f"nothing to {action}: endpoint {endpoint_name} serves {before or 'nothing'}",
                                 hint="promote and rollback act on a canary: two deployments, the new one "
                                      "with the smaller share (traffic_percent)")
            stable, canary = live
            keep, drop = (canary, stable) if action == "promote" else (stable, canary)
            artifact = (getattr(deployments.get(name=canary, endpoint_name=endpoint_name), "tags", None)
                        or {}).get("artifact")
            after = {keep: 100, drop: 0}
            self.progress(f"{action}: traffic {before} -> {after}, deleting {drop} ...")
            self._set_traffic(endpoints, endpoint, after, {})
            deployments.begin_delete(name=drop, endpoint_name=endpoint_name).result()
        return {"endpoint": endpoint_name, "canary": canary, "artifact": artifact, "traffic_before": before,
                "traffic_after": {keep: 100}, "deleted": drop}

    def _image_reference(self, request: DeployRequest) -> str:
        """`<registry>/<name>@sha256:...` in the registry this environment pulls from."""
        registry = request.config.image_registry_for(request.env)
        if not registry:
            raise UsageError("the aml target needs a container registry the workspace can pull from",
                             hint="set image_registry: ${env:GENAIOPS_IMAGE_REGISTRY} (e.g. "
                                  "myacr.azurecr.io) in the environment, or image.registry, in deployment.yaml")
        if request.image.reference:
            if not request.image.reference.startswith(registry.rstrip("/") + "/"):
                raise UsageError(f"image {request.image.reference} is not in {registry}, the registry "
                                 f"environment {request.env.name} pulls from")
            return request.image.reference
        repository, digest = self.pusher(request.image.tag, registry, self.progress)
        return f"{repository}@{digest}"

    @staticmethod
    def container_environment(request: DeployRequest) -> dict:
        """Non-secret connection settings as values, secrets as secret-injection references."""
        refs = dict(request.env.settings.get("secrets") or {})
        needed = set(request.secret_env_names)
        missing, unused = sorted(needed - set(refs)), sorted(set(refs) - needed)
        if missing or unused:
            raise UsageError(
                (f"environment {request.env.name} gives no secret reference for {', '.join(missing)}"
                 if missing else f"environment {request.env.name} has secrets the connections do not "
                                 f"use: {', '.join(unused)}"),
                hint="under `secrets:` map each of " + ", ".join(sorted(needed)) + " to "
                     "azureml://connections/<connection>/credentials/key or "
                     "keyvault:https://<vault>.vault.azure.net/secrets/<name>/<version>")
        env_vars = {k: str(v) for k, v in request.connection_env.items() if k not in needed}
        env_vars.update({name: "${{" + ref + "}}" for name, ref in sorted(refs.items())})
        env_vars["PORT"] = str(PORT)
        return env_vars

    @staticmethod
    def _client_for(workspace: dict):
        from genaiops.registry.azureml_client import make_ml_client

        if not workspace:
            raise UsageError("the aml target needs `workspace:` (subscription_id, resource_group, "
                             "workspace_name) in the environment of deployment.yaml")
        return make_ml_client(dict(workspace))

    @staticmethod
    def split(previous: str | None, new: str, percent: int, mirror_percent: int) -> tuple[dict, dict]:
        """(traffic, mirror_traffic): first deploy 100 % new; else new X, previous 100 - X."""
        if previous is None:
            return {new: 100}, {}
        if mirror_percent and percent == 0:
            return {previous: 100, new: 0}, {new: mirror_percent}
        if mirror_percent:
            raise UsageError("mirror_percent needs traffic_percent: 0 (Azure ML cannot mirror to a "
                             "deployment that also takes live traffic)")
        return {new: percent, previous: 100 - percent}, {}

    @staticmethod
    def _set_traffic(endpoints, endpoint, traffic: dict, mirror: dict) -> None:
        endpoint.traffic = dict(traffic)
        endpoint.mirror_traffic = dict(mirror)
        endpoints.begin_create_or_update(endpoint).result()

    @staticmethod
    def _smoke(endpoints, endpoint_name: str, deployment: str, request: DeployRequest) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            body = Path(tmp) / "request.json"
            body.write_text(json.dumps(request.smoke.body))
            try:
                answer = endpoints.invoke(endpoint_name=endpoint_name, deployment_name=deployment,
                                          request_file=str(body))
            except Exception as exc:  # noqa: BLE001  (the SDK raises HttpResponseError and many others)
                return {"ok": False, "reason": redact(f"invoke failed: {type(exc).__name__}: {exc}")[:500]}
        return check_smoke(200, answer if isinstance(answer, (str, bytes)) else json.dumps(answer),
                           request.smoke.expect_outputs)


