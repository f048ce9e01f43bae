"""Azure ML managed online endpoint: blue/green deployments with A/B (or mirrored) traffic.

- The endpoint is created when missing (Entra token auth for callers, system-assigned identity).
- The new deployment goes in the slot (blue/green) that does not hold most traffic.
- Traffic: first deploy 100 % new; later `traffic_percent` X to the new one, 100 - X to the previous
  one; `mirror_percent` (with X = 0) shadows live traffic to the new one instead.
- Smoke test via `online_endpoints.invoke(deployment_name=new)`. On failure the previous traffic
  (and mirror) is restored and the new deployment deleted; deployments left without traffic are
  deleted only after success.
- No secret goes into the deployment: connections come from the workspace
  (`PROMPTFLOW_CONNECTION_PROVIDER=azureml://...`), the image from `image.registry` (pushed first).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from genaiops.deploy.targets.base import DeployOutcome, DeployRequest, check_smoke
from genaiops.errors import UsageError
from genaiops.secrets import redact

SLOTS = ("blue", "green")
PORT = 8080


def push_image(local_tag: str, remote: str) -> None:
    from genaiops.deploy import dockercli

    dockercli.docker("tag", local_tag, remote)
    dockercli.docker("push", remote, timeout=3600)


def ml_client_for(workspace: dict):
    """A real MLClient (lazy import); unreachable here, so tests pass a fake client instead."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), workspace["subscription_id"], workspace["resource_group"],
                    workspace["workspace_name"])


class AzureMLTarget:
    name = "aml"

    def __init__(self, ml_client=None, pusher=push_image, progress=None):
        self._ml_client = ml_client
        self.pusher = pusher
        self.progress = progress or (lambda message: None)

    def deploy(self, request: DeployRequest) -> DeployOutcome:
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
        registry = request.config.image_registry
        if not registry:
            raise UsageError("the aml target needs image.registry in deployment.yaml (a container registry "
                             "the workspace can pull from, e.g. myacr.azurecr.io)")
        client = self._ml_client or ml_client_for(workspace)
        remote = f"{registry.rstrip('/')}/{request.image.tag}"
        self.progress(f"pushing {remote} ...")
        self.pusher(request.image.tag, remote)

        endpoints, deployments = client.online_endpoints, client.online_deployments
        try:
            endpoint = endpoints.get(endpoint_name)
        except ResourceNotFoundError:
            self.progress(f"creating endpoint {endpoint_name} ...")
            endpoints.begin_create_or_update(ManagedOnlineEndpoint(
                name=endpoint_name, auth_mode="aad_token",
                identity=IdentityConfiguration(type="system_assigned"),
                tags={"use_case": request.use_case, "env": request.env.name})).result()
            endpoint = endpoints.get(endpoint_name)
        old_traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
        old_mirror = {k: int(v) for k, v in (getattr(endpoint, "mirror_traffic", None) or {}).items()}
        live = [k for k, v in sorted(old_traffic.items(), key=lambda kv: -kv[1]) if v > 0]
        previous = live[0] if live else None
        new = "green" if previous == "blue" else "blue"

        provider = ("azureml://subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
                    "Microsoft.MachineLearningServices/workspaces/{workspace_name}").format(**workspace) \
            if workspace else ""
        env_vars = {k: v for k, v in request.connection_env.items() if k not in request.secret_env_names}
        env_vars.update({"PROMPTFLOW_CONNECTION_PROVIDER": provider, "PORT": str(PORT)} if provider
                        else {"PORT": str(PORT)})
        deployment = ManagedOnlineDeployment(
            name=new, endpoint_name=endpoint_name,
            environment=Environment(image=remote, inference_config={
                "liveness_route": {"path": "/health", "port": PORT},
                "readiness_route": {"path": "/health", "port": PORT},
                "scoring_route": {"path": "/score", "port": PORT}}),
            instance_type=s.get("instance_type", "Standard_DS3_v2"),
            instance_count=int(s.get("instance_count", 1)),
            environment_variables=env_vars,
            request_settings=OnlineRequestSettings(request_timeout_ms=90000),
            liveness_probe=ProbeSettings(initial_delay=30, period=10),
            readiness_probe=ProbeSettings(initial_delay=10, period=10),
            tags={"artifact": request.image.image_id, "variant": request.variant,
                  "flow_hash": request.image.labels.get("flow_hash", "")})
        self.progress(f"creating deployment {endpoint_name}/{new} ...")
        deployments.begin_create_or_update(deployment).result()

        traffic, mirror = self.split(previous, new, int(s.get("traffic_percent", 100)),
                                     int(s.get("mirror_percent", 0)))
        self._set_traffic(endpoints, endpoint, traffic, mirror)
        smoke = self._smoke(endpoints, endpoint_name, new, request)
        details = {"endpoint": endpoint_name, "deployment": new, "previous": previous, "image": remote,
                   "traffic": traffic, "mirror_traffic": mirror}
        if not smoke["ok"]:
            self.progress("smoke test failed: restoring traffic and deleting the new deployment ...")
            # the slot we overwrote may have carried a share: it goes back to the previous deployment
            restored = {k: v for k, v in old_traffic.items() if k != new}
            if previous is not None and new in old_traffic:
                restored[previous] = restored.get(previous, 0) + old_traffic[new]
            old_traffic, old_mirror = restored, {k: v for k, v in old_mirror.items() if k != new}
            self._set_traffic(endpoints, endpoints.get(endpoint_name), old_traffic, old_mirror)
            if new != previous:
                deployments.begin_delete(name=new, endpoint_name=endpoint_name).result()
            details.update(rolled_back_to=old_traffic)
            return DeployOutcome(False, self.name, endpoint_name,
                                 f"smoke test failed: {smoke.get('reason')}; traffic restored to {old_traffic}",
                                 smoke, details)
        keep = {k for k, v in {**traffic, **mirror}.items() if v > 0}
        removed = []
        for name in sorted(set(old_traffic) | set(old_mirror)):
            if name not in keep:
                deployments.begin_delete(name=name, endpoint_name=endpoint_name).result()
                removed.append(name)
        details["deleted"] = removed
        return DeployOutcome(True, self.name, endpoint_name, f"deployed {new} with traffic {traffic}",
                             smoke, details)

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


