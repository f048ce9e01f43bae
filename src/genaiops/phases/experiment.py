"""experiment: run the standard flow over every selected dataset x variant, concurrently,
reusing runs whose inputs are unchanged, and leave a run ledger for evaluate and deploy.

Plan -> reuse -> budget -> stage -> run -> record:
- every (dataset, variant) gets a run key from flow hash, variant, dataset hash, column mapping,
  the output-relevant connection settings and the engine version; a finished run with that key
  is reused;
- the engine stages as many variants of one dataset into one batch run as it can (promptflow: a
  composite DAG of up to 8 variants; flex and prompty one variant a batch); batches run
  `max_parallel` at a time through the shared scheduling loop;
- each finished run is written to the ledger at once, so an interrupted experiment resumes.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.config.model import Dataset, ExperimentConfig
from genaiops.engines.base import BatchJob, BatchResult, VariantSpec
from genaiops.errors import RunFailed, UsageError
from genaiops.hashing import hash_file, hash_tree
from genaiops.phases.context import PhaseContext
from genaiops.scheduling import Unit, run_concurrently
from genaiops.secrets import redact
from genaiops.variants import select_variants
from genaiops.workspace.files import count_jsonl_rows
from genaiops.workspace.ledger import (
    STATUS_COMPLETED,
    Ledger,
    RunRecord,
    new_experiment_id,
    run_key,
)

MAX_ERRORS_KEPT = 5


@dataclass
class ExperimentOptions:
    variants: str = "defaults"
    datasets: list[str] | None = None
    max_parallel: int | None = None
    worker_count: int | None = None
    max_runs: int = 64
    force: bool = False
    budget: float | None = None


@dataclass
class PlannedRun:
    key: str
    dataset: Dataset
    dataset_hash: str
    variant: VariantSpec
    identity: dict
    reused: RunRecord | None = None


@dataclass
class Batch:
    job: BatchJob
    staging: Path  # the staged copy of the flow, removed once the batch is recorded
    runs: list[PlannedRun] = field(default_factory=list)
    rows: int = 0


@dataclass
class ExperimentResult:
    """What `run experiment` did: one entry per (dataset, variant) run, reused or new."""

    experiment_id: str
    use_case: str
    env: str | None
    variants: str
    runs: list[dict]  # RunRecord fields + `reused`
    totals: dict
    simulator: dict | None = None  # the simulator's request counters, when one answered
    failures: list[dict] = field(default_factory=list)
    gateway: dict | None = None  # the LLM gateway's counters (attempts, 429s, queueing, quotas)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        data = {"phase": "experiment", "ok": self.ok, "experiment_id": self.experiment_id,
                "use_case": self.use_case, "env": self.env, "variants": self.variants,
                "runs": self.runs, "totals": self.totals, "simulator": self.simulator,
                "gateway": self.gateway}
        if self.failures:
            data["failures"] = self.failures
        return data

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        lines = []
        for failure in self.failures:
            first = failure["errors"][0]["message"] if failure["errors"] else "run failed"
            lines.append(f"{failure['variant']} on {failure['dataset']}: {failure['lines_failed']} "
                         f"failed line(s); first error: {first}")
        raise RunFailed("experiment failed:\n  " + "\n  ".join(lines),
                        hint="fix the cause, then rerun: completed runs are reused")


def plan_runs(ctx: PhaseContext, options: ExperimentOptions, settings: dict,
              ledger: Ledger) -> list[PlannedRun]:
    config = ctx.config
    variants = select_variants(config, ctx.flow, options.variants, options.max_runs)
    datasets = list(config.datasets)
    if options.datasets:
        known = {d.name: d for d in datasets}
        unknown = [n for n in options.datasets if n not in known]
        if unknown:
            raise UsageError(f"unknown dataset(s): {', '.join(unknown)}",
                             hint=f"datasets of {config.use_case}: {', '.join(known)}")
        datasets = [known[n] for n in options.datasets]
    flow_hash = hash_tree(ctx.flow.root, ctx.engine.cache_patterns)
    planned = []
    for dataset in datasets:
        dataset_hash = hash_file(dataset.source)
        for variant in variants:
            identity = {
                "use_case": config.use_case,
                "engine": ctx.engine.name,
                "flow_hash": flow_hash,
                "flow_kind": ctx.flow.kind,
                "flow_entry": ctx.flow.entry.name if ctx.flow.entry != ctx.flow.root else "",
                "variant": variant.identity(),
                "dataset_hash": dataset_hash,
                "column_mapping": dataset.mappings,
                "settings": settings,
            }
            key = run_key(identity)
            reused = None if options.force else ledger.find(key)
            planned.append(PlannedRun(key, dataset, dataset_hash, variant, identity, reused))
    return planned


def estimate_cost(config: ExperimentConfig, pending: list[PlannedRun], ledger: Ledger) -> float | None:
    """Rows x variants x tokens per line from this use case's previous runs (None: no history)."""
    price = unit_price(config)
    history = [r for r in ledger.history(config.use_case) if r.lines_total]
    if price is None or not history:
        return None
    prompt_per_line = sum(r.prompt_tokens for r in history) / sum(r.lines_total for r in history)
    completion_per_line = sum(r.completion_tokens for r in history) / sum(r.lines_total for r in history)
    lines = sum(count_jsonl_rows(run.dataset.source) for run in pending)
    return lines * (prompt_per_line * price[0] + completion_per_line * price[1]) / 1000


