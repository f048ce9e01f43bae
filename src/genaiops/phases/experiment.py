"""experiment: run the standard flow over every selected dataset x variant, concurrently,
reusing runs whose inputs are unchanged, and leave a run ledger for evaluate and deploy.

Plan -> reuse -> budget -> stage -> run -> record:
- every (dataset, variant) gets a run key from flow hash, variant, dataset hash, column mapping,
  the output-relevant connection settings, the engine, and what the flow reads beyond its files
  (engine version, simulator rules, environment variables: `run_inputs`); a finished run with
  that key is reused, unless genaiops cannot know everything the flow reads (then it runs again
  and says why);
- the engine stages as many variants of one dataset into one batch run as it can (promptflow: a
  composite DAG of up to 8 variants; flex and prompty one variant a batch); batches run
  `max_parallel` at a time through the shared scheduling loop;
- a finished run with failed lines is run again over those lines only, and its record merges
  them into the lines it got right (`run_records`): a batch over the failed rows, engine-agnostic
  and working from the ledger alone (promptflow's resume needs the original run in the local
  store, which a CI agent that restored only the ledger does not have);
- each finished run is written to the ledger at once, so an interrupted experiment resumes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genaiops.config.model import Dataset, ExperimentConfig
from genaiops.config.run_inputs import RunInputs, reuse_hint, run_inputs
from genaiops.config.variants import select_variants
from genaiops.engines.base import BatchJob, BatchResult, VariantSpec
from genaiops.errors import RunFailed, UsageError
from genaiops.execution.scheduling import Unit, run_concurrently
from genaiops.hashing import hash_file, hash_tree
from genaiops.notices import notice
from genaiops.phases.context import PhaseContext
from genaiops.phases.run_records import build_record, member_rows, merged
from genaiops.workspace.files import atomic_write_jsonl, iter_jsonl
from genaiops.workspace.ledger import (
    STATUS_COMPLETED,
    ExperimentRecord,
    Ledger,
    RunRecord,
    RunRef,
    new_experiment_id,
    run_key,
)


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
    partial: RunRecord | None = None  # an earlier run with failed lines: only those run again
    retry_lines: list[int] = field(default_factory=list)


@dataclass
class Batch:
    job: BatchJob
    staging: Path  # the staged copy of the flow, removed once the batch is recorded
    runs: list[PlannedRun] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the dataset line of the batch's line i
    inputs: dict[int, dict] = field(default_factory=dict)  # dataset rows by line

    @property
    def rows(self) -> int:
        return len(self.lines)


@dataclass
class ExperimentRun(RunRecord):
    """One run of an experiment: its ledger record, and how this experiment got it."""

    reused: bool = False  # taken from the ledger as it was
    retried_lines: int = 0  # failed lines of an earlier run run again (its good lines kept)


@dataclass
class ExperimentTotals:
    runs: int
    reused: int
    lines_ok: int
    lines_failed: int
    total_tokens: int
    cost: float | None  # None: the config has no prices for its models
    estimated_cost: float | None  # of the runs still to run, before they ran (`--budget`)
    duration_s: float


@dataclass
class ExperimentResult:
    """What `run experiment` did: one entry per (dataset, variant) run, reused or new."""

    experiment_id: str
    use_case: str
    env: str | None
    variants: str
    runs: list[ExperimentRun]
    totals: ExperimentTotals
    simulator: dict | None = None  # the simulator's request counters, when one answered
    failures: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why runs were not reused, ...
    gateway: dict | None = None  # the LLM gateway's counters (attempts, 429s, queueing, quotas)
    # replay: the cassette and how many misses it had before this experiment (see raise_if_failed)
    replay: tuple | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        """0 ok, 1 failed lines, 2 when replay met calls its cassette has no answer for."""
        from genaiops.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

        return EXIT_OK if self.ok else EXIT_USAGE if self.replay is not None else EXIT_FAILED

    def to_json(self) -> dict:
        data = {"phase": "experiment", "ok": self.ok, "experiment_id": self.experiment_id,
                "use_case": self.use_case, "env": self.env, "variants": self.variants,
                "runs": [run.as_dict() for run in self.runs], "totals": asdict(self.totals),
                "simulator": self.simulator,
                "notes": self.notes, "gateway": self.gateway}
        if self.failures:
            data["failures"] = self.failures
        if self.replay is not None:
            from genaiops.gateway.llm_session import describe_misses

            cassette, before = self.replay
            data["replay_misses"] = describe_misses(cassette.misses[before:])
        return data

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        if self.replay is not None:  # calls replay could not answer: exit 2, naming what changed
            from genaiops.gateway.llm_session import replay_misses

            replay_misses(*self.replay, where=[_failed_lines(f) for f in self.failures])
        lines = []
        for failure in self.failures:
            first = failure["errors"][0]["message"] if failure["errors"] else "run failed"
            lines.append(f"{failure['variant']} on {failure['dataset']}: {failure['lines_failed']} "
                         f"failed line(s); first error: {first}")
        raise RunFailed("experiment failed:\n  " + "\n  ".join(lines),
                        hint="fix the cause, then rerun: good lines are kept, only the failed "
                             "lines run again")


def _failed_lines(failure: dict) -> str:
    """`run <name> (<variant> on <dataset>): line 3, line 7 (node classify)` for a failed run."""
    errors = failure["errors"]
    lines = ", ".join(f"line {e['line']}" for e in errors[:5] if e.get("line") is not None)
    shown = min(len(errors), 5)
    more = f" and {failure['lines_failed'] - shown} more" if failure["lines_failed"] > shown else ""
    nodes = sorted({e["node"] for e in errors if e.get("node")})
    node = f" (node {', '.join(nodes)})" if nodes else ""
    return (f"run {failure.get('run') or '?'} ({failure['variant']} on {failure['dataset']}): "
            f"{lines or 'its lines'}{more}{node}")


def plan_runs(ctx: PhaseContext, options: ExperimentOptions, settings: dict,
              ledger: Ledger, inputs: RunInputs) -> list[PlannedRun]:
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
    flow_hash = hash_tree(ctx.flow.root, ctx.engine.cache_patterns, boundary=ctx.flow.boundary)
    engine_version = ctx.engine.version()
    planned = []
    for dataset in datasets:
        dataset_hash = hash_file(dataset.source)
        for variant in variants:
            identity = _identity(ctx, engine_version, flow_hash, variant, dataset, dataset_hash,
                                 settings, inputs)
            key = run_key(identity)
            found = None if options.force or not inputs.reusable else ledger.find(key)
            planned.append(_plan(PlannedRun(key, dataset, dataset_hash, variant, identity), found,
                                 ledger))
    return planned


def _identity(ctx: PhaseContext, engine_version: str, flow_hash: str, variant: VariantSpec,
              dataset: Dataset, dataset_hash: str, settings: dict, inputs: RunInputs) -> dict:
    """Everything a run's outputs depend on: its run key is the hash of this."""
    return {
        "use_case": ctx.config.use_case,
        "engine": ctx.engine.name,
        "engine_version": engine_version,
        "flow_hash": flow_hash,
        "flow_kind": ctx.flow.kind,
        "flow_entry": ctx.flow.entry.name if ctx.flow.entry != ctx.flow.root else "",
        "variant": variant.identity(),
        "dataset_hash": dataset_hash,
        "column_mapping": dataset.mappings,
        **({"repeats": dataset.repeats} if dataset.repeats > 1 else {}),
        "settings": settings,
        "inputs": inputs.identity,
    }


