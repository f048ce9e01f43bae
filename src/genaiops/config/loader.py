"""Load a use case's config: base file, environment overlay, `${env:}` values, validation, typed model."""

from __future__ import annotations

import os
import re
from pathlib import Path

from genaiops.config import model
from genaiops.config.envvars import EnvResolver, load_dotenv_values
from genaiops.config.layered import load_layered, schema_problems
from genaiops.config.schema import EXPERIMENT_SCHEMA
from genaiops.config.semantics import check
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
    data, sources, files = load_layered(
        base_file, overlay_path(repo_root, use_case, env) if env else None, repo_root,
        "start the file with `name: <use_case>`")

    problems: list[Problem] = []
    resolver = EnvResolver(load_dotenv_values(repo_root),
                           os.environ if environ is None else environ)
    data = resolver.resolve(data, sources, problems)
    problems += schema_problems(EXPERIMENT_SCHEMA, data, sources)
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
