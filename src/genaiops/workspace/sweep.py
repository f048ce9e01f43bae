"""Leftovers of interrupted writes - temp files of atomic writes, `.incoming-*` blob copies,
staging folders of runs - carry the process that made them (`owner_tag`: this machine and the
pid), so the next start can remove the ones whose process is gone without touching those of a
process still running. Anything of another machine is left alone (a shared state folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
from pathlib import Path

_TAG = re.compile(r"(?:^|[.-])g([0-9a-f]{8})-(\d+)(?=[.-]|$)")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """`g<host hash>-<pid>`: put in the name of anything a crash could leave behind."""
    return f"g{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def abandoned(name: str) -> bool:
    """True when `name` carries an owner tag of this machine whose process no longer runs."""
    match = _TAG.search(name)
    return bool(match) and match.group(1) == _host() and not _alive(int(match.group(2)))


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(folder: Path, pattern: str) -> list[Path]:
    """Remove the abandoned entries of `folder` matching `pattern` (a glob); what was removed."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).glob(pattern):
        if abandoned(path.name):
            remove(path)
            removed.append(path)
    return removed

