"""Runners execute batch jobs. One protocol (`Runner`), adapters per backend: `local` (promptflow
in a worker process on this machine); an Azure ML runner can follow behind the same protocol."""

from genaiops.runners.base import BatchJob, BatchResult, LineResult, MemberResult, Runner


def open_runner(backend: str = "local") -> Runner:
    from genaiops.errors import UsageError

    if backend == "local":
        from genaiops.runners.local import LocalRunner

        return LocalRunner()
    raise UsageError(f"unknown runtime backend {backend!r}", hint="use runtime.backend: local")


__all__ = ["BatchJob", "BatchResult", "LineResult", "MemberResult", "Runner", "open_runner"]
