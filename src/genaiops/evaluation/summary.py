"""The evaluation summary, typed: what `summary.json` holds.

One `Summary` per evaluation: metrics with intervals, per-row scores, the leaderboard, the best
variant, gate results and the verdict. The file is also the baseline format, so `from_json`
reads every summary.json of schema `genaiops.evaluation/1`, including those written before this
model existed, and writing one back gives the same JSON. `digest()` is what deploy binds an
approval to; `digest_of` states the rule over the file's JSON so anyone can recompute it.

Numbers keep the type they were given (an `int` threshold stays `0`, not `0.0`): the digest is
taken over the JSON text, so a silent int -> float conversion would change it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
)

from genaiops.config.metric_names import BUILTIN, parse_metric
from genaiops.errors import UsageError

SUMMARY_SCHEMA = "genaiops.evaluation/1"
SIMULATOR_LABEL = "bundled LLM SIMULATOR (loopback, deterministic rules, not a real model)"
DIGEST_EXCLUDES = frozenset({"digest", "report_dir", "duration_s", "rows"})  # run-local fields
WRITTEN_BY_EVALUATE = "pass the summary.json written by `genaiops run evaluate`"

Number = int | float


class Record(BaseModel):
    """A part of the summary: unknown fields are errors, and keys listed in `OPTIONAL_KEYS` are
    written only when they were set, so a file read and written back keeps its exact keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_unset_optional_keys(self, handler):
        data = handler(self)
        for name in self.OPTIONAL_KEYS - self.model_fields_set:
            data.pop(name, None)  # dumped by field name
            data.pop(type(self).model_fields[name].alias or name, None)  # dumped by alias
        return data


class LlmInfo(Record):
    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"mode", "cassette"})
    simulator: bool  # the bundled simulator answered: scores prove the pipeline, not a model
    label: str
    mode: Literal["replay"] | None = None  # set when the answers came from a cassette
    cassette: str | None = None  # the hash of that cassette (cassettes/<use_case>)


class EvaluationInfo(Record):
    """The `evaluation:` settings the summary was ranked and judged with."""

    primary_metric: str | None
    higher_is_better: bool
    confidence: Number
    alpha: Number
    min_samples: int


class MetricEntry(Record):
    """One metric of one (variant, dataset, evaluator): a mean over row scores with its interval
    (`source` rows), an aggregate the evaluator reported (`reported`), or an operational metric
    of the experiment run (`builtin`)."""

    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"reported"})
    variant: str
    dataset: str
    evaluator: str
    eval_dataset: str | None
    metric: str
    source: Literal["rows", "reported", "builtin"]
    row_score: str | None  # the per-row score behind the value (what regression gates pair)
    value: Number | None  # None: no usable row (NaN), never silently 0
    method: Literal["wilson", "bootstrap", "cluster_bootstrap", "none"]
    ci_low: Number | None
    ci_high: Number | None
    n: int
    n_valid: int | None
    n_nan: int
    n_error: int
    reported: Number | None = None  # the evaluator's own value of a row score, next to ours


class ScoreBlock(Record):
    """Per-row values of one score of one evaluator run, by dataset line. With `repeats` calls
    per dataset row (dataset and evaluator `repeats:`), line `l` is a call of row `l // repeats`,
    and pairing (regression gates, compare) is over rows, on their means."""

    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"repeats"})
    variant: str
    dataset: str
    evaluator: str
    eval_dataset: str
    score: str
    rows: dict[str, Number | None]  # None: NaN, not a number, or errored
    errors: dict[str, str]
    repeats: int = 1  # calls per dataset row; written only when more than one


class FlakyRow(Record):
    """A dataset row whose pass/fail verdict on one score varies across its repeated calls: which
    row (and the experiment lines that ran it, for the report's inputs), and how often it passed."""

    variant: str
    dataset: str
    evaluator: str
    eval_dataset: str
    score: str
    row: int  # the dataset row (line // repeats)
    lines: list[int]  # the first and last experiment line of that row
    passed: int
    calls: int
    pass_rate: Number


class EvaluationRun(Record):
    """One evaluator run (evaluator dataset x experiment run), fresh or reused from the store.
    Summaries written before the engine boundary name the engine's run `pf_run`: read as written
    and written back so (their digest stays theirs); new ones write `engine_run`."""

    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"engine_run", "pf_run"})

    key: str
    evaluator: str
    eval_dataset: str
    variant: str
    dataset: str
    kind: Literal["flow", "code", "azure_ai_evaluation"]
    mode: Literal["run", "data", "code"]
    engine_run: str | None = None  # the engine's name for the batch run
    pf_run: str | None = None  # the same, in summaries written before it was renamed
    status: Literal["completed", "failed"]
    error: str | None
    duration_s: Number
    reused: bool


