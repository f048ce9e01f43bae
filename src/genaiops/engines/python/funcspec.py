"""What a Python flow is, read from its source with `ast` (nothing of the flow is imported).

A flow is a module-level function, `file.py:function` (sync or `async def`):

    OUTPUTS = ("sentiment",)          # optional: else the keys of the dict literals it returns
    def classify(text, *, temperature=0.0, model="gpt-4o-mini") -> dict[str, Any]: ...

Its positional parameters are the flow's inputs (dataset columns are mapped onto them); its
keyword-only parameters are what variants (`variants:` parameter sets) and an evaluator's `init`
set. It returns a dict of outputs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from genaiops.engines.base import FlowSpecError
from genaiops.engines.entryspec import EntrySpec

KIND = "python"
ENTRY = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class FunctionSpec(EntrySpec):
    """`parameters` are the function's keyword-only ones (variant knobs)."""

    is_async: bool
    calls_llm: bool | None  # the file uses genaiops' client helper (None: cannot tell)


def read_function(path: Path) -> FunctionSpec:
    match = ENTRY.match(str(path))
    if not match:
        raise FlowSpecError(f"{path} is not `file.py:function` (a python flow is a function)")
    file, function = Path(match.group("file")), match.group("function")
    if not file.is_file():
        raise FlowSpecError(f"{file} does not exist (a python flow is file.py:function)")
    text = file.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(file))
    except SyntaxError as exc:
        raise FlowSpecError(f"{file}:{exc.lineno}: invalid Python ({exc.msg})") from None
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == function), None)
    if node is None:
        raise FlowSpecError(f"{file} defines no function {function}() at module level")
    inputs = tuple(a.arg for a in node.args.posonlyargs + node.args.args)
    if not inputs:
        raise FlowSpecError(f"{file}:{node.lineno}: {function}() takes no inputs: its positional "
                            f"parameters are the flow's inputs, e.g. def {function}(text, *, ...)")
    return FunctionSpec(root=file.parent, file=file, function=function, inputs=inputs,
                        outputs=_outputs(tree, node, file),
                        parameters=frozenset(a.arg for a in node.args.kwonlyargs),
                        any_parameter=node.args.kwarg is not None,
                        is_async=isinstance(node, ast.AsyncFunctionDef),
                        calls_llm=True if "genaiops_pyflow" in text else None)


def _outputs(tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef,
             file: Path) -> tuple[str, ...]:
    """`OUTPUTS = (...)` at module level, else the string keys of the dicts `function` returns."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "OUTPUTS"
                                                for t in node.targets):
            try:
                value: object = ast.literal_eval(node.value)
            except ValueError:
                value = None
            items: list[object] | None = list(value) if isinstance(value, (tuple, list)) else None  # pyright: ignore[reportUnknownArgumentType]
            names = [v for v in items or [] if isinstance(v, str) and v.isidentifier()]
            if items is None or len(names) != len(items):
                raise FlowSpecError(f"{file}:{node.lineno}: declare OUTPUTS as a literal tuple of "
                                    "names, e.g. OUTPUTS = (\"answer\",)")
            return tuple(names)
    keys: dict[str, None] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
            keys.update((k.value, None) for k in node.value.keys
                        if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return tuple(keys)