def checkout_changes(ctx: PhaseContext, experiment: ExperimentRecord, records: list[RunRecord]) -> list[str]:
    """What this checkout would run differently from the runs `experiment` recorded ([] when
    `run experiment` now would plan exactly their run keys): the flow hash, a dataset's content or
    column mapping, the config (variants, connection settings) or what the flow reads beyond its
    files. `run evaluate` refuses to score the latest experiment when this is not empty."""
    from genaiops.errors import GenaiopsError
    from genaiops.gateway.llm_session import output_settings

    config = ctx.config
    flow_hash = hash_tree(ctx.flow.root, ctx.engine.cache_patterns, boundary=ctx.flow.boundary)
    settings = output_settings(config)
    inputs = run_inputs(config, ctx.engine.flow_reads(ctx.flow), ctx.engine.version())
    try:
        variants = {v.label: v for v in select_variants(config, ctx.flow, experiment.variants
                                                        or "defaults", max_runs=1 << 16)}
    except GenaiopsError:
        variants = {}
    datasets = {d.name: d for d in config.datasets}
    changes: list[str] = []

    def note(text: str) -> None:
        if text not in changes:
            changes.append(text)

    for record in records:
        dataset, variant = datasets.get(record.dataset), variants.get(record.variant)
        if record.flow_hash != flow_hash:
            note(f"flow hash: the experiment ran {record.flow_hash[:19]}, the checkout's "
                 f"{config.flow_rel} is {flow_hash[:19]}")
        if dataset is None:
            note(f"config: dataset {record.dataset!r} is no longer configured")
            continue
        dataset_hash = hash_file(dataset.source)
        if dataset_hash != record.dataset_hash:
            note(f"dataset {record.dataset}: {dataset.source_rel} changed")
        if dict(dataset.mappings) != dict(record.column_mapping):
            note(f"config: the column mapping of dataset {record.dataset}")
        current = _as_recorded(settings, record.settings)
        if record.settings != current:
            note("config: connection settings (endpoint, model or parameters)")
        if variant is None or variant.identity() != record.variant_spec:
            note(f"config: variant {record.variant}")
            continue
        identity = _identity(ctx, ctx.engine.version(), flow_hash, variant, dataset, dataset_hash,
                             current, inputs)
        if run_key(identity) != record.key and not changes:
            note("config: what the flow reads besides its files (engine version, simulator "
                 "rules or environment variables)")
    return changes