class LeaderboardRow(Record):
    variant: str
    rank: int
    primary_metric: str | None
    value: Number | None
    ci_low: Number | None
    ci_high: Number | None
    n_valid: int | None
    n_nan: int | None
    n_error: int | None
    dataset: str | None
    lines: int
    lines_failed: int
    error_rate: Number | None
    total_tokens: int
    tokens_per_line: Number | None
    cost: Number | None
    latency_p50_s: Number | None
    latency_p95_s: Number | None


class BestVariant(Record):
    """The deploy candidate: the top of the leaderboard, bound to the flow it ran."""

    variant: str
    variant_spec: dict[str, Any]
    flow: str
    flow_kind: str
    flow_hash: str
    run_keys: list[str]
    metric: str
    value: Number
    ci_low: Number | None
    ci_high: Number | None


class PairedTestResult(Record):
    """A regression gate's paired test. Kept at full precision, written rounded to 6 places."""

    method: Literal["mcnemar_exact", "paired_bootstrap"]
    n: int
    delta: Number  # mean(candidate - baseline)
    p_value: Number  # one-sided: evidence that the candidate is worse than baseline + margin
    ci_low: Number
    ci_high: Number
    detail: str

    @field_serializer("delta", "p_value", "ci_low", "ci_high")
    def _rounded(self, value):
        return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


