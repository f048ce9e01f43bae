"""promptflow's run folders (`~/.promptflow/.runs/<run>`): private to genaiops, and scrubbed.

promptflow writes what an endpoint answered into a run's `logs.txt`, `error.json`, flow logs and
line artifacts. An endpoint that echoes the API key in an error body (OpenAI's 401 does) thereby
puts the key on disk in plain text. So:

- `~/.promptflow` and its `.runs` are mode 0700, and worker processes run with umask 077 (every
  folder 0700, every file 0600), so other users of the machine read nothing;
- after each run, every known secret value (`genaiops.secrets`: connection keys, `.env` secrets,
  the audit key) is replaced by `***` in every file of the run folder and of the flow's
  `.promptflow` cache. The connection store keeps its keys encrypted (see docs/deploy.md).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from genaiops.errors import GenaiopsError
from genaiops.secrets import MASK

PRIVATE_UMASK = 0o077
_MIN_LEN = 4


def make_private(folder: Path) -> None:
    """Create `folder` (and missing parents up to it) mode 0700, or tighten it to 0700."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise GenaiopsError(f"cannot make {folder} private to this user: {exc.strerror or exc}",
                            hint="promptflow keeps connection keys and run logs there: give this user "
                                 "its own HOME (or fix the folder's owner)") from None


def lock_down(folder: Path) -> None:
    """Owner-only modes for everything under `folder` (promptflow copies the flow's modes into a
    run's snapshot, whatever the umask)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for current, dirs, files in os.walk(folder, followlinks=False):
        for path in [Path(current), *(Path(current) / name for name in dirs + files)]:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if stat.S_IMODE(mode) & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & 0o700)


def _needles(values: Iterable[str]) -> list[bytes]:
    """Each value as written raw and as written inside a JSON string."""
    found: set[bytes] = set()
    for value in values:
        if len(value) >= _MIN_LEN:
            found.add(value.encode("utf-8"))
            found.add(json.dumps(value)[1:-1].encode("utf-8"))
            found.add(json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8"))
    return sorted(found, key=len, reverse=True)


def scrub(folder: Path, values: Iterable[str]) -> list[Path]:
    """Replace every secret value in the regular files under `folder` (links are not followed);
    returns the files that held one."""
    needles = _needles(values)
    folder = Path(folder)
    if not needles or not folder.is_dir():
        return []
    changed: list[Path] = []
    for current, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            path = Path(current) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            data = path.read_bytes()
            clean = data
            for needle in needles:
                clean = clean.replace(needle, MASK.encode())
            if clean != data:
                _rewrite(path, clean)
                changed.append(path)
    return changed


def _rewrite(path: Path, data: bytes) -> None:
    """Overwrite in place: the old bytes are not left behind in a renamed-away inode."""
    mode = stat.S_IMODE(path.stat().st_mode) & 0o600 or 0o600
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)