def _as_recorded(settings: dict, recorded: dict) -> dict:
    """`settings` as the stale check compares them with a run's: a recording run (`--llm record`)
    is keyed by when it ran, so that entry is never a change of the checkout on either side."""
    def recording(entry) -> bool:
        return isinstance(entry, dict) and entry.get("mode") == "record"

    before, now = (recorded or {}).get("@llm"), settings.get("@llm")
    if not (recording(before) or recording(now)):
        return settings
    current = {k: v for k, v in settings.items() if k != "@llm"}
    return {**current, "@llm": before} if before is not None else current


def _plan(run: PlannedRun, found: RunRecord | None, ledger: Ledger) -> PlannedRun:
    """Reuse a run with no failed line; re-run only the failed lines of one that has some."""
    if found is None:
        return run
    if not found.lines_failed:
        run.reused = found
        return run
    rows = ledger.read_outputs(run.key)
    good = {row["line"] for row in rows if row.get("ok")}
    retry = [line for line in range(found.lines_total) if line not in good]
    if retry and len(good) + len(retry) == found.lines_total:
        run.partial, run.retry_lines = found, retry
    return run


def estimate_cost(config: ExperimentConfig, pending: list[PlannedRun], ledger: Ledger) -> float | None:
    """Rows x variants x tokens per line from this use case's previous runs (None: no history)."""
    price = unit_price(config)
    history = [r for r in ledger.history(config.use_case) if r.lines_total]
    if price is None or not history:
        return None
    prompt_per_line = sum(r.prompt_tokens for r in history) / sum(r.lines_total for r in history)
    completion_per_line = sum(r.completion_tokens for r in history) / sum(r.lines_total for r in history)
    rows = {}
    for run in pending:
        if not run.partial and run.dataset.name not in rows:
            rows[run.dataset.name] = sum(1 for _ in iter_jsonl(run.dataset.source)) * \
                run.dataset.repeats
    lines = sum(len(run.retry_lines) if run.partial else rows[run.dataset.name] for run in pending)
    return lines * (prompt_per_line * price[0] + completion_per_line * price[1]) / 1000


def unit_price(config: ExperimentConfig) -> tuple[float, float] | None:
    """(prompt, completion) price per 1k tokens: `prices.default`, or the only entry."""
    prices = config.prices
    entry = prices.get("default") or (next(iter(prices.values())) if len(prices) == 1 else None)
    return (entry["prompt"], entry["completion"]) if entry else None


def make_batches(ctx: PhaseContext, pending: list[PlannedRun], options: ExperimentOptions,
                 experiment_id: str) -> list[Batch]:
    """Group pending runs by dataset - runs of every line apart from runs of failed lines only,
    which share a batch over the union of their lines - into as few engine batches as the engine
    allows, and stage each."""
    per_batch = ctx.engine.max_variants_per_batch(ctx.flow)
    groups: list[list[PlannedRun]] = []
    for dataset_name in dict.fromkeys(r.dataset.name for r in pending):
        for partial in (False, True):
            runs = [r for r in pending if r.dataset.name == dataset_name and bool(r.partial) == partial]
            groups += [runs[i:i + per_batch] for i in range(0, len(runs), per_batch)]
    rows: dict[str, dict[int, dict]] = {}
    batches = []
    for number, runs in enumerate(groups):
        dataset = runs[0].dataset
        if dataset.name not in rows:  # promptflow numbers the non-blank lines from 0
            n = dataset.repeats  # repeat r of row i is line i * n + r
            rows[dataset.name] = {i * n + r: row for i, (_n, row) in enumerate(iter_jsonl(dataset.source))
                                  for r in range(n)}
        batches.append(_stage_batch(ctx, options, f"{experiment_id}-{number:02d}", runs,
                                    rows[dataset.name]))
    return batches