class GateResult(Record):
    name: str
    metric: str
    type: Literal["absolute", "regression"]
    op: str
    threshold: Number
    status: Literal["pass", "fail", "insufficient", "skipped"]
    message: str  # one line: why it passed or failed
    value: Number | None = None
    baseline: Number | None = None
    test: PairedTestResult | None = None  # written as {} when there was no test
    variant: str | None = None

    @field_validator("test", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == {} else value

    @field_serializer("test")
    def _none_is_empty(self, test, info):
        return {} if test is None else test.model_dump(mode=info.mode, by_alias=True)


class BaselineRef(Record):
    """What the summary was compared with: the baseline's identity, its best variant's metrics."""

    id: str
    experiment_id: str
    variant: str | None
    source: str  # the --baseline argument
    digest: str | None  # None when the baseline was evaluated from an experiment just now
    metrics: list[MetricEntry]


class DrillCell(Record):
    outputs: Any
    error: str | None
    latency_s: Number | None
    scores: dict[str, Any]  # "<evaluator>.<score>" -> value as the evaluator returned it


class DrillRow(Record):
    """One dataset line with every variant's outputs and scores side by side (reports only)."""

    dataset: str
    line: int
    inputs: dict[str, Any]
    variants: dict[str, DrillCell]


def find_metric(metrics: list[MetricEntry], variant: str, metric: str, evaluator: str | None = None,
                dataset: str | None = None) -> MetricEntry | None:
    """The first entry of `variant` named `metric` (evaluator / dataset narrow it; dataset
    matches either the standard or the evaluator dataset name)."""
    for entry in metrics:
        if entry.variant != variant or entry.metric != metric:
            continue
        if evaluator and entry.evaluator != evaluator:
            continue
        if dataset and dataset not in (entry.dataset, entry.eval_dataset):
            continue
        return entry
    return None


def source_label(entry: MetricEntry) -> str:
    """Where a metric entry comes from, as gate messages say it."""
    return BUILTIN if entry.evaluator == BUILTIN else f"evaluator {entry.evaluator}"


def resolve_metric(metrics: list[MetricEntry], variant: str, metric: str,
                   evaluator: str | None = None, dataset: str | None = None,
                   evaluators: tuple[str, ...] = ()) -> tuple[MetricEntry | None, str | None]:
    """(the entry `metric` names for `variant`, None) or (None, why it names none unambiguously).

    `metric` is bare, `builtin.<name>` or `<evaluator>.<name>` (`genaiops.config.metric_names`); a bare
    name that several sources report is ambiguous: judging it would be a guess."""
    sources = tuple(dict.fromkeys([*evaluators, *(m.evaluator for m in metrics if m.evaluator != BUILTIN)]))
    ref = parse_metric(metric, sources, evaluator)
    found = [m for m in metrics if m.variant == variant and m.metric == ref.name
             and (ref.source is None or m.evaluator == ref.source)
             and (not dataset or dataset in (m.dataset, m.eval_dataset))]
    reporting = list(dict.fromkeys(m.evaluator for m in found))
    if len(reporting) > 1:
        spelled = " or ".join(f"{source}.{ref.name}" for source in reporting)
        return None, (f"metric {metric!r} is ambiguous for {variant}: reported by "
                      f"{', '.join(source_label(m) for m in found if m.evaluator in reporting)}; "
                      f"write {spelled}")
    return (found[0] if found else None), None


def digest_of(data: dict) -> str:
    """sha256 over a summary's JSON content minus the digest itself and run-local fields."""
    body = {k: v for k, v in data.items() if k not in DIGEST_EXCLUDES}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class Summary(Record):
    """One evaluation, as summary.json holds it (plus the per-line `rows`, which stay out of
    the file). `recorded_digest` is the `digest` key as written; `digest()` computes it."""

    OPTIONAL_KEYS: ClassVar[frozenset[str]] = frozenset({"recorded_digest", "report_dir",
                                                         "duration_s", "flow_hash",
                                                         "checkout_changes", "flaky"})
    schema_id: Literal[SUMMARY_SCHEMA] = Field(SUMMARY_SCHEMA, alias="schema")
    id: str
    use_case: str
    env: str | None
    experiment_id: str
    created_at: str
    flow: str
    flow_kind: str
    llm: LlmInfo
    evaluation: EvaluationInfo
    datasets: dict[str, str]  # name -> content hash (regression gates pair rows only if equal)
    metrics: list[MetricEntry]
    scores: list[ScoreBlock]
    evaluations: list[EvaluationRun]
    problems: list[str]  # anything that makes the verdict fail besides a gate
    leaderboard: list[LeaderboardRow]
    best: BestVariant | None
    gates: list[GateResult]
    verdict: Literal["pass", "fail"] | None  # None until gates ran (e.g. an experiment baseline)
    baseline: BaselineRef | None
    rows: list[DrillRow] = Field(default_factory=list, exclude=True)  # in results.csv, report.html
    flaky: list[FlakyRow] | None = None  # with repeats: rows whose verdict varies, least stable first
    flow_hash: str | None = None  # the flow the evaluated runs were made from (older files: absent)
    checkout_changes: list[str] | None = None  # an experiment named with --experiment that this
    # checkout would not make again: what differs (flow hash, config, dataset); reports show it
    recorded_digest: str | None = Field(None, alias="digest")
    duration_s: Number | None = None
    report_dir: str | None = None

    @classmethod
    def from_dict(cls, data, source: str = "summary.json") -> Summary:
        """A summary read from `source` (named in errors); UsageError when it is not one."""
        if not isinstance(data, dict) or data.get("schema") != SUMMARY_SCHEMA:
            raise UsageError(f"{source} is not a genaiops evaluation summary "
                             f"(schema {SUMMARY_SCHEMA})", hint=WRITTEN_BY_EVALUATE)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors()[:3])
            raise UsageError(f"{source} is a genaiops evaluation summary with invalid content: "
                             f"{problems}", hint=f"{WRITTEN_BY_EVALUATE}, unmodified") from None

    @classmethod
    def from_json(cls, text: str, source: str = "summary.json") -> Summary:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source} is not readable JSON: {exc}",
                             hint=WRITTEN_BY_EVALUATE) from None
        return cls.from_dict(data, source)

    def to_dict(self) -> dict:
        """The summary.json content (per-row drill-down excluded)."""
        return self.model_dump(by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def digest(self) -> str:
        return digest_of(self.to_dict())

    def find_metric(self, variant: str, metric: str, evaluator: str | None = None,
                    dataset: str | None = None) -> MetricEntry | None:
        return find_metric(self.metrics, variant, metric, evaluator, dataset)

    def resolve_metric(self, variant: str, metric: str, evaluator: str | None = None,
                       dataset: str | None = None) -> tuple[MetricEntry | None, str | None]:
        evaluators = tuple(e.evaluator for e in self.evaluations)
        return resolve_metric(self.metrics, variant, metric, evaluator, dataset, evaluators)

    @property
    def candidate(self) -> str | None:
        """The variant gates judge and deploy promotes."""
        return self.best.variant if self.best else None


def summary_for_json(summary: Summary) -> dict:
    """What `--json` prints: the summary.json content."""
    return summary.to_dict()
