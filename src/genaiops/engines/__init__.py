"""Flow engines behind one protocol (`base.Engine`): `promptflow` today.

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

ENGINES = ("promptflow",)


def open_engine(name: str = "promptflow", *, backend: str = "local", settings: dict | None = None,
                runner: Runner | None = None) -> Engine:
    """The engine adapter `name`; `backend` is where it runs batches (local | azure)."""
    from genaiops.errors import UsageError

    if name == "promptflow":
        from genaiops.engines.promptflow import PromptflowEngine

        return PromptflowEngine(backend, settings, runner)
    raise UsageError(f"unknown engine {name!r}", hint=f"use one of: {', '.join(ENGINES)}")


def engine_for(config, runner: Runner | None = None) -> Engine:
    """The engine a use case's config asks for (runtime.backend picks local or Azure ML runs)."""
    return open_engine(getattr(config, "engine", None) or "promptflow", backend=config.runtime.backend,
                       settings=dict(config.registry), runner=runner)


__all__ = ["BatchJob", "BatchResult", "Engine", "FlowSpec", "FlowSpecError", "LineResult",
           "MemberResult", "Runner", "ServingBundle", "StagedBatch", "VariantSpec", "engine_for",
           "open_engine"]