def _stage_batch(ctx: PhaseContext, options: ExperimentOptions, name: str, runs: list[PlannedRun],
                 rows: dict[int, dict]) -> Batch:
    from genaiops.execution.capacity import worker_count
    from genaiops.gateway.llm_session import engine_retries

    config, engine = ctx.config, ctx.engine
    folder = ctx.workspace.staging(name)
    folder.mkdir(parents=True, exist_ok=True)
    staged = engine.stage(ctx.flow, [r.variant for r in runs], folder / "flow")
    data, lines = runs[0].dataset.source, sorted(rows)
    if runs[0].partial:
        lines = sorted({line for run in runs for line in run.retry_lines})
        data = folder / "retry.jsonl"  # the failed rows only; line i of the batch is lines[i]
        atomic_write_jsonl(data, [rows[line] for line in lines])
    elif runs[0].dataset.repeats > 1:
        data = folder / "repeated.jsonl"  # each row `repeats` times in a row
        atomic_write_jsonl(data, [rows[line] for line in lines])
    workers = worker_count(options.worker_count or config.runtime.worker_count, len(lines),
                           calls_llm=ctx.flow.calls_llm, connections=config.connections)
    job = BatchJob(name=name, flow=staged.entry, data=str(data),
                   column_mapping=dict(runs[0].dataset.mappings),
                   member_suffixes=staged.member_suffixes, init=staged.init,
                   worker_count=workers, line_timeout_sec=config.runtime.line_timeout_sec,
                   batch_timeout_sec=config.runtime.batch_timeout_sec,
                   environment={**staged.environment, **engine.run_environment(engine_retries(config))},
                   environment_variables=dict(config.environment_variables),
                   passed_variables=tuple(sorted(ctx.flow_reads.variables)))
    return Batch(job, folder, runs, lines, {line: rows[line] for line in lines})


def record_batch(ctx: PhaseContext, batch: Batch, result: BatchResult, experiment_id: str,
                 ledger: Ledger, started: float) -> list[RunRecord]:
    config = ctx.config
    records = []
    price = unit_price(config)
    for index, run in enumerate(batch.runs):
        rows = member_rows(result, index, batch.lines, batch.inputs)
        # a crashed process (killed, out of memory) fails the run even where failed lines are tolerated
        member_ok = index < len(result.members) and result.status == "completed" and not result.crashed
        base = {"key": run.key, "use_case": config.use_case, "env": config.env,
                "experiment_id": experiment_id, "flow": config.flow_rel, "flow_kind": ctx.flow.kind,
                "flow_hash": run.identity["flow_hash"], "variant": run.variant.label,
                "variant_spec": run.variant.identity(), "dataset": run.dataset.name,
                "dataset_source": run.dataset.source_rel, "dataset_hash": run.dataset_hash,
                "column_mapping": dict(run.dataset.mappings), "settings": run.identity["settings"],
                "repeats": run.dataset.repeats, "engine_run": result.name,
                "engine_output": result.members[index].suffix if member_ok else None,
                "served": served_now(ctx, run.partial)}
        if run.partial is None:
            record = build_record(base=base, rows=rows, lines_total=batch.rows, completed=member_ok,
                                  duration_s=result.duration_s, price=price, started_at=started)
        else:  # lines from two engine runs: evaluations read them from the ledger, not a run link
            earlier = run.partial
            base.update(engine_run="", engine_output=None,
                        merged_runs=[*(earlier.merged_runs or [earlier.engine_run]), result.name])
            rows = merged(ledger.read_outputs(run.key), rows, set(run.retry_lines))
            record = build_record(base=base, rows=rows, lines_total=earlier.lines_total,
                                  completed=not result.crashed,
                                  duration_s=earlier.duration_s + result.duration_s,
                                  price=price, started_at=earlier.started_at)
        ledger.save(record, rows)
        records.append(record)
    return records


