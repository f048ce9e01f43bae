"""Copies that carry regular files only, for what becomes an image or a registered asset.

`shutil.copytree` follows symbolic links and copies whatever they point to, so one link in a build
output could put a host file (a secret, promptflow's keyring key) into an image. These helpers copy
regular files and folders and refuse anything else, naming it.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from genaiops.errors import UsageError


def special_entries(folder: Path) -> list[tuple[Path, str]]:
    """Every entry under `folder` (not following links) that is neither a regular file nor a folder."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(current) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                found.append((path, f"a symbolic link to {os.readlink(path)}"))
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append((path, "not a regular file"))
    return found


def require_regular_tree(folder: Path, what: str) -> None:
    """UsageError naming the first entry of `folder` that is not a regular file or folder."""
    bad = special_entries(Path(folder))
    if bad:
        path, kind = bad[0]
        raise UsageError(f"{path} is {kind}: {what} may hold regular files only"
                         + (f" ({len(bad) - 1} more)" if len(bad) > 1 else ""),
                         hint="remove it; genaiops copies no links into images or registries")


def copy_regular_tree(source: Path, dest: Path) -> Path:
    """Copy `source` to `dest` (merged into it if present) after checking it holds regular files only."""
    require_regular_tree(source, f"the copy of {source}")
    shutil.copytree(source, dest, dirs_exist_ok=True, symlinks=True)
    return dest
