"""The post-build scan of a serving image: does it hold exactly the flow that was hashed, and no
known secret value anywhere?

The image's filesystem is read as docker exports it (`docker create` + `docker export`, streamed
through `tarfile`: nothing is extracted, nothing runs), together with its config (`docker image
inspect`) and history. Two checks, both failing closed:

- files under the flow folder (`/flow`) must be the hashed flow's files, byte for byte, plus the
  files the engine's build adds (`io.genaiops.generated` label); anything else is reported;
- no value of the secrets set (`genaiops.secrets`: connection keys, `.env` secrets, the audit key)
  may appear in any file, the config or the history.

Nothing is removed: the container made for the export is deleted, the image is left for the user
to inspect (the message says how to delete it).
"""

from __future__ import annotations

import fnmatch
import hashlib
import subprocess
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from genaiops.deploy import dockercli
from genaiops.errors import GenaiopsError
from genaiops.workspace.sweep import abandoned, owner_tag

CHUNK = 1 << 20
MIN_SECRET_CHARS = 4  # as the redactor: shorter values would match ordinary bytes
MAX_LISTED = 10


class ImageScanFailed(GenaiopsError):
    """The image holds files that are not the hashed flow, or a known secret (exit 1)."""


@dataclass
class ScanResult:
    tag: str
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unexpected: list[str] = field(default_factory=list)  # in the image's flow folder, not hashed
    missing: list[str] = field(default_factory=list)  # hashed, not in the image
    modified: list[str] = field(default_factory=list)  # in both, other bytes
    secrets_in: list[str] = field(default_factory=list)  # where a secret value was found

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.modified or self.secrets_in)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 1),
                "unexpected": self.unexpected, "missing": self.missing, "modified": self.modified,
                "secrets_in": self.secrets_in}


class _SecretSearch:
    """Finds any of a few byte strings in a stream of chunks, across chunk borders."""

    def __init__(self, values: Iterable[str]):
        self.needles = sorted({v.encode("utf-8") for v in values if v and len(v) >= MIN_SECRET_CHARS},
                              key=len, reverse=True)
        self.overlap = max((len(n) for n in self.needles), default=1) - 1

    def found(self, chunks: Iterable[bytes]) -> bool:
        hit, tail = False, b""
        for chunk in chunks:
            window = tail + chunk
            hit = hit or any(needle in window for needle in self.needles)
            tail = window[-self.overlap:] if self.overlap else b""
        return hit


def _chunks(handle, digest=None):
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            return
        if digest is not None:
            digest.update(chunk)
        yield chunk


SCAN_LABEL = "io.genaiops.scan"  # the throwaway container an image is exported from
OWNER_LABEL = "io.genaiops.owner"  # the command that made it (`owner_tag`)


def remove_abandoned_scan_containers() -> list[str]:
    """The scan containers of commands that were killed mid-scan (SIGKILL skips the `finally` that
    removes them); those of a running command, or another machine's, stay. What was removed."""
    listed = dockercli.docker("ps", "-a", "--filter", f"label={SCAN_LABEL}=1", "--format",
                              f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}', check=False)
    gone = [parts[0] for parts in (line.split() for line in listed.stdout.decode(errors="replace").splitlines())
            if len(parts) == 2 and abandoned(parts[1])]
    if gone:
        dockercli.docker("rm", "-f", *gone, check=False)
    return gone


def scan_image(tag: str, *, flow_dir: str, expected: Mapping[str, bytes], generated: Iterable[str],
               secrets: Iterable[str], labels: Mapping[str, str] | None = None) -> ScanResult:
    """Scan image `tag`. `expected`: relative path -> sha256 digest of every hashed flow file;
    `generated`: glob patterns of files the engine's build adds under `flow_dir`."""
    started = time.monotonic()
    result = ScanResult(tag)
    search = _SecretSearch(secrets)
    generated = tuple(generated)
    prefix = flow_dir.strip("/") + "/"
    for where, text in (("image config", dockercli.text("image", "inspect", tag)),
                        ("image history", dockercli.text("history", "--no-trunc", tag))):
        if search.found([text.encode("utf-8")]):
            result.secrets_in.append(where)
    seen: dict[str, bytes] = {}
    remove_abandoned_scan_containers()
    container = dockercli.text("create", "--label", f"{SCAN_LABEL}=1", "--label", f"{OWNER_LABEL}={owner_tag()}", tag)
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                in_flow = name.startswith(prefix)
                if in_flow and not (member.isfile() or member.isdir()):
                    result.unexpected.append(f"/{name} ({'link' if member.issym() or member.islnk() else 'special'})")
                if not member.isfile():
                    continue
                result.files += 1
                result.bytes += member.size
                digest = hashlib.sha256() if in_flow else None
                if search.found(_chunks(tar.extractfile(member), digest)):
                    result.secrets_in.append("/" + name)
                if digest is not None:
                    seen[name[len(prefix):]] = digest.digest()
        _, stderr = export.communicate()
        if export.returncode != 0:
            raise GenaiopsError(f"docker export of {tag} failed: {stderr.decode(errors='replace')[-500:]}",
                                hint="check that dockerd is running")
    finally:
        dockercli.docker("rm", "-f", container, check=False)
    _compare(result, seen, expected, generated, flow_dir)
    result.seconds = time.monotonic() - started
    return result


def _compare(result: ScanResult, seen: Mapping[str, bytes], expected: Mapping[str, bytes],
             generated: tuple[str, ...], flow_dir: str) -> None:
    root = "/" + flow_dir.strip("/") + "/"
    for rel, digest in sorted(seen.items()):
        if rel in expected:
            if expected[rel] != digest:
                result.modified.append(root + rel)
        elif not any(fnmatch.fnmatchcase(rel, pattern) for pattern in generated):
            result.unexpected.append(root + rel)
    result.missing = [root + rel for rel in sorted(set(expected) - set(seen))]
    result.unexpected.sort()


def require_clean(result: ScanResult) -> None:
    """ImageScanFailed naming what was found (never a secret value) and how to remove the image."""
    if result.ok:
        return
    parts = []
    for label, items in (("files that are not in the hashed flow", result.unexpected),
                         ("hashed files missing", result.missing),
                         ("files that differ from the hashed flow", result.modified),
                         ("a known secret value in", result.secrets_in)):
        if items:
            shown = ", ".join(items[:MAX_LISTED]) + (f" (+{len(items) - MAX_LISTED} more)"
                                                      if len(items) > MAX_LISTED else "")
            parts.append(f"{label}: {shown}")
    raise ImageScanFailed(f"image {result.tag} failed its scan, refusing to deploy it: " + "; ".join(parts),
                          hint="remove the secret or stray file from the flow, base image and build "
                               f"settings and deploy again; the image is kept for inspection (delete "
                               f"it: docker rmi {result.tag})")
