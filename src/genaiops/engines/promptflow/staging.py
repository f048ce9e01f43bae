"""Private copies of flows to run or to serve.

promptflow writes logs and caches into the flow folder, and some variants can only be expressed
by editing a copy (never the repository's flow):
- a batch of DAG variants is one composite DAG (`composite`);
- a batch of flex or prompty variants is one composite flex flow (`composite_entry`) whose lines
  call every variant: a flex class built once per parameter set, or a prompty copy per variant
  with its front matter changed (promptflow 1.18 drops `init=` for `.prompty` batch runs);
- a single flex variant passes `init=` and needs only a copy, a single prompty variant is a copy
  with its front matter changed;
- a served variant is a copy whose *defaults* are that variant, because `pf flow build` ignores
  `variant=` (DAG: `default_variant_id`; flex: `init` defaults; prompty: front matter).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from genaiops.engines.base import FlowSpec, StagedBatch, VariantSpec, json_object
from genaiops.engines.promptflow.composite import composite_dag, suffix
from genaiops.engines.promptflow.composite_entry import SPEC_FILE
from genaiops.engines.promptflow.fastbatch import NODE_CONCURRENCY_ENV
from genaiops.engines.promptflow.flowspec import DAG_FILE, FLEX_FILE
from genaiops.errors import UsageError

MAX_VARIANTS_PER_BATCH = 8  # variants per composite line; bounded so one line stays light
COMPOSITE_MODULE = "__genaiops_composite__"
COMPOSITE_ENTRY = Path(__file__).resolve().parent / "composite_entry.py"
CACHE_PATTERNS = (".promptflow/", "process_log/", "__pycache__/", "*.pyc")  # written while running


def copy_flow(source: Path, dest: Path, boundary: Path | None = None) -> Path:
    """Copy exactly the files a flow's content hash covers (no caches, no state, nothing ignored),
    as regular files; a symbolic link leaving `boundary` (default: the flow folder) is refused."""
    from genaiops.hashing import copy_snapshot

    return copy_snapshot(source, dest, CACHE_PATTERNS, boundary=boundary)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        inner, current = json_object(value), json_object(merged.get(key))
        if inner is not None and current is not None:
            merged[key] = deep_merge(current, inner)
        else:
            merged[key] = value
    return merged


def apply_prompty_overrides(prompty: Path, overrides: dict[str, Any]) -> None:
    """Merge `overrides` (e.g. {"model": {"parameters": {"temperature": 0.9}}}) into the front matter."""
    if not overrides:
        return
    text = prompty.read_text(encoding="utf-8")
    _, front, body = text.split("---", 2)
    merged = deep_merge(json_object(yaml.safe_load(front)) or {}, overrides)
    prompty.write_text("---\n" + yaml.safe_dump(merged, sort_keys=False) + "---" + body, encoding="utf-8")


# what promptflow reads from a prompty's front matter (promptflow.core.Prompty: `model` becomes a
# PromptyModelConfiguration of these fields; `inputs` carry defaults; `template` the engine); a
# variant's other keys land in the front matter and change nothing
PROMPTY_KEYS = {"model": {"api", "configuration", "parameters", "response"}, "inputs": None,
                "template": None}


def ignored_prompty_keys(init: dict[str, Any]) -> list[tuple[str, str]]:
    """Keys of a prompty variant's `init` (merged into the front matter) promptflow ignores."""
    ignored: list[tuple[str, str]] = []
    for key, value in (init or {}).items():
        if key not in PROMPTY_KEYS:
            ignored.append((key, f"a prompty variant overrides the front matter: model parameters go "
                                 f"under model.parameters, e.g. init: {{model: {{parameters: "
                                 f"{{{key}: {_flow_value(value)}}}}}}}"))
            continue
        fields = PROMPTY_KEYS[key]
        mapping = json_object(value)
        if fields is not None and mapping is None:
            ignored.append((key, f"`{key}` is a mapping of {', '.join(sorted(fields))}"))
        elif fields is not None and mapping is not None:
            ignored += [(f"{key}.{sub}", f"promptflow reads {', '.join(sorted(fields))} under "
                                         f"`{key}`; a parameter goes under {key}.parameters")
                        for sub in mapping if sub not in fields]
    return ignored


