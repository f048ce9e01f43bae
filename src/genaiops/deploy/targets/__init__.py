"""Deployment targets behind one protocol (`base.DeploymentTarget`): docker, aml, kubernetes.
Adapters import their platform SDKs lazily, inside `deploy`."""

from __future__ import annotations

from genaiops.deploy.targets.base import DeploymentTarget, DeployOutcome, DeployRequest, SmokeSpec

__all__ = ["DeployOutcome", "DeployRequest", "DeploymentTarget", "SmokeSpec", "make_target"]


def make_target(name: str, **kwargs) -> DeploymentTarget:
    """kwargs: progress, plus extra_labels (docker), ml_client/pusher (aml) or workspace (kubernetes)."""
    progress = kwargs.get("progress")
    if name == "docker":
        from genaiops.deploy.targets.docker import DockerTarget

        return DockerTarget(extra_labels=kwargs.get("extra_labels"), progress=progress)
    if name == "aml":
        from genaiops.deploy.targets.aml import AzureMLTarget

        return AzureMLTarget(ml_client=kwargs.get("ml_client"), pusher=kwargs.get("pusher"), progress=progress)
    if name == "kubernetes":
        from genaiops.deploy.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(kwargs["workspace"], progress=progress)
    from genaiops.errors import UsageError

    raise UsageError(f"unknown target {name!r}", hint="use docker, aml or kubernetes")
