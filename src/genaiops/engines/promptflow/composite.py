"""Stage one flow that computes several variants side by side.

Running variants as separate promptflow batch runs pays promptflow's fixed start-up (worker
processes, ~5 s and several CPU-seconds) once per variant, and parallel batch runs starve two
cores. Instead we stage a copy of the DAG in which each selected variant combination is its own
chain of renamed nodes (`classify__v1`, ...): promptflow runs the independent chains of one line
concurrently, so N variants cost about one run. Outputs are renamed `<output>__v<k>`; the
evaluate phase maps `${run.outputs.x}` to `${run.outputs.x__v<k>}`.
"""

from __future__ import annotations

import copy
import re
from typing import Any, cast

from genaiops.engines.base import json_object

SUFFIX = "__v{index}"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\.")


def suffix(index: int) -> str:
    return SUFFIX.format(index=index)


def output_name(output: str, index: int) -> str:
    return f"{output}{suffix(index)}"


def _rename_refs(value: Any, names: set[str], tag: str) -> Any:
    if isinstance(value, str):
        return _REF.sub(lambda m: "${" + (m.group(1) + tag if m.group(1) in names else m.group(1)) + ".",
                        value)
    if (mapping := json_object(value)) is not None:
        return {k: _rename_refs(v, names, tag) for k, v in mapping.items()}
    if isinstance(value, list):
        return [_rename_refs(v, names, tag) for v in cast("list[Any]", value)]
    return value


def composite_dag(dag: dict[str, Any], combos: list[dict[str, str]]) -> dict[str, Any]:
    """`dag` with one renamed copy of every node per combo (node -> variant id)."""
    nodes: list[dict[str, Any]] = dag.get("nodes") or []
    node_variants: dict[str, Any] = dag.get("node_variants") or {}
    names: set[str] = {n["name"] for n in nodes}
    out_nodes: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}
    for index, combo in enumerate(combos):
        tag = suffix(index)
        for node in nodes:
            if node.get("use_variants"):
                spec: dict[str, Any] = node_variants[node["name"]]
                variant_id = combo.get(node["name"], spec.get("default_variant_id"))
                chosen: dict[str, Any] = copy.deepcopy(spec["variants"][variant_id]["node"])
            else:
                chosen = copy.deepcopy(node)
            chosen.pop("use_variants", None)
            chosen = cast("dict[str, Any]", _rename_refs(chosen, names, tag))
            chosen["name"] = node["name"] + tag
            out_nodes.append(chosen)
        dag_outputs: dict[str, Any] = dag.get("outputs") or {}
        for name, output in dag_outputs.items():
            outputs[name + tag] = _rename_refs(copy.deepcopy(output), names, tag)
    staged = {k: v for k, v in dag.items() if k not in {"nodes", "node_variants", "outputs"}}
    staged["outputs"] = outputs
    staged["nodes"] = out_nodes
    return staged
