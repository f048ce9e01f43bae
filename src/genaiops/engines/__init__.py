"""Flow engines behind one protocol (`base.Engine`): `promptflow`, `agent_framework`
(Microsoft Agent Framework, promptflow's successor) and `python` (a plain Python function).

`ENGINE_TABLE` names them (`module:Class`; more from the `genaiops.engines` entry point group or
`GENAIOPS_ENGINES`, see `genaiops.adapters`); `open_engine` picks the adapter a config names and
nothing else imports an adapter directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

from genaiops.adapters import AdapterTable
from genaiops.engines.base import (
    BatchJob,
    BatchResult,
    Engine,
    FlowSpec,
    FlowSpecError,
    LineResult,
    MemberResult,
    Runner,
    ServingBundle,
    StagedBatch,
    VariantSpec,
)
from genaiops.engines.envscan import python_reads  # also what code evaluators read

ENGINE_TABLE = AdapterTable("engines", "engine", {
    "promptflow": "genaiops.engines.promptflow:PromptflowEngine",
    "agent_framework": "genaiops.engines.agent_framework:AgentFrameworkEngine",
    "python": "genaiops.engines.python:PythonEngine",
})
ENGINES = tuple(ENGINE_TABLE.builtin)  # the built-in engines; `engine_names()` has them all
DEFAULT_ENGINE = "promptflow"


class EngineClass(Protocol):
    """What `ENGINE_TABLE` names: an adapter class, built with the backend it runs batches on."""

    backends: tuple[str, ...]

    def __call__(self, backend: str, settings: dict[str, Any] | None, runner: Runner | None) -> Engine: ...


def engine_class(name: str) -> EngineClass:
    return cast(EngineClass, ENGINE_TABLE.load(name))


def engine_names() -> tuple[str, ...]:
    """Every engine a config may name: built-in, installed (entry points), `GENAIOPS_ENGINES`."""
    return ENGINE_TABLE.names()


def open_engine(name: str = DEFAULT_ENGINE, *, backend: str = "local", settings: dict[str, Any] | None = None,
                runner: Runner | None = None) -> Engine:
    """The engine adapter `name`; `backend` is where it runs batches (one of its `backends`)."""
    from genaiops.errors import UsageError

    adapter = engine_class(name)
    if backend not in adapter.backends:
        raise UsageError(f"unknown runtime backend {backend!r}: {backends_problem(name, backend)}",
                         hint=f"use runtime.backend: {' or '.join(adapter.backends)}")
    return adapter(backend, settings, runner)


def backends_problem(name: str, backend: str) -> str | None:
    """Why engine `name` cannot run batches on `backend` (None: it can)."""
    backends = tuple(engine_class(name).backends)
    if backend in backends:
        return None
    where = "locally" if backends == ("local",) else f"on {' or '.join(backends)}"
    return f"the {name} engine runs batches {where}, not on {backend!r}"


def engine_for(config: Any, runner: Runner | None = None) -> Engine:  # an ExperimentConfig
    """The engine a use case's config asks for (`engine:`; runtime.backend picks local or Azure
    ML runs)."""
    return open_engine(str(config.engine), backend=str(config.runtime.backend),
                       settings=dict(config.registry), runner=runner)


def engine_reading(path: Path, preferred: str = DEFAULT_ENGINE) -> tuple[str, FlowSpec]:
    """(engine name, spec) of the engine that reads the flow at `path`: `preferred` first, then
    the others; FlowSpecError listing why each declined when none does."""
    reasons: list[str] = []
    for name in dict.fromkeys((preferred, *engine_names())):
        try:
            return name, open_engine(name).read_flow(path)
        except FlowSpecError as exc:
            reasons.append(f"{name}: {exc}")
    raise FlowSpecError("no engine reads this flow (" + "; ".join(reasons) + ")")


__all__ = ["DEFAULT_ENGINE", "ENGINES", "BatchJob", "BatchResult", "Engine", "FlowSpec",
           "FlowSpecError", "LineResult", "MemberResult", "Runner", "ServingBundle", "StagedBatch",
           "VariantSpec", "backends_problem", "engine_for", "engine_names", "engine_reading", "open_engine",
           "python_reads"]

