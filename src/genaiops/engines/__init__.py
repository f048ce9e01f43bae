"""Flow engines behind one protocol (`base.Engine`): `promptflow` and `agent_framework`
(Microsoft Agent Framework, promptflow's successor).

`open_engine` picks the adapter a config names; nothing else imports an adapter directly.
"""

from __future__ import annotations

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

ENGINES = ("promptflow", "agent_framework")
DEFAULT_ENGINE = "promptflow"


def open_engine(name: str = DEFAULT_ENGINE, *, backend: str = "local", settings: dict | None = None,
                runner: Runner | None = None) -> Engine:
    """The engine adapter `name`; `backend` is where it runs batches (local | azure)."""
    from genaiops.errors import UsageError

    if name == "promptflow":
        from genaiops.engines.promptflow import PromptflowEngine

        return PromptflowEngine(backend, settings, runner)
    if name == "agent_framework":
        from genaiops.engines.agent_framework import AgentFrameworkEngine

        return AgentFrameworkEngine(backend, settings, runner)
    raise UsageError(f"unknown engine {name!r}", hint=f"use one of: {', '.join(ENGINES)}")


def engine_for(config, runner: Runner | None = None) -> Engine:
    """The engine a use case's config asks for (`engine:`; runtime.backend picks local or Azure
    ML runs)."""
    return open_engine(config.engine, backend=config.runtime.backend,
                       settings=dict(config.registry), runner=runner)


def engine_reading(path, preferred: str = DEFAULT_ENGINE) -> tuple[str, FlowSpec]:
    """(engine name, spec) of the engine that reads the flow at `path`: `preferred` first, then
    the others; FlowSpecError listing why each declined when none does."""
    reasons = []
    for name in dict.fromkeys((preferred, *ENGINES)):
        try:
            return name, open_engine(name).read_flow(path)
        except FlowSpecError as exc:
            reasons.append(f"{name}: {exc}")
    raise FlowSpecError("no engine reads this flow (" + "; ".join(reasons) + ")")


__all__ = ["DEFAULT_ENGINE", "ENGINES", "BatchJob", "BatchResult", "Engine", "FlowSpec",
           "FlowSpecError", "LineResult", "MemberResult", "Runner", "ServingBundle", "StagedBatch",
           "VariantSpec", "engine_for", "engine_reading", "open_engine"]

