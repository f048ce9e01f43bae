"""Which variants an experiment runs, whatever the engine.

Flows with per-node variants (promptflow DAGs): `defaults` = every node on its default;
`all` = each node's variants with the other nodes on their defaults (the reference template's
behaviour); `grid` = the full cartesian product across nodes; or an explicit list
`node.variant[+node.variant...],...` (comma = another run, plus = same run).
Other flows: named parameter sets from config `variants:` (`defaults` = the first one).
"""

from __future__ import annotations

import itertools

from genaiops.config.model import ExperimentConfig
from genaiops.engines.base import FlowSpec, VariantSpec
from genaiops.errors import UsageError

MODES = ("defaults", "all", "grid")


def _dag_label(assignment: dict) -> str:
    return "+".join(f"{node}.{variant}" for node, variant in assignment.items()) or "default"


def select_variants(config: ExperimentConfig, flow: FlowSpec, selector: str = "defaults",
                    max_runs: int = 64) -> list[VariantSpec]:
    """The variant runs `selector` names for `flow` (as the engine read it)."""
    if flow.node_variants:
        specs = _dag(flow.node_variants, selector)
    else:
        specs = _params(config, selector)
    if len(specs) > max_runs:
        raise UsageError(f"--variants {selector} selects {len(specs)} variant runs, over --max-runs {max_runs}",
                         hint=f"raise --max-runs to {len(specs)} or select fewer variants")
    return specs


def _dag(node_variants: dict, selector: str) -> list[VariantSpec]:
    defaults = {node: default for node, (default, _ids) in node_variants.items()}

    def make(changes: dict) -> VariantSpec:
        assignment = {**defaults, **changes}
        return VariantSpec(label=_dag_label(assignment), nodes=assignment)

    if selector == "defaults":
        return [make({})]
    if selector == "all":
        specs = [make({})]
        for node, (default, ids) in node_variants.items():
            specs += [make({node: vid}) for vid in ids if vid != default]
        return specs
    if selector == "grid":
        nodes = list(node_variants)
        return [make(dict(zip(nodes, combo)))
                for combo in itertools.product(*(node_variants[n][1] for n in nodes))] or [make({})]
    specs, seen = [], set()
    for run in filter(None, (part.strip() for part in selector.split(","))):
        changes = {}
        for item in run.split("+"):
            node, _, vid = item.strip().partition(".")
            if node not in node_variants:
                raise UsageError(f"unknown node {node!r} in --variants {selector!r}",
                                 hint=f"nodes with variants: {', '.join(node_variants) or '(none)'}")
            if vid not in node_variants[node][1]:
                raise UsageError(f"unknown variant {vid!r} of node {node!r}",
                                 hint=f"variants of {node}: {', '.join(node_variants[node][1])}")
            if node in changes:
                raise UsageError(f"--variants {run.strip()!r} names node {node!r} twice",
                                 hint="a run has one variant per node (join nodes with +); run "
                                      f"variants of one node separately: {node}.{changes[node]},"
                                      f"{node}.{vid}")
            changes[node] = vid
        spec = make(changes)
        if spec.label not in seen:
            seen.add(spec.label)
            specs.append(spec)
    if not specs:
        raise UsageError("--variants is empty", hint="use defaults, all, grid or node.variant,...")
    return specs


def _params(config: ExperimentConfig, selector: str) -> list[VariantSpec]:
    declared = [VariantSpec(label=v.name, init=dict(v.init)) for v in config.variants]
    if not declared:
        if selector in MODES:
            return [VariantSpec(label="default")]
        raise UsageError(f"{config.use_case} declares no `variants:`; --variants {selector!r} selects nothing",
                         hint="add named parameter sets under `variants:` in experiment.yaml")
    if selector == "defaults":
        return declared[:1]
    if selector in ("all", "grid"):
        return declared
    by_name = {v.label: v for v in declared}
    picked = []
    for name in filter(None, (part.strip() for part in selector.split(","))):
        if name not in by_name:
            raise UsageError(f"unknown variant {name!r}", hint=f"variants: {', '.join(by_name)}")
        if by_name[name] not in picked:
            picked.append(by_name[name])
    return picked
