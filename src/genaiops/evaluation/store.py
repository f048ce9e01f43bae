"""Evaluation runs in a workspace (`evaluations/runs/`): one JSON per evaluation run, keyed by content;
and the summaries `run evaluate` wrote (`evaluations/summaries/`), keyed by digest.

Written atomically (and sealed with its hash) once an evaluation finished, so a second identical
`run evaluate` reuses it and an interrupted one resumes. Failed evaluations are recorded but never
reused; a damaged record is quarantined and the evaluation runs again.
"""

from __future__ import annotations

from pathlib import Path

from genaiops.evaluation.evaluators.base import EvalOutcome
from genaiops.secrets import redact_data
from genaiops.workspace.files import atomic_write_json
from genaiops.workspace.integrity import SEAL, Damaged, quarantine, read_sealed, seal
from genaiops.workspace.ledger import renamed_fields


class EvaluationStore:
    def __init__(self, workspace):
        self.workspace = workspace
        self.root = workspace.evaluation_runs_dir

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def find(self, key: str) -> EvalOutcome | None:
        try:
            data = read_sealed(self._path(key))
        except Damaged as damage:
            quarantine(self.workspace, damage, recovery="the evaluation runs again")
            return None
        if data is None or data.get("status") != "completed":
            return None
        data = renamed_fields(data)
        return EvalOutcome(**{k: v for k, v in data.items() if k in EvalOutcome.__dataclass_fields__})

    def save(self, outcome: EvalOutcome) -> None:
        """Redacted before sealing: an evaluator may return a secret it read."""
        atomic_write_json(self._path(outcome.key), seal(redact_data(outcome.as_dict())))


class SummaryStore:
    """Every summary `run evaluate` wrote, kept by its digest (`evaluations/summaries/<digest>.json`,
    sealed). A summary.json is a file anyone can edit and re-digest; the copy kept here is what
    `run build` releases from and what `genaiops approve` shows, so a summary counts only when
    one with its digest was kept (`verified_summary`)."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.root = workspace.evaluation_summaries_dir

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}.json"

    def keep(self, summary) -> None:
        atomic_write_json(self._path(summary.digest()), seal(summary.to_dict()))

    def find(self, digest: str):
        """The kept summary with this digest (its content re-digested), else None."""
        from genaiops.evaluation.summary import Summary

        if not digest or not all(c in "0123456789abcdef" for c in digest):
            return None
        try:
            data = read_sealed(self._path(digest))
        except Damaged as damage:
            quarantine(self.workspace, damage, recovery="evaluate again to release this flow")
            return None
        if data is None:
            return None
        data.pop(SEAL, None)
        summary = Summary.from_dict(data, source=str(self._path(digest)))
        return summary if summary.digest() == digest else None


def verified_summary(workspace, summary, source: str):
    """`summary` (read from `source`) as genaiops wrote it: digest recorded, matching the content,
    and a summary with that digest kept in this state folder. Returns the kept copy; a
    GenaiopsError (exit 1) naming what does not hold otherwise."""
    from genaiops.errors import GenaiopsError

    fix = (f"release only a summary.json written by `genaiops run evaluate -u {summary.use_case}`, "
           "on the machine (or CI job) whose state folder holds that evaluation")
    if not summary.recorded_digest:
        raise GenaiopsError(f"{source} has no digest: it is not a summary.json as "
                            "`genaiops run evaluate` wrote it, so nothing can vouch for its verdict",
                            hint=fix)
    if summary.recorded_digest != summary.digest():
        raise GenaiopsError(f"{source} was modified after `genaiops run evaluate` wrote it "
                            "(digest mismatch)", hint=fix)
    kept = SummaryStore(workspace).find(summary.recorded_digest)
    if kept is None:
        raise GenaiopsError(f"{source} (digest {summary.recorded_digest[:16]}) is not an evaluation "
                            f"kept in {workspace.evaluation_summaries_dir}: genaiops did not write "
                            "it here", hint=fix)
    return kept
