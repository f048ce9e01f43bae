"""experiment: run the standard flow over every selected dataset x variant, concurrently,
reusing runs whose inputs are unchanged, and leave a run ledger for evaluate and deploy.

Plan -> reuse -> budget -> stage -> run -> record:
- every (dataset, variant) gets a run key from flow hash, variant, dataset hash, column mapping
  and the output-relevant connection settings; a finished run with that key is reused;
- DAG variants of one dataset run as one composite promptflow run (see `composite`), flex and
  prompty parameter variants as one run each; batches run `max_parallel` at a time;
- each finished run is written to the ledger at once, so an interrupted experiment resumes.
"""

from __future__ import annotations

import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.config.model import Dataset, ExperimentConfig
from genaiops.engines import BatchJob, BatchResult, open_runner
from genaiops.engines.promptflow.composite import stage_composite
from genaiops.engines.promptflow.composite import suffix as composite_suffix
from genaiops.engines.promptflow.retry_policy import ENV_ATTEMPTS, ENV_BACKOFF
from genaiops.engines.promptflow.staging import apply_prompty_overrides, copy_flow
from genaiops.errors import RunFailed, UsageError
from genaiops.hashing import hash_file, hash_tree
from genaiops.progress import Progress
from genaiops.secrets import redact
from genaiops.variants import VariantSpec, select_variants
from genaiops.workspace.ledger import (
    STATUS_COMPLETED,
    Ledger,
    RunRecord,
    new_experiment_id,
    run_key,
)
from genaiops.workspace.repo import state_dir

MAX_VARIANTS_PER_BATCH = 8  # chains per composite line; bounded so one line stays light
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
    show_progress: bool = True


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
    runs: list[PlannedRun] = field(default_factory=list)
    rows: int = 0


def plan_runs(config: ExperimentConfig, options: ExperimentOptions, settings: dict,
              ledger: Ledger) -> list[PlannedRun]:
    variants = select_variants(config, options.variants, options.max_runs)
    datasets = list(config.datasets)
    if options.datasets:
        known = {d.name: d for d in datasets}
        unknown = [n for n in options.datasets if n not in known]
        if unknown:
            raise UsageError(f"unknown dataset(s): {', '.join(unknown)}",
                             hint=f"datasets of {config.use_case}: {', '.join(known)}")
        datasets = [known[n] for n in options.datasets]
    flow_root = config.flow if config.flow.is_dir() else config.flow.parent
    flow_hash = hash_tree(flow_root)
    planned = []
    for dataset in datasets:
        dataset_hash = hash_file(dataset.source)
        for variant in variants:
            identity = {
                "use_case": config.use_case,
                "flow_hash": flow_hash,
                "flow_kind": config.flow_kind,
                "flow_entry": config.flow.name if config.flow_kind == "prompty" else "",
                "variant": variant.identity(),
                "dataset_hash": dataset_hash,
                "column_mapping": dataset.mappings,
                "settings": settings,
            }
            key = run_key(identity)
            reused = None if options.force else ledger.find(key)
            planned.append(PlannedRun(key, dataset, dataset_hash, variant, identity, reused))
    return planned


def _count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def estimate_cost(config: ExperimentConfig, pending: list[PlannedRun], ledger: Ledger) -> float | None:
    """Rows x variants x tokens per line from this use case's previous runs (None: no history)."""
    price = unit_price(config)
    history = [r for r in ledger.history(config.use_case) if r.lines_total]
    if price is None or not history:
        return None
    prompt_per_line = sum(r.prompt_tokens for r in history) / sum(r.lines_total for r in history)
    completion_per_line = sum(r.completion_tokens for r in history) / sum(r.lines_total for r in history)
    lines = sum(_count_rows(run.dataset.source) for run in pending)
    return lines * (prompt_per_line * price[0] + completion_per_line * price[1]) / 1000


def unit_price(config: ExperimentConfig) -> tuple[float, float] | None:
    """(prompt, completion) price per 1k tokens: `prices.default`, or the only entry."""
    prices = config.prices
    entry = prices.get("default") or (next(iter(prices.values())) if len(prices) == 1 else None)
    return (entry["prompt"], entry["completion"]) if entry else None


