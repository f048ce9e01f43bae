"""A parity comparison, typed: what `comparison.json` holds.

`genaiops compare` runs two use cases (two engines, or two flows) on the same dataset with the
same evaluators, pairs their row scores by dataset line and decides, per gated metric, whether
the candidate is not worse than the baseline by more than a margin (`stats.non_inferiority`).
Besides the verdict it keeps both sides' identity and every row whose outputs or scores changed.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from genaiops.evaluation.summary import LlmInfo, Number, Record

COMPARISON_SCHEMA = "genaiops.comparison/1"
PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"


class Side(Record):
    """One side of the comparison: what ran, and where its evaluation reports are."""

    use_case: str
    env: str | None
    engine: str
    engine_version: str
    flow: str
    flow_kind: str
    flow_hash: str
    variant: str
    experiment_id: str
    evaluation_id: str
    verdict: Literal["pass", "fail"] | None  # the use case's own gates on this run
    llm: LlmInfo
    report_dir: str | None = None


class Estimate(Record):
    value: Number | None
    ci_low: Number | None
    ci_high: Number | None


class MetricComparison(Record):
    """The non-inferiority test of one metric (a gate of the comparison)."""

    metric: str
    evaluator: str
    dataset: str
    higher_is_better: bool
    method: Literal["mcnemar_exact", "tango_score", "paired_bootstrap", "none"]
    n: int  # paired rows
    n_unpaired: int  # rows only one side could score
    baseline: Estimate
    candidate: Estimate
    delta: Number | None  # candidate - baseline
    ci_low: Number | None  # of delta, at `confidence`
    ci_high: Number | None
    confidence: Number
    margin: Number  # the tolerated drop, in the metric's units
    p_value: Number | None  # one-sided: "worse by the margin or more"
    worse: int
    better: int
    status: Literal["pass", "fail", "insufficient"]
    message: str


class RowSide(Record):
    outputs: dict[str, Any] | None
    error: str | None
    scores: dict[str, Any]


class RowDiff(Record):
    """A dataset line whose outputs, scores or error differ between the sides."""

    dataset: str
    line: int
    inputs: dict[str, Any]
    baseline: RowSide
    candidate: RowSide
    change: Literal["worse", "better", "same score", "unscored"]  # on the first gated metric


class Comparison(Record):
    schema_id: Literal[COMPARISON_SCHEMA] = Field(COMPARISON_SCHEMA, alias="schema")
    id: str
    created_at: str
    baseline: Side
    candidate: Side
    datasets: dict[str, str]  # baseline dataset name -> content hash both sides ran
    margin: Number
    confidence: Number
    min_samples: int
    metrics: list[MetricComparison]
    rows_total: int
    rows_changed: list[RowDiff]
    problems: list[str]
    verdict: Literal["pass", "fail"]
    duration_s: Number | None = None
    report_dir: str | None = None

    def to_dict(self) -> dict:
        return self.model_dump(by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
