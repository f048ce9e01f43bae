"""Runners execute batch jobs. One protocol (`Runner`), adapters per backend: `local` (promptflow
in a worker process on this machine) and `azure` (promptflow-azure runs on Azure ML compute)."""

from genaiops.engines.base import BatchJob, BatchResult, LineResult, MemberResult, Runner


def open_runner(backend: str = "local", settings: dict | None = None) -> Runner:
    """`settings`: backend options, e.g. the config's `registry` block (workspace scope) for azure."""
    from genaiops.errors import UsageError

    if backend == "local":
        from genaiops.engines.promptflow.local import LocalRunner

        return LocalRunner()
    if backend == "azure":
        from genaiops.engines.promptflow.azure import AzureRunner

        return AzureRunner(settings)
    raise UsageError(f"unknown runtime backend {backend!r}", hint="use runtime.backend: local or azure")


__all__ = ["BatchJob", "BatchResult", "LineResult", "MemberResult", "Runner", "open_runner"]
