"""`genaiops monitor`: judge a deployment's production traffic against what was approved for it.

1. The deployment: the newest successful `deployed` record of (use case, env) in the verified audit
   chain - its artifact (image digest or id), variant and the evaluation its image was built from.
2. Its traffic: the root spans (`invoke_agent ...`, one per `/score`) the image exported with
   that artifact as `genaiops.image`, from the embedded store or Application Insights, since
   `--since`; a deterministic sample by trace id (`--sample`) is written back as
   `gen_ai.evaluation.result` events.
3. Operational metrics over all of it: error rate (Wilson interval), latency p50/p95, tokens and
   cost per request (bootstrap interval of the mean) - the intervals `evaluation.stats` gives the gates.
   The sampled requests whose content was recorded are scored by the use case's reference-free
   evaluators (code, LLM-judge flows, azure-ai-evaluation judges: `score_sample`), LLM judges
   through the command's gateway.
4. The approved figures: the deployed variant's builtin metrics in that evaluation's summary.json.
5. Drift: a metric with a margin (`monitoring.margins`) drifts when production is worse than the
   approved figure by more than the margin with the configured confidence (the interval's near
   end is past approved + margin; a point figure like p95 latency by the figure itself).
   Fewer than `monitoring.min_requests` requests: no verdict, "too thin to judge".
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genaiops.errors import UsageError
from genaiops.phases.context import PhaseContext

ROOT_PREFIX = "invoke_agent"
LOWER_IS_BETTER = {"error_rate", "latency_p50_s", "latency_p95_s", "tokens_per_request", "cost_per_request"}
# production metric -> the builtin metric of the evaluation it is compared with
APPROVED_SOURCES = {"error_rate": "error_rate", "latency_p50_s": "latency_p50_s",
                    "latency_p95_s": "latency_p95_s", "tokens_per_request": "tokens_per_line"}


@dataclass
class MonitorOptions:
    env: str
    since_hours: float | None = None  # default: monitoring.since_hours
    sample: float | None = None  # default: monitoring.sample
    app_insights_workspace: str | None = None  # read Application Insights instead of the embedded store
    now_ns: int | None = None


@dataclass
class MetricCheck:
    metric: str  # builtin.<name>
    value: float | None
    ci_low: float | None
    ci_high: float | None
    method: str
    n: int
    approved: float | None = None
    margin: float | None = None
    status: str = "reported"  # pass | drift | reported (no margin or no approved figure)
    message: str = ""


@dataclass
class MonitorResult:
    use_case: str
    env: str
    artifact: str
    variant: str
    approved_from: str  # the evaluation id the approved figures come from, "" when none
    requests: int
    sampled: int
    since_hours: float
    checks: list[MetricCheck] = field(default_factory=list)
    verdict: str = "pass"  # pass | drift | insufficient
    notes: list[str] = field(default_factory=list)
    message: str = ""
    llm_calls: dict = field(default_factory=dict)  # requests the gateway scheduled, by pool (LLM judges)
    report_dir: str = ""

    @property
    def drifted(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.status == "drift"]

    def to_json(self) -> dict:
        return {"phase": "monitor", **asdict(self), "ok": self.verdict != "drift"}


def sampled(trace_id: str, fraction: float) -> bool:
    """Deterministic: the same trace is in or out of every sample of this fraction."""
    bucket = int(hashlib.sha256(trace_id.encode("ascii")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < fraction


def _percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def operational(roots, prices: dict, confidence: float) -> list[MetricCheck]:
    from genaiops.evaluation.stats import bootstrap_ci, wilson

    n = len(roots)
    failed = sum(1 for s in roots if s.failed)
    latencies = [s.duration_s for s in roots]
    tokens = [float((s.attributes.get("gen_ai.usage.input_tokens") or 0)
                    + (s.attributes.get("gen_ai.usage.output_tokens") or 0)) for s in roots]
    checks = []
    low, high = wilson(failed, n, confidence) if n else (None, None)
    checks.append(MetricCheck("builtin.error_rate", failed / n if n else None, low, high, "wilson", n))
    for name, q in (("latency_p50_s", 50), ("latency_p95_s", 95)):
        value = _percentile(latencies, q)
        checks.append(MetricCheck(f"builtin.{name}", None if value is None else round(value, 4), None, None,
                                  "none", n))
    if n:
        low, high = bootstrap_ci(tokens, confidence)
        checks.append(MetricCheck("builtin.tokens_per_request", sum(tokens) / n, low, high, "bootstrap", n))
    costs = []
    for s in roots:
        price = prices.get(str(s.attributes.get("gen_ai.response.model") or s.attributes.get(
            "gen_ai.request.model") or ""))
        if price is None:
            costs = []
            break
        costs.append((s.attributes.get("gen_ai.usage.input_tokens") or 0) / 1000 * price["prompt"]
                     + (s.attributes.get("gen_ai.usage.output_tokens") or 0) / 1000 * price["completion"])
    if costs:
        low, high = bootstrap_ci(costs, confidence)
        checks.append(MetricCheck("builtin.cost_per_request", sum(costs) / n, low, high, "bootstrap", n))
    return checks


@dataclass
class SampleRecord:
    """What an evaluator adapter reads of the run it scores, for the sampled production requests
    (they are no experiment run: nothing to link, one line per request)."""
    key: str
    variant: str
    dataset: str = "production"
    repeats: int = 1
    engine_run: str = ""
    engine_output: str | None = None


def sample_rows(sample) -> list[tuple]:
    """[(span, AlignedRow)] of the sampled requests whose inputs and outputs were recorded: the
    request's inputs are the row (`${data.x}`), its outputs the run's (`${run.outputs.y}`)."""
    import json

    from genaiops.evaluation.evaluators.base import AlignedRow

    rows = []
    for span in sample:
        try:
            inputs = json.loads(span.attributes.get("genaiops.inputs") or "null")
            outputs = json.loads(span.attributes.get("genaiops.outputs") or "null")
        except ValueError:
            inputs = outputs = None
        if isinstance(inputs, dict) and isinstance(outputs, dict):
            rows.append((span, AlignedRow(line=len(rows), data=inputs, run_outputs=outputs)))
    return rows


def score_sample(ctx: PhaseContext, sample, record: SampleRecord,
                 confidence: float) -> tuple[list[MetricCheck], list[dict], list[str]]:
    """The use case's reference-free evaluators (`reference_free: true`: code evaluators, LLM-judge
    evaluation flows and azure-ai-evaluation judges) over the sampled requests whose inputs and
    outputs were recorded, through the same adapters as `run evaluate`; LLM judges call the
    command's gateway as the `evaluators` pool, so quota scheduling, retries, the simulator and
    record/replay apply. Returns one check per score (mean with its interval), the per-trace
    results (`gen_ai.evaluation.result` events) and notes on what could not be scored."""
    import contextlib

    from genaiops.evaluation.evaluators import make_adapter
    from genaiops.evaluation.evaluators.base import EvalTask
    from genaiops.evaluation.stats import aggregate, as_number
    from genaiops.gateway import EVALUATOR_POOL
    from genaiops.phases.evaluate import new_evaluation_id

    config = ctx.config
    checks, results, notes = [], [], []
    evaluators = [e for e in config.evaluators if e.reference_free]
    if not evaluators:
        return checks, results, notes
    rows = sample_rows(sample)
    if not rows:
        notes.append("no sampled request has recorded inputs and outputs (capture_content is off): "
                     "reference-free evaluators were not run")
        return checks, results, notes
    adapters = {e.name: make_adapter(config, e, ctx.engine_named(e.engine) if e.engine else None,
                                     link_runs=False) for e in evaluators}
    judges = [e for e in evaluators if e.flow or getattr(adapters[e.name], "calls_llm", False)]
    flow_engines = list({e.engine: ctx.engine_named(e.engine) for e in evaluators if e.flow}.values())
    for engine in flow_engines:  # the evaluators run one after the other: one worker each
        engine.prewarm(1)
    run_id = new_evaluation_id(config.use_case).replace("-eval-", "-monitor-", 1)  # engine run names are unique
    aligned = [row for _span, row in rows]
    span_of = {row.line: span for span, row in rows}
    with ctx.llm(flow_engines or None, pool=EVALUATOR_POOL) if judges else contextlib.nullcontext() as session:
        for adapter in adapters.values():  # LLM judges call the session's (gateway) endpoints
            if session is not None and getattr(adapter, "calls_llm", False):
                adapter.bind(session.endpoints)
        for evaluator in evaluators:
            task = EvalTask(key=f"{record.key}-{evaluator.name}", evaluator=evaluator,
                            eval_dataset=evaluator.datasets[0], record=record, identity={}, reusable=False)
            outcome = adapters[evaluator.name].evaluate(task, aligned, f"{run_id}-{evaluator.name}")
            if outcome.status != "completed" and not any(r["scores"] for r in outcome.rows):
                notes.append(f"evaluator {evaluator.name} failed on the sample: {outcome.error}")
                continue
            per_score: dict[str, list] = {}
            errors = 0
            for row in outcome.rows:
                span = span_of[row["line"]]
                if row.get("error"):
                    errors += 1
                    continue
                for score, value in row["scores"].items():
                    number = as_number(value)
                    if number is None:
                        continue  # a judge's reason: text, kept out of the figures
                    per_score.setdefault(score, []).append(number)
                    results.append({"trace_id": span.trace_id, "span_id": span.span_id,
                                    "name": f"{evaluator.name}.{score}", "value": number})
            if errors:
                first = next(r["error"] for r in outcome.rows if r.get("error"))
                notes.append(f"evaluator {evaluator.name}: {errors} of {len(rows)} sampled request(s) not "
                             f"scored ({first})")
            for score, values in sorted(per_score.items()):
                agg = aggregate(values, confidence)
                if agg.n_valid:
                    checks.append(MetricCheck(f"{evaluator.name}.{score}", agg.mean, agg.ci_low, agg.ci_high,
                                              agg.method, agg.n_valid))
    return checks, results, notes


def judge(check: MetricCheck) -> None:
    """Drift when production is worse than approved + margin with the interval's confidence."""
    name = check.metric.split(".", 1)[1] if check.metric.startswith("builtin.") else ""
    if check.value is None or check.approved is None or check.margin is None:
        check.status = "reported"
        check.message = ("no approved figure" if check.approved is None else "no margin configured") \
            if check.value is not None else "no data"
        return
    lower_better = name in LOWER_IS_BETTER
    bound = check.approved + check.margin if lower_better else check.approved - check.margin
    near = check.ci_low if check.ci_low is not None else check.value  # production's best case
    if not lower_better:
        near = check.ci_high if check.ci_high is not None else check.value
    worse = near > bound if lower_better else near < bound
    check.status = "drift" if worse else "pass"
    interval = "" if check.ci_low is None else f" (95% CI {check.ci_low:.4g}..{check.ci_high:.4g})"
    check.message = (f"{check.metric} {check.value:.4g}{interval} vs approved {check.approved:.4g}, "
                     f"margin {check.margin:g}: " + ("worse beyond the margin" if worse else "within the margin"))