def _flow_value(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def max_variants_per_batch(flow: FlowSpec) -> int:
    return MAX_VARIANTS_PER_BATCH


def stage_batch(flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
    """A copy of the flow at `dest` that computes `variants` in one batch run."""
    if len(variants) > max_variants_per_batch(flow):
        raise ValueError(f"{len(variants)} variants in one {flow.kind} batch")
    copy_flow(flow.root, dest, flow.boundary)
    if flow.kind == "dag":
        dag = yaml.safe_load((flow.root / DAG_FILE).read_text(encoding="utf-8"))
        staged = composite_dag(dag, [v.nodes for v in variants])
        (dest / DAG_FILE).write_text(yaml.safe_dump(staged, sort_keys=False), encoding="utf-8")
        # promptflow runs 2 nodes of a line at once in batch runs: let the k chains run side by side
        environment = {NODE_CONCURRENCY_ENV: str(2 * len(variants))} if len(variants) > 1 else {}
        return StagedBatch(str(dest), [suffix(i) for i in range(len(variants))], environment=environment)
    if len(variants) > 1:
        return _stage_parameter_composite(flow, variants, dest)
    variant = variants[0]
    if flow.kind == "prompty":
        apply_prompty_overrides(dest / flow.entry.name, variant.init)
        return StagedBatch(str(dest / flow.entry.name), [""])
    return StagedBatch(str(dest), [""], init=variant.init or None)


def _declared_inputs(block: object) -> list[dict[str, Any]] | None:
    """[{name, default?}] from a flex yaml's or a prompty's `inputs:`; None when not declared."""
    block = json_object(block)
    if not block:
        return None
    inputs: list[dict[str, Any]] = []
    for name, spec in block.items():
        item: dict[str, Any] = {"name": name}
        if (declared := json_object(spec)) is not None and "default" in declared:
            item["default"] = declared["default"]
        inputs.append(item)
    return inputs


def _stage_parameter_composite(flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
    """Flex or prompty variants as one flex flow whose lines call every variant (`composite_entry`)."""
    suffixes = [suffix(i) for i in range(len(variants))]
    if flow.kind == "flex":
        flex: dict[str, Any] = yaml.safe_load((flow.root / FLEX_FILE).read_text(encoding="utf-8"))
        spec: dict[str, Any] = {"kind": "flex", "entry": flex["entry"], "inits": [v.init for v in variants],
                "inputs": _declared_inputs(flex.get("inputs"))}
        staged: dict[str, Any] = {k: v for k, v in flex.items() if k not in {"entry", "init", "outputs", "sample"}}
    else:
        prompty = dest / flow.entry.name
        _, front, _ = prompty.read_text(encoding="utf-8").split("---", 2)
        files: list[str] = []
        for item, variant in zip(suffixes, variants):
            copy = dest / f"{item}.prompty"
            shutil.copyfile(prompty, copy)
            apply_prompty_overrides(copy, variant.init)
            files.append(copy.name)
        spec = {"kind": "prompty", "files": files,
                "inputs": _declared_inputs((json_object(yaml.safe_load(front)) or {}).get("inputs")) or []}
        staged = {}
    staged["entry"] = f"{COMPOSITE_MODULE}:Composite"
    shutil.copyfile(COMPOSITE_ENTRY, dest / f"{COMPOSITE_MODULE}.py")
    (dest / SPEC_FILE).write_text(json.dumps({**spec, "suffixes": suffixes}),
                                                     encoding="utf-8")
    (dest / FLEX_FILE).write_text(yaml.safe_dump(staged, sort_keys=False), encoding="utf-8")
    return StagedBatch(str(dest), suffixes)


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
    dag: dict[str, Any] = yaml.safe_load(dag_file.read_text(encoding="utf-8"))
    node_variants: dict[str, Any] = dag.get("node_variants") or {}
    for node, variant_id in variant.nodes.items():
        spec: dict[str, Any] | None = node_variants.get(node)
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
