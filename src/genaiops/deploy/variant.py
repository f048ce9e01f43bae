"""Which variant goes to production.

`--variant best` follows the evaluate phase's pointer (`Workspace.best_pointer`: {variant,
variant_spec: {nodes, init}, flow_hash, summary_digest}, sealed with its hash); without one we
fall back to the flow's defaults and say so - unless the pointer was damaged (quarantined): then
deploying the default would be a guess, so we refuse until evaluate writes a new one. The engine
then stages a copy of the flow whose defaults are that variant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.engines.base import VariantSpec
from genaiops.errors import UsageError
from genaiops.workspace.integrity import Damaged, StateDamaged, quarantine, read_sealed

REEVALUATE = "re-run `genaiops run evaluate` to write a new one, or pass --variant NAME"


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

    def spec(self) -> VariantSpec:
        return VariantSpec(self.label, dict(self.nodes), dict(self.init))

    def as_dict(self) -> dict:
        return {"label": self.label, "nodes": self.nodes, "init": self.init, "source": self.source,
                "note": self.note, "summary_digest": self.summary_digest,
                "evaluated_flow_hash": self.evaluated_flow_hash}


def summary_md_for(workspace, use_case: str) -> Path | None:
    """The evaluation's summary.md: in the pointer's `report_dir`, else next to the pointer."""
    pointer = workspace.best_pointer(use_case)
    candidates = [pointer.parent / "summary.md"]
    try:
        report_dir = json.loads(pointer.read_text(encoding="utf-8")).get("report_dir")
        if report_dir:
            candidates.insert(0, Path(report_dir) / "summary.md")
    except (OSError, ValueError, AttributeError):
        pass
    return next((c for c in candidates if c.is_file()), None)


def choose_variant(ctx, requested: str = "best") -> ChosenVariant:
    """`requested` is best | default | a variant label (see `genaiops.config.variants`)."""
    from genaiops.config.variants import select_variants

    config, workspace = ctx.config, ctx.workspace
    if requested == "best":
        pointer = workspace.best_pointer(config.use_case)
        try:
            data = read_sealed(pointer)
        except Damaged as damage:
            quarantine(workspace, damage, recovery="deploy refuses to guess a variant")
            raise StateDamaged("the best-variant pointer is damaged and was quarantined",
                               hint=REEVALUATE) from None
        if data is None and any(workspace.quarantine_dir.rglob(pointer.name)):
            raise StateDamaged(f"the best-variant pointer {pointer.name} was quarantined as damaged "
                               "and no evaluation has written a new one", hint=REEVALUATE)
        if data is None:
            default = select_variants(config, ctx.flow, "defaults")[0]
            return ChosenVariant(default.label, dict(default.nodes), dict(default.init), "default",
                                 note=f"no evaluation pointer at {pointer.name} (run `genaiops run "
                                      f"evaluate -u {config.use_case}` first): deploying the flow's "
                                      f"default variant {default.label!r}")
        spec = data.get("variant_spec") or {}
        label = str(data.get("variant") or "")
        if not label or not isinstance(spec, dict):
            raise StateDamaged(f"the best-variant pointer {pointer.name} names no variant",
                               hint=REEVALUATE)
        return ChosenVariant(label, dict(spec.get("nodes") or {}), dict(spec.get("init") or {}), "best",
                             summary_digest=str(data.get("summary_digest") or ""),
                             summary_md=summary_md_for(workspace, config.use_case),
                             evaluated_flow_hash=str(data.get("flow_hash") or ""))
    selector = "defaults" if requested == "default" else requested
    if "," in selector:
        raise UsageError(f"--variant {requested!r} names several variants", hint="deploy exactly one")
    spec = select_variants(config, ctx.flow, selector)[0]
    return ChosenVariant(spec.label, dict(spec.nodes), dict(spec.init),
                         "default" if requested == "default" else "explicit")