def unit_price(config: ExperimentConfig) -> tuple[float, float] | None:
    """(prompt, completion) price per 1k tokens: `prices.default`, or the only entry."""
    prices = config.prices
    entry = prices.get("default") or (next(iter(prices.values())) if len(prices) == 1 else None)
    return (entry["prompt"], entry["completion"]) if entry else None


def make_batches(ctx: PhaseContext, pending: list[PlannedRun], options: ExperimentOptions,
                 experiment_id: str) -> list[Batch]:
    """Group pending runs by dataset into as few engine batches as the engine allows, and stage each."""
    from genaiops.capacity import worker_count
    from genaiops.llm_session import engine_retries

    config, engine = ctx.config, ctx.engine
    per_batch = engine.max_variants_per_batch(ctx.flow)
    groups: list[list[PlannedRun]] = []
    for dataset_name in dict.fromkeys(r.dataset.name for r in pending):
        runs = [r for r in pending if r.dataset.name == dataset_name]
        groups += [runs[i:i + per_batch] for i in range(0, len(runs), per_batch)]
    batches = []
    for number, runs in enumerate(groups):
        name = f"{experiment_id}-{number:02d}"
        folder = ctx.workspace.staging(name)
        staged = engine.stage(ctx.flow, [r.variant for r in runs], folder / "flow")
        rows = count_jsonl_rows(runs[0].dataset.source)
        workers = worker_count(options.worker_count or config.runtime.worker_count, rows,
                               calls_llm=ctx.flow.calls_llm, connections=config.connections)
        job = BatchJob(name=name, flow=staged.entry, data=str(runs[0].dataset.source),
                       column_mapping=dict(runs[0].dataset.mappings),
                       member_suffixes=staged.member_suffixes, init=staged.init,
                       worker_count=workers, line_timeout_sec=config.runtime.line_timeout_sec,
                       environment={**staged.environment,
                                    **engine.run_environment(engine_retries(config))})
        batches.append(Batch(job, folder, runs, rows))
    return batches


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return round(ordered[rank], 4)


def record_batch(ctx: PhaseContext, batch: Batch, result: BatchResult, experiment_id: str,
                 ledger: Ledger, started: float) -> list[RunRecord]:
    config = ctx.config
    records = []
    price = unit_price(config)
    for index, run in enumerate(batch.runs):
        member = result.members[index] if index < len(result.members) else None
        lines = member.lines if member else []
        ok = [line for line in lines if line.ok]
        failed = [line for line in lines if not line.ok]
        if member is None:  # the whole run failed before producing lines
            failed_count, errors = batch.rows, [{"line": None, "message": redact(result.error or "run failed")}]
        else:
            failed_count = len(failed)
            errors = [{"line": line.line, "message": redact(line.error or "failed")}
                      for line in failed[:MAX_ERRORS_KEPT]]
        prompt = sum(line.prompt_tokens for line in lines)
        completion = sum(line.completion_tokens for line in lines)
        latencies = [line.latency_s for line in ok if line.latency_s is not None]
        record = RunRecord(
            key=run.key, use_case=config.use_case, env=config.env, experiment_id=experiment_id,
            flow=config.flow_rel, flow_kind=ctx.flow.kind, flow_hash=run.identity["flow_hash"],
            variant=run.variant.label, variant_spec=run.variant.identity(), dataset=run.dataset.name,
            dataset_source=run.dataset.source_rel, dataset_hash=run.dataset_hash,
            column_mapping=dict(run.dataset.mappings), settings=run.identity["settings"],
            pf_run=result.name, pf_output=member.suffix if member else None,
            status=STATUS_COMPLETED if member is not None and result.status == "completed" else "failed",
            lines_total=batch.rows, lines_ok=len(ok), lines_failed=failed_count,
            duration_s=round(result.duration_s, 3), prompt_tokens=prompt, completion_tokens=completion,
            total_tokens=prompt + completion,
            cost=round((prompt * price[0] + completion * price[1]) / 1000, 6) if price else None,
            latency_p50_s=_percentile(latencies, 50), latency_p95_s=_percentile(latencies, 95),
            latency_p99_s=_percentile(latencies, 99), errors=errors, started_at=started,
            finished_at=time.time())
        rows = [{"line": line.line, "ok": line.ok, "inputs": line.inputs, "outputs": line.outputs,
                 "error": redact(line.error) if line.error else None, "latency_s": line.latency_s,
                 "prompt_tokens": line.prompt_tokens, "completion_tokens": line.completion_tokens}
                for line in lines]
        ledger.save(record, rows)
        records.append(record)
    return records


