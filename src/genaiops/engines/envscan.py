"""Which environment variables code and config text read, found without running them.

A run is reused only when everything that can change its outputs is in its key; environment
variables a flow reads are part of that. Python files are read with `ast`: `os.environ[...]`,
`os.environ.get(...)`, `os.getenv(...)` (also through `from os import environ, getenv`) with a
literal name are found by name; the same with a computed name, or the environment taken whole
(`dict(os.environ)`, `os.environ.copy()`, iterating it) or loading a `.env` file, cannot be known
and is reported as such. Importing the OpenAI SDK counts as reading the variables it reads by
itself. Text formats (YAML, prompty front matter) name variables as `${env:NAME}`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)")
# what `openai.OpenAI()` / `AzureOpenAI()` read when a flow passes no argument
OPENAI_SDK_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
                        "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN",
                        "OPENAI_API_VERSION")
_GETTERS = {"get", "setdefault", "pop", "__getitem__"}
_WRITERS = {"update", "clear", "__setitem__", "__delitem__"}  # set values: the flow's own, hashed
_DOTENV = {"load_dotenv", "dotenv_values", "find_dotenv"}  # read a .env file genaiops does not hash


@dataclass
class EnvReads:
    """Variables read by name (name -> first place, "file:line") and reads that cannot be known."""

    variables: dict[str, str] = field(default_factory=dict[str, str])
    unknown: list[str] = field(default_factory=list[str])

    def add(self, name: str, where: str) -> None:
        self.variables.setdefault(name, where)

    def merge(self, other: EnvReads) -> None:
        for name, where in other.variables.items():
            self.add(name, where)
        self.unknown += other.unknown


def text_reads(text: str, shown: str) -> EnvReads:
    """`${env:NAME}` references in a text file."""
    reads = EnvReads()
    for match in ENV_REF.finditer(text):
        reads.add(match.group(1), f"{shown}:{text.count(chr(10), 0, match.start()) + 1}")
    return reads


class _Visitor(ast.NodeVisitor):
    def __init__(self, shown: str, reads: EnvReads):
        self.shown, self.reads = shown, reads
        self.environ_names = {"os.environ"}  # spellings of os.environ in this file
        self.getenv_names = {"os.getenv"}
        self.handled: set[int] = set()  # nodes already read as part of a bigger expression

    def where(self, node: ast.stmt | ast.expr) -> str:
        return f"{self.shown}:{node.lineno}"

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "os" and alias.asname:
                self.environ_names.add(f"{alias.asname}.environ")
                self.getenv_names.add(f"{alias.asname}.getenv")
            if alias.name.split(".")[0] == "openai":
                self._sdk(node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "os":
            for alias in node.names:
                if alias.name == "environ":
                    self.environ_names.add(alias.asname or "environ")
                elif alias.name == "getenv":
                    self.getenv_names.add(alias.asname or "getenv")
        if (node.module or "").split(".")[0] == "openai":
            self._sdk(node)
        self.generic_visit(node)

    def _sdk(self, node: ast.stmt) -> None:
        for name in OPENAI_SDK_VARIABLES:
            self.reads.add(name, f"{self.where(node)} (the OpenAI SDK reads it)")

    def _name(self, name: str | None, node: ast.expr) -> None:
        if name is None:
            self.reads.unknown.append(f"{self.where(node)}: reads an environment variable whose "
                                      "name is computed")
        else:
            self.reads.add(name, self.where(node))

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        if func and func.rsplit(".", 1)[-1] in _DOTENV:
            self.reads.unknown.append(f"{self.where(node)}: loads a .env file ({func}), whose "
                                      "variables genaiops cannot see")
        if func in self.getenv_names:
            self._name(_literal(node.args[0]) if node.args else None, node)
            self.handled.add(id(node.func))
        elif isinstance(node.func, ast.Attribute) and _dotted(node.func.value) in self.environ_names:
            self.handled.add(id(node.func.value))
            if node.func.attr in _GETTERS:
                self._name(_literal(node.args[0]) if node.args else None, node)
            elif node.func.attr not in _WRITERS:  # copy(), items(), keys(), ...: all of it
                self._whole(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _dotted(node.value) in self.environ_names:
            self.handled.add(id(node.value))
            self._name(_literal(node.slice), node)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:  # "NAME" in os.environ
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)) and _dotted(right) in self.environ_names:
                self.handled.add(id(right))
                self._name(_literal(node.left), node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if id(node) not in self.handled and _dotted(node) in self.environ_names:
            self._whole(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if id(node) not in self.handled and node.id in self.environ_names:
            self._whole(node)

    def _whole(self, node: ast.expr) -> None:
        self.reads.unknown.append(f"{self.where(node)}: uses the whole environment "
                                  f"({ast.unparse(node)[:60]})")


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def python_reads(source: str, shown: str) -> EnvReads:
    """Environment reads of one Python file; a file that does not parse cannot be known."""
    reads = EnvReads()
    try:
        tree = ast.parse(source, filename=shown)
    except (SyntaxError, ValueError) as exc:
        reads.unknown.append(f"{shown}: cannot be read as Python ({exc.__class__.__name__})")
        return reads
    _Visitor(shown, reads).visit(tree)
    return reads


def tree_reads(root: Path, cache_patterns: tuple[str, ...], text_suffixes: tuple[str, ...],
                on_text: Callable[[str, str, str], None] | None = None,
                boundary: Path | None = None) -> EnvReads:
    """The reads of every Python and text file of a flow folder (the files its hash covers).
    `on_text(text, suffix, shown)` sees each text file too (an engine's own references).
    `boundary`: where the folder's links may point (the flow's, i.e. the repository), as for its hash."""
    from genaiops.hashing import snapshot

    reads = EnvReads()
    for entry in snapshot(root, cache_patterns, boundary=boundary).files:
        shown, suffix = f"{root.name}/{entry.rel}", entry.path.suffix
        if suffix not in (".py", *text_suffixes):
            continue
        try:
            text = entry.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            reads.unknown.append(f"{shown}: cannot be read as text")
            continue
        if suffix == ".py":
            reads.merge(python_reads(text, shown))
            continue
        reads.merge(text_reads(text, shown))
        if on_text is not None:
            on_text(text, suffix, shown)
    return reads
