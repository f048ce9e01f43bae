"""The one place that decides whether a registration is new: hash, look up by hash, else create.

Backends (`AssetStore`) only store; this module hashes the spec, computes provenance tags, and
allocates `max(version) + 1` inside the store's transaction, retrying when a store reports that
another writer took the number first.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

from genaiops import hashing
from genaiops.errors import GenaiopsError, UsageError
from genaiops.registry.base import KINDS, AssetSpec, AssetStore, Registration, VersionTaken

# Azure ML's rule for asset names; we apply it everywhere so a name valid locally is valid in Azure.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
MAX_ATTEMPTS = 5


def git_commit(repo_root: Path) -> str | None:
    """Best effort: HEAD of the repository, else the pipeline's `BUILD_SOURCEVERSION`, else None."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo_root), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("BUILD_SOURCEVERSION") or None


def source_path(repo_root: Path, path: Path) -> str:
    """The asset's path relative to the repository (POSIX), or absolute when outside it."""
    full = Path(path).resolve()
    try:
        return full.relative_to(Path(repo_root).resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def validate_spec(spec: AssetSpec) -> None:
    if not isinstance(spec.name, str) or not NAME_RE.match(spec.name):
        raise UsageError(
            f"invalid asset name {spec.name!r}",
            hint="use letters, digits, '-', '_' or '.', starting with a letter or digit (max 255)",
        )
    if spec.kind not in KINDS:
        raise UsageError(
            f"asset {spec.name!r}: unknown kind {spec.kind!r}",
            hint=f"use one of: {', '.join(KINDS)}",
        )
    if not Path(spec.path).exists():
        raise UsageError(
            f"asset {spec.name!r}: {spec.path} does not exist",
            hint="check the path in the config (relative paths are from the repository root)",
        )


class ContentRegistry:
    """`Registry` over any `AssetStore`: no new version unless the content hash is new."""

    def __init__(self, store: AssetStore, repo_root: Path):
        self.store = store
        self.repo_root = Path(repo_root)
        self._commit: str | None | bool = False  # False: not looked up yet

    @property
    def scheme(self) -> str:
        return self.store.scheme

    def _git_commit(self) -> str | None:
        if self._commit is False:
            self._commit = git_commit(self.repo_root)
        return self._commit  # type: ignore[return-value]

    def tags_for(self, spec: AssetSpec, content_hash: str) -> dict:
        return {
            "content_hash": content_hash,
            "source": source_path(self.repo_root, spec.path),
            "git_commit": self._git_commit(),
            "build_id": os.environ.get("BUILD_BUILDID") or None,
        }

    def register(self, spec: AssetSpec) -> Registration:
        path = Path(spec.path)
        if not path.is_absolute():
            path = self.repo_root / path
        spec = replace(spec, path=path)
        validate_spec(spec)
        # links may point anywhere in the repository, as validate and the runs allow; no further
        inside = path.resolve().is_relative_to(Path(self.repo_root).resolve())
        snap = hashing.snapshot(path, spec.ignores, boundary=self.repo_root if inside else None)
        if not snap.files:
            raise UsageError(
                f"asset {spec.name!r}: nothing to register in {path}",
                hint=f"the folder is empty, or every file in it is a cache or listed in {hashing.IGNORE_FILE}",
            )
        tags = self.tags_for(spec, snap.content_hash)
        self.store.prepare(snap)
        for _ in range(MAX_ATTEMPTS):
            with self.store.transaction():
                existing = self.store.versions(spec.name)
                other_kinds = {r.kind for r in existing if r.kind != spec.kind}
                if other_kinds:
                    raise UsageError(
                        f"asset name {spec.name!r} is already a {other_kinds.pop()} in the "
                        f"{self.scheme} registry, not a {spec.kind}",
                        hint="give this asset another name",
                    )
                same = [r for r in existing if r.content_hash == snap.content_hash]
                if same:
                    return replace(max(same, key=lambda r: r.version), created=False)
                version = max((r.version for r in existing), default=0) + 1
                try:
                    return self.store.create(spec, version, snap, tags)
                except VersionTaken:
                    continue
        raise GenaiopsError(
            f"could not register {spec.name!r}: other writers kept taking the next version "
            f"({MAX_ATTEMPTS} attempts)",
            hint="retry; if it persists, check for a process registering in a loop",
        )

    def list_assets(self) -> list[dict]:
        return self.store.list_assets()

    def versions(self, name: str) -> list[Registration]:
        return sorted(self.store.versions(name), key=lambda r: r.version)

    def get(self, name: str, version: int | None = None) -> Registration:
        found = self.versions(name)
        if not found:
            known = sorted(a["name"] for a in self.list_assets())
            raise UsageError(
                f"no asset named {name!r} in the {self.scheme} registry",
                hint=("known assets: " + ", ".join(known))
                if known
                else "register it first (genaiops run init)",
            )
        chosen = found[-1] if version is None else next(
            (r for r in found if r.version == version), None)
        if chosen is not None:
            verify = getattr(self.store, "verify", None)  # stores that hold the bytes check them
            if verify is not None:
                verify(chosen)
            return chosen
        raise UsageError(
            f"asset {name!r} has no version {version} in the {self.scheme} registry",
            hint="versions: " + ", ".join(str(r.version) for r in found),
        )
