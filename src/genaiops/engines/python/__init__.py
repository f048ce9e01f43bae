"""The python engine: a flow is a plain Python function (`file.py:function`, sync or async) that
takes a row's mapped inputs and returns a dict of outputs.

    funcspec     what the function takes and returns, read with `ast` (nothing is imported)
    staging      private copies: a batch of variants (keyword-only parameter sets), a served one
    local        batches in a worker process of this interpreter that forks line workers, each
                 line held to the line timeout (`runtime/genaiops_pyflow/batch.py`)
    serving      the serving image (a standard-library HTTP server, `/score` and `/health`)
    runtime/     `genaiops_pyflow`: what runs in workers and images, and what a flow imports
                 (`openai_client("llm")`), needing nothing of genaiops

Its LLM calls go where every engine's do: the LLM session hands the engine endpoints (the
simulator's or the gateway's), which reach the function as `<CONN>_<KEY>` variables. It is also
the fast engine of the test suite: a worker starts in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaiops.engines.base import Engine, FlowSpec, RetrySettings, Runner, ScaffoldKind
from genaiops.engines.childproc import OwnWorkerEngine
from genaiops.engines.python import funcspec, serving, staging
from genaiops.engines.python.local import ENV_ATTEMPTS
from genaiops.engines.serving import ConnectionVariables

TEMPLATES = Path(__file__).resolve().parent / "templates"


class PythonEngine(OwnWorkerEngine, ConnectionVariables, Engine):
    name = "python"
    cache_patterns = staging.CACHE_PATTERNS
    flow_hint = ("point it at a function: `flows/<use_case>/<flow>/flow.py:<function>` (its "
                 "positional parameters are the inputs; it returns a dict of outputs)")
    backends = ("local",)
    line_workers_are_processes = True  # forked line workers
    needs_setup = False  # runs in genaiops' own interpreter
    staging, serving = staging, serving  # OwnWorkerEngine stages and builds images with them

    def make_runner(self) -> Runner:
        from genaiops.engines.python.local import LocalRunner

        return LocalRunner(self.held_connections)

    def version(self) -> str:
        import sys
        from importlib import metadata

        try:
            openai = metadata.version("openai")
        except metadata.PackageNotFoundError:
            openai = "absent"
        return f"python=={sys.version.split()[0]};openai=={openai}"

    def environment(self) -> dict[str, Any]:
        import sys

        return {"engine": self.name, "python": sys.executable, "ready": True,
                "versions": {"python": sys.version.split()[0]}}

    def setup(self, *, force: bool = False,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        return {**self.environment(), "action": "unchanged"}

    def scaffold_kinds(self) -> dict[str, ScaffoldKind]:
        return {funcspec.KIND: ScaffoldKind((TEMPLATES / "python",),
                                            "flows/{name}/standard/flow.py:classify", "sentiment",
                                            "flows/{name}/evaluation/grade.py:grade")}

    def registration_properties(self, flow_dir: Path) -> dict[str, str]:
        return {}

    def read_flow(self, path: Path) -> FlowSpec:
        function = funcspec.read_function(path)
        return FlowSpec(funcspec.KIND, function.root, Path(f"{function.file}:{function.function}"),
                        function.inputs, function.outputs, calls_llm=function.calls_llm,
                        engine=self.name, parameter_sets=True, takes_init=True)

    def run_environment(self, retries: RetrySettings) -> dict[str, str]:
        return {ENV_ATTEMPTS: str(retries.max_attempts)}

    def reserved_variables(self) -> dict[str, str]:
        """What the batch worker sets itself (`local.LocalRunner`): a config value would be lost."""
        return {ENV_ATTEMPTS: "runtime.retries.max_attempts",
                "PYTHONPATH": "nothing: genaiops puts the flow runtime on the path",
                "PYTHONUNBUFFERED": "nothing: genaiops sets it for the worker's progress lines"}

    def check_requirements(self, flow: FlowSpec) -> Any:
        """Lines run in this interpreter: the flow's requirements.txt is checked here."""
        from genaiops.engines.requirements import check_requirements

        return check_requirements(flow.root)


__all__ = ["PythonEngine"]
