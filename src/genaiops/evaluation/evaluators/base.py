"""What an evaluator is asked to score and what it returns, whatever kind it is.

An `EvalTask` pairs one evaluator dataset with one experiment run of the standard dataset it
references; `aligned_rows` lines both up - on the evaluator dataset's `key_column` when it has
one, else by line number - so every adapter (promptflow evaluation flow, plain Python function)
sees the same rows and reports one `EvalOutcome`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from genaiops.config.datasets import join_key
from genaiops.errors import ConfigError
from genaiops.workspace.files import iter_jsonl

if TYPE_CHECKING:  # annotations only: the workspace's evaluation store imports these types
    from genaiops.config.model import Evaluator, EvaluatorDataset
    from genaiops.engines.base import FlowReads
    from genaiops.workspace.ledger import Ledger, RunRecord

_REF = re.compile(r"^\$\{(data|run\.outputs)\.([A-Za-z0-9_.-]+)\}$")
EXPERIMENT_LINE_FAILED = "experiment line failed: nothing to evaluate"


@dataclass
class EvalTask:
    key: str  # content key: evaluator hash, experiment run key, eval dataset hash, mapping, settings
    evaluator: Evaluator
    eval_dataset: EvaluatorDataset
    record: RunRecord
    identity: dict
    reusable: bool = True  # False: what the evaluator reads cannot be known, so never reused


@dataclass
class AlignedRow:
    line: int
    data: dict  # the evaluator dataset row
    run_outputs: dict | None  # the experiment line's outputs, None when that line failed
    run_error: str | None = None
    skipped: str | None = None  # why the evaluator does not score this row (a column it maps is missing)


@dataclass
class EvalOutcome:
    key: str
    evaluator: str
    eval_dataset: str
    dataset: str  # the standard dataset evaluated
    variant: str
    run_key: str
    kind: str  # flow | code | azure_ai_evaluation
    mode: str  # run (promptflow run=) | data (outputs from the ledger) | code
    rows: list[dict]  # [{line, scores: {name: value}, error}]
    metrics: dict = field(default_factory=dict)  # aggregates the evaluator itself reported
    status: str = "completed"  # completed | failed
    error: str | None = None
    engine_run: str | None = None  # the engine's name for the evaluation's batch run
    duration_s: float = 0.0
    repeats: int = 1  # evaluator `repeats:`: row `line` scores experiment line line // repeats

    def as_dict(self) -> dict:
        return asdict(self)


class EvaluatorAdapter(Protocol):
    def content_identity(self) -> dict:
        """What changes this evaluator's scores (code/flow hash, entry)."""

    def reads(self) -> FlowReads:
        """Environment variables and connections the evaluator reads beyond its files."""

    def engine_version(self) -> str:
        """What runs the evaluator and its version (part of every evaluation key)."""

    def evaluate(self, task: EvalTask, rows: list[AlignedRow], name: str) -> EvalOutcome: ...


def aligned_rows(task: EvalTask, ledger: Ledger) -> list[AlignedRow]:
    """Every evaluator dataset row with the experiment line it evaluates, in line order.

    Both sides were checked when the config loaded; an experiment run recorded from another
    version of the dataset can still disagree, which is a configuration error, never a guess."""
    data = list(iter_jsonl(task.eval_dataset.source))
    outputs = {row["line"]: row for row in ledger.read_outputs(task.record.key)}
    where = (f"evaluator {task.evaluator.name!r} dataset {task.eval_dataset.name!r} "
             f"({task.eval_dataset.source_rel})")
    repeats = task.record.repeats or 1
    if repeats > 1:  # each row evaluates each of its repeats (lines row * repeats + r)
        data = [(number, row) for number, row in data for _ in range(repeats)]
    if len(data) != task.record.lines_total:
        raise ConfigError(
            f"{where} has {len(data)} rows but the referenced dataset "
            f"{task.record.dataset!r} has {task.record.lines_total} in run {task.record.key[:8]}",
            hint="an evaluator dataset must line up with the dataset it references (row by row, "
                 "or on key_column); re-run the experiment if the dataset changed")
    key = task.eval_dataset.key_column
    lines = _lines_by_key(where, data, outputs, key, repeats) if key else list(range(len(data)))
    rows = []
    judged = task.evaluator.repeats  # evaluator `repeats:`: each line scored that many times
    for line, (_number, row) in sorted(zip(lines, data), key=lambda pair: pair[0]):
        result = outputs.get(line)
        ok = bool(result and result.get("ok") and result.get("outputs") is not None)
        skipped = unlabelled(task.evaluator.name, task.eval_dataset.mappings, row)
        rows += [AlignedRow(line * judged + r, row, result["outputs"] if ok else None,
                            None if ok else (result or {}).get("error") or "line missing", skipped=skipped)
                 for r in range(judged)]
    return rows


