"""`configs/<use_case>/deployment.yaml` (+ `deployment.<env>.yaml` overlay): typed frozen models,
validated like experiment.yaml, so every problem names file, line, field and a fix.

An overlay replaces whole top-level blocks (`image`, `smoke`, `environments`, ...), never merges.
Every block accepts lowercase keys only (`propertyNames`), so a key such as `Traffic` is named
as invalid, not only as unknown.

`${env:...}` references are resolved strictly in the shared blocks and in the environment being
deployed; in the other environments an unset variable is left as written, so deploying `local`
on a desk needs none of the Azure variables `dev` and `prod` require (and they stay required there:
no default hides their absence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypedDict

from genaiops.config.filemodel import (
    ENV_NAME,
    ConfigFile,
    FileModel,
    LoadContext,
    NonEmpty,
    Positive,
    PositiveInt,
)
from genaiops.config.layered import build, read_checked
from genaiops.errors import ConfigError, Problem, UsageError
from genaiops.workspace.repo import DEPLOYMENT_FILE, ConfigsLayout

BASE_FILE = DEPLOYMENT_FILE
Target = Literal["docker", "aml", "kubernetes"]
TARGETS = get_args(Target)
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"  # public; its Python must match the build host's
OFFLINE_BASE_IMAGE = "genaiops/base:bookworm"  # built without a registry by .ci/setup-docker.sh
SECRET_ENV = r"^[A-Z][A-Z0-9_]*$"
# Azure ML secret injection: a workspace connection's credential, or a Key Vault secret version
SECRET_REF = (r"^(azureml://connections/[A-Za-z0-9_.-]+/credentials/[A-Za-z0-9_.-]+"
              r"|keyvault:https://[a-z0-9-]+\.vault\.azure\.net/secrets/[A-Za-z0-9-]+/[A-Za-z0-9]+)$")
KEY_HINT = ("keys are lowercase letters, digits and _ (environment names may also use -); "
            "no blank or uppercase keys")
ONLY_LOWERCASE_KEYS = {"propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"}}
LOWERCASE_KEYS = ConfigDict(extra="forbid", json_schema_extra=ONLY_LOWERCASE_KEYS)


class Block(FileModel):
    model_config = LOWERCASE_KEYS


class Resources(TypedDict, total=False):
    __pydantic_config__ = LOWERCASE_KEYS
    cpu: NonEmpty
    memory: NonEmpty


class ResourceSettings(TypedDict, total=False):
    __pydantic_config__ = LOWERCASE_KEYS
    requests: Resources
    limits: Resources


class AmlWorkspace(TypedDict):
    __pydantic_config__ = LOWERCASE_KEYS
    subscription_id: NonEmpty
    resource_group: NonEmpty
    workspace_name: NonEmpty


class Environment(Block):
    """One `environments:` entry; `settings` holds the target-specific keys the file set."""

    name: SkipJsonSchema[str] = ""  # the key under `environments:` (filled in, never written)
    target: Target
    requires_approval: bool = False
    approval_ttl_minutes: Annotated[int, Field(ge=1, le=10080)] = 60
    approval_source: Literal["local", "azure_devops", "github"] = "local"
    # deploy only an image whose evidence records a passed safety evaluation (attack pack gates)
    requires_safety: bool = False
    # docker
    port: Annotated[int, Field(ge=1, le=65534)] | None = None
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    threads: Annotated[int, Field(ge=1, le=256)] | None = None  # requests one serving process takes at once
    health_timeout_sec: Positive | None = None
    otlp_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # the embedded trace receiver (4318)
    capture_content: bool | None = None  # traces may hold inputs/outputs (redacted); default no
    # aml
    endpoint: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{2,31}$")] | None = None
    traffic_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    mirror_percent: Annotated[int, Field(ge=0, le=50)] | None = None
    instance_type: NonEmpty | None = None
    instance_count: PositiveInt | None = None
    workspace: AmlWorkspace | None = None
    image_registry: NonEmpty | None = None  # the registry this environment pulls from (default image.registry)
    # container env var -> secret reference Azure ML resolves when the container starts
    secrets: dict[Annotated[str, Field(pattern=SECRET_ENV)], Annotated[str, Field(pattern=SECRET_REF)]] | None = None
    # kubernetes
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] | None = None
    replicas: PositiveInt | None = None
    secret_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] | None = None
    resources: ResourceSettings | None = None
    output: NonEmpty | None = None

    @property
    def settings(self) -> dict:
        """Target-specific keys (port, endpoint, traffic...)."""
        return self.written(exclude=frozenset(
            {"name", "target", "requires_approval", "approval_ttl_minutes", "approval_source",
             "requires_safety"}))


class Image(Block):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")] | None = None
    base_image: NonEmpty = DEFAULT_BASE_IMAGE
    registry: NonEmpty | None = None


class Registry(TypedDict, total=False):
    """Model registry settings; keys beyond `backend` go to the backend as they are."""

    __pydantic_config__ = ConfigDict(extra="allow", json_schema_extra=ONLY_LOWERCASE_KEYS)
    backend: Literal["local", "azureml"]


class Smoke(Block):
    request: NonEmpty | None = None  # default: configs/<use_case>/sample-request.json
    expect_outputs: tuple[NonEmpty, ...] | None = None
    timeout_sec: Positive = 60


class DeploymentConfig(ConfigFile):
    model_config = LOWERCASE_KEYS

    image: Image = Field(default_factory=Image)
    registry: Registry = {}
    smoke: Smoke = Field(default_factory=Smoke)
    environments: Annotated[dict[Annotated[str, Field(pattern=ENV_NAME)], Environment],
                            Field(min_length=1)]

    @field_validator("environments", mode="before")
    @classmethod
    def _environments_know_their_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: {**block, "name": name} if isinstance(block, dict) else block
                for name, block in value.items()}

    @property
    def image_name(self) -> str:
        return self.image.name or f"genaiops/{self.use_case}"

    @property
    def base_image(self) -> str:
        return self.image.base_image

    @property
    def image_registry(self) -> str | None:
        return self.image.registry

    @property
    def smoke_request_rel(self) -> str:
        return self.smoke.request or ConfigsLayout.sample_request_rel(self.use_case)

    @property
    def smoke_request(self) -> Path | None:
        """Absolute path of the smoke request (None when it escapes the repository)."""
        return self._loaded.path(self.smoke_request_rel)

    @property
    def expect_outputs(self) -> tuple[str, ...] | None:
        return self.smoke.expect_outputs

    @property
    def smoke_timeout_sec(self) -> float:
        return float(self.smoke.timeout_sec)

    def image_registry_for(self, env: Environment) -> str | None:
        """Where `env` pulls images from: its `image_registry`, else `image.registry`."""
        return env.settings.get("image_registry") or self.image.registry

    def environment(self, env: str) -> Environment:
        if env not in self.environments:
            raise UsageError(f"environment {env!r} is not in configs/{self.use_case}/{BASE_FILE}",
                             hint=f"use one of: {', '.join(sorted(self.environments))}, "
                                  f"or add it under `environments:`")
        return self.environments[env]


def _other_environments(env: str | None, every: bool = False):
    """Paths whose unset `${env:}` variables are left as written: environments not deployed now
    (with `every`, all of them: `validate` without -e)."""
    if env is None and not every:
        return None
    return lambda path: len(path) >= 2 and path[0] == "environments" and (every or path[1] != env)


def load_deployment(repo_root: Path, use_case: str, env: str | None = None,
                    *, environ: dict | None = None,
                    environments_unset_ok: bool = False) -> DeploymentConfig:
    """Raises ConfigError listing every problem (file, line, field, fix).
    `environments_unset_ok`: variables of every environment may be unset (`validate` without -e
    checks the file's shape; `-e` checks that environment in full)."""
    repo_root = Path(repo_root).resolve()
    layout = ConfigsLayout(repo_root)
    base = layout.deployment(use_case)
    if not base.is_file():
        raise UsageError(f"configs/{use_case}/{BASE_FILE} not found",
                         hint="create it (see docs/deploy.md), e.g. environments: {dev: {target: docker}}")
    overlay = layout.deployment(use_case, env) if env else None
    data, sources, files = read_checked(DeploymentConfig, base, overlay, repo_root,
                                        "start with `environments:`", environ, KEY_HINT,
                                        tolerate_unset=_other_environments(env, environments_unset_ok))
    context = LoadContext(repo_root, use_case, env, tuple(files))
    config = build(DeploymentConfig, data, sources, context)
    request = config.smoke_request
    if request is None or not request.is_file():
        file, line = sources.locate(("smoke", "request"))
        outside = request is None  # absolute, `..`, or a link out: a host file sent to the endpoint
        raise ConfigError([Problem(
            file or base.relative_to(repo_root), line, "smoke.request",
            f"smoke request file {config.smoke_request_rel!r} is outside the repository" if outside
            else f"smoke request file {config.smoke_request_rel!r} not found inside the repo",
            f"use a path relative to the repository root, e.g. {ConfigsLayout.sample_request_rel(use_case)}"
            if outside else "write a JSON request body there (the flow's inputs)")])
    return config
