"""Private copies of a Python flow to run or to serve, with its variants' parameters written next
to it (a variant is a set of keyword-only arguments of the function).

- a batch: the copy and `genaiops-batch.json` (the entry, its members and their parameters);
- serving: the copy and `genaiops-flow.json` (the entry and the served variant's parameters,
  which are thereby part of the image's content hash).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genaiops.engines.base import FlowSpec, StagedBatch, VariantSpec
from genaiops.engines.python.funcspec import FunctionSpec, read_function
from genaiops.errors import UsageError
from genaiops.hashing import copy_snapshot
from genaiops.workspace.files import atomic_write_text

CACHE_PATTERNS = ("__pycache__/", "*.pyc")
BATCH_FILE = "genaiops-batch.json"
SERVE_FILE = "genaiops-flow.json"
MAX_VARIANTS_PER_BATCH = 16  # members share the batch's line workers (the module imported once)


def params_of(function: FunctionSpec, variant: VariantSpec) -> dict[str, Any]:
    unknown = function.unknown_parameters(variant.init)
    if unknown or variant.nodes:
        raise UsageError(f"variant {variant.label!r} sets {', '.join(unknown or variant.nodes)}, "
                         f"which {function.function}() in {function.file} does not take",
                         hint=f"keyword-only parameters of {function.function}(): "
                              f"{', '.join(sorted(function.parameters)) or '(none)'}")
    return dict(variant.init)


def _plan(function: FunctionSpec, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {"entry": function.entry, "inputs": list(function.inputs),
            "outputs": list(function.outputs), "members": members}


def _write(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def stage_batch(flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
    function = read_function(flow.entry)
    members = [{"suffix": "" if len(variants) == 1 else f"__v{i}", "label": v.label,
                "params": params_of(function, v)} for i, v in enumerate(variants)]
    copy_snapshot(flow.root, dest, CACHE_PATTERNS, boundary=flow.boundary)
    _write(dest / BATCH_FILE, _plan(function, members))
    return StagedBatch(str(dest / BATCH_FILE), [str(m["suffix"]) for m in members])


def batch_plan(flow: str, init: dict[str, Any] | None) -> dict[str, Any]:
    """What a job's `flow` names: a staged batch, or a function run as it is (with `init`)."""
    path = Path(flow)
    if path.name == BATCH_FILE:
        return {**json.loads(path.read_text(encoding="utf-8")), "flow_root": str(path.parent)}
    function = read_function(path)
    member = {"suffix": "", "label": "default",
              "params": params_of(function, VariantSpec("default", init=dict(init or {})))}
    return {**_plan(function, [member]), "flow_root": str(function.root)}


def stage_for_serving(flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
    function = read_function(flow.entry)
    params = params_of(function, variant)
    copy_snapshot(flow.root, dest, CACHE_PATTERNS, boundary=flow.boundary)
    _write(dest / SERVE_FILE, {**_plan(function, []), "variant": variant.label, "params": params})
    return dest
