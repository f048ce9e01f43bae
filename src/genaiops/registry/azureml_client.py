"""Build an `MLClient` for the Azure ML registry backend from settings or the environment.

Needed only when that backend is chosen; azure-ai-ml and azure-identity are imported here, lazily,
so `import genaiops.registry` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from genaiops.errors import UsageError

# settings key -> environment variable
WORKSPACE_SETTINGS = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace_name": "AZUREML_WORKSPACE_NAME",
}


def workspace_scope(settings: Mapping[str, Any]) -> dict[str, str]:
    """subscription_id, resource_group, workspace_name from settings, else from the environment."""
    scope: dict[str, str] = {}
    missing: list[str] = []
    for key, env in WORKSPACE_SETTINGS.items():
        value = settings.get(key) or os.environ.get(env)
        if value:
            scope[key] = str(value)
        else:
            missing.append(env)
    if missing:
        raise UsageError(
            "the azureml registry needs " + ", ".join(missing),
            hint="set " + " and ".join(missing) + " (e.g. in .env or the pipeline's variables), "
            "or use --backend local",
        )
    return scope


def make_credential(settings: Mapping[str, Any]) -> Any:
    """`settings["credential"]`, else AzureCliCredential when AZURE_CLI_CREDENTIAL=1 (inside an
    AzureCLI@2 task), else DefaultAzureCredential (env vars, workload identity, managed identity, CLI)."""
    if settings.get("credential") is not None:
        return settings["credential"]
    if os.environ.get("AZURE_CLI_CREDENTIAL", "").strip().lower() in ("1", "true", "yes"):
        from azure.identity import AzureCliCredential

        return AzureCliCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def make_ml_client(settings: dict):
    """The workspace `MLClient`; `settings["client_kwargs"]` passes extra azure-core options."""
    scope = workspace_scope(settings)
    from azure.ai.ml import MLClient

    return MLClient(
        make_credential(settings),
        subscription_id=scope["subscription_id"],
        resource_group_name=scope["resource_group"],
        workspace_name=scope["workspace_name"],
        enable_telemetry=False,
        **dict(settings.get("client_kwargs") or {}),
    )