def served_now(ctx: PhaseContext, earlier: RunRecord | None = None) -> dict:
    """What answered each connection's calls in this command (the LLM gateway's account), with
    what answered the earlier lines a retry merges into; {} without the gateway."""
    served = {conn: {dep: dict(info) for dep, info in deps.items()}
              for conn, deps in ((earlier.served if earlier else None) or {}).items()}
    if ctx.gateway is None:
        return served
    for connection in ctx.config.connections:
        for deployment, info in ctx.gateway.served_by(connection.name).items():
            entry = served.setdefault(connection.name, {}).setdefault(deployment, {})
            for name, values in info.items():
                entry[name] = sorted(set(entry.get(name, [])) | set(values))
    return served


def check_served(ctx: PhaseContext, planned: list[PlannedRun]) -> list[str]:
    """A run is reused only while its endpoints still serve the model that answered it: one
    small request per connection and deployment (`llm_session.probe_models`). A run whose model
    changed, or whose endpoint cannot be asked, runs again whole; the notes say why."""
    from genaiops.gateway.llm_session import probe_models

    def served(run: PlannedRun) -> dict:
        record = run.reused or run.partial
        return (record.served or {}) if record else {}

    if ctx.cassette is not None:  # replay answers from the cassette (its hash is in the run key,
        return []                 # its entries name the model), record reuses nothing: no probe
    wanted = {(conn, dep) for run in planned for conn, deps in served(run).items() for dep in deps}
    if not wanted:
        return []
    now = probe_models(ctx.config, wanted, simulator=ctx.simulator)
    notes = []
    for run in planned:
        changed = [f"connection {conn!r} deployment {dep!r} answered as "
                   f"{', '.join(info.get('models') or ['?'])}, "
                   + (f"now as {now[(conn, dep)]}" if now.get((conn, dep)) else "and cannot be asked now")
                   for conn, deps in sorted(served(run).items()) for dep, info in sorted(deps.items())
                   if (conn, dep) in now and now[(conn, dep)] not in (info.get("models") or [])]
        if changed:
            key = (run.reused or run.partial).key
            run.reused = run.partial = None
            run.retry_lines = []
            notes.append(f"run {key[:8]} ({run.variant.label} on {run.dataset.name}) is run again, "
                         f"not reused: the model behind its endpoint changed: {'; '.join(changed)}")
            notice(notes[-1])
    return notes


def _tolerance_exceeded(record: RunRecord, tolerance: float) -> bool:
    if record.status != STATUS_COMPLETED:
        return True
    allowed = tolerance * record.lines_total if 0 < tolerance < 1 else tolerance
    return record.lines_failed > allowed


def run_experiment(ctx: PhaseContext, options: ExperimentOptions) -> ExperimentResult:
    from genaiops.gateway.llm_session import output_settings

    config = ctx.config
    _check_capacity(config, options, ctx.engine.line_workers_are_processes)
    ledger = ctx.workspace.ledger()
    experiment_id = new_experiment_id(config.use_case)
    started = time.time()
    inputs = run_inputs(config, ctx.flow_reads, ctx.engine.version())
    notes = []
    if not inputs.reusable and not options.force:
        notes.append(f"runs of {config.use_case} are run again, not reused: "
                     + "; ".join(inputs.not_reusable) + f" (fix: {reuse_hint(config)})")
        notice(notes[-1])
    planned = plan_runs(ctx, options, output_settings(config), ledger, inputs)
    estimate = _within_budget(config, planned, ledger, options)  # before even a probe is sent
    served_notes = check_served(ctx, planned)
    if served_notes:  # runs that were to be reused run again: the estimate grew
        notes += served_notes
        estimate = _within_budget(config, planned, ledger, options)
    pending = [run for run in planned if run.reused is None]
    records = {run.key: run.reused for run in planned if run.reused is not None}
    simulator_stats = gateway_stats = None
    misses_before = len(ctx.cassette.misses) if ctx.cassette is not None else 0
    if pending:  # nothing to run: no simulator, no connections, no engine import
        batches = make_batches(ctx, pending, options, experiment_id)
        from genaiops.execution.capacity import parallel_runs

        max_parallel = parallel_runs(options.max_parallel, config.runtime.max_parallel, len(batches))
        ctx.engine.prewarm(max_parallel)  # workers import while we prepare
        try:
            with ctx.llm(fail_on_miss=False) as session:
                records.update(_run_batches(ctx, batches, max_parallel, experiment_id, ledger))
                simulator_stats = session.simulator.stats.snapshot() if session.simulator else None
                gateway_stats = session.gateway.snapshot() if session.gateway else None
        finally:  # the context's owner closes the engine: its warm workers serve the next phase
            for batch in batches:  # staged copies are disposable once recorded
                shutil.rmtree(batch.staging, ignore_errors=True)
    elif ctx.simulator is not None:
        simulator_stats = ctx.simulator.stats.snapshot()

    runs = [ExperimentRun(**records[run.key].as_dict(), reused=run.reused is not None,
                          retried_lines=len(run.retry_lines)) for run in planned]
    tolerance = config.runtime.failed_line_tolerance
    failing = [r for r in runs if _tolerance_exceeded(r, tolerance)]
    ledger.save_experiment(ExperimentRecord(
        id=experiment_id, use_case=config.use_case, env=config.env, flow=config.flow_rel,
        flow_kind=ctx.flow.kind, variants=options.variants, started_at=started,
        finished_at=time.time(), runs=[RunRef(r.key, r.variant, r.dataset, r.reused) for r in runs],
        ok=not failing))
    totals = ExperimentTotals(
        runs=len(runs), reused=sum(r.reused for r in runs),
        lines_ok=sum(r.lines_ok for r in runs), lines_failed=sum(r.lines_failed for r in runs),
        total_tokens=sum(r.total_tokens for r in runs),
        cost=round(sum(r.cost or 0 for r in runs), 6) if unit_price(config) else None,
        estimated_cost=estimate, duration_s=round(time.time() - started, 3))
    failures = [{"variant": r.variant, "dataset": r.dataset, "lines_failed": r.lines_failed,
                 "errors": r.errors, "run": r.engine_run or r.key[:8]} for r in failing]
    cassette = ctx.cassette
    replay = (cassette, misses_before) if pending and cassette is not None and \
        len(cassette.misses) > misses_before else None
    return ExperimentResult(experiment_id, config.use_case, config.env, options.variants, runs,
                            totals, simulator_stats, failures, notes, gateway_stats, replay)


