"""Which variant goes to production, and the flow folder that bakes it in.

`--variant best` follows the evaluate phase's pointer `<state>/evaluations/best-<use_case>.json`
({variant, variant_spec: {nodes, init}, flow_hash, summary_digest}); without one we fall back to
the flow's defaults and say so. promptflow's build ignores `variant=`, so the chosen variant is
made the *default* of a staged copy (DAG: `default_variant_id`; flex: `init` defaults).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from genaiops.engines.promptflow.flowspec import DAG_FILE, FLEX_FILE
from genaiops.engines.promptflow.staging import copy_flow
from genaiops.errors import ConfigError, Problem, UsageError


@dataclass(frozen=True)
class ChosenVariant:
    label: str
    nodes: dict = field(default_factory=dict)  # DAG: node -> variant id
    init: dict = field(default_factory=dict)  # flex: init parameter values
    source: str = "default"  # best | explicit | default
    note: str = ""
    summary_digest: str = ""
    summary_md: Path | None = None
    evaluated_flow_hash: str = ""

    def as_dict(self) -> dict:
        return {"label": self.label, "nodes": self.nodes, "init": self.init, "source": self.source,
                "note": self.note, "summary_digest": self.summary_digest,
                "evaluated_flow_hash": self.evaluated_flow_hash}


def best_pointer_path(state: Path, use_case: str) -> Path:
    return Path(state) / "evaluations" / f"best-{use_case}.json"


def summary_md_for(state: Path, use_case: str) -> Path | None:
    """The evaluation's summary.md: in the pointer's `report_dir`, else next to the pointer."""
    pointer = best_pointer_path(state, use_case)
    candidates = [pointer.parent / "summary.md"]
    try:
        report_dir = json.loads(pointer.read_text(encoding="utf-8")).get("report_dir")
        if report_dir:
            candidates.insert(0, Path(report_dir) / "summary.md")
    except (OSError, ValueError, AttributeError):
        pass
    return next((c for c in candidates if c.is_file()), None)


def choose_variant(config, state: Path, requested: str = "best") -> ChosenVariant:
    """`config` is the use case's ExperimentConfig; `requested` is best | default | a label."""
    from genaiops.variants import select_variants

    if requested == "best":
        pointer = best_pointer_path(state, config.use_case)
        if not pointer.is_file():
            default = select_variants(config, "defaults")[0]
            return ChosenVariant(default.label, dict(default.nodes), dict(default.init), "default",
                                 note=f"no evaluation pointer at {pointer.name} (run `genaiops run "
                                      f"evaluate -u {config.use_case}` first): deploying the flow's "
                                      f"default variant {default.label!r}")
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
            spec = data.get("variant_spec") or {}
            label = str(data["variant"])
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise ConfigError([Problem(pointer, None, "variant", f"unreadable best-variant pointer ({exc})",
                                       "re-run `genaiops run evaluate` or pass --variant NAME")]) from None
        summary = summary_md_for(state, config.use_case)
        return ChosenVariant(label, dict(spec.get("nodes") or {}), dict(spec.get("init") or {}), "best",
                             summary_digest=str(data.get("summary_digest") or ""),
                             summary_md=summary,
                             evaluated_flow_hash=str(data.get("flow_hash") or ""))
    selector = "defaults" if requested == "default" else requested
    if "," in selector:
        raise UsageError(f"--variant {requested!r} names several variants", hint="deploy exactly one")
    spec = select_variants(config, selector)[0]
    return ChosenVariant(spec.label, dict(spec.nodes), dict(spec.init),
                         "default" if requested == "default" else "explicit")


def stage_variant(flow_dir: Path, kind: str, chosen: ChosenVariant, dest: Path) -> Path:
    """A copy of the flow whose defaults are the chosen variant (what `pf flow build` will package)."""
    copy_flow(flow_dir, dest)
    if kind == "dag" and chosen.nodes:
        dag_file = dest / DAG_FILE
        dag = yaml.safe_load(dag_file.read_text(encoding="utf-8"))
        node_variants = dag.get("node_variants") or {}
        for node, variant_id in chosen.nodes.items():
            spec = node_variants.get(node)
            if not spec or variant_id not in (spec.get("variants") or {}):
                raise UsageError(f"variant {node}.{variant_id} does not exist in {flow_dir / DAG_FILE}",
                                 hint="the evaluated variant is gone: re-run evaluate or pass --variant")
            spec["default_variant_id"] = variant_id
        dag_file.write_text(yaml.safe_dump(dag, sort_keys=False), encoding="utf-8")
    elif kind == "flex" and chosen.init:
        flex_file = dest / FLEX_FILE
        flex = yaml.safe_load(flex_file.read_text(encoding="utf-8"))
        init = flex.setdefault("init", {})
        for name, value in chosen.init.items():
            if name not in init:
                raise UsageError(f"init parameter {name!r} of variant {chosen.label!r} is not declared "
                                 f"in {flow_dir / FLEX_FILE}", hint="declare it under `init:`")
            init[name] = {**(init[name] or {}), "default": value}
        flex_file.write_text(yaml.safe_dump(flex, sort_keys=False), encoding="utf-8")
    return dest
