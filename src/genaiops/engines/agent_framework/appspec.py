"""What an Agent Framework app is, read from its source without importing it.

The orchestrator cannot import agent-framework (it lives in the engine's own environment), so an
app declares what genaiops needs as module-level literals next to its `build` function:

    INPUTS = ("text",)                 # flow inputs (dataset columns are mapped onto them)
    OUTPUTS = ("category", "summary")  # what a line returns (evaluators map ${run.outputs.x})
    VARIANTS = {                       # optional: named parameter sets per step, like node variants
        "classify": {"default": "careful",
                     "variants": {"careful": {"classify_instructions": CAREFUL, ...}, ...}},
    }
    def build(llm, *, classify_instructions=CAREFUL, ...): ...   # returns an Agent or a Workflow

Values in VARIANTS may name module-level constants (e.g. a prompt string); they are resolved here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from genaiops.engines.base import FlowSpecError, json_object
from genaiops.engines.entryspec import EntrySpec

KIND = "maf"
DEFAULT_FILE = "app.py"
DEFAULT_FUNCTION = "build"
ENTRY = re.compile(r"^(?P<file>.+\.py)(?::(?P<function>[A-Za-z_][A-Za-z0-9_]*))?$")


ParameterGroup = tuple[str, dict[str, dict[str, Any]]]  # (default id, {id: build() parameters})


@dataclass(frozen=True)
class AppSpec(EntrySpec):
    """`parameters` are build()'s keyword parameters."""

    # group -> (default, {id: params})
    variants: dict[str, ParameterGroup] = field(default_factory=dict[str, ParameterGroup])

    def params_for(self, nodes: dict[str, Any], init: dict[str, Any]) -> dict[str, Any]:
        """build()'s parameters for a variant: its groups' parameter sets, then `init`."""
        params: dict[str, Any] = {}
        for group, (default, sets) in self.variants.items():
            params.update(sets[nodes.get(group, default)])
        params.update(init or {})
        return params


def split_entry(path: Path) -> tuple[Path, str]:
    """(python file, function) for `app.py:build`, `app.py` or a folder holding app.py."""
    text = str(path)
    match = ENTRY.match(text)
    if match:
        return Path(match.group("file")), match.group("function") or DEFAULT_FUNCTION
    return Path(text) / DEFAULT_FILE, DEFAULT_FUNCTION


def read_app(path: Path) -> AppSpec:
    file, function = split_entry(Path(path))
    if not file.is_file():
        raise FlowSpecError(f"{file} does not exist (an agent_framework flow is app.py:build, "
                            "a Python file and its build function)")
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as exc:
        raise FlowSpecError(f"{file}:{exc.lineno}: invalid Python ({exc.msg})") from None
    constants = _module_constants(tree)
    build = next((node for node in tree.body if isinstance(node, ast.FunctionDef)
                  and node.name == function), None)
    if build is None:
        raise FlowSpecError(f"{file} defines no function {function}(llm, **params) at module level")
    positional = [a.arg for a in build.args.posonlyargs + build.args.args]
    if not positional:
        raise FlowSpecError(f"{file}:{build.lineno}: {function}() must take the chat clients "
                            f"first: def {function}(llm, ...)")
    parameters = frozenset(positional[1:] + [a.arg for a in build.args.kwonlyargs])
    spec = AppSpec(root=file.parent, file=file, function=function,
                   inputs=_names(constants, "INPUTS", file), outputs=_names(constants, "OUTPUTS", file),
                   variants=_variants(constants.get("VARIANTS"), file),
                   parameters=parameters, any_parameter=build.args.kwarg is not None)
    for group, (_default, sets) in spec.variants.items():
        for variant_id, params in sets.items():
            unknown = spec.unknown_parameters(params)
            if unknown:
                raise FlowSpecError(f"{file}: VARIANTS {group}.{variant_id} sets {unknown}, which "
                                    f"{function}() does not take")
    return spec


_MISSING = object()


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level `NAME = <literal>` assignments, later ones able to use earlier ones."""
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            value = _literal(node.value, constants)
            if value is not _MISSING:
                constants[node.targets[0].id] = value
    return constants


def _literal(node: ast.AST, constants: dict[str, Any]):
    """ast.literal_eval that also resolves names of earlier module constants (else _MISSING)."""
    if isinstance(node, ast.Name):
        return constants.get(node.id, _MISSING)
    if isinstance(node, (ast.Dict, ast.List, ast.Tuple, ast.Set, ast.BinOp)):
        try:
            return ast.literal_eval(_substitute(node, constants))
        except (ValueError, TypeError, SyntaxError):
            return _MISSING
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return _MISSING


def _substitute(node: ast.AST, constants: dict[str, Any]) -> ast.AST:
    class Names(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802 - ast visitor naming
            if node.id in constants:
                return ast.copy_location(ast.Constant(constants[node.id]), node)
            return node

    return Names().visit(ast.parse(ast.unparse(node), mode="eval").body)


def _names(constants: dict[str, Any], name: str, file: Path) -> tuple[str, ...]:
    value: object = constants.get(name)
    if not isinstance(value, (tuple, list)) or not value or \
            not all(isinstance(v, str) and v.isidentifier() for v in cast("Sequence[object]", value)):
        raise FlowSpecError(f"{file}: declare {name} as a literal tuple of names, e.g. "
                            f"{name} = (\"text\",)")
    return tuple(cast("Sequence[str]", value))


def _variants(value: object, file: Path) -> dict[str, ParameterGroup]:
    if value is None:
        return {}
    shape = ('VARIANTS = {"<step>": {"default": "<id>", "variants": {"<id>": {<param>: <value>}}}} '
             "with literal values (or module constants)")
    value = json_object(value)
    if value is None:
        raise FlowSpecError(f"{file}: {shape}")
    groups: dict[str, ParameterGroup] = {}
    for group, block in value.items():
        block = json_object(block) or {}
        sets = json_object(block.get("variants"))
        keys: list[object] = [group, *sets] if sets else []
        if not sets or not all(isinstance(k, str) for k in keys) or \
                not all(isinstance(v, dict) for v in sets.values()):
            raise FlowSpecError(f"{file}: VARIANTS[{group!r}] is not a parameter-set group: {shape}")
        default: Any = block.get("default", next(iter(sets)))
        if default not in sets:
            raise FlowSpecError(f"{file}: VARIANTS[{group!r}] default {default!r} is not one of "
                                f"its variants ({', '.join(sets)})")
        groups[group] = (default, {k: dict(json_object(v) or {}) for k, v in sets.items()})
    return groups
