"""Kubernetes: plain manifests (Deployment + Service) for `kubectl apply -f`.

Probes hit `/health`; connection secrets are referenced through `secretKeyRef` to a Secret the
cluster owner creates (`kubectl create secret generic <secret_name> --from-literal=LLM_API_KEY=...`),
never inlined. We write the file; applying it is the pipeline's `kubectl apply` step, so the
smoke test here only checks the manifests we wrote.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from genaiops.deploy.targets.base import DeployOutcome, DeployRequest, slug
from genaiops.workspace.files import atomic_write_text

PORT = 8080


def manifests(request: DeployRequest) -> list[dict]:
    s = request.env.settings
    name = slug(request.use_case, request.env.name)
    namespace = s.get("namespace", "default")
    secret = s.get("secret_name", f"{name}-connections")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "genaiops"}
    env = [{"name": "PORT", "value": str(PORT)}]
    for var in sorted(request.connection_env):
        if var in request.secret_env_names:
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": var}}})
        else:
            env.append({"name": var, "value": str(request.connection_env[var])})
    probe = {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10, "timeoutSeconds": 5}
    resources = s.get("resources") or {"requests": {"cpu": "250m", "memory": "512Mi"},
                                       "limits": {"cpu": "1", "memory": "1Gi"}}
    annotations = {"genaiops.io/artifact": request.image.artifact, "genaiops.io/variant": request.variant,
                   "genaiops.io/flow-hash": request.image.labels.get("flow_hash", "")}
    registry = request.config.image_registry_for(request.env)
    image = request.image.reference or (registry.rstrip("/") + "/" if registry else "") + request.image.tag
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": int(s.get("replicas", 1)),
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"containers": [{
                    "name": "flow", "image": image, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "env": env, "resources": resources,
                    "readinessProbe": {**probe, "initialDelaySeconds": 5, "failureThreshold": 3},
                    "livenessProbe": {**probe, "initialDelaySeconds": 60, "failureThreshold": 3},
                    "securityContext": {"allowPrivilegeEscalation": False},
                }]},
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
    }
    return [deployment, service]


class KubernetesTarget:
    name = "kubernetes"

    def __init__(self, workspace, progress=None):
        self.workspace = workspace
        self.progress = progress or (lambda message: None)

    def deploy(self, request: DeployRequest) -> DeployOutcome:
        docs = manifests(request)
        out = request.env.settings.get("output")
        root = request.config.repo_root
        path = (root / out) if out else \
            self.workspace.deploy_dir(request.use_case) / request.env.name / "kubernetes.yaml"
        atomic_write_text(Path(path), yaml.safe_dump_all(docs, sort_keys=False))
        check = _check(docs, request)
        self.progress(f"wrote {path}")
        return DeployOutcome(check["ok"], self.name, str(path),
                             f"manifests written; apply with: kubectl apply -f {path}" if check["ok"]
                             else f"manifest check failed: {check['reason']}", check,
                             {"manifest": str(path), "kinds": [d["kind"] for d in docs]})


def _check(docs: list[dict], request: DeployRequest) -> dict:
    """What we can smoke-test without a cluster: probes present, no secret value inlined."""
    text = yaml.safe_dump_all(docs)
    leaked = [n for n in request.secret_env_names if str(request.connection_env.get(n, "")) and
              str(request.connection_env[n]) in text]
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    if leaked:
        return {"ok": False, "reason": f"secret values of {leaked} would be inlined"}
    if "readinessProbe" not in container or "livenessProbe" not in container:
        return {"ok": False, "reason": "probes missing"}
    return {"ok": True, "checked": ["probes", "secretKeyRef", "no inlined secrets"]}
