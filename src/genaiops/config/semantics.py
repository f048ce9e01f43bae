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
from genaiops.config.model import gate_label
from genaiops.config.yamlsrc import SourceMap, format_path
from genaiops.engines import (
    DEFAULT_ENGINE,
    backends_problem,
    engine_names,
    engine_reading,
    open_engine,
)
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
            name = item.get("name")
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

    def aligned(self, base, ds: dict, rows: DatasetFile | None, reference: DatasetFile | None) -> None:
        """Evaluation rows line up with the rows they evaluate: by key column, else by count."""
        if rows is None or reference is None:
            return
        if ds.get("key_column"):
            self.problems += key_join_problems(rows, reference, ds["key_column"])
            return
        if rows is reference:
            return
        wrong = misaligned_count(rows, reference, ds["name"], ds["reference"])
        if wrong:
            self.add(base + ("source",), wrong, ALIGN_HINT)


def _same_path(a: str, b: str) -> bool:
    """Two repository-relative paths naming the same file (`./x/../y` = `y`)."""
    import posixpath

    return posixpath.normpath(str(a).replace("\\", "/")) == posixpath.normpath(str(b).replace("\\", "/"))


def check(data: dict, sources: SourceMap,
          repo_root: Path) -> tuple[list[Problem], dict[str, FlowSpec]]:
    """Returns problems plus the flow specs read on the way, by the path as written."""
    engine_name = data.get("engine", DEFAULT_ENGINE)
    if engine_name not in engine_names():
        file, line = sources.locate(("engine",))
        return [Problem(file, line, "engine", f"unknown engine {engine_name!r}",
                        f"use one of: {', '.join(engine_names())} (`genaiops engine list`)")], {}
    c = Checker(repo_root, sources, open_engine(engine_name))
    backend = (data.get("runtime") or {}).get("backend", "local")
    wrong_backend = backends_problem(engine_name, backend)
    if wrong_backend:
        others = [n for n in engine_names() if backend in open_engine(n).backends]
        c.add(("runtime", "backend"), wrong_backend,
              f"use runtime.backend: {' or '.join(c.engine.backends)}"
              + (f" ({backend} runs need engine: {' or '.join(others)})" if others else ""))

    flow = c.flow(("flow",), data["flow"])
    run_outputs = flow.outputs if flow is not None else ()

    for block, what in (("connections", "connection"), ("datasets", "dataset"),
                        ("evaluators", "evaluator"), ("variants", "variant")):
        c.unique(data.get(block, []), (block,), what)

    if data.get("variants") and flow is not None and not flow.parameter_sets:
        c.add(("variants",), f"`variants` (parameter sets) do not apply to a {flow.kind} flow",
              f"{flow.kind} flows take their variants from their own files; remove this block")
    elif data.get("variants") and flow is not None and flow.node_variants:
        c.add(("variants",), f"the flow declares its variants ({', '.join(flow.node_variants)}): "
              "`variants` here would be ignored", "remove this block, or VARIANTS from the app")

    if flow is not None:  # keys of a variant the engine would silently drop
        for v_index, variant in enumerate(data.get("variants", [])):
            for key, instead in c.engine.ignored_parameters(flow, variant.get("init") or {}):
                c.add(("variants", v_index, "init", *key.split(".")),
                      f"`{key}` is not a parameter the {c.engine.name} engine applies to a "
                      f"{flow.kind} flow (ignored, or a failure in every run)", instead)

    names = set()
    standard = {}
    for index, ds in enumerate(data["datasets"]):
        names.add(ds["name"])
        standard[ds["name"]] = c.dataset(("datasets", index, "source"), ds["source"])
        c.mappings(("datasets", index, "mappings"), ds.get("mappings"), standard[ds["name"]], flow,
                   None, ds.get("allow_null"))

    regressions = (data.get("monitoring") or {}).get("regressions") or f"datasets/{data.get('name')}/regressions.jsonl"
    eval_names = set()
    reported = {BUILTIN: set(BUILTIN_METRICS)}  # metric names each source is known to report
    for e_index, ev in enumerate(data.get("evaluators", [])):
        eval_names.add(ev["name"])
        eval_flow = None
        if "flow" in ev:
            eval_flow = c.flow(("evaluators", e_index, "flow"), ev["flow"], ev.get("engine"),
                               detect=True)
            if eval_flow is not None:
                reported[ev["name"]] = set(eval_flow.outputs)
            if ev.get("init") and eval_flow is not None and not eval_flow.takes_init:
                c.add(("evaluators", e_index, "init"), f"`init` applies to evaluator flows that "
                      f"take init parameters (a class entry); {ev['flow']} is a {eval_flow.kind} flow",
                      "remove `init`, or make the evaluator a flow whose class takes it")
        elif ev.get("kind") == "azure_ai_evaluation":
            if "class" not in ev:
                c.add(("evaluators", e_index), "`kind: azure_ai_evaluation` needs `class:`",
                      "name an azure.ai.evaluation class, e.g. class: F1ScoreEvaluator")
            known = [conn.get("name") for conn in data.get("connections") or []]
            if ev.get("connection") and ev["connection"] not in known:
                c.add(("evaluators", e_index, "connection"), f"no connection named "
                      f"{ev['connection']!r}", f"use one of: {', '.join(known) or 'none declared'}")
        elif "code" not in ev:
            c.add(("evaluators", e_index), "an evaluator needs `flow:`, `code:` or "
                  "`kind: azure_ai_evaluation` with `class:`", "see docs/evaluation.md")
        else:
            if ev.get("init"):
                c.add(("evaluators", e_index, "init"), "`init` applies to flex evaluator flows, "
                      "not to code evaluators", "remove `init`; a code evaluator is a function")
            code_file = ev["code"].rsplit(":", 1)[0]
            c.repo_path(("evaluators", e_index, "code"), code_file, "code evaluator file")
        c.unique(ev["datasets"], ("evaluators", e_index, "datasets"), "evaluator dataset")
        for d_index, ds in enumerate(ev["datasets"]):
            base = ("evaluators", e_index, "datasets", d_index)
            if ds["reference"] not in names:
                c.add(base + ("reference",), f"no dataset named {ds['reference']!r}",
                      f"reference one of the standard datasets: {', '.join(sorted(names))}")
                source = ds.get("source")
            else:
                source = ds.get("source") or next(d["source"] for d in data["datasets"]
                                                  if d["name"] == ds["reference"])
            rows = c.dataset(base + ("source",), source) if source else None
            # the regressions dataset's rows promoted without a correction have no ground truth:
            # evaluators skip them and say so (evaluators.base.unlabelled)
            c.mappings(base + ("mappings",), ds.get("mappings"), rows, eval_flow, run_outputs,
                       ds.get("allow_null"), missing_ok=bool(source) and _same_path(source, regressions))
            c.aligned(base, ds, rows, standard.get(ds["reference"]))

    seen_gates: dict[str, int] = {}
    for g_index, gate in enumerate(data.get("gates", [])):
        label = gate_label(gate["metric"], gate["op"], gate["threshold"],
                           gate.get("type", "absolute"), gate.get("name", ""))
        if label in seen_gates:
            c.add(("gates", g_index), f"duplicate gate name {label!r} (also gates[{seen_gates[label]}])",
                  "remove the copy, or give each gate its own `name:`")
        seen_gates.setdefault(label, g_index)
        wrong = namespace_problem(gate["metric"], eval_names, gate.get("evaluator"))
        unclear = ambiguity(gate["metric"], reported, gate.get("evaluator"))
        if unclear:
            c.add(("gates", g_index, "metric"), f"metric {unclear}",
                  "name the source, so the gate judges what you mean")
        if wrong:
            c.add(("gates", g_index) if gate.get("evaluator") else ("gates", g_index, "metric"),
                  f"metric {gate['metric']!r}: {wrong[0]}", wrong[1])
        if gate.get("evaluator") and gate["evaluator"] not in eval_names:
            c.add(("gates", g_index, "evaluator"), f"no evaluator named {gate['evaluator']!r}",
                  f"use one of: {', '.join(sorted(eval_names)) or '(no evaluators defined)'}")
        if gate.get("dataset") and gate["dataset"] not in names:
            c.add(("gates", g_index, "dataset"), f"no dataset named {gate['dataset']!r}",
                  f"use one of: {', '.join(sorted(names))}")

    runtime = data.get("runtime") or {}
    workers, parallel = runtime.get("worker_count", "auto"), runtime.get("max_parallel", 4)
    too_many = parallel_problem(parallel)
    if too_many:
        c.add(("runtime", "max_parallel"), too_many, parallel_hint())
    # remote compute is not this machine; lines that are coroutines of one process (the engine
    # says: `line_workers_are_processes`) are not counted against its cores and memory
    elif runtime.get("backend", "local") == "local" and c.engine.line_workers_are_processes:
        problem = worker_problem(workers, parallel)
        if problem:  # located at the larger factor
            field = "max_parallel" if workers == "auto" or parallel > workers else "worker_count"
            c.add(("runtime", field if field in runtime else "worker_count"), problem, worker_hint())
    settings = data.get("evaluation") or {}
    primary = settings.get("primary_metric")
    if primary:
        wrong = namespace_problem(primary, eval_names, settings.get("evaluator"))
        unclear = ambiguity(primary, reported, settings.get("evaluator"))
        if wrong or unclear:
            c.add(("evaluation", "primary_metric"), f"metric {primary!r}: {wrong[0]}" if wrong
                  else f"metric {unclear}", wrong[1] if wrong else "name the source")

    checked = set()  # each flow's requirements.txt, where the engine that runs it runs
    for spec in c.flows.values() if backend == "local" else ():  # Azure ML: its own environment
        if spec.root in checked:
            continue
        checked.add(spec.root)
        engine = c.engine if spec.engine == c.engine.name else open_engine(spec.engine)
        c.requirements(engine.check_requirements(spec), spec.engine)

    # what the engines running the use case's flows set themselves (the flow's and evaluators')
    engines = {**{spec.engine: None for spec in c.flows.values()}, c.engine.name: c.engine}
    reserved = {}
    for name, engine in engines.items():
        for variable, instead in (engine or open_engine(name)).reserved_variables().items():
            reserved.setdefault(variable, (name, instead))
    connection_names = {conn["name"] for conn in data.get("connections", [])}
    for name, value in (data.get("environment_variables") or {}).items():
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

    rules = (data.get("simulator") or {}).get("rules")
    if rules:
        c.repo_path(("simulator", "rules"), rules, "simulator rules file")

    for index, conn in enumerate(data.get("connections", [])):
        if conn["api_base"] != "simulator" and not re.match(r"^https?://", conn["api_base"]):
            c.add(("connections", index, "api_base"), f"api_base {conn['api_base']!r} is not a URL",
                  "use https://<resource>.openai.azure.com, https://api.openai.com/v1, or 'simulator'")
        if conn["api_base"] != "simulator" and not conn.get("api_key") and \
                conn.get("auth_mode", "key") == "key":
            c.add(("connections", index, "api_key"), "api_key is empty for a real endpoint",
                  "set it in .env (e.g. LLM_API_KEY=...) and reference it as ${env:LLM_API_KEY}")
        if conn["type"] == "azure_open_ai" and not conn.get("api_version"):
            c.add(("connections", index, "api_version"), "azure_open_ai needs api_version",
                  "e.g. api_version: 2024-06-01")
    return c.problems, c.flows
