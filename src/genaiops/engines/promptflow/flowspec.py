"""What a flow folder holds, read from its files without importing promptflow.

promptflow has no public API to list a DAG's variants, so we read `node_variants` and
`default_variant_id` from `flow.dag.yaml` ourselves. Flex flows and prompty have no node variants.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import yaml

from genaiops.engines.base import FlowSpec, FlowSpecError, json_object

ENGINE = "promptflow"
DAG_FILE = "flow.dag.yaml"
FLEX_FILE = "flow.flex.yaml"
# where a flow with `additional_includes` is laid out whole (inside promptflow's own cache folder,
# which no flow hash covers and .gitignore leaves out)
INCLUDED_DIR = ".promptflow"
INCLUDED_PREFIX = "genaiops-included-"


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


def _load(file: Path) -> dict[str, Any]:
    try:
        data: object = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FlowSpecError(f"{file}: malformed YAML ({exc.__class__.__name__})") from None
    mapping = json_object(data)
    if mapping is None:
        raise FlowSpecError(f"{file}: expected a mapping at the top level")
    return mapping


def _with_includes(root: Path, file: Path, data: dict[str, Any]) -> Path:
    """The flow laid out whole: its files plus every `additional_includes` entry copied to the top
    (as promptflow does when it runs or builds), the key dropped from the copy. Everything genaiops
    does - hash, run keys, staging, registration, image, scan - then works on this folder, so an
    included file is covered like the flow's own. Entries must stay inside the repository."""
    from genaiops.errors import UsageError
    from genaiops.hashing import copy_snapshot, hash_tree
    from genaiops.workspace.repo import find_repo_root, resolve_inside

    includes: object = data["additional_includes"]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in cast("list[object]", includes)):
        raise FlowSpecError(f"{file}: additional_includes must be a list of paths relative to the flow")
    try:
        repo = find_repo_root(root)
    except UsageError:
        repo = root
    ignores = (".promptflow/", "process_log/", "__pycache__/", "*.pyc")
    resolved: list[tuple[str, Path]] = []
    for item in cast("list[str]", includes):
        full = None if Path(item).is_absolute() else resolve_inside(repo, root / item)
        if full is None:
            raise FlowSpecError(f"{file}: additional_includes entry {item!r} is outside the repository "
                                f"({repo}): copy it into the repository and include it from there")
        if not full.exists():
            raise FlowSpecError(f"{file}: additional_includes entry {item!r} does not exist ({full})")
        resolved.append((item, full))
    cache = root / INCLUDED_DIR
    cache.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=INCLUDED_PREFIX, dir=cache))
    try:
        whole = copy_snapshot(root, work / "flow", ignores, boundary=repo)
        for item, full in resolved:
            target = whole / full.name
            if target.exists():
                raise FlowSpecError(f"{file}: additional_includes entry {item!r} has the name of a file "
                                    f"the flow already holds ({full.name})")
            if full.is_dir():
                copy_snapshot(full, target, ignores, boundary=repo)
            else:
                shutil.copyfile(full, target)
        laid_out = {k: v for k, v in data.items() if k != "additional_includes"}
        (whole / file.name).write_text(yaml.safe_dump(laid_out, sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")
        final = cache / f"{INCLUDED_PREFIX}{hash_tree(whole, ignores)[7:23]}"
        if not final.is_dir():
            try:
                os.rename(whole, final)  # atomic; a concurrent command may have laid out the same
            except OSError:
                if not final.is_dir():
                    raise
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _names(block: object) -> tuple[str, ...]:
    return tuple(json_object(block) or ())


def _defaulted(block: object) -> tuple[str, ...]:
    """Inputs declared with a default: promptflow gives every line the default unless the run
    maps the input (it does not fall back to a column of the same name for them)."""
    return tuple(name for name, spec in (json_object(block) or {}).items()
                 if (json_object(spec) or {}).get("default") is not None)


def _calls_llm(node: object) -> bool:
    """An `llm` node, or any node given a connection (a tool that reaches a model)."""
    node = json_object(node)
    if node is None:
        return False
    inputs = json_object(node.get("inputs")) or {}
    return node.get("type") == "llm" or "connection" in node or "connection" in inputs


def _dag(root: Path) -> FlowSpec:
    data = _load(root / DAG_FILE)
    if data.get("additional_includes"):
        return _dag(_with_includes(root, root / DAG_FILE, data))
    variants: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    nodes: list[Any] = list(data.get("nodes") or [])
    for node, spec in (json_object(data.get("node_variants")) or {}).items():
        by_id = json_object((json_object(spec) or {}).get("variants")) or {}
        ids = tuple(by_id)
        default = (json_object(spec) or {}).get("default_variant_id") or (ids[0] if ids else None)
        variants[node] = (default, ids)
        nodes += [(json_object(v) or {}).get("node") for v in by_id.values()]
    return FlowSpec("dag", root, root, _names(data.get("inputs")), _names(data.get("outputs")),
                    variants, calls_llm=any(_calls_llm(n) for n in nodes), engine=ENGINE,
                    parameter_sets=False,  # a DAG's variants are its node variants
                    defaulted=_defaulted(data.get("inputs")))


def _flex(root: Path) -> FlowSpec:
    data = _load(root / FLEX_FILE)
    if data.get("additional_includes"):
        return _flex(_with_includes(root, root / FLEX_FILE, data))
    if not data.get("entry"):
        raise FlowSpecError(f"{root / FLEX_FILE}: missing `entry` (module:function or module:Class)")
    return FlowSpec("flex", root, root, _names(data.get("inputs")), _names(data.get("outputs")),
                    engine=ENGINE, takes_init=True,  # a class entry takes init parameters
                    defaulted=_defaulted(data.get("inputs")))


def _prompty(file: Path, root: Path) -> FlowSpec:
    text = file.read_text(encoding="utf-8")
    parts = text.split("---", 2)
    if not text.lstrip().startswith("---") or len(parts) < 3:
        raise FlowSpecError(f"{file}: a .prompty file starts with YAML front matter between --- lines")
    try:
        front = json_object(yaml.safe_load(parts[1])) or {}
    except yaml.YAMLError:
        raise FlowSpecError(f"{file}: malformed YAML front matter") from None
    return FlowSpec("prompty", root, file, _names(front.get("inputs")), _names(front.get("outputs")),
                    calls_llm=True, engine=ENGINE, defaulted=_defaulted(front.get("inputs")))
