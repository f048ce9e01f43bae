"""The promptflow engine: the only package that knows promptflow's internals.

    env           quiet, offline promptflow (telemetry, trace service, keyring) before import
    flowspec      DAG / flex / prompty flows read from their files (variants, inputs, outputs)
    reads         what a flow reads from outside its files (environment variables, connections)
    staging       private copies: composite DAG batches (`composite`), prompty overrides, serving
    connections   the local connection store
    local         batch runs in worker processes (`worker`), results read from run folders
                  (`results`), genaiops' LLM retry policy inside line workers (`retry_policy`,
                  `bootstrap/`)
    azure         batch runs on Azure ML compute (promptflow-azure)
    serving       the serving image's files (`pf flow build`, in a child process: `build`)

Importing this package is cheap: promptflow itself is imported only inside worker processes,
the connection store and the Azure runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from genaiops.engines.base import (
    ConnectionSettings,
    Engine,
    FlowReads,
    FlowSpec,
    OwnsRunner,
    RetrySettings,
    Runner,
    ScaffoldKind,
    ServingBundle,
    StagedBatch,
    VariantSpec,
)
from genaiops.engines.promptflow import flowspec, reads, retry_policy, staging
from genaiops.engines.promptflow.env import promptflow_home
from genaiops.engines.serving import ConnectionVariables

BACKENDS = ("local", "azure")
TEMPLATES = Path(__file__).resolve().parent / "templates"  # `genaiops new` layers
# A standalone prompty without `outputs:` returns text, which promptflow names `output`; the flex
# class wraps the same .prompty; every kind is scored by the same DAG evaluation flow.
SCAFFOLD = {
    "dag": ScaffoldKind((TEMPLATES / "evaluation", TEMPLATES / "dag"), "flows/{name}/standard",
                        "sentiment"),
    "flex": ScaffoldKind((TEMPLATES / "evaluation", TEMPLATES / "prompty", TEMPLATES / "flex"),
                         "flows/{name}/standard", "sentiment"),
    "prompty": ScaffoldKind((TEMPLATES / "evaluation", TEMPLATES / "prompty"),
                            "flows/{name}/standard/classify.prompty", "output"),
}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


_OFFLINE = "nothing: genaiops sets it to keep promptflow quiet and offline"
# what genaiops sets in every run (local.job_environment, env, retry_policy, rundirs): a value from
# `environment_variables:` would override it inside the run (PF_WORKER_COUNT: 64 with
# worker_count: 2 started 36 line processes)
RESERVED_VARIABLES = {
    "PF_WORKER_COUNT": "runtime.worker_count",
    "PF_LINE_TIMEOUT_SEC": "runtime.line_timeout_sec",
    "PF_BATCH_TIMEOUT_SEC": "runtime.line_timeout_sec (a batch ends when its lines do)",
    "PF_BATCH_METHOD": "nothing: genaiops starts the line processes (a forkserver per worker)",
    "PF_HOME_DIRECTORY": "nothing: genaiops keeps promptflow's home private ($HOME/.promptflow)",
    "PF_DISABLE_TRACING": _OFFLINE,
    "PF_TRACING_SKIP_LOCAL_SETUP": _OFFLINE,
    "PF_DISABLE_TELEMETRY": _OFFLINE,
    retry_policy.ENV_ATTEMPTS: "runtime.retries.max_attempts",
    retry_policy.ENV_BACKOFF: "runtime.retries.backoff_sec",
    retry_policy.ENV_MAX_TOTAL: "runtime.retries.max_total_sec",
}


class PromptflowEngine(ConnectionVariables, OwnsRunner, Engine):  # serving_connections: `<CONN>_<KEY>` variables
    name = flowspec.ENGINE
    # promptflow writes these into flow folders while running: never part of a flow's identity
    cache_patterns = staging.CACHE_PATTERNS
    flow_hint = "point it at a folder with flow.dag.yaml, flow.flex.yaml or a .prompty file"
    backends = BACKENDS
    line_workers_are_processes = True  # forked line processes of a local worker
    needs_setup = False  # installed with genaiops[promptflow]

    def __init__(self, backend: str = "local", settings: dict[str, Any] | None = None, runner: Runner | None = None):
        from genaiops.errors import UsageError

        if backend not in BACKENDS:
            raise UsageError(f"unknown runtime backend {backend!r}",
                             hint="use runtime.backend: local or azure")
        super().__init__(backend, settings, runner)

    def make_runner(self) -> Runner:
        if self.backend == "azure":
            from genaiops.engines.promptflow.azure import AzureRunner

            return AzureRunner(self.settings)
        from genaiops.engines.promptflow.local import LocalRunner

        return LocalRunner()

    def version(self) -> str:
        return f"promptflow=={_version('promptflow')};promptflow-tools=={_version('promptflow-tools')}"

    def environment(self) -> dict[str, Any]:
        """promptflow is installed with genaiops: it runs in the orchestrator's interpreter."""
        import sys

        return {"engine": self.name, "python": sys.executable, "ready": True,
                "versions": {p: _version(p) for p in ("promptflow", "promptflow-tools")}}

    def setup(self, *, force: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        return {**self.environment(), "action": "unchanged"}

    def scaffold_kinds(self) -> dict[str, ScaffoldKind]:
        return dict(SCAFFOLD)

    def registration_properties(self, flow_dir: Path) -> dict[str, str]:
        """What Azure ML uses to recognise a registered model as a prompt flow."""
        flow_dir = Path(flow_dir)
        if flow_dir.is_file():
            return {"is-promptflow": "true", "azureml.promptflow.dag-file": flow_dir.name}
        flow_file = next((f for f in (flowspec.DAG_FILE, flowspec.FLEX_FILE)
                          if (flow_dir / f).is_file()), None)
        return {"is-promptflow": "true", **({"azureml.promptflow.dag-file": flow_file}
                                            if flow_file else {})}

    def read_flow(self, path: Path) -> FlowSpec:
        return flowspec.read_flow(path)

    def flow_reads(self, flow: FlowSpec) -> FlowReads:
        return reads.flow_reads(flow, self.cache_patterns)

    def max_variants_per_batch(self, flow: FlowSpec) -> int:
        return staging.max_variants_per_batch(flow)

    def stage(self, flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
        return staging.stage_batch(flow, variants, dest)

    def stage_for_serving(self, flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
        return staging.stage_for_serving(flow, variant, dest)

    def prepare_connections(self, connections: Sequence[ConnectionSettings], endpoints: dict[str, str]) -> list[dict[str, Any]]:
        in_worker = getattr(self.runner, "prepare_connections", None)
        if in_worker is not None:  # a warm local worker: the orchestrator never imports promptflow
            from genaiops.engines.promptflow.local import connection_payload

            return in_worker(connection_payload(connections), endpoints)
        from genaiops.engines.promptflow.connections import upsert_connections

        return upsert_connections(connections, endpoints)

    def run_environment(self, retries: RetrySettings) -> dict[str, str]:
        return retry_policy.environment(retries)

    def reserved_variables(self) -> dict[str, str]:
        return RESERVED_VARIABLES

    def check_requirements(self, flow: FlowSpec):
        """Local batches run in workers of this interpreter; Azure ML builds its own environment."""
        from genaiops.engines.requirements import check_requirements

        return check_requirements(flow.root) if self.backend == "local" else None

    def ignored_parameters(self, flow: FlowSpec, init: dict[str, Any]) -> list[tuple[str, str]]:
        """A prompty variant's keys outside what promptflow reads from front matter; flex `init`
        goes to the class's __init__, where a wrong name fails the run loudly."""
        return staging.ignored_prompty_keys(init) if flow.kind == "prompty" else []

    def prewarm(self, count: int) -> None:
        prewarm = getattr(self.runner, "prewarm", None)
        if prewarm is not None:
            prewarm(count)

    def linkable_run(self, name: str | None) -> bool:
        """A local run can be referenced (`run=`) while its folder exists in this HOME's store;
        an Azure ML run stays in its workspace."""
        if not name:
            return False
        if self.backend == "azure":
            return True
        return (promptflow_home() / ".runs" / name / "flow_outputs").is_dir()

    def serving_bundle(self, flow_dir: Path, context: Path, connections: list[dict[str, Any]]) -> ServingBundle:
        from genaiops.engines.promptflow.serving import serving_bundle

        return serving_bundle(flow_dir, context, connections)

    def close(self) -> None:
        """Stop what the runner keeps (warm workers, temp files); a later batch gets a new one
        (one command may run several phases: `genaiops compare`)."""
        close = getattr(self._runner, "close", None)
        if close is not None:
            close()
        if self._owns_runner:
            self._runner = None


__all__ = ["PromptflowEngine"]
