"""Checks JSON Schema cannot express: unique names, references that exist, paths inside the repo
(symbolic links included), flows that their engine reads (the use case's `engine:` for `flow`,
the evaluator's or the one that reads it for evaluation flows), datasets checked whole
(`config.datasets`), metric names that can refer to something, environment variables that name
declared connections, worker counts this machine can hold."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from genaiops.config.datasets import (
    ALIGN_HINT,
    DatasetFile,
    key_join_problems,
    misaligned_count,
    missing_column,
    read_dataset,
)
from genaiops.config.metric_names import BUILTIN, BUILTIN_METRICS, ambiguity, namespace_problem
from genaiops.config.model import (
    Connection,
    Dataset,
    EvaluationSettings,
    Evaluator,
    EvaluatorDataset,
    ExperimentConfig,
    Gate,
    Runtime,
    SimulatorSettings,
    Variant,
)
from genaiops.config.yamlsrc import SourceMap, format_path
from genaiops.engines import backends_problem, engine_names, engine_reading, open_engine
from genaiops.engines.base import FlowSpec, FlowSpecError
from genaiops.errors import Problem
from genaiops.execution.capacity import parallel_hint, parallel_problem, worker_hint, worker_problem
from genaiops.hashing import escaping_links
from genaiops.notices import notice
from genaiops.workspace.repo import resolve_inside

DATA_REF = re.compile(r"^\$\{data\.([^}]+)\}$")
RUN_OUTPUT_REF = re.compile(r"^\$\{run\.outputs\.([^}]+)\}$")
CONNECTION_REF = re.compile(r"\$\{([A-Za-z0-9_.-]+?)\.([A-Za-z0-9_]+)\}")
PY_ENTRY = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")  # app.py:build


class Checker:
    def __init__(self, repo_root: Path, sources: SourceMap, engine):
        self.repo_root = repo_root
        self.engine = engine  # reads the flows: what a flow is, is the engine's business
        self.sources = sources
        self.problems: list[Problem] = []
        self.flows: dict[str, FlowSpec] = {}  # by the path as written
        self._datasets: dict[Path, DatasetFile] = {}

    def add(self, path, message, hint=None):
        file, line = self.sources.locate(path)
        self.problems.append(Problem(file, line, format_path(path), message, hint))

    # -- paths -------------------------------------------------------------------------------
    def repo_path(self, path, value: str, what: str) -> Path | None:
        resolved = resolve_inside(self.repo_root, value)
        if resolved is None:
            self.add(path, f"{what} {value!r} is outside the repository",
                     "use a path relative to the repository root, without '..'")
            return None
        if not resolved.exists():
            self.add(path, f"{what} {value!r} does not exist",
                     f"create it or correct the path (relative to {self.repo_root})")
            return None
        return resolved

    def flow(self, path, value: str, engine: str | None = None, *,
             detect: bool = False) -> FlowSpec | None:
        """The flow `value` as `engine` reads it (default: the use case's); with `detect`, the
        first engine that reads it, the use case's engine first."""
        entry = PY_ENTRY.match(value)
        resolved = self.repo_path(path, entry.group("file") if entry else value, "flow")
        if resolved is None:
            return None
        target = resolved.with_name(f"{resolved.name}:{entry.group('function')}") if entry else resolved
        if engine and engine not in engine_names():
            self.add(path[:-1] + ("engine",), f"unknown engine {engine!r}",
                     f"use one of: {', '.join(engine_names())} (`genaiops engine list`)")
            return None
        try:
            if detect and engine is None:
                _name, spec = engine_reading(target, preferred=self.engine.name)
            else:
                spec = (open_engine(engine) if engine else self.engine).read_flow(target)
        except FlowSpecError as exc:
            reader = open_engine(engine) if engine else self.engine
            self.add(path, str(exc), reader.flow_hint)
            return None
        spec = replace(spec, boundary=self.repo_root)
        if not self.links_stay_inside(path, spec.root):
            return None
        self.flows[value] = spec
        return spec

    def links_stay_inside(self, path, folder: Path) -> bool:
        """A symbolic link out of the repository would carry a host file into runs, the registry
        and images: each one is a problem."""
        escapes = escaping_links(folder, self.repo_root, self.engine.cache_patterns)
        for link, target in escapes:
            self.add(path, f"{self._shown(link)} is a symbolic link to {target}, outside the repository",
                     "replace it with a regular file (or a link to a file inside the repository), "
                     "or remove it")
        return not escapes

    def _shown(self, link: Path) -> str:
        try:
            return link.relative_to(self.repo_root).as_posix()
        except ValueError:
            return str(link)

    def dataset(self, path, value: str) -> DatasetFile | None:
        """The dataset read whole (its problems added once), or None when it cannot be used."""
        resolved = self.repo_path(path, value, "dataset")
        if resolved is None:
            return None
        if resolved.suffix != ".jsonl":
            self.add(path, f"dataset {value!r} is not a .jsonl file", "use JSON Lines, one object a line")
            return None
        if resolved not in self._datasets:
            self._datasets[resolved] = read_dataset(resolved, value)
            self.problems += self._datasets[resolved].problems
            if self._datasets[resolved].whole_file:
                self.add(path, *self._datasets[resolved].whole_file)
        dataset = self._datasets[resolved]
        return dataset if dataset.usable else None

    # -- names and mappings -------------------------------------------------------------------
    def unique(self, items: list, base_path, what: str) -> None:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            name = item.name
            if name in seen:
                self.add(base_path + (index, "name"), f"duplicate {what} name {name!r} "
                         f"(also at {format_path(base_path + (seen[name],))})",
                         f"give each {what} a unique name")
            else:
                seen[name] = index

    def mappings(self, path, mappings: dict, dataset: DatasetFile | None, flow: FlowSpec | None,
                 run_outputs: tuple[str, ...] | None, allow_null=(), missing_ok: bool = False) -> None:
        allow_null = set(allow_null or ())
        for key, ref in (mappings or {}).items():
            where = path + (key,)
            if flow is not None and flow.inputs and key not in flow.inputs:
                self.add(where, f"flow has no input {key!r}",
                         f"map one of its inputs: {', '.join(flow.inputs)}")
            if not isinstance(ref, str):
                continue
            data = DATA_REF.match(ref)
            if data and dataset is not None:
                self.problems += missing_column(dataset, data.group(1), format_path(where),
                                                null_ok=data.group(1) in allow_null, missing_ok=missing_ok)
            run = RUN_OUTPUT_REF.match(ref)
            if run is not None and run_outputs is None:
                self.add(where, f"{ref} refers to a run, but this dataset feeds the standard flow",
                         "only evaluator mappings can use ${run.outputs.<name>}")
            elif run is not None and run_outputs and run.group(1) not in run_outputs:
                self.add(where, f"the standard flow has no output {run.group(1)!r}",
                         f"use one of its outputs: {', '.join(run_outputs)}")
            if ref.startswith("${") and not (data or run):
                self.add(where, f"unknown reference {ref!r}",
                         "use ${data.<column>} or ${run.outputs.<output>}")
        columns = {m.group(1) for ref in (mappings or {}).values()
                   if isinstance(ref, str) and (m := DATA_REF.match(ref))}
        for column in sorted(allow_null - columns):
            self.add(path[:-1] + ("allow_null",), f"allow_null names {column!r}, which no mapping "
                     "of this dataset reads", f"map it, or remove it (mapped: "
                     f"{', '.join(sorted(columns)) or 'none'})")
        for name in (flow.defaulted if flow is not None else ()):
            if name not in (mappings or {}):
                self.note(path, f"flow input {name!r} is not mapped: every row takes its default",
                          f"map it ({name}: ${{data.<column>}}) if the rows should set it")

    def note(self, path, message: str, hint: str) -> None:
        """Not an error: said once a command (`note:` on stderr), located like a problem."""
        file, line = self.sources.locate(path)
        notice(Problem(file, line, format_path(path), message, hint).render(), once=True)


    def requirements(self, check, engine: str) -> None:
        """Each requirement the flow's environment lacks, at requirements.txt:line."""
        if check is None:
            return
        shown = self._shown(check.file)
        for line, what in check.unreadable:
            self.problems.append(Problem(shown, line or None, None, what,
                                         "write one requirement a line, as pip reads them"))
        for unmet in check.unmet:
            found = "is not installed" if unmet.found is None else f"finds {unmet.found} installed"
            self.problems.append(Problem(
                shown, unmet.line, None, f"the flow needs {unmet.requirement!r}, but the {engine} "
                f"engine's environment ({check.python}) {found}: every line would fail",
                f"install the flow's requirements there: {check.install}"))

    def aligned(self, base, ds: EvaluatorDataset, rows: DatasetFile | None, reference: DatasetFile | None) -> None:
        """Evaluation rows line up with the rows they evaluate: by key column, else by count."""
        if rows is None or reference is None:
            return
        if ds.key_column:
            self.problems += key_join_problems(rows, reference, ds.key_column)
            return
        if rows is reference:
            return
        wrong = misaligned_count(rows, reference, ds.name, ds.reference)
        if wrong:
            self.add(base + ("source",), wrong, ALIGN_HINT)


def _same_path(a: str, b: str) -> bool:
    """Two repository-relative paths naming the same file (`./x/../y` = `y`)."""
    import posixpath

    return posixpath.normpath(str(a).replace("\\", "/")) == posixpath.normpath(str(b).replace("\\", "/"))


def check(config: ExperimentConfig, sources: SourceMap) -> tuple[list[Problem], dict[str, FlowSpec]]:
    """Problems of the built model (its defaults are the model's, never restated here), located in
    the files by `sources`, plus the flow specs read on the way, by the path as written."""
    if config.engine not in engine_names():
        file, line = sources.locate(("engine",))
        return [Problem(file, line, "engine", f"unknown engine {config.engine!r}",
                        f"use one of: {', '.join(engine_names())} (`genaiops engine list`)")], {}
    c = Checker(config.repo_root, sources, open_engine(config.engine))
    check_backend(c, config.runtime)
    flow = c.flow(("flow",), config.flow_rel)
    check_unique_names(c, config)
    check_variants(c, config.variants, flow)
    standard = check_datasets(c, config.datasets, flow)
    reported = check_evaluators(c, config, flow, standard)
    evaluators = {ev.name for ev in config.evaluators}
    check_gates(c, config.gates, evaluators, reported, set(standard))
    check_workers(c, config.runtime)
    check_evaluation(c, config.evaluation, evaluators, reported)
    check_requirements(c, config.runtime)
    check_environment_variables(c, config)
    check_simulator(c, config.simulator)
    check_connections(c, config.connections)
    return c.problems, c.flows


def check_backend(c: Checker, runtime: Runtime) -> None:
    """`runtime.backend` is one the use case's engine runs batches on."""
    wrong = backends_problem(c.engine.name, runtime.backend)
    if wrong:
        others = [n for n in engine_names() if runtime.backend in open_engine(n).backends]
        c.add(("runtime", "backend"), wrong, f"use runtime.backend: {' or '.join(c.engine.backends)}"
              + (f" ({runtime.backend} runs need engine: {' or '.join(others)})" if others else ""))


def check_unique_names(c: Checker, config: ExperimentConfig) -> None:
    for block, what in (("connections", "connection"), ("datasets", "dataset"),
                        ("evaluators", "evaluator"), ("variants", "variant")):
        c.unique(getattr(config, block), (block,), what)


def check_variants(c: Checker, variants: tuple[Variant, ...], flow: FlowSpec | None) -> None:
    """`variants:` only for flows that take parameter sets, with parameters the engine applies."""
    if flow is None:
        return
    if variants and not flow.parameter_sets:
        c.add(("variants",), f"`variants` (parameter sets) do not apply to a {flow.kind} flow",
              f"{flow.kind} flows take their variants from their own files; remove this block")
    elif variants and flow.node_variants:
        c.add(("variants",), f"the flow declares its variants ({', '.join(flow.node_variants)}): "
              "`variants` here would be ignored", "remove this block, or VARIANTS from the app")
    for v_index, variant in enumerate(variants):  # keys the engine would silently drop
        for key, instead in c.engine.ignored_parameters(flow, variant.init):
            c.add(("variants", v_index, "init", *key.split(".")),
                  f"`{key}` is not a parameter the {c.engine.name} engine applies to a "
                  f"{flow.kind} flow (ignored, or a failure in every run)", instead)


def check_datasets(c: Checker, datasets: tuple[Dataset, ...],
                   flow: FlowSpec | None) -> dict[str, DatasetFile | None]:
    """Each standard dataset read whole and its mappings against the flow; the rows by name."""
    standard: dict[str, DatasetFile | None] = {}
    for index, ds in enumerate(datasets):
        standard[ds.name] = c.dataset(("datasets", index, "source"), ds.source_rel)
        c.mappings(("datasets", index, "mappings"), ds.mappings, standard[ds.name], flow,
                   None, ds.allow_null)
    return standard


def check_evaluators(c: Checker, config: ExperimentConfig, flow: FlowSpec | None,
                     standard: dict[str, DatasetFile | None]) -> dict[str, set[str]]:
    """Each evaluator's flow or code and its datasets; the metric names each source is known to
    report (builtin and each evaluator flow read, for gates and the primary metric)."""
    reported = {BUILTIN: set(BUILTIN_METRICS)}
    run_outputs = flow.outputs if flow is not None else ()
    for e_index, ev in enumerate(config.evaluators):
        eval_flow = check_evaluator_source(c, config, e_index, ev)
        if eval_flow is not None:
            reported[ev.name] = set(eval_flow.outputs)
        c.unique(ev.datasets, ("evaluators", e_index, "datasets"), "evaluator dataset")
        for d_index, ds in enumerate(ev.datasets):
            base = ("evaluators", e_index, "datasets", d_index)
            if ds.reference not in standard:
                c.add(base + ("reference",), f"no dataset named {ds.reference!r}",
                      f"reference one of the standard datasets: {', '.join(sorted(standard))}")
            # without `source:` the model gives it the referenced dataset's (None: no such dataset)
            rows = c.dataset(base + ("source",), ds.source_rel) if ds.source_rel else None
            # the regressions dataset's rows promoted without a correction have no ground truth:
            # evaluators skip them and say so (evaluators.base.unlabelled)
            c.mappings(base + ("mappings",), ds.mappings, rows, eval_flow, run_outputs, ds.allow_null,
                       missing_ok=bool(ds.source_rel)
                       and _same_path(ds.source_rel, config.regressions_rel))
            c.aligned(base, ds, rows, standard.get(ds.reference))
    return reported


def check_evaluator_source(c: Checker, config: ExperimentConfig, e_index: int,
                           ev: Evaluator) -> FlowSpec | None:
    """What computes the evaluator's scores exists: its flow (returned), code or class."""
    where = ("evaluators", e_index)
    if ev.flow_rel is not None:
        eval_flow = c.flow(where + ("flow",), ev.flow_rel, ev.engine_rel, detect=True)
        if ev.init and eval_flow is not None and not eval_flow.takes_init:
            c.add(where + ("init",), f"`init` applies to evaluator flows that take init "
                  f"parameters (a class entry); {ev.flow_rel} is a {eval_flow.kind} flow",
                  "remove `init`, or make the evaluator a flow whose class takes it")
        return eval_flow
    if ev.kind == "azure_ai_evaluation":
        if ev.class_name is None:
            c.add(where, "`kind: azure_ai_evaluation` needs `class:`",
                  "name an azure.ai.evaluation class, e.g. class: F1ScoreEvaluator")
        known = [conn.name for conn in config.connections]
        if ev.connection and ev.connection not in known:
            c.add(where + ("connection",), f"no connection named {ev.connection!r}",
                  f"use one of: {', '.join(known) or 'none declared'}")
    elif ev.code is None:
        c.add(where, "an evaluator needs `flow:`, `code:` or `kind: azure_ai_evaluation` with "
              "`class:`", "see docs/evaluation.md")
    else:
        if ev.init:
            c.add(where + ("init",), "`init` applies to flex evaluator flows, not to code "
                  "evaluators", "remove `init`; a code evaluator is a function")
        c.repo_path(where + ("code",), ev.code.rsplit(":", 1)[0], "code evaluator file")
    return None


def check_gates(c: Checker, gates: tuple[Gate, ...], eval_names: set[str],
                reported: dict[str, set[str]], datasets: set[str]) -> None:
    """Unique gate names; metrics, evaluators and datasets a gate names exist and are unambiguous."""
    seen: dict[str, int] = {}
    for g_index, gate in enumerate(gates):
        if gate.label in seen:
            c.add(("gates", g_index), f"duplicate gate name {gate.label!r} (also gates[{seen[gate.label]}])",
                  "remove the copy, or give each gate its own `name:`")
        seen.setdefault(gate.label, g_index)
        wrong = namespace_problem(gate.metric, eval_names, gate.evaluator)
        unclear = ambiguity(gate.metric, reported, gate.evaluator)
        if unclear:
            c.add(("gates", g_index, "metric"), f"metric {unclear}",
                  "name the source, so the gate judges what you mean")
        if wrong:
            c.add(("gates", g_index) if gate.evaluator else ("gates", g_index, "metric"),
                  f"metric {gate.metric!r}: {wrong[0]}", wrong[1])
        if gate.evaluator and gate.evaluator not in eval_names:
            c.add(("gates", g_index, "evaluator"), f"no evaluator named {gate.evaluator!r}",
                  f"use one of: {', '.join(sorted(eval_names)) or '(no evaluators defined)'}")
        if gate.dataset and gate.dataset not in datasets:
            c.add(("gates", g_index, "dataset"), f"no dataset named {gate.dataset!r}",
                  f"use one of: {', '.join(sorted(datasets))}")


def check_workers(c: Checker, runtime: Runtime) -> None:
    """Worker counts this machine can hold."""
    workers, parallel = runtime.worker_count, runtime.max_parallel
    too_many = parallel_problem(parallel)
    if too_many:
        c.add(("runtime", "max_parallel"), too_many, parallel_hint())
    # remote compute is not this machine; lines that are coroutines of one process (the engine
    # says: `line_workers_are_processes`) are not counted against its cores and memory
    elif runtime.backend == "local" and c.engine.line_workers_are_processes:
        problem = worker_problem(workers, parallel)
        if problem:  # located at the larger factor, where the file sets it
            field = "max_parallel" if workers == "auto" or parallel > workers else "worker_count"
            c.add(("runtime", field if field in runtime.model_fields_set else "worker_count"),
                  problem, worker_hint())


def check_evaluation(c: Checker, settings: EvaluationSettings, eval_names: set[str],
                     reported: dict[str, set[str]]) -> None:
    """The primary metric names something an evaluator (or builtin) reports, unambiguously."""
    primary = settings.primary_metric
    if not primary:
        return
    wrong = namespace_problem(primary, eval_names, settings.evaluator)
    unclear = ambiguity(primary, reported, settings.evaluator)
    if wrong or unclear:
        c.add(("evaluation", "primary_metric"), f"metric {primary!r}: {wrong[0]}" if wrong
              else f"metric {unclear}", wrong[1] if wrong else "name the source")


def check_requirements(c: Checker, runtime: Runtime) -> None:
    """Each flow's requirements.txt, where the engine that runs it runs (Azure ML: its own
    environment, not checked here)."""
    if runtime.backend != "local":
        return
    checked = set()
    for spec in c.flows.values():
        if spec.root in checked:
            continue
        checked.add(spec.root)
        engine = c.engine if spec.engine == c.engine.name else open_engine(spec.engine)
        c.requirements(engine.check_requirements(spec), spec.engine)


def check_environment_variables(c: Checker, config: ExperimentConfig) -> None:
    """No variable the engines running the use case's flows set themselves; `${<conn>.<key>}`
    names a declared connection."""
    engines = {**{spec.engine: None for spec in c.flows.values()}, c.engine.name: c.engine}
    reserved = {}
    for name, engine in engines.items():
        for variable, instead in (engine or open_engine(name)).reserved_variables().items():
            reserved.setdefault(variable, (name, instead))
    connection_names = {conn.name for conn in config.connections}
    for name, value in config.environment_variables.items():
        if name in reserved:
            engine_name, instead = reserved[name]
            c.add(("environment_variables", name), f"{name} is set by the {engine_name} engine for "
                  "every run; a value here would override it", f"remove it; set {instead}"
                  if not instead.startswith("nothing") else f"remove it ({instead})")
        for ref in CONNECTION_REF.finditer(value if isinstance(value, str) else ""):
            if ref.group(1) not in connection_names:
                c.add(("environment_variables", name), f"no connection named {ref.group(1)!r} "
                      f"(in {ref.group(0)})", "reference a connection of `connections:`: "
                      f"{', '.join(sorted(connection_names)) or '(none declared)'}")


def check_simulator(c: Checker, simulator: SimulatorSettings) -> None:
    if simulator.rules_rel:
        c.repo_path(("simulator", "rules"), simulator.rules_rel, "simulator rules file")


def check_connections(c: Checker, connections: tuple[Connection, ...]) -> None:
    """Real endpoints are URLs with what they need to be called (a key, an API version)."""
    for index, conn in enumerate(connections):
        if not conn.uses_simulator and not re.match(r"^https?://", conn.api_base):
            c.add(("connections", index, "api_base"), f"api_base {conn.api_base!r} is not a URL",
                  "use https://<resource>.openai.azure.com, https://api.openai.com/v1, or 'simulator'")
        if not conn.uses_simulator and not conn.api_key and conn.auth_mode == "key":
            c.add(("connections", index, "api_key"), "api_key is empty for a real endpoint",
                  "set it in .env (e.g. LLM_API_KEY=...) and reference it as ${env:LLM_API_KEY}")
        if conn.type == "azure_open_ai" and not conn.api_version:
            c.add(("connections", index, "api_version"), "azure_open_ai needs api_version",
                  "e.g. api_version: 2024-06-01")
