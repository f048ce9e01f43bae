"""`configs/<use_case>/deployment.yaml` (+ `deployment.<env>.yaml` overlay): typed and validated
like experiment.yaml, so every problem names file, line, field and a fix.

An overlay replaces whole top-level blocks (`image`, `smoke`, `environments`, ...), never merges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.config.envvars import EnvResolver, load_dotenv_values
from genaiops.config.layered import load_layered, schema_problems
from genaiops.errors import ConfigError, Problem, UsageError

BASE_FILE = "deployment.yaml"
TARGETS = ("docker", "aml", "kubernetes")
DEFAULT_BASE_IMAGE = "genaiops/base:bookworm"
KEY = {"pattern": "^[a-z][a-z0-9_]*$"}  # no blank, uppercase or odd keys anywhere
KEY_HINT = ("keys are lowercase letters, digits and _ (environment names may also use -); "
            "no blank or uppercase keys")

_RESOURCES = {"type": "object", "propertyNames": KEY, "additionalProperties": False,
              "properties": {"cpu": {"type": "string", "minLength": 1},
                             "memory": {"type": "string", "minLength": 1}}}

ENVIRONMENT = {
    "type": "object",
    "required": ["target"],
    "propertyNames": KEY,
    "additionalProperties": False,
    "properties": {
        "target": {"enum": list(TARGETS)},
        "requires_approval": {"type": "boolean"},
        "approval_ttl_minutes": {"type": "integer", "minimum": 1, "maximum": 10080},
        "approval_source": {"enum": ["local", "azure_devops"]},
        # docker
        "port": {"type": "integer", "minimum": 1, "maximum": 65534},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
        "health_timeout_sec": {"type": "number", "exclusiveMinimum": 0},
        # aml
        "endpoint": {"type": "string", "pattern": "^[a-z][a-z0-9-]{2,31}$"},
        "traffic_percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "mirror_percent": {"type": "integer", "minimum": 0, "maximum": 50},
        "instance_type": {"type": "string", "minLength": 1},
        "instance_count": {"type": "integer", "minimum": 1},
        "workspace": {"type": "object", "propertyNames": KEY, "additionalProperties": False,
                      "required": ["subscription_id", "resource_group", "workspace_name"],
                      "properties": {k: {"type": "string", "minLength": 1}
                                     for k in ("subscription_id", "resource_group", "workspace_name")}},
        # kubernetes
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "replicas": {"type": "integer", "minimum": 1},
        "secret_name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "resources": {"type": "object", "propertyNames": KEY, "additionalProperties": False,
                      "properties": {"requests": _RESOURCES, "limits": _RESOURCES}},
        "output": {"type": "string", "minLength": 1},
    },
}

DEPLOYMENT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["environments"],
    "propertyNames": KEY,
    "additionalProperties": False,
    "properties": {
        "image": {
            "type": "object", "propertyNames": KEY, "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]+([._/-][a-z0-9]+)*$"},
                "base_image": {"type": "string", "minLength": 1},
                "registry": {"type": "string", "minLength": 1},
            },
        },
        "registry": {"type": "object", "propertyNames": KEY,
                     "properties": {"backend": {"enum": ["local", "azureml"]}}},
        "smoke": {
            "type": "object", "propertyNames": KEY, "additionalProperties": False,
            "properties": {
                "request": {"type": "string", "minLength": 1},
                "expect_outputs": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "timeout_sec": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "environments": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z][a-z0-9_-]{0,30}$"},
            "additionalProperties": ENVIRONMENT,
        },
    },
}


@dataclass(frozen=True)
class Environment:
    name: str
    target: str
    requires_approval: bool = False
    approval_ttl_minutes: int = 60
    approval_source: str = "local"
    settings: dict = field(default_factory=dict)  # target-specific keys (port, endpoint, traffic...)


@dataclass(frozen=True)
class DeploymentConfig:
    use_case: str
    repo_root: Path
    files: tuple[Path, ...]
    image_name: str
    base_image: str
    image_registry: str | None
    registry: dict
    smoke_request: Path
    smoke_request_rel: str
    expect_outputs: tuple[str, ...] | None
    smoke_timeout_sec: float
    environments: dict[str, Environment]

    def environment(self, env: str) -> Environment:
        if env not in self.environments:
            raise UsageError(f"environment {env!r} is not in configs/{self.use_case}/{BASE_FILE}",
                             hint=f"use one of: {', '.join(sorted(self.environments))}, "
                                  f"or add it under `environments:`")
        return self.environments[env]


def load_deployment(repo_root: Path, use_case: str, env: str | None = None,
                    *, environ: dict | None = None) -> DeploymentConfig:
    """Raises ConfigError listing every problem (file, line, field, fix)."""
    repo_root = Path(repo_root).resolve()
    folder = repo_root / "configs" / use_case
    base = folder / BASE_FILE
    if not base.is_file():
        raise UsageError(f"configs/{use_case}/{BASE_FILE} not found",
                         hint="create it (see docs/deploy.md), e.g. environments: {dev: {target: docker}}")
    overlay = folder / f"deployment.{env}.yaml" if env else None
    data, sources, files = load_layered(base, overlay, repo_root, "start with `environments:`")

    problems: list[Problem] = []
    resolver = EnvResolver(load_dotenv_values(repo_root), os.environ if environ is None else environ)
    data = resolver.resolve(data, sources, problems)
    problems += schema_problems(DEPLOYMENT_SCHEMA, data, sources, KEY_HINT)
    if problems:
        raise ConfigError(problems)

    smoke = data.get("smoke") or {}
    request_rel = smoke.get("request", f"configs/{use_case}/sample-request.json")
    from genaiops.workspace.repo import resolve_inside

    request = resolve_inside(repo_root, request_rel)
    if request is None or not request.is_file():
        file, line = sources.locate(("smoke", "request"))
        raise ConfigError([Problem(file or base.relative_to(repo_root), line, "smoke.request",
                                   f"smoke request file {request_rel!r} not found inside the repo",
                                   "write a JSON request body there (the flow's inputs)")])
    image = data.get("image") or {}
    envs = {}
    for name, block in data["environments"].items():
        settings = {k: v for k, v in block.items()
                    if k not in {"target", "requires_approval", "approval_ttl_minutes", "approval_source"}}
        envs[name] = Environment(name=name, target=block["target"],
                                 requires_approval=bool(block.get("requires_approval", False)),
                                 approval_ttl_minutes=int(block.get("approval_ttl_minutes", 60)),
                                 approval_source=block.get("approval_source", "local"),
                                 settings=settings)
    return DeploymentConfig(
        use_case=use_case, repo_root=repo_root, files=tuple(files),
        image_name=image.get("name", f"genaiops/{use_case}"),
        base_image=image.get("base_image", DEFAULT_BASE_IMAGE),
        image_registry=image.get("registry"),
        registry=dict(data.get("registry") or {}),
        smoke_request=request, smoke_request_rel=request_rel,
        expect_outputs=tuple(smoke["expect_outputs"]) if "expect_outputs" in smoke else None,
        smoke_timeout_sec=float(smoke.get("timeout_sec", 60)),
        environments=envs,
    )
