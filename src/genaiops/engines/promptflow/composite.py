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

SUFFIX = "__v{index}"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\.")


def suffix(index: int) -> str:
    return SUFFIX.format(index=index)


def output_name(output: str, index: int) -> str:
    return f"{output}{suffix(index)}"


def _rename_refs(value, names: set[str], tag: str):
    if isinstance(value, str):
        return _REF.sub(lambda m: "${" + (m.group(1) + tag if m.group(1) in names else m.group(1)) + ".",
                        value)
    if isinstance(value, dict):
        return {k: _rename_refs(v, names, tag) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_refs(v, names, tag) for v in value]
    return value


def composite_dag(dag: dict, combos: list[dict[str, str]]) -> dict:
    """`dag` with one renamed copy of every node per combo (node -> variant id)."""
    nodes = dag.get("nodes") or []
    node_variants = dag.get("node_variants") or {}
    names = {n["name"] for n in nodes}
    out_nodes, outputs = [], {}
    for index, combo in enumerate(combos):
        tag = suffix(index)
        for node in nodes:
            if node.get("use_variants"):
                spec = node_variants[node["name"]]
                variant_id = combo.get(node["name"], spec.get("default_variant_id"))
                chosen = copy.deepcopy(spec["variants"][variant_id]["node"])
            else:
                chosen = copy.deepcopy(node)
            chosen.pop("use_variants", None)
            chosen = _rename_refs(chosen, names, tag)
            chosen["name"] = node["name"] + tag
            out_nodes.append(chosen)
        for name, output in (dag.get("outputs") or {}).items():
            outputs[name + tag] = _rename_refs(copy.deepcopy(output), names, tag)
    staged = {k: v for k, v in dag.items() if k not in {"nodes", "node_variants", "outputs"}}
    staged["outputs"] = outputs
    staged["nodes"] = out_nodes
    return staged
