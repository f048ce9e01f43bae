"""Flow engines behind one protocol (`base.Engine`): `promptflow`, `agent_framework`
(Microsoft Agent Framework, promptflow's successor) and `python` (a plain Python function).

`ENGINE_TABLE` names them (`module:Class`; more from the `genaiops.engines` entry point group or
`GENAIOPS_ENGINES`, see `genaiops.adapters`); `open_engine` picks the adapter a config names and
nothing else imports an adapter directly.
"""

from __future__ import annotations

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

ENGINE_TABLE = AdapterTable("engines", "engine", {
    "promptflow": "genaiops.engines.promptflow:PromptflowEngine",
    "agent_framework": "genaiops.engines.agent_framework:AgentFrameworkEngine",
    "python": "genaiops.engines.python:PythonEngine",
})
ENGINES = tuple(ENGINE_TABLE.builtin)  # the built-in engines; `engine_names()` has them all
DEFAULT_ENGINE = "promptflow"


def engine_names() -> tuple[str, ...]:
    """Every engine a config may name: built-in, installed (entry points), `GENAIOPS_ENGINES`."""
    return ENGINE_TABLE.names()


def open_engine(name: str = DEFAULT_ENGINE, *, backend: str = "local", settings: dict | None = None,
                runner: Runner | None = None) -> Engine:
    """The engine adapter `name`; `backend` is where it runs batches (one of its `backends`)."""
    from genaiops.errors import UsageError

    engine_class = ENGINE_TABLE.load(name)
    if backend not in engine_class.backends:
        raise UsageError(f"unknown runtime backend {backend!r}: {backends_problem(name, backend)}",
                         hint=f"use runtime.backend: {' or '.join(engine_class.backends)}")
    return engine_class(backend, settings, runner)


def backends_problem(name: str, backend: str) -> str | None:
    """Why engine `name` cannot run batches on `backend` (None: it can)."""
    backends = tuple(ENGINE_TABLE.load(name).backends)
    if backend in backends:
        return None
    where = "locally" if backends == ("local",) else f"on {' or '.join(backends)}"
    return f"the {name} engine runs batches {where}, not on {backend!r}"


def engine_for(config, runner: Runner | None = None) -> Engine:
    """The engine a use case's config asks for (`engine:`; runtime.backend picks local or Azure
    ML runs)."""
    return open_engine(config.engine, backend=config.runtime.backend,
                       settings=dict(config.registry), runner=runner)


def engine_reading(path, preferred: str = DEFAULT_ENGINE) -> tuple[str, FlowSpec]:
    """(engine name, spec) of the engine that reads the flow at `path`: `preferred` first, then
    the others; FlowSpecError listing why each declined when none does."""
    reasons = []
    for name in dict.fromkeys((preferred, *engine_names())):
        try:
            return name, open_engine(name).read_flow(path)
        except FlowSpecError as exc:
            reasons.append(f"{name}: {exc}")
    raise FlowSpecError("no engine reads this flow (" + "; ".join(reasons) + ")")


__all__ = ["DEFAULT_ENGINE", "ENGINES", "BatchJob", "BatchResult", "Engine", "FlowSpec",
           "FlowSpecError", "LineResult", "MemberResult", "Runner", "ServingBundle", "StagedBatch",
           "VariantSpec", "backends_problem", "engine_for", "engine_names", "engine_reading", "open_engine"]

