"""Azure runner: the same `BatchJob` as the local runner, executed as a promptflow run on Azure ML
compute through promptflow-azure's `PFClient` (`runtime.backend: azure`).

promptflow-azure uploads the (staged) flow folder and the dataset, runs the batch on the workspace's
serverless compute (or a named compute / runtime), and we poll the run until it ends, then read its
per-line details (`pf.get_details`) into the same `MemberResult`s the local runner returns. The
workspace and credential are built exactly as for the Azure ML registry (`registry.azureml_client`).

Settings (all optional; keys of the `settings` dict, else environment variables):
  subscription_id / resource_group / workspace_name   AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP,
                                                      AZUREML_WORKSPACE_NAME
  compute          AZUREML_COMPUTE         compute cluster / instance name (`resources.compute`)
  instance_type    AZUREML_INSTANCE_TYPE   serverless VM size (`resources.instance_type`)
  runtime          AZUREML_PF_RUNTIME      a named prompt flow runtime (older workspaces)
  timeout_sec      AZUREML_RUN_TIMEOUT_SEC give up (and cancel the run) after this long
  poll_seconds     how often to ask for the run's status (default 10)
  credential       an azure-identity credential (else AzureCli/DefaultAzureCredential)
  client           a ready PFClient (tests, or callers that share one)

Azure ML does not return per-line latency, token counts or error messages through
`get_details`: those lines carry `latency_s=None`, zero tokens and a pointer to the run's portal page.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import types
from collections.abc import Mapping
from typing import Any, cast

from genaiops.engines.base import BatchJob, BatchResult, LineResult, MemberResult, ProgressCallback
from genaiops.errors import GenaiopsError

TERMINAL = {"Completed": "completed", "Failed": "failed", "Canceled": "failed"}
RUNNING = {"NotStarted", "Queued", "Preparing", "Starting", "Running", "Finalizing", "CancelRequested"}

SETTING_ENV = {
    "compute": "AZUREML_COMPUTE",
    "instance_type": "AZUREML_INSTANCE_TYPE",
    "runtime": "AZUREML_PF_RUNTIME",
    "timeout_sec": "AZUREML_RUN_TIMEOUT_SEC",
}
_LEGACY_RESTCLIENT = "azure.ai.ml._restclient.v2022_10_01"


def import_pf_client() -> Any:
    """`promptflow.azure.PFClient`, working around promptflow-azure 1.18.5 importing
    `DatastoreType` from an azure-ai-ml module removed in azure-ai-ml 1.33
    (microsoft/promptflow#4176): the same enum still lives in `arm_ml_service.models`. promptflow
    ships no type information, so its client and entities are `Any` here."""
    from genaiops.engines.promptflow.env import prepare_promptflow

    prepare_promptflow()  # quiet and offline before promptflow is imported
    try:
        from promptflow.azure import PFClient  # pyright: ignore[reportMissingTypeStubs]
    except ModuleNotFoundError as exc:
        if not str(exc.name or "").startswith(_LEGACY_RESTCLIENT):
            raise GenaiopsError(
                f"runtime.backend azure needs promptflow-azure: {exc}",
                hint="pip install promptflow-azure==1.18.5, or set runtime.backend: local") from exc
        from azure.ai.ml._restclient.arm_ml_service.models import DatastoreType

        package = types.ModuleType(_LEGACY_RESTCLIENT)
        package.__path__ = []
        models = types.ModuleType(_LEGACY_RESTCLIENT + ".models")
        setattr(models, "DatastoreType", DatastoreType)  # noqa: B010 - a module built at run time
        setattr(package, "models", models)  # noqa: B010
        sys.modules.setdefault(_LEGACY_RESTCLIENT, package)
        sys.modules.setdefault(_LEGACY_RESTCLIENT + ".models", models)
        for name in [m for m in sys.modules if m.startswith("promptflow.azure")]:
            del sys.modules[name]  # drop the half-imported package before retrying
        from promptflow.azure import PFClient  # pyright: ignore[reportMissingTypeStubs]
    return cast(Any, PFClient)


def make_pf_client(settings: Mapping[str, Any]) -> Any:
    """A workspace `PFClient` with the registry's scope and credential rules."""
    from genaiops.registry.azureml_client import make_credential, workspace_scope

    scope = workspace_scope(settings)
    client_class = import_pf_client()
    try:  # PFClient reads the workspace at once: credentials and scope fail here
        return client_class(credential=make_credential(settings), subscription_id=scope["subscription_id"],
                            resource_group_name=scope["resource_group"],
                            workspace_name=scope["workspace_name"])
    except Exception as exc:
        raise GenaiopsError(
            f"cannot open Azure ML workspace {scope['workspace_name']!r}: {str(exc).splitlines()[0][:500]}",
            hint="run inside AzureCLI@2 (or `az login`) with AZURE_CLI_CREDENTIAL=1, and check "
            "AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME") from exc


class AzureRunner:
    """Runs each batch job as one promptflow run on Azure ML; `run()` blocks until it ends."""

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.settings: dict[str, Any] = dict(settings or {})
        for key, env in SETTING_ENV.items():
            if not self.settings.get(key) and os.environ.get(env):
                self.settings[key] = os.environ[env]
        self.poll_seconds = float(self.settings.get("poll_seconds", 10))
        self._client: Any = self.settings.get("client")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_pf_client(self.settings)
        return self._client

    def submit(self, job: BatchJob) -> Any:
        """Build the promptflow `Run` entity and submit it. This is what `PFClient.run` does, except
        that `PFClient.run` drops `resources` (compute, instance_type): only the entity carries them
        into the service request (`computeName`, `vmSize`)."""
        from promptflow.entities import Run  # pyright: ignore[reportMissingTypeStubs]

        resources = {k: self.settings[k] for k in ("compute", "instance_type") if self.settings.get(k)}
        entity: Any = cast(Any, Run)(
            flow=job.flow, data=job.data, column_mapping=dict(job.column_mapping), run=job.run or None,
            name=job.name, display_name=job.name, tags={"genaiops.run": job.name},
            # read by the promptflow executor on the compute, as locally
            environment_variables={**{k: str(v) for k, v in job.environment_variables.items()},
                                   "PF_WORKER_COUNT": str(job.worker_count),
                                   "PF_LINE_TIMEOUT_SEC": str(job.line_timeout_sec),
                                   **({"PF_BATCH_TIMEOUT_SEC": str(job.batch_timeout_sec)}
                                      if job.batch_timeout_sec else {})},
            init=job.init or None, resources=resources or None)
        options = {"runtime": self.settings["runtime"]} if self.settings.get("runtime") else {}
        return self.client.runs.create_or_update(run=entity, **options)

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        started = time.monotonic()
        import_pf_client()  # promptflow.azure must import before the entity is built
        client = self.client
        try:
            submitted = self.submit(job)
        except Exception as exc:  # noqa: BLE001 - quota, upload, bad flow: this whole run failed
            return _result(job.name, "failed", started, [], error=f"Azure ML refused run {job.name}: "
                           f"{type(exc).__name__}: {str(exc)[:1500]}")
        name: str = getattr(submitted, "name", None) or job.name
        if progress:
            progress(0)
        try:
            run: Any = self._wait(client, name, submitted, started)
        except BaseException:  # interrupted or timed out: do not leave compute running
            with contextlib.suppress(Exception):  # best effort: the original error matters
                client.runs.cancel(name)
            raise
        status: str = TERMINAL.get(run.status, "failed")
        where = _portal(run)
        if status != "completed":
            return _result(name, "failed", started, [],
                           error=f"Azure ML run {name} ended {run.status}{_run_error(run)}{where}")
        try:
            details: Any = client.get_details(name, all_results=True)
        except Exception as exc:  # noqa: BLE001 - the lines' results are unknown: the run failed
            return _result(name, "failed", started, [],
                           error=f"cannot read line results of Azure ML run {name}: {exc}"[:1500])
        members = read_details(details, job.member_suffixes, f"failed on Azure ML{where}")
        if progress:
            progress(max((len(m.lines) for m in members), default=0))
        try:
            metrics: dict[str, Any] = dict(client.get_metrics(name) or {})
        except Exception as exc:  # noqa: BLE001
            if job.run:  # an evaluation run without its metrics has not produced its result
                return _result(name, "failed", started, members,
                               error=f"cannot read metrics of Azure ML run {name}: {exc}"[:1500])
            metrics = {}  # a plain flow run may log none
        return _result(name, "completed", started, members, metrics=metrics)

    def _wait(self, client: Any, name: str, run: Any, started: float) -> Any:
        timeout = float(self.settings["timeout_sec"]) if self.settings.get("timeout_sec") else None
        while run.status not in TERMINAL:
            if run.status not in RUNNING:
                raise GenaiopsError(f"Azure ML run {name} has unknown status {run.status!r}")
            if timeout is not None and time.monotonic() - started > timeout:
                raise GenaiopsError(f"Azure ML run {name} still {run.status} after {timeout:.0f}s; "
                                    "cancelled", hint="raise AZUREML_RUN_TIMEOUT_SEC or check the compute")
            time.sleep(self.poll_seconds)
            run = client.runs.get(name)
        return run


def _result(name: str, status: str, started: float, members: list[MemberResult], error: str | None = None,
            metrics: Mapping[str, Any] | None = None) -> BatchResult:
    return BatchResult(name=name, status=status, duration_s=round(time.monotonic() - started, 3),
                       members=members, error=error, metrics=dict(metrics or {}))


def _portal(run: Any) -> str:
    url: object = getattr(run, "_portal_url", None) or getattr(run, "portal_url", None)
    return f" (see {url})" if url else ""


def _run_error(run: Any) -> str:
    error: Any = getattr(run, "_error", None)
    if isinstance(error, dict):
        error = cast("dict[str, Any]", error)
        inner = error.get("error")
        error = cast("dict[str, Any]", inner).get("message") if isinstance(inner, dict) else error.get("message")
    return f": {str(error)[:500]}" if error else ""


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_details(details: Any, suffixes: list[str], failed_message: str) -> list[MemberResult]:
    """`pf.get_details(...)` (a DataFrame: `inputs.<name>` / `outputs.<name>` columns, indexed by
    `outputs.line_number` when any line produced outputs; a failed line's outputs are empty) into
    one `MemberResult` per member suffix."""
    records: list[dict[str, Any]] = details.reset_index().to_dict(orient="records")
    members: list[MemberResult] = []
    for suffix in suffixes:
        lines: list[LineResult] = []
        for position, record in enumerate(records):
            raw = record.get("outputs.line_number", position)
            number = position if _missing(raw) else int(raw)
            inputs = {k[len("inputs."):]: v for k, v in record.items()
                      if k.startswith("inputs.") and not _missing(v)}
            outputs = {k[len("outputs."):]: v for k, v in record.items()
                       if k.startswith("outputs.") and k != "outputs.line_number" and not _missing(v)}
            if suffix:
                outputs = {k[: -len(suffix)]: v for k, v in outputs.items() if k.endswith(suffix)}
            ok = bool(outputs)
            lines.append(LineResult(line=number, ok=ok, inputs=inputs, outputs=outputs or None,
                                    error=None if ok else f"line {number} {failed_message}"))
        members.append(MemberResult(suffix=suffix, lines=sorted(lines, key=lambda l: l.line)))
    return members
