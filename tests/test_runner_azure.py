"""AzureRunner at the promptflow-azure boundary.

Azure ML cannot be reached here, so the fake sits where the SDK talks to the service: the real
promptflow `Run` entity is serialized into the exact `SubmitBulkRunRequest` body the service would
receive, and `get_details` is promptflow-azure's own code run over child-run records as the service
returns them. A live test runs only with credentials.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genaiops.engines import BatchJob, open_engine
from genaiops.engines.promptflow.azure import AzureRunner, import_pf_client, make_pf_client
from genaiops.errors import GenaiopsError, UsageError

PFClient = import_pf_client()  # also proves promptflow-azure imports next to this azure-ai-ml

from promptflow.azure.operations._run_operations import RunOperations

DATASTORE = "azureml://datastores/workspaceblobstore/paths/LocalUpload/"


class CloudRun:
    def __init__(self, name, status, error=None):
        self.name, self.status, self._error = name, status, error
        self._portal_url = f"https://ml.azure.com/prompts/flow/bulkrun/run/{name}/details"


class FakeRunOperations:
    """promptflow-azure's RunOperations with the service replaced: submission "uploads" the local
    flow and data (rewrites them to datastore URIs, as `_resolve_dependencies_in_parallel` does) and
    keeps the REST body; status follows a script; details and metrics come from service records."""

    get_details = RunOperations.get_details
    _get_inputs_outputs_from_child_runs = RunOperations._get_inputs_outputs_from_child_runs

    def __init__(self, statuses, child_runs=(), metrics=None, error=None):
        self.statuses = list(statuses)
        self.child_runs = [dict(r) for r in child_runs]
        self.metrics = metrics or {}
        self.error = error
        self.calls, self.bodies, self.status = [], [], None
        # read by promptflow's telemetry decorator on the real get_details
        self._operation_scope = self._operation_config = None

    def _next(self, name):
        self.status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return CloudRun(name, self.status, self.error)

    def create_or_update(self, run, **kwargs):
        run._validate_for_run_create_operation()
        self.calls.append(("create_or_update", run.name, kwargs))
        run.flow = DATASTORE + Path(run.flow).name
        run.data = DATASTORE + Path(run.data).name
        self.bodies.append(run._to_rest_object().serialize())
        return self._next(run.name)

    def get(self, run, **kwargs):
        self.calls.append(("get", run))
        return self._next(run)

    def cancel(self, run, **kwargs):
        self.calls.append(("cancel", run))

    def get_metrics(self, run, **kwargs):
        self.calls.append(("get_metrics", run))
        return dict(self.metrics)

    def _check_cloud_run_completed(self, run_name):
        assert self.status == "Completed", "details of an unfinished run were requested"

    def _get_flow_runs_pagination(self, name, max_results):
        self.calls.append(("child_runs", name))
        return [dict(r) for r in self.child_runs][:max_results]


class FakePFClient:
    """The real PFClient methods the runner uses, over the fake operations."""

    get_details = PFClient.get_details
    get_metrics = PFClient.get_metrics

    def __init__(self, runs: FakeRunOperations):
        self.runs = runs


@pytest.fixture
def flow(tmp_path) -> Path:
    folder = tmp_path / "standard"
    folder.mkdir()
    (folder / "flow.dag.yaml").write_text(
        "inputs:\n  text: {type: string}\noutputs:\n  category: {type: string, reference: ${echo.output}}\n"
        "nodes:\n- name: echo\n  type: python\n  source: {type: code, path: echo.py}\n"
        "  inputs: {text: ${inputs.text}}\n")
    (folder / "echo.py").write_text("from promptflow.core import tool\n\n\n@tool\n"
                                    "def echo(text: str) -> str:\n    return text\n")
    (tmp_path / "tickets.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("refund", "login", "other")))
    return folder


def _job(flow: Path, name="exp1-00", suffixes=("",), run=None) -> BatchJob:
    return BatchJob(name=name, flow=str(flow), data=str(flow.parent / "tickets.jsonl"),
                    column_mapping={"text": "${data.text}"}, member_suffixes=list(suffixes),
                    worker_count=2, line_timeout_sec=30, run=run)


def _runner(ops, **settings) -> AzureRunner:
    return AzureRunner({"client": FakePFClient(ops), "poll_seconds": 0, **settings})


def test_submits_to_azure_ml_compute_and_reads_line_details(flow, monkeypatch):
    monkeypatch.delenv("AZUREML_PF_RUNTIME", raising=False)
    child_runs = [  # service order is not line order; line 1 failed (no output)
        {"index": 2, "inputs": {"text": "other"}, "output": {"category": "other"}},
        {"index": 0, "inputs": {"text": "refund"}, "output": {"category": "billing"}},
        {"index": 1, "inputs": {"text": "login"}, "output": None},
    ]
    ops = FakeRunOperations(["NotStarted", "Running", "Completed"], child_runs, metrics={"accuracy": 0.5})
    seen = []
    result = _runner(ops, compute="cpu-cluster", instance_type="Standard_D2").run(
        _job(flow, name="eval1-00", run="exp1-00"), seen.append)

    body = ops.bodies[0]
    assert body["runId"] == "eval1-00"
    assert body["variantRunId"] == "exp1-00"  # evaluation reads the experiment run
    assert body["inputsMapping"] == {"text": "${data.text}"}
    assert body["batchDataInput"] == {"dataUri": DATASTORE + "tickets.jsonl"}
    assert body["flowDefinitionBlobPath"] == "LocalUpload/standard"
    assert (body["computeName"], body["vmSize"]) == ("cpu-cluster", "Standard_D2")
    assert body["environmentVariables"] == {"PF_WORKER_COUNT": "2", "PF_LINE_TIMEOUT_SEC": "30"}
    assert [c[0] for c in ops.calls] == ["create_or_update", "get", "get", "child_runs", "get_metrics"]
    assert ops.calls[0][2] == {}  # no named runtime: serverless compute

    assert result.status == "completed" and result.error is None
    [member] = result.members
    assert [(l.line, l.ok, l.inputs, l.outputs) for l in member.lines] == [
        (0, True, {"text": "refund"}, {"category": "billing"}),
        (1, False, {"text": "login"}, None),
        (2, True, {"text": "other"}, {"category": "other"}),
    ]
    assert "line 1 failed on Azure ML" in member.lines[1].error
    assert "ml.azure.com" in member.lines[1].error  # where to look, since Azure gives no message here
    assert seen == [0, 3]
    assert result.metrics == {"accuracy": 0.5}


def test_a_batch_timeout_reaches_the_azure_run(flow):
    from dataclasses import replace

    ops = FakeRunOperations(["Completed"], [{"index": 0, "inputs": {"text": "refund"},
                                             "output": {"category": "billing"}}])
    _runner(ops).run(replace(_job(flow), batch_timeout_sec=900))
    assert ops.bodies[0]["environmentVariables"] == {
        "PF_WORKER_COUNT": "2", "PF_LINE_TIMEOUT_SEC": "30", "PF_BATCH_TIMEOUT_SEC": "900"}


def test_composite_run_splits_outputs_per_variant_member(flow):
    child_runs = [{"index": i, "inputs": {"text": t},
                   "output": {"category__v0": f"a{i}", "category__v1": f"b{i}"}}
                  for i, t in enumerate(["refund", "login"])]
    ops = FakeRunOperations(["Completed"], child_runs)
    result = _runner(ops, runtime="my-runtime").run(_job(flow, suffixes=("__v0", "__v1")))
    assert [m.suffix for m in result.members] == ["__v0", "__v1"]
    assert [l.outputs for l in result.members[0].lines] == [{"category": "a0"}, {"category": "a1"}]
    assert [l.outputs for l in result.members[1].lines] == [{"category": "b0"}, {"category": "b1"}]
    assert ops.calls[0][2] == {"runtime": "my-runtime"}
    assert "variantRunId" not in ops.bodies[0] and "computeName" not in ops.bodies[0]


def test_failed_run_is_a_failed_batch_with_the_service_error(flow):
    ops = FakeRunOperations(["Running", "Failed"], error={"error": {"message": "compute quota exceeded"}})
    result = _runner(ops).run(_job(flow))
    assert result.status == "failed" and result.members == []
    assert "ended Failed: compute quota exceeded" in result.error
    assert "child_runs" not in [c[0] for c in ops.calls]  # no details of a failed run


def test_evaluation_run_without_metrics_fails_but_a_flow_run_may_have_none(flow):
    class NoMetrics(FakeRunOperations):
        def get_metrics(self, run, **kwargs):
            raise RuntimeError("metrics service unavailable")

    records = [{"index": 0, "inputs": {"text": "refund"}, "output": {"score": 1}}]
    evaluation = _runner(NoMetrics(["Completed"], records)).run(_job(flow, name="ev-00", run="exp1-00"))
    assert evaluation.status == "failed" and "metrics service unavailable" in evaluation.error
    plain = _runner(NoMetrics(["Completed"], records)).run(_job(flow))
    assert plain.status == "completed" and plain.metrics == {}


def test_refused_submission_is_a_failed_batch(flow):
    job = _job(flow)
    job.flow = str(flow.parent / "missing")
    result = _runner(FakeRunOperations(["Completed"])).run(job)
    assert result.status == "failed" and result.members == []
    assert "Azure ML refused run exp1-00" in result.error and "missing" in result.error


def test_timeout_cancels_the_azure_run(flow):
    ops = FakeRunOperations(["Running"])
    with pytest.raises(GenaiopsError, match="still Running after 0s"):
        _runner(ops, timeout_sec=0.0001).run(_job(flow))
    assert ops.calls[-1] == ("cancel", "exp1-00")


def test_open_engine_azure_backend_and_settings_from_environment(monkeypatch):
    monkeypatch.setenv("AZUREML_COMPUTE", "gpu-cluster")
    engine = open_engine("promptflow", backend="azure", settings={"workspace_name": "ws"})
    assert isinstance(engine.runner, AzureRunner)
    assert engine.runner.settings["compute"] == "gpu-cluster"
    assert engine.linkable_run("exp1-00")  # Azure ML keeps runs: evaluations link to them
    with pytest.raises(UsageError, match="unknown runtime backend"):
        open_engine("promptflow", backend="kubernetes")
    with pytest.raises(UsageError, match="unknown engine"):
        open_engine("langchain")


def test_workspace_client_uses_the_registry_scope_and_credential(monkeypatch):
    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UsageError, match="AZURE_SUBSCRIPTION_ID"):
        make_pf_client({})

    made = {}

    class Recording:
        def __init__(self, **kwargs):
            made.update(kwargs)

    import genaiops.engines.promptflow.azure as azure_runner

    monkeypatch.setattr(azure_runner, "import_pf_client", lambda: Recording)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws")
    monkeypatch.setenv("AZURE_CLI_CREDENTIAL", "1")
    make_pf_client({})
    assert (made["subscription_id"], made["resource_group_name"], made["workspace_name"]) == ("sub", "rg", "ws")
    assert type(made["credential"]).__name__ == "AzureCliCredential"

    class Unreachable:
        def __init__(self, **kwargs):
            raise RuntimeError("AADSTS700016: application not found")

    monkeypatch.setattr(azure_runner, "import_pf_client", lambda: Unreachable)
    with pytest.raises(GenaiopsError, match="cannot open Azure ML workspace 'ws': AADSTS700016"):
        make_pf_client({})


LIVE = all(os.environ.get(v) for v in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP",
                                       "AZUREML_WORKSPACE_NAME")) and os.environ.get("GENAIOPS_LIVE_AZURE") == "1"


@pytest.mark.azure_live
@pytest.mark.skipif(not LIVE, reason="live Azure ML test: needs GENAIOPS_LIVE_AZURE=1, AZURE_SUBSCRIPTION_ID, "
                                     "AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME and an Azure login")
def test_live_run_on_azure_ml(flow):
    result = AzureRunner({"poll_seconds": 15, "timeout_sec": 3600}).run(
        _job(flow, name=f"genaiops-live-{os.getpid()}"))
    assert result.status == "completed", result.error
    assert [l.outputs for l in result.members[0].lines] == [
        {"category": "refund"}, {"category": "login"}, {"category": "other"}]
