"""Deployment targets behind one protocol (`base.DeploymentTarget`): docker, aml, kubernetes,
named in `TARGET_TABLE` (more from the `genaiops.targets` entry point group or `GENAIOPS_TARGETS`:
`genaiops.adapters`). Adapters import their platform SDKs lazily, inside `deploy`."""

from __future__ import annotations

from genaiops.adapters import AdapterTable
from genaiops.deploy.targets.base import DeploymentTarget, DeployOutcome, DeployRequest, SmokeSpec

__all__ = ["DeployOutcome", "DeployRequest", "DeploymentTarget", "SmokeSpec", "TARGET_TABLE", "make_target"]


TARGET_TABLE = AdapterTable("targets", "target", {
    "docker": "genaiops.deploy.targets.docker:DockerTarget",
    "aml": "genaiops.deploy.targets.aml:AzureMLTarget",
    "kubernetes": "genaiops.deploy.targets.kubernetes:KubernetesTarget",
})


def make_target(name: str, **kwargs) -> DeploymentTarget:
    """kwargs: progress, plus extra_labels (docker), ml_client/pusher (aml) or workspace
    (kubernetes); each target gets those its constructor takes."""
    return TARGET_TABLE.create(name, **kwargs)
