"""The Microsoft Agent Framework engine: an app (`app.py:build`) returning an Agent or a Workflow,
run under the same phases, gates, reports and approvals as promptflow flows.

    appspec      what an app declares (INPUTS, OUTPUTS, VARIANTS, build's parameters), read
                 from its source: the orchestrator never imports agent-framework
    environment  the engine's own Python environment (agent-framework and promptflow cannot
                 share one), its setup and versions
    staging      private copies: a batch of variants (named parameter sets), a served variant
    local        batch runs in a worker process of that environment, asyncio concurrency
    serving      the serving image (Starlette + uvicorn, `/score` and `/health`)
    runtime/     the code that runs inside that environment and the image (`genaiops_af_runtime`)

Connections come from the same config and `.env` as promptflow's: `prepare_connections` keeps
their endpoints (the simulator, a gateway, or a real endpoint) in memory for this process's
runs; nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaiops.engines.agent_framework import appspec, environment, serving, staging
from genaiops.engines.agent_framework.local import ENV_ATTEMPTS, ENV_BACKOFF, QUIET_ENV
from genaiops.engines.base import Engine, FlowSpec, RetrySettings, Runner, ScaffoldKind
from genaiops.engines.childproc import OwnWorkerEngine
from genaiops.engines.serving import ConnectionVariables


class AgentFrameworkEngine(OwnWorkerEngine, ConnectionVariables, Engine):
    name = "agent_framework"
    flow_hint = ("point it at an app: `flows/<use_case>/<app>/app.py:build` (a function "
                 "build(llm, **params) returning an Agent or Workflow, with INPUTS and OUTPUTS)")
    cache_patterns = staging.CACHE_PATTERNS
    backends = ("local",)
    line_workers_are_processes = False  # lines are coroutines of one worker process
    needs_setup = True  # its own venv (`genaiops engine setup agent_framework`)
    staging, serving = staging, serving  # OwnWorkerEngine stages and builds images with them

    def __init__(self, backend: str = "local", settings: dict[str, Any] | None = None,
                 runner: Runner | None = None):
        from genaiops.errors import UsageError

        if backend != "local":
            raise UsageError(f"the agent_framework engine runs batches locally, not on {backend!r}",
                             hint="use runtime.backend: local (Azure ML runs need the promptflow engine)")
        super().__init__(backend, settings, runner)

    def make_runner(self) -> Runner:
        from genaiops.engines.agent_framework.local import LocalRunner

        return LocalRunner(self.held_connections)

    def version(self) -> str:
        versions = environment.require_ready().get("versions", {})
        return ";".join(f"{name}=={versions.get(name, 'absent')}"
                        for name in ("agent-framework-core", "agent-framework-openai", "openai"))

    def environment(self) -> dict[str, Any]:
        return environment.status()

    def setup(self, *, force: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        return environment.setup(force=force, progress=progress)

    def scaffold_kinds(self) -> dict[str, ScaffoldKind]:
        return {}

    def registration_properties(self, flow_dir: Path) -> dict[str, str]:
        return {}

    def read_flow(self, path: Path) -> FlowSpec:
        app = appspec.read_app(path)
        return FlowSpec(appspec.KIND, app.root, Path(f"{app.file}:{app.function}"), app.inputs,
                        app.outputs, {group: (default, tuple(sets))
                                      for group, (default, sets) in app.variants.items()},
                        engine=self.name)

    def run_environment(self, retries: RetrySettings) -> dict[str, str]:
        return {ENV_ATTEMPTS: str(retries.max_attempts), ENV_BACKOFF: str(retries.backoff_sec)}

    def check_requirements(self, flow: FlowSpec):
        """Batches run in the engine's own interpreter: asked there (None before it is set up)."""
        from genaiops.engines.requirements import check_requirements

        python = environment.python_path()
        return check_requirements(flow.root, python) if python.exists() else None

    def ignored_parameters(self, flow: FlowSpec, init: dict[str, Any]) -> list[tuple[str, str]]:
        """`init` is build()'s keyword arguments: a name it does not take would fail every run."""
        app = appspec.read_app(flow.entry)
        takes = ", ".join(sorted(app.parameters)) or "no parameters besides the chat clients"
        return [(name, f"{app.function}() takes: {takes}")
                for name in app.unknown_parameters(init or {})]

    def reserved_variables(self) -> dict[str, str]:
        """What the batch worker and the serving image set themselves (local, runtime/serve)."""
        return {ENV_ATTEMPTS: "runtime.retries.max_attempts",
                ENV_BACKOFF: "runtime.retries.backoff_sec",
                "GENAIOPS_APP_DIR": "flow (genaiops stages the app and points the runtime at it)",
                **{name: "nothing: genaiops sets it for the engine's worker" for name in QUIET_ENV},
                "PYTHONPATH": "nothing: the engine's environment is its own venv",
                "PYTHONHOME": "nothing: the engine's environment is its own venv"}


__all__ = ["AgentFrameworkEngine"]