def _tolerance_exceeded(record: dict, tolerance: float) -> bool:
    if record["status"] != STATUS_COMPLETED:
        return True
    allowed = tolerance * record["lines_total"] if 0 < tolerance < 1 else tolerance
    return record["lines_failed"] > allowed


def run_experiment(ctx: PhaseContext, options: ExperimentOptions) -> ExperimentResult:
    from genaiops.llm_session import output_settings

    config = ctx.config
    ledger = ctx.workspace.ledger()
    experiment_id = new_experiment_id(config.use_case)
    started = time.time()
    planned = plan_runs(ctx, options, output_settings(config), ledger)
    pending = [run for run in planned if run.reused is None]
    estimate = estimate_cost(config, pending, ledger) if pending else 0.0
    if options.budget is not None and estimate is not None and estimate > options.budget:
        raise UsageError(f"estimated cost {estimate:.4f} exceeds --budget {options.budget}",
                         hint="raise --budget, select fewer variants/datasets, or use the PR overlay")
    records = {run.key: run.reused for run in planned if run.reused is not None}
    simulator_stats = gateway_stats = None
    if pending:  # nothing to run: no simulator, no connections, no engine import
        batches = make_batches(ctx, pending, options, experiment_id)
        from genaiops.capacity import parallel_runs

        max_parallel = parallel_runs(options.max_parallel, config.runtime.max_parallel, len(batches))
        ctx.engine.prewarm(max_parallel)  # workers import while we prepare
        try:
            with ctx.llm() as session:
                records.update(_run_batches(ctx, batches, max_parallel, experiment_id, ledger))
                simulator_stats = session.simulator.stats.snapshot() if session.simulator else None
                gateway_stats = session.gateway.snapshot() if session.gateway else None
        finally:  # the context's owner closes the engine: its warm workers serve the next phase
            for batch in batches:  # staged copies are disposable once recorded
                shutil.rmtree(batch.staging, ignore_errors=True)
    elif ctx.simulator is not None:
        simulator_stats = ctx.simulator.stats.snapshot()

    runs = [{**records[run.key].as_dict(), "reused": run.reused is not None} for run in planned]
    tolerance = config.runtime.failed_line_tolerance
    failing = [r for r in runs if _tolerance_exceeded(r, tolerance)]
    ledger.save_experiment({
        "id": experiment_id, "use_case": config.use_case, "env": config.env,
        "flow": config.flow_rel, "flow_kind": ctx.flow.kind, "variants": options.variants,
        "started_at": started, "finished_at": time.time(),
        "runs": [{"key": r["key"], "variant": r["variant"], "dataset": r["dataset"],
                  "reused": r["reused"]} for r in runs],
        "ok": not failing,
    })
    totals = {
        "runs": len(runs), "reused": sum(r["reused"] for r in runs),
        "lines_ok": sum(r["lines_ok"] for r in runs),
        "lines_failed": sum(r["lines_failed"] for r in runs),
        "total_tokens": sum(r["total_tokens"] for r in runs),
        "cost": round(sum(r["cost"] or 0 for r in runs), 6) if unit_price(config) else None,
        "estimated_cost": estimate,
        "duration_s": round(time.time() - started, 3),
    }
    failures = [{"variant": r["variant"], "dataset": r["dataset"], "lines_failed": r["lines_failed"],
                 "errors": r["errors"]} for r in failing]
    return ExperimentResult(experiment_id, config.use_case, config.env, options.variants, runs,
                            totals, simulator_stats, failures, gateway_stats)


def _run_batches(ctx: PhaseContext, batches: list[Batch], max_parallel: int, experiment_id: str,
                 ledger: Ledger) -> dict:
    retries = ctx.config.runtime.retries
    attempts = max(1, retries.max_attempts)

    def execute(batch: Batch, report) -> list[RunRecord]:
        started = time.time()
        result = None
        for attempt in range(attempts):  # whole-run failures (worker crash) are retried
            result = ctx.engine.run_batch(batch.job, lambda done: report(done * len(batch.runs)))
            if result.members or attempt == attempts - 1:
                break
            time.sleep(retries.backoff_sec * 2 ** attempt)
            batch.job.name = f"{batch.job.name}-r{attempt + 1}"
        return record_batch(ctx, batch, result, experiment_id, ledger, started)

    units = [Unit(batch, f"{batch.runs[0].dataset.name}x{len(batch.runs)}", batch.rows * len(batch.runs))
             for batch in batches]
    done = run_concurrently(units, execute, max_parallel=max_parallel,
                            title=f"experiment {experiment_id}", show_progress=ctx.show_progress)
    return {record.key: record for records in done for record in records}
