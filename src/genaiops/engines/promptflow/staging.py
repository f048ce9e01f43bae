"""Private copies of flows to run or to serve.

promptflow writes logs and caches into the flow folder, and some variants can only be expressed
by editing a copy (never the repository's flow):
- a batch of DAG variants is one composite DAG (`composite`); a prompty variant is a copy with
  its front matter changed (promptflow 1.18 drops `init=` for `.prompty` batch runs); a flex
  variant passes `init=` and needs only a copy;
- a served variant is a copy whose *defaults* are that variant, because `pf flow build` ignores
  `variant=` (DAG: `default_variant_id`; flex: `init` defaults; prompty: front matter).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from genaiops.engines.base import FlowSpec, StagedBatch, VariantSpec
from genaiops.engines.promptflow.composite import composite_dag, suffix
from genaiops.engines.promptflow.flowspec import DAG_FILE, FLEX_FILE
from genaiops.errors import UsageError

MAX_DAG_VARIANTS_PER_BATCH = 8  # chains per composite line; bounded so one line stays light
CACHE_PATTERNS = (".promptflow/", "process_log/", "__pycache__/", "*.pyc")  # written while running


def copy_flow(source: Path, dest: Path, boundary: Path | None = None) -> Path:
    """Copy exactly the files a flow's content hash covers (no caches, no state, nothing ignored),
    as regular files; a symbolic link leaving `boundary` (default: the flow folder) is refused."""
    from genaiops.hashing import copy_snapshot

    return copy_snapshot(source, dest, CACHE_PATTERNS, boundary=boundary)


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_prompty_overrides(prompty: Path, overrides: dict) -> None:
    """Merge `overrides` (e.g. {"model": {"parameters": {"temperature": 0.9}}}) into the front matter."""
    if not overrides:
        return
    text = prompty.read_text(encoding="utf-8")
    _, front, body = text.split("---", 2)
    merged = deep_merge(yaml.safe_load(front) or {}, overrides)
    prompty.write_text("---\n" + yaml.safe_dump(merged, sort_keys=False) + "---" + body, encoding="utf-8")


def max_variants_per_batch(flow: FlowSpec) -> int:
    return MAX_DAG_VARIANTS_PER_BATCH if flow.kind == "dag" else 1


def stage_batch(flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
    """A copy of the flow at `dest` that computes `variants` in one batch run."""
    if len(variants) > max_variants_per_batch(flow):
        raise ValueError(f"{len(variants)} variants in one {flow.kind} batch")
    if flow.kind == "dag":
        copy_flow(flow.root, dest, flow.boundary)
        dag = yaml.safe_load((flow.root / DAG_FILE).read_text(encoding="utf-8"))
        staged = composite_dag(dag, [v.nodes for v in variants])
        (dest / DAG_FILE).write_text(yaml.safe_dump(staged, sort_keys=False), encoding="utf-8")
        return StagedBatch(str(dest), [suffix(i) for i in range(len(variants))])
    variant = variants[0]
    copy_flow(flow.root, dest, flow.boundary)
    if flow.kind == "prompty":
        apply_prompty_overrides(dest / flow.entry.name, variant.init)
        # standalone prompty resolves its connection per line; forked workers trip filelock's
        # fork check there, spawned ones do not
        return StagedBatch(str(dest / flow.entry.name), [""], environment={"PF_BATCH_METHOD": "spawn"})
    return StagedBatch(str(dest), [""], init=variant.init or None)


def stage_for_serving(flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
    """A copy of the flow whose defaults are `variant`: what `pf flow build` will package."""
    copy_flow(flow.root, dest, flow.boundary)
    if flow.kind == "dag" and variant.nodes:
        _bake_dag_defaults(flow, variant, dest / DAG_FILE)
    elif flow.kind == "flex" and variant.init:
        _bake_flex_defaults(flow, variant, dest / FLEX_FILE)
    elif flow.kind == "prompty":
        apply_prompty_overrides(dest / flow.entry.name, variant.init)
    return dest


def _bake_dag_defaults(flow: FlowSpec, variant: VariantSpec, dag_file: Path) -> None:
    dag = yaml.safe_load(dag_file.read_text(encoding="utf-8"))
    node_variants = dag.get("node_variants") or {}
    for node, variant_id in variant.nodes.items():
        spec = node_variants.get(node)
        if not spec or variant_id not in (spec.get("variants") or {}):
            raise UsageError(f"variant {node}.{variant_id} does not exist in {flow.root / DAG_FILE}",
                             hint="the evaluated variant is gone: re-run evaluate or pass --variant")
        spec["default_variant_id"] = variant_id
    dag_file.write_text(yaml.safe_dump(dag, sort_keys=False), encoding="utf-8")


def _bake_flex_defaults(flow: FlowSpec, variant: VariantSpec, flex_file: Path) -> None:
    flex = yaml.safe_load(flex_file.read_text(encoding="utf-8"))
    init = flex.setdefault("init", {})
    for name, value in variant.init.items():
        if name not in init:
            raise UsageError(f"init parameter {name!r} of variant {variant.label!r} is not declared "
                             f"in {flow.root / FLEX_FILE}", hint="declare it under `init:`")
        init[name] = {**(init[name] or {}), "default": value}
    flex_file.write_text(yaml.safe_dump(flex, sort_keys=False), encoding="utf-8")