def _stage(config: ExperimentConfig, runs: list[PlannedRun], staging: Path,
           name: str) -> tuple[str, list[str], dict | None]:
    """Stage the flow for one batch: (entry to run, member output suffixes, init parameters)."""
    dest = staging / name / "flow"
    if config.flow_kind == "dag":
        stage_composite(config.flow, [r.variant.nodes for r in runs], dest)
        return str(dest), [composite_suffix(i) for i in range(len(runs))], None
    variant = runs[0].variant
    if config.flow_kind == "prompty":
        copy_flow(config.flow.parent, dest)
        apply_prompty_overrides(dest / config.flow.name, variant.init)
        return str(dest / config.flow.name), [""], None
    copy_flow(config.flow, dest)
    return str(dest), [""], variant.init or None


def make_batches(config: ExperimentConfig, pending: list[PlannedRun], options: ExperimentOptions,
                 experiment_id: str, staging: Path) -> list[Batch]:
    worker_count = options.worker_count or config.runtime.worker_count
    groups: list[list[PlannedRun]] = []
    for dataset_name in dict.fromkeys(r.dataset.name for r in pending):
        runs = [r for r in pending if r.dataset.name == dataset_name]
        if config.flow_kind == "dag":
            groups += [runs[i:i + MAX_VARIANTS_PER_BATCH]
                       for i in range(0, len(runs), MAX_VARIANTS_PER_BATCH)]
        else:
            groups += [[r] for r in runs]
    batches = []
    for number, runs in enumerate(groups):
        name = f"{experiment_id}-{number:02d}"
        flow, suffixes, init = _stage(config, runs, staging, name)
        # standalone prompty resolves its connection per line; forked workers trip filelock's
        # fork check there, spawned ones do not
        environment = {"PF_BATCH_METHOD": "spawn"} if config.flow_kind == "prompty" else {}
        environment.update({ENV_ATTEMPTS: str(config.runtime.retries.max_attempts),
                            ENV_BACKOFF: str(config.runtime.retries.backoff_sec)})
        job = BatchJob(name=name, flow=flow, data=str(runs[0].dataset.source),
                       column_mapping=dict(runs[0].dataset.mappings), member_suffixes=suffixes,
                       init=init, worker_count=worker_count,
                       line_timeout_sec=config.runtime.line_timeout_sec, environment=environment)
        batches.append(Batch(job=job, runs=runs, rows=_count_rows(runs[0].dataset.source)))
    return batches


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return round(ordered[rank], 4)


def record_batch(config: ExperimentConfig, batch: Batch, result: BatchResult, experiment_id: str,
                 ledger: Ledger, started: float) -> list[RunRecord]:
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
            flow=config.flow_rel, flow_kind=config.flow_kind, flow_hash=run.identity["flow_hash"],
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


def _tolerance_exceeded(record: RunRecord, tolerance: float) -> bool:
    if record.status != STATUS_COMPLETED:
        return True
    allowed = tolerance * record.lines_total if 0 < tolerance < 1 else tolerance
    return record.lines_failed > allowed


