"""What an evaluation reads from the run ledger: the experiment, and its runs that completed."""

from __future__ import annotations

from genaiops.errors import UsageError
from genaiops.workspace.ledger import STATUS_COMPLETED, ExperimentRecord, Ledger, RunRecord


def load_experiment_or_fail(ledger: Ledger, use_case: str, ref: str) -> ExperimentRecord:
    experiment = ledger.load_experiment(use_case, ref)
    if experiment is None:
        raise UsageError(f"no experiment {ref!r} for use case {use_case!r} in the ledger",
                         hint=f"run `genaiops run experiment -u {use_case}` first, "
                              "or pass --experiment ID")
    return experiment


def completed_runs(ledger: Ledger, experiment: ExperimentRecord) -> tuple[list[RunRecord], list[str]]:
    """(records of the runs that completed, one problem per run that did not: not evaluated)."""
    records, problems = [], []
    for run in experiment.runs:
        record = ledger.find(run.key)
        if record is None or record.status != STATUS_COMPLETED:
            problems.append(f"run {run.variant} on {run.dataset} of experiment "
                            f"{experiment.id} did not complete or its ledger record is missing "
                            "or damaged: not evaluated (re-run the experiment)")
        else:
            records.append(record)
    return records, problems
