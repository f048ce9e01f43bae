"""Where a baseline comes from: a saved `summary.json` (file or its folder, e.g. from main's
pipeline artifact), or an experiment in the ledger (`experiment:<id>`, a bare id, or
`previous` = the experiment before the one evaluated), which the evaluate phase then evaluates
(reusing runs). The summary records which baseline it was compared with (`baseline_ref`)."""

from __future__ import annotations

from pathlib import Path

from genaiops.errors import UsageError
from genaiops.evaluation.summary import BaselineRef, Summary
from genaiops.workspace.ledger import ExperimentRecord, Ledger


def read_summary(path: Path) -> Summary:
    path = Path(path)
    path = path / "summary.json" if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"baseline {path} does not exist",
                         hint="pass a summary.json path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"baseline {path} is not readable: {exc}",
                         hint="pass the summary.json written by `genaiops run evaluate`") from None
    return Summary.from_json(text, source=str(path))


def saved_baseline(ref: str) -> Summary | None:
    """The summary `ref` names when it is a file or folder (or looks like one), else None."""
    if Path(ref).exists() or ref.endswith(".json"):
        return read_summary(Path(ref))
    return None


def baseline_experiment(ledger: Ledger, use_case: str, ref: str, *,
                        current_experiment: str) -> ExperimentRecord:
    """The experiment `ref` names: `experiment:<id>`, `<id>` or `previous`."""
    experiment_id = ref.split(":", 1)[1] if ref.startswith("experiment:") else ref
    if experiment_id == "previous":
        experiment_id = _previous_experiment(ledger, use_case, current_experiment)
    experiment = ledger.load_experiment(use_case, experiment_id)
    if experiment is None:
        raise UsageError(f"--baseline {ref!r} is neither a summary.json nor an experiment of "
                         f"{use_case}",
                         hint="pass a path to summary.json, experiment:<id> or previous")
    return experiment


def _previous_experiment(ledger: Ledger, use_case: str, current: str) -> str:
    earlier = [i for i in ledger.experiment_ids(use_case) if i < current]
    if not earlier:
        raise UsageError(f"no experiment of {use_case} before {current} to use as baseline",
                         hint="pass --baseline PATH/summary.json instead")
    return earlier[-1]


def baseline_ref(baseline: Summary, source: str) -> BaselineRef:
    """The baseline as a summary records it: identity, and the metrics of its best variant."""
    variant = baseline.candidate
    return BaselineRef(id=baseline.id, experiment_id=baseline.experiment_id, variant=variant,
                       source=source, digest=baseline.recorded_digest,
                       metrics=[m for m in baseline.metrics if m.variant == variant])