def run_experiment(config: ExperimentConfig, options: ExperimentOptions, *, simulator=None,
                   runner=None) -> dict:
    from genaiops.llm_session import llm_session, output_settings

    ledger = Ledger(config.repo_root)
    experiment_id = new_experiment_id(config.use_case)
    started = time.time()
    planned = plan_runs(config, options, output_settings(config), ledger)
    pending = [run for run in planned if run.reused is None]
    estimate = estimate_cost(config, pending, ledger) if pending else 0.0
    if options.budget is not None and estimate is not None and estimate > options.budget:
        raise UsageError(f"estimated cost {estimate:.4f} exceeds --budget {options.budget}",
                         hint="raise --budget, select fewer variants/datasets, or use the PR overlay")
    records = {run.key: run.reused for run in planned if run.reused is not None}
    simulator_stats = None
    if pending:  # nothing to run: no simulator, no connections, no promptflow import
        staging = state_dir(config.repo_root) / "staging"
        batches = make_batches(config, pending, options, experiment_id, staging)
        runner = runner or open_runner(config.runtime.backend, settings=dict(config.registry))
        max_parallel = options.max_parallel or config.runtime.max_parallel
        if hasattr(runner, "prewarm"):  # workers import promptflow while we prepare connections
            runner.prewarm(min(max_parallel, len(batches)))
        try:
            with llm_session(config, simulator) as session:
                records.update(_run_batches(config, batches, options, experiment_id, ledger, runner))
                simulator_stats = session.simulator.stats.snapshot() if session.simulator else None
        finally:
            if hasattr(runner, "close"):
                runner.close()
            for batch in batches:  # staged copies are disposable once recorded
                shutil.rmtree(staging / batch.job.name, ignore_errors=True)
    elif simulator is not None:
        simulator_stats = simulator.stats.snapshot()

    runs = []
    for run in planned:
        record = records[run.key]
        runs.append({**record.as_dict(), "reused": run.reused is not None})
    tolerance = config.runtime.failed_line_tolerance
    failing = [r for r in runs if _tolerance_exceeded(RunRecord(**{k: v for k, v in r.items()
                                                                     if k != "reused"}), tolerance)]
    experiment = {
        "id": experiment_id, "use_case": config.use_case, "env": config.env,
        "flow": config.flow_rel, "flow_kind": config.flow_kind, "variants": options.variants,
        "started_at": started, "finished_at": time.time(),
        "runs": [{"key": r["key"], "variant": r["variant"], "dataset": r["dataset"],
                  "reused": r["reused"]} for r in runs],
        "ok": not failing,
    }
    ledger.save_experiment(experiment)
    result = {
        "phase": "experiment", "ok": not failing, "experiment_id": experiment_id,
        "use_case": config.use_case, "env": config.env, "variants": options.variants,
        "runs": runs,
        "totals": {
            "runs": len(runs), "reused": sum(r["reused"] for r in runs),
            "lines_ok": sum(r["lines_ok"] for r in runs),
            "lines_failed": sum(r["lines_failed"] for r in runs),
            "total_tokens": sum(r["total_tokens"] for r in runs),
            "cost": round(sum(r["cost"] or 0 for r in runs), 6) if unit_price(config) else None,
            "estimated_cost": estimate,
            "duration_s": round(time.time() - started, 3),
        },
        "simulator": simulator_stats,
    }
    if failing:
        result["failures"] = [{"variant": r["variant"], "dataset": r["dataset"],
                               "lines_failed": r["lines_failed"], "errors": r["errors"]} for r in failing]
    return result


def _run_batches(config, batches, options, experiment_id, ledger, runner) -> dict:
    max_parallel = options.max_parallel or config.runtime.max_parallel
    total = sum(batch.rows * len(batch.runs) for batch in batches)
    progress = Progress(total, f"experiment {experiment_id}", enabled=options.show_progress)
    records = {}
    attempts = max(1, config.runtime.retries.max_attempts)

    def execute(batch: Batch) -> list[RunRecord]:
        label = f"{batch.runs[0].dataset.name}x{len(batch.runs)}"
        progress.add_task(label, batch.rows * len(batch.runs))
        started = time.time()
        result = None
        for attempt in range(attempts):  # whole-run failures (worker crash) are retried
            result = runner.run(batch.job, lambda done: progress.update(label, done * len(batch.runs)))
            if result.members or attempt == attempts - 1:
                break
            time.sleep(config.runtime.retries.backoff_sec * 2 ** attempt)
            batch.job.name = f"{batch.job.name}-r{attempt + 1}"
        return record_batch(config, batch, result, experiment_id, ledger, started)

    try:
        with ThreadPoolExecutor(max_workers=max_parallel) as pool:
            futures = [pool.submit(execute, batch) for batch in batches]
            for future in as_completed(futures):
                for record in future.result():
                    records[record.key] = record
    finally:
        progress.close()
    return records


def raise_if_failed(result: dict) -> None:
    if result["ok"]:
        return
    lines = []
    for failure in result["failures"]:
        first = failure["errors"][0]["message"] if failure["errors"] else "run failed"
        lines.append(f"{failure['variant']} on {failure['dataset']}: {failure['lines_failed']} failed "
                     f"line(s); first error: {first}")
    raise RunFailed("experiment failed:\n  " + "\n  ".join(lines),
                    hint="fix the cause, then rerun: completed runs are reused")