def _within_budget(config: ExperimentConfig, planned: list[PlannedRun], ledger: Ledger,
                   options: ExperimentOptions) -> float | None:
    """The estimated cost of the runs still to run; UsageError when it exceeds --budget."""
    pending = [run for run in planned if run.reused is None]
    estimate = estimate_cost(config, pending, ledger) if pending else 0.0
    if options.budget is not None and estimate is not None and estimate > options.budget:
        raise UsageError(f"estimated cost {estimate:.4f} exceeds --budget {options.budget}",
                         hint="raise --budget, select fewer variants/datasets, or use the PR overlay")
    return estimate


def _check_capacity(config: ExperimentConfig, options: ExperimentOptions,
                    processes: bool = True) -> None:
    """--workers / --max-parallel are held to what this machine can run, as the config is (when
    the engine's line workers are processes: `processes`)."""
    from genaiops.execution.capacity import (
        parallel_hint,
        parallel_problem,
        worker_hint,
        worker_problem,
    )

    too_many = parallel_problem(options.max_parallel or 0)
    if too_many:
        raise UsageError(f"--max-parallel: {too_many}", hint=parallel_hint())
    if config.runtime.backend != "local" or not processes or \
            not (options.worker_count or options.max_parallel):
        return
    problem = worker_problem(options.worker_count or config.runtime.worker_count,
                             options.max_parallel or config.runtime.max_parallel)
    if problem:
        raise UsageError(f"--workers/--max-parallel: {problem}", hint=worker_hint())


def _run_batches(ctx: PhaseContext, batches: list[Batch], max_parallel: int, experiment_id: str,
                 ledger: Ledger) -> dict:
    retries = ctx.config.runtime.retries
    attempts = max(1, retries.max_attempts)

    def execute(batch: Batch, report) -> list[RunRecord]:
        started = time.time()
        result = None
        for attempt in range(attempts):  # whole-run errors are retried; a dead process never
            result = ctx.engine.run_batch(batch.job, lambda done: report(done * len(batch.runs)))
            if result.members or result.crashed or attempt == attempts - 1:
                break
            time.sleep(retries.backoff_sec * 2 ** attempt)
            batch.job.name = f"{batch.job.name}-r{attempt + 1}"
        return record_batch(ctx, batch, result, experiment_id, ledger, started)

    units = [Unit(batch, f"{batch.runs[0].dataset.name}x{len(batch.runs)}", batch.rows * len(batch.runs))
             for batch in batches]
    done = run_concurrently(units, execute, max_parallel=max_parallel,
                            title=f"experiment {experiment_id}", show_progress=ctx.show_progress)
    return {record.key: record for records in done for record in records}