def unlabelled(evaluator: str, mapping: dict, row: dict) -> str | None:
    """Why `evaluator` cannot score `row`: a column its mapping reads (`${data.x}`, e.g. the ground
    truth) is not in the row. Config validation lets only the regressions dataset have such rows
    (promoted feedback without a correction): they are inputs for the flow and reference-free
    evaluators, and every evaluator that needs the missing column skips them and says so."""
    missing = [match.group(2) for ref in mapping.values()
               if isinstance(ref, str) and (match := _REF.match(ref)) and match.group(1) == "data"
               and match.group(2) not in row]
    if not missing:
        return None
    return (f"no ground truth: the row has no {', '.join(map(repr, missing))} (feedback promoted without "
            f"a correction), which {evaluator} needs; reference-free evaluators score it")


def _lines_by_key(where: str, data: list[tuple[int, dict]], outputs: dict[int, dict],
                  key: str, repeats: int) -> list[int]:
    """The experiment line of each evaluator row, joined on `key` (the experiment's outputs
    carry the dataset row they ran on). With `repeats`, a key has that many lines, and the
    evaluator row (listed once per repeat) takes them in order."""
    lines_of: dict[str, list[int]] = {}
    for line in sorted(outputs):
        lines_of.setdefault(join_key((outputs[line].get("inputs") or {}).get(key)), []).append(line)
    lines = []
    for number, row in data:
        free = lines_of.get(join_key(row.get(key)))
        if not free or len(free) > repeats:
            raise ConfigError(f"{where}: line {number} ({key} {row.get(key)!r}) matches no "
                              f"single line of the experiment run",
                              hint="key values must be unique and present on both sides; re-run "
                                   "the experiment if the dataset changed")
        lines.append(free.pop(0))
    return lines


def resolve_mapping(mapping: dict, row: AlignedRow) -> dict:
    """`${data.x}` / `${run.outputs.y}` / literals -> values for one row (code evaluators, fallback)."""
    values = {}
    for name, ref in mapping.items():
        match = _REF.match(ref) if isinstance(ref, str) else None
        if not match:
            values[name] = ref
        elif match.group(1) == "data":
            values[name] = row.data.get(match.group(2))
        else:
            values[name] = (row.run_outputs or {}).get(match.group(2))
    return values


def run_output_refs(mapping: dict) -> dict[str, str]:
    """{input name: run output name} for the `${run.outputs.y}` entries of a mapping."""
    refs = {}
    for name, ref in mapping.items():
        match = _REF.match(ref) if isinstance(ref, str) else None
        if match and match.group(1) == "run.outputs":
            refs[name] = match.group(2)
    return refs


def scores_of(value, evaluator_name: str) -> dict:
    """A row result as {score name: value}: a number is named after the evaluator, a dict
    (or dataclass / object with __dict__) gives one score per key."""
    if isinstance(value, dict):
        return dict(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return {evaluator_name: value}
    if hasattr(value, "__dict__"):
        return dict(vars(value))
    return {evaluator_name: value}


SCORED_ROWS = "experiment-lines-ok/1"  # in every evaluation key: the rule `scored_rows` applies


def scored_rows(rows: list[AlignedRow]) -> list[AlignedRow]:
    """The rows an evaluation scores - the denominator of every metric it reports, on every path.

    A row whose experiment line failed is never handed to an evaluator: not on the first
    evaluation of a run with failed lines, not after a rerun merged lines from two engine runs,
    not by a code evaluator, so an evaluator's own aggregate covers the same rows as the means
    genaiops computes. Failed lines are counted apart: as the row's error (`n_error`, with
    `n_valid` the denominator), as `lines_failed` on the leaderboard and in `builtin.error_rate`,
    which `runtime.failed_line_tolerance` and gates judge."""
    return [row for row in rows if row.run_outputs is not None and row.skipped is None]


def score_rows(task: EvalTask, rows: list[AlignedRow], call: Callable[..., Any],
               scores: Callable[[Any], dict], row_error: Callable[[Exception], str]
               ) -> tuple[list[dict], list[Any]]:
    """In-process evaluators: `call` each scorable row with its mapped values, one bad row being
    that row's error, never the whole evaluation. Returns the rows (`{line, scores, error}`) and
    the raw results, for an aggregate."""
    failed = error_rows(rows)
    out_rows, results = [], []
    for row in rows:
        if row.line in failed:
            out_rows.append({"line": row.line, "scores": {}, "error": failed[row.line]})
            continue
        try:
            result = call(**resolve_mapping(task.eval_dataset.mappings, row))
        except Exception as exc:
            out_rows.append({"line": row.line, "scores": {}, "error": row_error(exc)})
            continue
        results.append(result)
        out_rows.append({"line": row.line, "scores": scores(result), "error": None})
    return out_rows, results


def error_rows(rows: list[AlignedRow]) -> dict[int, str]:
    """{line: why it is not scored}: its experiment line failed, or the row lacks what the
    evaluator reads (`AlignedRow.skipped`)."""
    return {row.line: (f"{EXPERIMENT_LINE_FAILED} ({row.run_error})" if row.run_outputs is None
                       else f"not scored: {row.skipped}") for row in rows
            if row.run_outputs is None or row.skipped is not None}
