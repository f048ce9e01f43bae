"""Atomic file writes: a reader never sees a half-written file, a crash never truncates one (the
temp file carries its writer's owner tag, so a crash's leftover is swept on the next start)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from genaiops.workspace.sweep import owner_tag

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")


def jsonl_text(rows: Iterable[Any]) -> str:
    """JSON Lines: one compact, key-sorted object per line."""
    return "".join(json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows)


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, jsonl_text(rows))


class JsonlError(ValueError):
    """A line of a JSON Lines file is not valid JSON; `line` is its 1-based number."""

    def __init__(self, path: Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: not valid JSON ({reason})")
        self.path, self.line, self.reason = Path(path), line, reason


def iter_jsonl(path: Path):
    """(line number, parsed value) for every non-blank line; a bad line raises JsonlError."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise JsonlError(path, number, exc.msg) from None


def read_jsonl(path: Path) -> list:
    """Every non-blank line of a JSON Lines file, parsed."""
    return [value for _number, value in iter_jsonl(path)]


def count_jsonl_rows(path: Path) -> int:
    with Path(path).open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


SOCKET_SAFE_BASE_CHARS = 32  # + "/genaiops-jobs-<tag>-<random>/w<n>/tmp" + multiprocessing's socket name


def socket_safe_temp_base() -> Path:
    """The temp folder (`$TMPDIR`) when it is short enough that a worker's private TMPDIR inside it
    can hold multiprocessing's AF_UNIX socket (108 bytes with its `pymp-*/listener-*` name), else
    `/tmp`: a long `$TMPDIR` (a deep CI or test folder) would otherwise stop every worker's
    forkserver with "AF_UNIX path too long". Commands sweep both for what a killed command left."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) <= SOCKET_SAFE_BASE_CHARS or not Path("/tmp").is_dir():
        return base
    return Path("/tmp")
