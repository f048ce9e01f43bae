"""The architecture, checked: engine internals stay behind the engine protocol, and the package has
no import cycle (lazy imports inside functions count too: they are dependencies all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "genaiops"


MODULE_NAMES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # `from pkg import mod` imports a module; `from mod import name` only a name
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in MODULE_NAMES)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}
MODULE_NAMES = set(MODULES)
# `__main__` modules are entry points (`python -m ...`): they may call the CLI, nothing imports them
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name}
         for name, path in MODULES.items() if not name.endswith("__main__")}


def _owner(module: str) -> str:
    """The package a module belongs to, for the package-level graph: `genaiops.x`, with each
    engine adapter and the engine protocol (`engines.base`) apart from the `engines` facade."""
    parts = module.split(".")
    if parts[:2] == ["genaiops", "engines"] and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_module_graph_has_no_cycle():
    cycle = _cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_packages_do_not_depend_on_each_other_in_a_circle():
    graph: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        graph.setdefault(_owner(module), set()).update(_owner(d) for d in deps if _owner(d) != _owner(module))
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_promptflow_engine_knows_promptflow(module):
    inside = module.startswith("genaiops.engines.promptflow")
    for imported in _imports(MODULES[module]):
        if imported.split(".")[0] == "promptflow" or imported.startswith("genaiops.engines.promptflow"):
            assert inside or module == "genaiops.engines", f"{module} imports {imported}"


@pytest.mark.parametrize("layer", ["genaiops.phases", "genaiops.evaluation", "genaiops.reports",
                                   "genaiops.deploy", "genaiops.cli", "genaiops.config"])
def test_phases_gates_reports_and_approvals_speak_only_the_engine_protocol(layer):
    for module, path in MODULES.items():
        if module == layer or module.startswith(layer + "."):
            engines = {m for m in _imports(path) if m.startswith("genaiops.engines")}
            assert engines <= {"genaiops.engines", "genaiops.engines.base"}, \
                f"{module} imports {sorted(engines)}"


def test_reports_read_only_the_typed_results():
    """An evaluation's Summary or a parity Comparison, nothing else of evaluation (`safety` reads
    only a Summary's gates: the one wording of the safety verdict for reports and approvals)."""
    allowed = {"genaiops.evaluation.summary", "genaiops.evaluation.comparison", "genaiops.evaluation.safety"}
    for module, path in MODULES.items():
        if module.startswith("genaiops.reports"):
            evaluation = {m for m in _imports(path) if m.startswith("genaiops.evaluation")}
            assert evaluation <= allowed, f"{module} imports {sorted(evaluation)}"


RUNTIME = "genaiops.engines.agent_framework.runtime"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_agent_framework_runtime_imports_agent_framework(module):
    """The orchestrator cannot import agent-framework (its environment has promptflow, whose
    opentelemetry pins conflict); only the runtime, run by the engine's own interpreter, may."""
    for imported in _imports(MODULES[module]):
        if imported.split(".")[0] in ("agent_framework", "agent_framework_openai", "starlette",
                                      "uvicorn"):
            assert module.startswith(RUNTIME), f"{module} imports {imported}"
        if imported.startswith("genaiops.engines.agent_framework"):
            assert module.startswith("genaiops.engines.agent_framework") or \
                module == "genaiops.engines", f"{module} imports {imported}"


def test_the_agent_framework_runtime_needs_nothing_of_genaiops():
    """It runs in the engine's environment and in serving images, where genaiops is absent."""
    runtime = [name for name in MODULES if name.startswith(RUNTIME)]
    assert runtime
    for module in runtime:
        imported = {m.split(".")[0] for m in _imports(MODULES[module])}
        assert "genaiops" not in imported, f"{module} imports genaiops"


STANDALONE = "genaiops.execution.standalone"


def test_standalone_modules_need_nothing_but_the_standard_library():
    """`execution/standalone` modules also run in an engine's own interpreter (`genaiops_reaper` in
    the Agent Framework batch worker), where neither genaiops nor its dependencies are."""
    import sys

    standalone = [name for name in MODULES if name.startswith(STANDALONE)]
    assert f"{STANDALONE}.genaiops_reaper" in standalone
    for module in standalone:
        imported = {m.split(".")[0] for m in _imports(MODULES[module])} - {"__future__"}
        assert imported <= set(sys.stdlib_module_names), f"{module} imports {sorted(imported)}"


def test_the_agent_framework_worker_finds_its_containment_on_its_path():
    """The batch worker imports `genaiops_reaper` from the folders `runtime_env` puts on the
    engine's path (it is not in the runtime package); a missing one fails only in that worker."""
    import subprocess
    import sys

    from genaiops.engines.agent_framework.environment import runtime_env

    code = "import genaiops_af_runtime.batch; from genaiops_reaper import contain_self, kill_descendants"
    done = subprocess.run([sys.executable, "-c", code], env=runtime_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_state_paths_are_built_only_by_the_workspace():
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if module.startswith("genaiops.workspace"):
            continue
        assert "state_dir(" not in text, f"{module} builds a state path itself"
        assert '".genaiops"' not in text, f"{module} names the state folder"


ENGINE_NAMES = ("promptflow", "agent_framework", "python")
ENGINE_WORDS = ("promptflow", "agent_framework")  # identifiers naming an engine ("python" is common)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _keys(tree: ast.AST) -> set[int]:
    """String constants used as keys (`state["python"]`, `{"python": ...}`): field names."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            found.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            found.update(id(key) for key in node.keys if key is not None)
    return found


def engine_mentions(path: Path) -> list[str]:
    """Code naming an engine: a string literal that is an engine's name, or an identifier with
    one in it (docstrings, comments, help text - longer strings - and field names aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree) | _keys(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if node.value.strip().lower() in ENGINE_NAMES:
                found.append(f"line {node.lineno}: {node.value!r}")
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.keyword) and node.arg:
            names = [node.arg]
        elif isinstance(node, ast.alias):
            names = [node.asname or node.name]
        found += [f"line {node.lineno}: {name}" for name in names
                  if any(word in name.lower() for word in ENGINE_WORDS)]
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("genaiops.engines")))
def test_no_engine_is_named_outside_the_engines(module):
    """Outside `engines/`, code asks an engine through the protocol (its capabilities) instead of
    naming it: a new engine then needs an adapter and a table line, nothing else. The engines'
    table (`engines/__init__.py`) is inside; docs, comments, docstrings and help text may name
    engines."""
    assert engine_mentions(MODULES[module]) == [], f"{module} names an engine"


def test_the_engine_name_check_finds_engine_names(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstring naming promptflow is fine."""\n'
                      'if engine == "agent_framework":\n    pass\n'
                      'from x import promptflow_home\nhelp_text = "runs promptflow flows"\n')
    assert sorted(engine_mentions(sample)) == ["line 2: 'agent_framework'", "line 4: promptflow_home"]
