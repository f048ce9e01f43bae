"""Where a baseline comes from: a saved `summary.json` (file or its folder, e.g. from main's
pipeline artifact), or an experiment in the ledger (`experiment:<id>`, a bare id, or
`previous` = the experiment before the one evaluated), which is then evaluated (reusing runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from genaiops.errors import UsageError
from genaiops.workspace.ledger import Ledger


def read_summary(path: Path) -> dict:
    from genaiops.phases.evaluate import raise_if_bad_summary

    path = path / "summary.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {path} does not exist", hint="pass a summary.json path") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"baseline {path} is not readable JSON: {exc}",
                         hint="pass the summary.json written by `genaiops run evaluate`") from None
    return raise_if_bad_summary(data, str(path))


def _previous_experiment(ledger: Ledger, use_case: str, current: str) -> str:
    ids = sorted(p.stem for p in ledger.experiments_dir.glob(f"{use_case}-*.json"))
    earlier = [i for i in ids if i < current]
    if not earlier:
        raise UsageError(f"no experiment of {use_case} before {current} to use as baseline",
                         hint="pass --baseline PATH/summary.json instead")
    return earlier[-1]


def load_baseline(ref: str, config, options, *, simulator=None, runner=None, current_experiment: str) -> dict:
    from genaiops.phases.evaluate import evaluate_experiment, load_experiment_or_fail

    path = Path(ref)
    if path.exists() or ref.endswith(".json"):
        return read_summary(path)
    ledger = Ledger(config.repo_root)
    experiment_id = ref.split(":", 1)[1] if ref.startswith("experiment:") else ref
    if experiment_id == "previous":
        experiment_id = _previous_experiment(ledger, config.use_case, current_experiment)
    experiment = ledger.load_experiment(config.use_case, experiment_id)
    if experiment is None:
        raise UsageError(f"--baseline {ref!r} is neither a summary.json nor an experiment of {config.use_case}",
                         hint="pass a path to summary.json, experiment:<id> or previous")
    experiment = load_experiment_or_fail(ledger, config.use_case, experiment_id)
    return evaluate_experiment(config, experiment, replace(options, baseline=None, write_reports=False),
                               simulator=simulator, runner=runner)
