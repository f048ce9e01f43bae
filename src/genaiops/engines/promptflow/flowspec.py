"""What a flow folder holds, read from its files without importing promptflow.

promptflow has no public API to list a DAG's variants, so we read `node_variants` and
`default_variant_id` from `flow.dag.yaml` ourselves. Flex flows and prompty have no node variants.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from genaiops.engines.base import FlowSpec, FlowSpecError

ENGINE = "promptflow"
DAG_FILE = "flow.dag.yaml"
FLEX_FILE = "flow.flex.yaml"


def read_flow(path: Path) -> FlowSpec:
    path = Path(path)
    if path.is_file() and path.suffix == ".prompty":
        return _prompty(path, path.parent)
    if not path.is_dir():
        raise FlowSpecError(f"{path} is neither a flow folder nor a .prompty file")
    if (path / DAG_FILE).is_file():
        return _dag(path)
    if (path / FLEX_FILE).is_file():
        return _flex(path)
    prompties = sorted(path.glob("*.prompty"))
    if len(prompties) == 1:
        return _prompty(prompties[0], path)
    if len(prompties) > 1:
        raise FlowSpecError(f"{path} holds several .prompty files; point `flow` at one of them")
    raise FlowSpecError(f"{path} has no {DAG_FILE}, {FLEX_FILE} or .prompty file")


def _load(file: Path) -> dict:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FlowSpecError(f"{file}: malformed YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise FlowSpecError(f"{file}: expected a mapping at the top level")
    if data.get("additional_includes"):
        # promptflow copies these paths (absolute ones from anywhere on the host) into runs and
        # images, around genaiops' staging and its check that nothing comes from outside the repo
        raise FlowSpecError(f"{file}: additional_includes is not supported: put the files in the "
                            "flow folder (a symbolic link to a file inside the repository works)")
    return data


def _names(block) -> tuple[str, ...]:
    return tuple(block) if isinstance(block, dict) else ()


def _calls_llm(node) -> bool:
    """An `llm` node, or any node given a connection (a tool that reaches a model)."""
    if not isinstance(node, dict):
        return False
    inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
    return node.get("type") == "llm" or "connection" in node or "connection" in inputs


def _dag(root: Path) -> FlowSpec:
    data = _load(root / DAG_FILE)
    variants = {}
    nodes = list(data.get("nodes") or [])
    for node, spec in (data.get("node_variants") or {}).items():
        ids = tuple((spec or {}).get("variants") or {})
        default = (spec or {}).get("default_variant_id") or (ids[0] if ids else None)
        variants[node] = (default, ids)
        nodes += [(v or {}).get("node") for v in ((spec or {}).get("variants") or {}).values()]
    return FlowSpec("dag", root, root, _names(data.get("inputs")), _names(data.get("outputs")),
                    variants, calls_llm=any(_calls_llm(n) for n in nodes), engine=ENGINE,
                    parameter_sets=False)  # a DAG's variants are its node variants


def _flex(root: Path) -> FlowSpec:
    data = _load(root / FLEX_FILE)
    if not data.get("entry"):
        raise FlowSpecError(f"{root / FLEX_FILE}: missing `entry` (module:function or module:Class)")
    return FlowSpec("flex", root, root, _names(data.get("inputs")), _names(data.get("outputs")),
                    engine=ENGINE, takes_init=True)  # a class entry takes init parameters


def _prompty(file: Path, root: Path) -> FlowSpec:
    text = file.read_text(encoding="utf-8")
    parts = text.split("---", 2)
    if not text.lstrip().startswith("---") or len(parts) < 3:
        raise FlowSpecError(f"{file}: a .prompty file starts with YAML front matter between --- lines")
    try:
        front = yaml.safe_load(parts[1]) or {}
    except yaml.YAMLError:
        raise FlowSpecError(f"{file}: malformed YAML front matter") from None
    return FlowSpec("prompty", root, file, _names(front.get("inputs")), _names(front.get("outputs")),
                    calls_llm=True, engine=ENGINE)