def _approved_summary(workspace, use_case: str, record: dict):
    """The evaluation the deployed image was built from (its summary digest), else the newest
    passed evaluation of the use case that scored the deployed variant."""
    from genaiops.evaluation.summary import Summary

    digest = ((record.get("image") or {}).get("labels") or {}).get("summary_digest")
    variant = (record.get("variant") or {}).get("label", "")
    folder = workspace.report_dirs(use_case)
    candidates = []
    for path in sorted(folder.glob("*/summary.json")) if folder.is_dir() else []:
        try:
            summary = Summary.from_json(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UsageError):
            continue
        if digest and digest != "none" and summary.digest() == digest:
            return summary, ""
        if summary.verdict == "pass" and summary.find_metric(variant, "error_rate", evaluator="builtin"):
            candidates.append((summary.created_at, summary))
    if candidates:
        summary = max(candidates, key=lambda c: c[0])[1]
        return summary, (f"the deployment names no evaluation; approved figures from the newest passed "
                         f"one that scored {variant}: {summary.id}")
    return None, "no evaluation of the deployed variant found: figures are reported, not judged"


def run_monitor(ctx: PhaseContext, options: MonitorOptions) -> MonitorResult:
    from genaiops.deploy import audit
    from genaiops.monitoring.reader import open_reader
    from genaiops.reports.monitor import write_monitor_reports

    config, workspace = ctx.config, ctx.workspace
    settings = config.monitoring
    use_case = config.use_case
    since_hours = options.since_hours or settings.since_hours
    fraction = options.sample if options.sample is not None else settings.sample
    if not 0 < fraction <= 1:
        raise UsageError(f"--sample must be in (0, 1], not {fraction}")
    records = audit.audit_log(workspace).read()
    record = audit.last_successful(records, use_case, options.env)
    if record is None:
        raise UsageError(f"nothing of {use_case} is deployed to {options.env!r} (no successful deploy in "
                         "the audit chain)", hint=f"genaiops run deploy -u {use_case} -e {options.env}")
    artifact = record["artifact"]
    now_ns = options.now_ns or time.time_ns()
    since_ns = now_ns - int(since_hours * 3600e9)
    reader = open_reader(workspace, app_insights_workspace=options.app_insights_workspace)
    spans = reader.spans(use_case=use_case, environment=options.env, image=artifact, since_ns=since_ns)
    roots = [s for s in spans if s.name.startswith(ROOT_PREFIX) and not s.parent_span_id]
    sample = [s for s in roots if sampled(s.trace_id, fraction)]
    result = MonitorResult(use_case=use_case, env=options.env, artifact=artifact,
                           variant=(record.get("variant") or {}).get("label", ""), approved_from="",
                           requests=len(roots), sampled=len(sample), since_hours=since_hours)
    result.checks = operational(roots, dict(config.prices), settings.confidence)
    scored, evaluations, notes = score_sample(
        ctx, sample, SampleRecord(key=f"monitor-{artifact}", variant=result.variant), settings.confidence)
    result.checks += scored
    if ctx.gateway is not None:
        result.llm_calls = dict(ctx.gateway.snapshot().get("requests") or {})
    summary, note = _approved_summary(workspace, use_case, record)
    if summary is not None:
        result.approved_from = summary.id
        for check in result.checks:
            group, name = check.metric.split(".", 1)
            if group == "builtin":
                source = APPROVED_SOURCES.get(name)
                entry = summary.find_metric(result.variant, source, evaluator="builtin") if source else None
            else:
                entry = summary.find_metric(result.variant, name, evaluator=group)
            if entry is not None and entry.value is not None and not math.isnan(entry.value):
                check.approved = float(entry.value)
    for check in result.checks:
        check.margin = settings.margins.get(check.metric)
        judge(check)
    if len(roots) < settings.min_requests:
        result.verdict = "insufficient"
        result.message = (f"too thin to judge: {len(roots)} request(s) of {artifact[:19]} in {options.env} in "
                          f"the last {since_hours:g}h; monitoring.min_requests is {settings.min_requests}")
        for check in result.checks:
            if check.status == "drift":
                check.status = "reported"
    elif result.drifted:
        result.verdict = "drift"
        result.message = "drift: " + "; ".join(c.message for c in result.drifted)
    else:
        result.message = f"no drift over {len(roots)} request(s)" + (f" ({note})" if note else "")
    if summary is None:
        result.message += f"; {note}"
    result.notes = notes
    store_events = getattr(reader, "add_events", None)
    if store_events is not None and evaluations:
        store_events([{"trace_id": e["trace_id"], "span_id": e["span_id"], "name": "gen_ai.evaluation.result",
                       "time_ns": now_ns, "key": f"monitor:{e['trace_id']}:{e['name']}",
                       "attributes": {"gen_ai.evaluation.name": e["name"], "gen_ai.evaluation.score.value":
                                      e["value"], "genaiops.image": artifact}} for e in evaluations])
    if store_events is not None and sample:
        store_events([{"trace_id": s.trace_id, "span_id": s.span_id, "name": "gen_ai.evaluation.result",
                       "time_ns": now_ns, "key": f"monitor:{s.trace_id}:builtin.success",
                       "attributes": {"gen_ai.evaluation.name": "builtin.success",
                                      "gen_ai.evaluation.score.value": 0.0 if s.failed else 1.0,
                                      "gen_ai.evaluation.score.label": "fail" if s.failed else "pass",
                                      "genaiops.image": artifact}} for s in sample])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ns / 1e9))
    folder: Path = workspace.monitor_dir(use_case, options.env, stamp)
    write_monitor_reports(result, folder)
    result.report_dir = str(folder)
    return result
