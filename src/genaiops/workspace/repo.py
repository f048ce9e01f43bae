"""The flow repository: where its root is, and which paths stay inside it."""

from __future__ import annotations

import os
from pathlib import Path

from genaiops.errors import UsageError


def repo_from_flag(value: str | os.PathLike, source: str = "--repo") -> Path:
    root = Path(value).expanduser().resolve()
    if not (root / "configs").is_dir():
        raise UsageError(f"{source} {value} has no configs/ folder",
                         hint="point it at a flow repository (the folder holding configs/ and flows/)")
    return root


def find_repo_root(start: Path | None = None) -> Path:
    """The flow repository: `$GENAIOPS_REPO`, else the nearest ancestor holding `configs/` and `flows/`."""
    env = os.environ.get("GENAIOPS_REPO")
    if env:
        return repo_from_flag(env, "GENAIOPS_REPO")
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "configs").is_dir() and (candidate / "flows").is_dir():
            return candidate
    raise UsageError(
        f"no flow repository found at or above {here} (looked for configs/ and flows/)",
        hint="run genaiops inside the repository, or pass --repo PATH",
    )


def resolve_inside(repo_root: Path, relative: str | os.PathLike[str]) -> Path | None:
    """`relative` resolved against the repo, or None when it escapes the repo (`..`, absolute, symlink)."""
    candidate = Path(relative)
    full = (candidate if candidate.is_absolute() else repo_root / candidate).resolve()
    try:
        full.relative_to(repo_root.resolve())
    except ValueError:
        return None
    return full
