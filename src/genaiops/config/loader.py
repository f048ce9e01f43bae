"""Load a use case's config: base file, environment overlay, `${env:}` values, validation, typed model."""

from __future__ import annotations

import os
import re
from pathlib import Path

from genaiops.config import model
from genaiops.config.envvars import EnvResolver, load_dotenv_values
from genaiops.config.schema import EXPERIMENT_SCHEMA
from genaiops.config.semantics import check
from genaiops.config.yamlsrc import SourceMap, format_path, load_yaml_file
from genaiops.errors import ConfigError, Problem, UsageError

BASE_FILE = "experiment.yaml"
ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


def list_use_cases(repo_root: Path) -> list[str]:
    return sorted(p.parent.name for p in (repo_root / "configs").glob(f"*/{BASE_FILE}"))


def overlay_path(repo_root: Path, use_case: str, env: str) -> Path:
    return repo_root / "configs" / use_case / f"experiment.{env}.yaml"


def load_experiment(repo_root: Path, use_case: str, env: str | None = None,
                    *, environ: dict | None = None) -> model.ExperimentConfig:
    """Raises ConfigError listing every problem found (file, line, field, fix)."""
    repo_root = Path(repo_root).resolve()
    available = list_use_cases(repo_root)
    if use_case not in available:
        raise UsageError(f"unknown use case {use_case!r}",
                         hint=f"use one of: {', '.join(available) or '(none yet: genaiops new <name>)'}")
    if env is not None and not ENV_NAME.match(env):
        raise UsageError(f"invalid environment name {env!r}", hint="use lowercase letters, digits, - or _")

    base_file = repo_root / "configs" / use_case / BASE_FILE
    data, sources = _read_mapping(base_file, repo_root)
    files = [base_file]
    if env:
        overlay_file = overlay_path(repo_root, use_case, env)
        if overlay_file.is_file():
            overlay, overlay_sources = _read_mapping(overlay_file, repo_root)
            for key, value in overlay.items():  # a named block replaces the base block whole
                data[key] = value
                sources.merge_block(overlay_sources, key)
            files.append(overlay_file)

    problems: list[Problem] = []
    resolver = EnvResolver(load_dotenv_values(repo_root),
                           os.environ if environ is None else environ)
    data = resolver.resolve(data, sources, problems)
    problems += _schema_problems(data, sources)
    if problems:
        raise ConfigError(problems)
    semantic_problems, resolved = check(data, sources, repo_root)
    if semantic_problems:
        raise ConfigError(semantic_problems)
    if data["name"] != use_case:
        file, line = sources.locate(("name",))
        raise ConfigError([Problem(file, line, "name", f"name {data['name']!r} differs from the "
                                   f"use case folder {use_case!r}", f"set name: {use_case}")])
    return _build(data, resolved, repo_root, use_case, env, files)


def _read_mapping(file: Path, repo_root: Path) -> tuple[dict, SourceMap]:
    display = file.relative_to(repo_root)
    data, sources = load_yaml_file(file, display)
    if not isinstance(data, dict):
        raise ConfigError([Problem(display, 1, None, "expected a mapping of settings at the top level",
                                   "start the file with `name: <use_case>`")])
    return data, sources


def _schema_problems(data: dict, sources: SourceMap) -> list[Problem]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(EXPERIMENT_SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        file, line = sources.locate(path)
        message, hint = _explain(error)
        field = format_path(path)
        if error.validator == "required":
            missing = error.message.split("'")[1]
            field = format_path(path + (missing,))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(k for k in error.instance if k not in allowed):
                file, line = sources.locate(path + (extra,))
                problems.append(Problem(file, line, format_path(path + (extra,)),
                                        f"unknown key {extra!r}", hint))
            continue
        problems.append(Problem(file, line, field or None, message, hint))
    return problems


def _explain(error) -> tuple[str, str | None]:
    """jsonschema's message, plus a fix a person can apply."""
    kind = error.validator
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return error.message, f"remove or rename it; allowed keys here: {allowed}"
    if kind == "enum":
        return (f"{error.instance!r} is not allowed",
                f"use one of: {', '.join(map(str, error.validator_value))}")
    if kind == "required":
        return error.message, "add it"
    if kind == "type":
        return (f"expected {error.validator_value}, got {type(error.instance).__name__}",
                None)
    if kind == "oneOf" and isinstance(error.instance, dict) and "datasets" in error.instance:
        return "an evaluator needs exactly one of `flow` or `code`", \
            "flow: flows/<use_case>/<eval_flow>  or  code: path/to/file.py:function"
    if kind == "pattern":
        return f"{error.instance!r} does not match {error.validator_value}", None
    if kind == "minItems":
        return "must not be empty", "add at least one entry"
    return error.message, None


def _build(data: dict, resolved: dict, repo_root: Path, use_case: str, env: str | None,
           files: list[Path]) -> model.ExperimentConfig:
    datasets = tuple(
        model.Dataset(name=d["name"], source=resolved["datasets"][d["name"]], source_rel=d["source"],
                      description=d.get("description", ""), mappings=dict(d.get("mappings") or {}))
        for d in data["datasets"]
    )
    by_name = {d.name: d for d in datasets}
    evaluators = []
    for ev in data.get("evaluators", []):
        eds = []
        for d in ev["datasets"]:
            source_rel = d.get("source") or by_name[d["reference"]].source_rel
            eds.append(model.EvaluatorDataset(
                name=d["name"], reference=d["reference"], source_rel=source_rel,
                source=resolved["evaluator_datasets"][(ev["name"], d["name"])],
                description=d.get("description", ""), mappings=dict(d.get("mappings") or {})))
        flow = resolved["evaluator_flows"].get(ev["name"])
        evaluators.append(model.Evaluator(
            name=ev["name"], datasets=tuple(eds), flow=flow.entry if flow else None,
            flow_rel=ev.get("flow"), code=ev.get("code"), aggregate=ev.get("aggregate"),
            description=ev.get("description", "")))
    runtime = dict(data.get("runtime") or {})
    retries = model.Retries(**runtime.pop("retries", {}))
    sim = dict(data.get("simulator") or {})
    simulator = model.SimulatorSettings(
        rules=resolved.get("simulator_rules"), rules_rel=sim.get("rules"),
        latency_ms=sim.get("latency_ms", 0), port=sim.get("port", 8765))
    connections = tuple(
        model.Connection(
            name=c["name"], type=c["type"], api_base=c["api_base"], api_key=c.get("api_key", ""),
            api_version=c.get("api_version", ""),
            extra={k: v for k, v in c.items()
                   if k not in {"name", "type", "api_base", "api_key", "api_version"}})
        for c in data.get("connections", [])
    )
    flow = resolved["flow"]
    return model.ExperimentConfig(
        use_case=use_case, env=env, repo_root=repo_root, files=tuple(files), name=data["name"],
        description=data.get("description", ""), flow=flow.entry, flow_rel=data["flow"],
        flow_kind=flow.kind, connections=connections, datasets=datasets,
        evaluators=tuple(evaluators),
        variants=tuple(model.Variant(name=v["name"], init=dict(v.get("init") or {}),
                                     description=v.get("description", ""))
                       for v in data.get("variants", [])),
        runtime=model.Runtime(retries=retries, **runtime), simulator=simulator,
        prices=dict(data.get("prices") or {}), registry=dict(data.get("registry") or {}),
        gates=tuple(model.Gate(**g) for g in data.get("gates", [])),
        evaluation=model.EvaluationSettings(**(data.get("evaluation") or {})),
    )
