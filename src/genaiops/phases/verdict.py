"""verdict: init, experiment and evaluate of one use case in one process, as a pull request needs.

Run as three commands, each phase pays for its own process and engine start-up (importing
promptflow, warm workers); here they share one `PhaseContext`, so the warm workers that saved the
connections run the experiment's batches and then the evaluations, and the LLM gateway keeps
what it learnt about the quota. The config is validated when the context loads it. The phases
stop at the first that fails: failed experiment lines give no verdict worth computing.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.phases.context import PhaseContext
from genaiops.phases.evaluate import EvaluateOptions, run_evaluate
from genaiops.phases.experiment import ExperimentOptions, ExperimentResult, run_experiment
from genaiops.phases.init import InitResult, run_init


@dataclass
class VerdictOptions:
    experiment: ExperimentOptions = field(default_factory=ExperimentOptions)
    baseline: str | None = None
    report_dir: Path | None = None
    registry_backend: str | None = None


@dataclass
class VerdictResult:
    init: InitResult
    experiment: ExperimentResult
    summary: object | None = None  # evaluation.summary.Summary, None when the experiment failed

    @property
    def ok(self) -> bool:
        return self.experiment.ok and self.summary is not None and self.summary.verdict == "pass"

    def to_json(self) -> dict:
        from genaiops.evaluation.summary import summary_for_json

        return {"phase": "verdict", "ok": self.ok, "init": self.init.to_json(),
                "experiment": self.experiment.to_json(),
                "evaluate": summary_for_json(self.summary) if self.summary is not None else None}


EVALUATE_MODULES = ("genaiops.evaluation.build", "genaiops.evaluation.gates", "genaiops.reports")


def run_verdict(ctx: PhaseContext, options: VerdictOptions) -> VerdictResult:
    from genaiops.execution.capacity import parallel_runs

    runtime = ctx.config.runtime  # one import serves connections, batches and evaluations
    ctx.engine.prewarm(parallel_runs(options.experiment.max_parallel, runtime.max_parallel, runtime.max_parallel))
    # evaluate's own modules (statistics, reports) load while the engine runs the experiment
    threading.Thread(target=lambda: [importlib.import_module(m) for m in EVALUATE_MODULES],
                     name="preload-evaluate", daemon=True).start()
    init = run_init(ctx, registry_backend=options.registry_backend)
    experiment = run_experiment(ctx, options.experiment)
    if not experiment.ok:
        return VerdictResult(init, experiment)
    summary = run_evaluate(ctx, EvaluateOptions(experiment=experiment.experiment_id,
                                                baseline=options.baseline,
                                                report_dir=options.report_dir,
                                                max_parallel=options.experiment.max_parallel))
    return VerdictResult(init, experiment, summary)
