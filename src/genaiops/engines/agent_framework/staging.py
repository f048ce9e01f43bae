"""Private copies of an app to run or to serve, with the parameters of their variants written
down next to it (the Agent Framework has no variants of its own: a variant is a named parameter
set passed to `build`).

- a batch: one copy and `genaiops-batch.json` listing its members (variants) and their
  parameters; every member runs in the same worker process;
- serving: one copy and `genaiops-app.json` with the served variant's parameters, which are
  thereby part of the image's content hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genaiops.engines.agent_framework.appspec import AppSpec, read_app
from genaiops.engines.base import FlowSpec, StagedBatch, VariantSpec
from genaiops.errors import UsageError
from genaiops.hashing import copy_snapshot
from genaiops.workspace.files import atomic_write_text

CACHE_PATTERNS = ("__pycache__/", "*.pyc")
BATCH_FILE = "genaiops-batch.json"
APP_FILE = "genaiops-app.json"
MAX_VARIANTS_PER_BATCH = 16  # members of one worker process; each runs its own lines concurrently


def suffix(index: int, count: int) -> str:
    return "" if count == 1 else f"__v{index}"


def variant_params(app: AppSpec, variant: VariantSpec) -> dict[str, Any]:
    params = app.params_for(variant.nodes, variant.init)
    unknown = app.unknown_parameters(params)
    if unknown:
        raise UsageError(f"variant {variant.label!r} sets {', '.join(unknown)}, which "
                         f"{app.function}() in {app.file} does not take",
                         hint=f"parameters of {app.function}(): "
                              f"{', '.join(sorted(app.parameters)) or '(none)'}")
    return params


def _write(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def stage_batch(flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
    app = read_app(flow.entry)
    suffixes = [suffix(i, len(variants)) for i in range(len(variants))]
    members = [{"suffix": s, "label": v.label, "params": variant_params(app, v)}
               for s, v in zip(suffixes, variants)]
    copy_snapshot(flow.root, dest, CACHE_PATTERNS, boundary=flow.boundary)
    _write(dest / BATCH_FILE, {"entry": app.entry, "inputs": list(app.inputs),
                               "outputs": list(app.outputs), "members": members})
    return StagedBatch(str(dest / BATCH_FILE), suffixes)


def batch_plan(flow: str, init: dict[str, Any] | None) -> dict[str, Any]:
    """What a job's `flow` names: a staged batch, or an app entry run as it is (with `init`)."""
    path = Path(flow)
    if path.name == BATCH_FILE:
        plan = json.loads(path.read_text(encoding="utf-8"))
        return {**plan, "flow_root": str(path.parent)}
    app = read_app(path)
    return {"flow_root": str(app.root), "entry": app.entry, "inputs": list(app.inputs),
            "outputs": list(app.outputs),
            "members": [{"suffix": "", "label": "default",
                         "params": app.params_for({}, init or {})}]}


def stage_for_serving(flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
    app = read_app(flow.entry)
    params = variant_params(app, variant)
    copy_snapshot(flow.root, dest, CACHE_PATTERNS, boundary=flow.boundary)
    _write(dest / APP_FILE, {"entry": app.entry, "inputs": list(app.inputs),
                             "outputs": list(app.outputs), "variant": variant.label,
                             "params": params})
    return dest
