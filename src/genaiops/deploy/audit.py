"""Append-only, tamper-evident JSONL logs (approvals, deployments, the audit trail).

Each record carries `seq`, `prev` (the previous record's mac) and `mac` = HMAC-SHA256 over its
canonical JSON. Editing, deleting or reordering a record breaks the chain; forging one needs the
key (`$GENAIOPS_AUDIT_KEY`, else the workspace's `keys/audit.key`, created 0600 on first use). In CI, set
the key from a secret variable so the agent's workspace alone cannot forge approvals.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from genaiops.errors import GenaiopsError

GENESIS = "genesis"


class TamperedLog(GenaiopsError):
    """A chained log no longer verifies: someone edited it, or the key changed."""


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def audit_key(workspace) -> bytes:
    env = os.environ.get("GENAIOPS_AUDIT_KEY")
    if env:
        return env.encode("utf-8")
    path = workspace.audit_key_file
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


def _canonical(record: dict) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), default=str).encode("utf-8")


class ChainedLog:
    def __init__(self, path: Path, key: bytes):
        self.path = Path(path)
        self.key = key

    def _mac(self, record: dict) -> str:
        return hmac.new(self.key, _canonical(record), hashlib.sha256).hexdigest()

    def append(self, record: dict) -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            records = self._verify_text(handle.read())
            entry = {**record, "seq": len(records), "prev": records[-1]["mac"] if records else GENESIS,
                     "at": record.get("at") or now_utc()}
            entry["mac"] = self._mac(entry)
            handle.seek(0, os.SEEK_END)
            handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def read(self) -> list[dict]:
        """Every record, verified; TamperedLog names the first one that fails."""
        if not self.path.is_file():
            return []
        return self._verify_text(self.path.read_text(encoding="utf-8"))

    def _verify_text(self, text: str) -> list[dict]:
        records, prev = [], GENESIS
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise self._tampered(number, "is not valid JSON") from None
            if not isinstance(record, dict) or record.get("prev") != prev or record.get("seq") != len(records):
                raise self._tampered(number, "is out of sequence (a record was removed, added or reordered)")
            if not hmac.compare_digest(str(record.get("mac", "")), self._mac(record)):
                raise self._tampered(number, "was modified after it was written")
            records.append(record)
            prev = record["mac"]
        return records

    def _tampered(self, line: int, what: str) -> TamperedLog:
        return TamperedLog(f"{self.path} line {line} {what}: the log fails its integrity check",
                           hint="restore the file from a trusted copy; nothing is trusted from it until then")


def audit_log(workspace) -> ChainedLog:
    return ChainedLog(workspace.audit_log, audit_key(workspace))


def deployments_log(workspace, use_case: str, env: str) -> ChainedLog:
    return ChainedLog(workspace.deployments_log(use_case, env), audit_key(workspace))


def last_successful(workspace, use_case: str, env: str) -> dict | None:
    for record in reversed(deployments_log(workspace, use_case, env).read()):
        if record.get("ok"):
            return record
    return None
