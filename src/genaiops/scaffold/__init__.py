"""`genaiops new <use_case> --kind <kind>`: scaffold a use case that works at once.

It writes a standard flow, an evaluation flow with an accuracy metric, a labelled dataset,
simulator rules and configs (experiment.yaml, experiment.pr.yaml, sample-request.json) that pass
`genaiops validate` and run against the bundled LLM simulator without edits.

The kinds come from the engines (`Engine.scaffold_kinds`: dag, flex, prompty, python, ...): each
names template folders that stack over `templates/common/` (configs, dataset, simulator rules).
Templates mirror the repository layout; `__name__` in a path becomes the use case name and a
`.tmpl` suffix is dropped (so template `.py` files are not importable package modules). Every file
is rendered with jinja2 (`{{ name }}`, `{{ kind }}`, `{{ engine }}`...); prompt templates protect
their own `{{ }}` with `{% raw %}`.
"""

from __future__ import annotations

import re
from pathlib import Path

from genaiops.engines.base import ScaffoldKind
from genaiops.errors import UsageError
from genaiops.workspace.files import atomic_write_text

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,40}$")
TEMPLATES = Path(__file__).resolve().parent / "templates"
_TOP_FOLDERS = ("flows", "datasets", "configs")


def scaffold_use_case(repo_root: Path, name: str, kind: str | None = None) -> list[Path]:
    """Create the use case's files under repo_root; returns the created files (absolute, sorted).
    `kind` defaults to the first kind of the default engine.

    Raises UsageError for a bad name or kind, or when any of flows/<name>, datasets/<name>,
    configs/<name> already exists (nothing is overwritten or merged).
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UsageError(
            f"invalid use case name {name!r}",
            hint="2-41 characters: a lowercase letter, then lowercase letters, digits, - or _",
        )
    offered = kinds()
    kind = kind or next(iter(offered))
    if kind not in offered:
        raise UsageError(f"unknown flow kind {kind!r}", hint=f"use one of: {', '.join(offered)}")
    repo_root = Path(repo_root).resolve()
    if not repo_root.is_dir():
        raise UsageError(f"repository folder {repo_root} does not exist")

    existing = [repo_root / top / name for top in _TOP_FOLDERS if (repo_root / top / name).exists()]
    if existing:
        raise UsageError(
            f"use case {name!r} already exists: " + ", ".join(str(p.relative_to(repo_root)) for p in existing),
            hint="pick another name, or delete those folders first (genaiops new never overwrites)",
        )

    rendered = _render_all(name, kind, *offered[kind])  # render everything before writing anything
    created: list[Path] = []
    try:
        for relative, text in rendered:
            target = repo_root / relative
            atomic_write_text(target, text)
            created.append(target)
    except BaseException:
        for path in created:  # do not leave half a use case behind
            path.unlink(missing_ok=True)
        for top in _TOP_FOLDERS:
            _remove_empty_tree(repo_root / top / name)
        raise
    return sorted(created)


def kinds() -> dict[str, tuple[str, ScaffoldKind]]:
    """Every kind an engine offers: kind -> (engine name, what to write)."""
    from genaiops.engines import engine_names, open_engine

    found: dict[str, tuple[str, ScaffoldKind]] = {}
    for engine in engine_names():
        for kind, spec in open_engine(engine).scaffold_kinds().items():
            found.setdefault(kind, (engine, spec))
    return found


def _render_all(name: str, kind: str, engine: str, spec: ScaffoldKind) -> list[tuple[Path, str]]:
    import jinja2

    context = {
        "name": name,
        "kind": kind,
        "engine": engine,
        "flow_path": spec.flow_path.format(name=name),
        "evaluation_path": spec.evaluation_path.format(name=name),
        "output": spec.output,
        "dataset": name,
    }
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        autoescape=False,
    )
    files: dict[Path, str] = {}
    for base in (TEMPLATES / "common", *spec.layers):
        for source in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            relative = source.relative_to(base)
            target = Path(*(part.replace("__name__", name) for part in relative.parts))
            if target.name.endswith(".tmpl"):
                target = target.with_name(target.name[: -len(".tmpl")])
            template = env.from_string(source.read_text(encoding="utf-8"))
            files[target] = template.render(**context)
    return sorted(files.items())


def _remove_empty_tree(folder: Path) -> None:
    if not folder.is_dir():
        return
    for child in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            try:
                child.rmdir()
            except OSError:
                pass
    try:
        folder.rmdir()
    except OSError:
        pass
