"""Content hashes: the identity of a flow or dataset, so unchanged inputs mean no new registration,
no re-run and no new image.

- A file (dataset, standalone `.prompty`) hashes as SHA-256 over its bytes: `sha256:<hex>` equals
  `sha256sum FILE`, so anyone can check it.
- A folder (flow) hashes as SHA-256 over a manifest of its files, sorted by POSIX relative path
  (NFC-normalised UTF-8, so macOS and Linux agree), each framed as
  `len(path) as 8-byte big-endian || path || sha256(bytes)`. The framing makes "a"+"bc" differ
  from "ab"+"c"; a rename changes the hash; mtimes, permissions, walk order and empty folders
  do not count.
- Symbolic links are read as the files they point to only while they stay inside a boundary (the
  repository, or the hashed folder itself): a link out of it raises UsageError naming the link, so
  no host file (a secret, promptflow's keyring key) can slip into a registry or an image.
- Caches and build outputs are skipped (`DEFAULT_IGNORES`, plus the cache patterns the flow's
  engine declares), plus the patterns of a `.genaiopsignore` at the top of the folder, matched
  exactly as git matches `.gitignore` (pathspec's `GitIgnoreSpec`).

Everything streams in 1 MiB chunks: memory stays constant whatever the size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pathspec

from genaiops.errors import UsageError

PREFIX = "sha256:"
CHUNK_SIZE = 1 << 20
IGNORE_FILE = ".genaiopsignore"
_TREE_DOMAIN = b"genaiops-tree-v1\0"

# Caches and build outputs of any flow: never part of its identity. Engines add their own
# (`Engine.cache_patterns`). A `!pattern` in .genaiopsignore can re-include one of them (last
# matching rule wins, as in .gitignore).
DEFAULT_IGNORES = (
    "__pycache__/",
    ".genaiops/",
    ".git/",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    "*.egg-info/",
    "/build/",
    "/dist/",
    "*.pyc",
    "*.pyo",
    ".DS_Store",
    "Thumbs.db",
)


@dataclass(frozen=True)
class FileEntry:
    """One hashed file: where it is, its POSIX path inside the tree, and its own digest."""

    rel: str
    path: Path
    size: int
    sha256: bytes


@dataclass(frozen=True)
class Snapshot:
    """What a hash was computed over, so a registry stores exactly the bytes it hashed."""

    root: Path
    is_dir: bool
    content_hash: str
    files: tuple[FileEntry, ...]


class IgnoreRules:
    """gitignore rules (git's own semantics, via pathspec): `name` matches at any depth, `dir/`
    folders only, a pattern holding a `/` is anchored to the flow folder and its `*` stops at `/`,
    `**` crosses folders, `!pat` re-includes, `#` comments. An ignored folder is not entered, so
    nothing below it can be re-included (as in git)."""

    def __init__(self, patterns: Iterable[str] = ()):
        self.spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))

    @classmethod
    def for_folder(cls, folder: Path, extra: Iterable[str] = ()) -> IgnoreRules:
        patterns = [*DEFAULT_IGNORES, *extra]
        ignore_file = folder / IGNORE_FILE
        if ignore_file.is_file():
            try:
                patterns += ignore_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(
                    f"cannot read {ignore_file}: {exc}",
                    hint=f"make {IGNORE_FILE} a readable UTF-8 text file of glob patterns",
                ) from exc
        return cls(patterns)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        return self.spec.match_file(rel + "/" if is_dir else rel)


def hash_stream(
    stream: BinaryIO, sink: Callable[[memoryview], object] | None = None
) -> tuple[bytes, int]:
    """SHA-256 digest and length of a binary stream, read in 1 MiB chunks into one reused buffer.

    `sink`, when given, receives every chunk too: a copy that is verified in the same pass.
    """
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    total = 0
    while True:
        n = stream.readinto(buffer)
        if not n:
            break
        chunk = view[:n]
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
        total += n
    return digest.digest(), total


def _file_digest(path: Path) -> tuple[bytes, int]:
    try:
        with open(path, "rb", buffering=0) as handle:
            return hash_stream(handle)
    except OSError as exc:
        raise UsageError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="check the file exists and is readable",
        ) from exc


def hash_file(path: Path) -> str:
    """`sha256:<hex>` of a file's bytes (a dataset): the same value as `sha256sum`."""
    return PREFIX + _file_digest(Path(path))[0].hex()


def _inside(path: Path, boundary: Path) -> bool:
    return path == boundary or boundary in path.parents


def _link_escape(link: Path, target: Path, boundary: Path) -> UsageError:
    return UsageError(
        f"{link} is a symbolic link to {target}, which is outside {boundary}: genaiops never reads "
        "or copies files from outside the repository",
        hint=f"replace the link with a regular file, point it inside the repository, or remove it "
             f"(or list it in {IGNORE_FILE})",
    )


def _walk(root: Path, rules: IgnoreRules, boundary: Path,
          on_escape: Callable[[Path, Path], None]) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) of every kept file. Symlinks are followed while they
    resolve inside `boundary` (never looping); `on_escape(link, target)` hears of any other."""
    found: list[tuple[str, Path]] = []
    seen_dirs: set[tuple[int, int]] = set()

    def visit(folder: Path, prefix: str) -> None:
        stat = folder.stat()
        key = (stat.st_dev, stat.st_ino)
        if key in seen_dirs:  # a symlink cycle
            return
        seen_dirs.add(key)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise UsageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            rel = unicodedata.normalize("NFC", prefix + entry.name)
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if not (is_dir or is_file):
                if entry.is_symlink():
                    raise UsageError(
                        f"broken symlink {Path(entry.path)}",
                        hint=f"remove it or list it in {IGNORE_FILE}",
                    )
                continue  # sockets, fifos: not content
            if rules.ignored(rel, is_dir):
                continue
            if entry.is_symlink():
                target = Path(entry.path).resolve()
                if not _inside(target, boundary):
                    on_escape(Path(entry.path), target)
                    continue
            if is_dir:
                visit(Path(entry.path), rel + "/")
            else:
                found.append((rel, Path(entry.path)))

    visit(root, "")
    found.sort(key=lambda item: item[0].encode("utf-8"))
    return found


def _boundary(path: Path, boundary: Path | None) -> Path:
    """The resolved boundary; `path` itself (after resolving links) must lie inside it."""
    root = path.resolve()
    limit = root if boundary is None else Path(boundary).resolve()
    if not _inside(root, limit):
        raise _link_escape(path, root, limit)
    return limit


def escaping_links(folder: Path, boundary: Path, ignores: Iterable[str] = ()) -> list[tuple[Path, Path]]:
    """Every (link, target) under `folder` that points outside `boundary` (for validation: all of
    them at once, without reading any file)."""
    root = Path(folder).resolve()
    limit = Path(boundary).resolve()
    if not _inside(root, limit):
        return [(Path(folder), root)]
    escapes: list[tuple[Path, Path]] = []
    _walk(root, IgnoreRules.for_folder(root, ignores), limit,
          lambda link, target: escapes.append((link, target)))
    return escapes


def tree_hash(entries: Iterable[tuple[str, bytes]]) -> str:
    """The folder hash over (relative posix path, file digest) pairs, already sorted."""
    digest = hashlib.sha256(_TREE_DOMAIN)
    for rel, file_digest in entries:
        encoded = rel.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
        digest.update(file_digest)
    return PREFIX + digest.hexdigest()


def snapshot(path: Path, ignores: Iterable[str] = (), *, boundary: Path | None = None) -> Snapshot:
    """Hash a file or folder and keep the list of files that went into the hash; `ignores` adds
    gitignore patterns (an engine's caches) to the defaults. Links may point anywhere inside
    `boundary` (default: the folder itself; a file is checked only against a given boundary)."""
    path = Path(path)
    if path.is_file():
        if boundary is not None:
            _boundary(path, boundary)
        file_digest, size = _file_digest(path)
        entry = FileEntry(path.name, path.resolve(), size, file_digest)
        return Snapshot(path.resolve(), False, PREFIX + file_digest.hex(), (entry,))
    if not path.is_dir():
        raise UsageError(
            f"{path} does not exist", hint="check the path in the config or on the command line"
        )
    root = path.resolve()
    limit = _boundary(path, boundary)

    def refuse(link: Path, target: Path) -> None:
        raise _link_escape(link, target, limit)

    entries = []
    for rel, file_path in _walk(root, IgnoreRules.for_folder(root, ignores), limit, refuse):
        file_digest, size = _file_digest(file_path)
        entries.append(FileEntry(rel, file_path, size, file_digest))
    content_hash = tree_hash((e.rel, e.sha256) for e in entries)
    return Snapshot(root, True, content_hash, tuple(entries))


def hash_tree(folder: Path, ignores: Iterable[str] = (), *, boundary: Path | None = None) -> str:
    """`sha256:<hex>` of a folder (a flow): sorted relative paths + bytes, caches excluded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", hint="point at the flow's folder")
    return snapshot(folder, ignores, boundary=boundary).content_hash


def hash_path(path: Path, ignores: Iterable[str] = ()) -> str:
    """`hash_file` for a file, `hash_tree` for a folder."""
    return snapshot(Path(path), ignores).content_hash


def copy_snapshot(source: Path, dest: Path, ignores: Iterable[str] = (), *,
                  boundary: Path | None = None) -> Path:
    """Copy exactly the files `source`'s content hash covers (no caches, nothing ignored) to a
    fresh `dest`, as regular files: a private copy of a flow whose hash equals the original's. A
    symbolic link leaving `boundary` (default: `source`) is refused, as in `snapshot`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in snapshot(source, ignores, boundary=boundary).files:
        target = dest / entry.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry.path, target)
        shutil.copymode(entry.path, target)
    return dest
