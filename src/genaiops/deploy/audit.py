"""The audit chain: approvals, rejections, refusals and deployments in one append-only,
tamper-evident JSON Lines log (`<state>/audit/audit.jsonl`).

- Every record carries `seq`, `prev` (the previous record's mac), `at` and `mac` =
  HMAC-SHA256(key, canonical JSON). Editing, inserting, removing or reordering a record breaks the
  chain, and writing a record that verifies needs the key.
- The key lives outside the state folder: `$GENAIOPS_AUDIT_KEY` (CI: a secret variable), else
  `audit.key` in the trust folder (`Workspace.trust_dir`, mode 0600, made by `genaiops audit init`).
  A missing, empty, short, shared-readable or misplaced key is an error with the fix, never a new key.
- A hash chain alone cannot show that its newest records were cut off. Every append therefore also
  writes the new head (seq + mac) to an *anchor* in the trust folder, and every read requires the
  anchored head to be in the chain: deleting, truncating or rolling back the log is detected by
  anyone who can edit the state folder but not the trust folder. An approval source may carry its
  own head from outside (Azure DevOps: the pipeline's approval record); it is checked the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, cast

from typing_extensions import TypedDict

from genaiops.errors import GenaiopsError, UsageError
from genaiops.workspace.files import atomic_write_json

GENESIS = "genesis"
KEY_ENV = "GENAIOPS_AUDIT_KEY"
MIN_KEY_CHARS = 32
_UNEXPANDED = re.compile(r"^\$\(.+\)$")  # Azure DevOps passes an undefined $(VAR) on as text
GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"
# bytes that are not UTF-8 are read as lone surrogates (and written back unchanged), so a damaged
# line is a located TamperedLog, not a UnicodeDecodeError
BYTES_KEPT = "surrogateescape"
_UNDECODED = re.compile("[\udc80-\udcff]")


class TamperedLog(GenaiopsError):
    """The chain no longer verifies: a record was edited, removed or reordered, or the key changed."""


class AuditKeyError(UsageError):
    """No usable audit key (exit 2): the fix is to provide one, never to make a new one silently."""


@dataclass(frozen=True)
class ChainHead:
    """A point in the chain: a record's seq and mac. Whoever keeps one can later prove that the
    chain still holds that record and everything before it."""

    seq: int
    mac: str

    @classmethod
    def of(cls, record: dict) -> ChainHead:
        return cls(int(record["seq"]), str(record["mac"]))

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        seq, _, mac = str(text).strip().partition(":")
        if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", mac):
            raise UsageError(f"chain head {text!r} is not SEQ:MAC",
                             hint="copy it as printed by `genaiops approve` or `genaiops audit verify`")
        return cls(int(seq), mac)

    def __str__(self) -> str:
        return f"{self.seq}:{self.mac}"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the key -----------------------------------------------------------------------------------

def audit_key(workspace) -> bytes:
    """The chain's HMAC key, checked; AuditKeyError says what to do when there is none."""
    from genaiops.secrets import REDACTOR

    if KEY_ENV in os.environ:
        key = _key_from_env(os.environ[KEY_ENV])
    else:
        key = _key_from_file(workspace)
    REDACTOR.add(key)
    return key.encode("utf-8")


def redact_key(workspace) -> None:
    """Add the audit key, if there is one, to the redactor, without checking it: every command
    that runs flows does this first, so a flow that reads the key (by its variable, or the file
    by path) cannot get it stored in the ledger, the reports or run folders."""
    from genaiops.secrets import REDACTOR

    values = [os.environ.get(KEY_ENV, "").strip()]
    try:
        values.append(workspace.audit_key_file.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        pass
    REDACTOR.add(*(v for v in values if v))


def _key_from_env(value: str) -> str:
    value = value.strip()
    if not value:
        raise AuditKeyError(f"{KEY_ENV} is set but empty",
                            hint=f"set it from a secret (generate one: {GENERATE}), or unset it to "
                                 "use the trust folder's audit.key")
    if _UNEXPANDED.match(value):
        raise AuditKeyError(f"{KEY_ENV} holds the literal text {value}: the pipeline variable is not "
                            "defined", hint=f"define {KEY_ENV} as a secret variable of the pipeline")
    if len(value) < MIN_KEY_CHARS:
        raise AuditKeyError(f"{KEY_ENV} is too short ({len(value)} characters, at least "
                            f"{MIN_KEY_CHARS})", hint=f"generate one: {GENERATE}")
    return value


def _key_from_file(workspace) -> str:
    path = workspace.audit_key_file
    _require_outside_state(workspace, path)
    if not path.is_file():
        raise AuditKeyError(f"no audit key: {path} does not exist and {KEY_ENV} is not set",
                            hint=_missing_key_hint(workspace))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(f"audit key {path} is readable by others (mode {stat.S_IMODE(mode):o})",
                            hint=f"chmod 600 {path}")
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise AuditKeyError(f"audit key {path} is empty",
                            hint="restore the key the logs were signed with; an empty key verifies nothing")
    if len(key) < MIN_KEY_CHARS:
        raise AuditKeyError(f"audit key {path} is too short ({len(key)} characters, at least "
                            f"{MIN_KEY_CHARS})", hint=f"restore the real key; a new one: {GENERATE}")
    return key


def _require_outside_state(workspace, path: Path) -> None:
    """A key (or anchor) that whoever edits the state folder or the repository can also edit
    protects nothing."""
    resolved = path.resolve()
    for name, folder in (("state folder", workspace.root), ("repository", workspace.repo_root)):
        folder = Path(folder).resolve()
        if resolved == folder or folder in resolved.parents:
            raise AuditKeyError(f"{path} is inside the {name} {folder}: anyone who can write there "
                                "could forge approvals with it",
                                hint="point GENAIOPS_TRUST_DIR (or XDG_CONFIG_HOME) outside the state "
                                     "folder and the repository")


def _missing_key_hint(workspace) -> str:
    legacy = workspace.legacy_audit_key_file
    if legacy.is_file():
        return (f"older versions kept the key inside the state folder ({legacy}), where anyone who can "
                f"write the state folder could forge records with it; move it out: mkdir -p "
                f"{workspace.trust_dir} && mv {legacy} {workspace.audit_key_file} && chmod 600 "
                f"{workspace.audit_key_file}")
    if workspace.audit_anchor_file.is_file() or _has_records(workspace.audit_log):
        return (f"the audit log {workspace.audit_log} was signed with a key that is now missing: restore "
                f"it to {workspace.audit_key_file} (or set {KEY_ENV}); a new key cannot verify it")
    return (f"create one: genaiops audit init (writes {workspace.audit_key_file}, mode 0600), or set "
            f"{KEY_ENV} from a secret variable in CI")


def _has_records(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def create_key(workspace) -> Path:
    """`genaiops audit init`: a new random key in the trust folder; never replaces one."""
    path = workspace.audit_key_file
    _require_outside_state(workspace, path)
    if path.exists():
        raise UsageError(f"an audit key already exists at {path}",
                         hint="keep it: it verifies every record it signed; back it up somewhere safe")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path


# -- the chain ---------------------------------------------------------------------------------

def _canonical(record: dict) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), default=str).encode("utf-8")


class ChainedLog:
    """One HMAC-chained JSONL file; with `anchor`, its head is also kept in that file."""

    def __init__(self, path: Path, key: bytes, anchor: Path | None = None):
        self.path = Path(path)
        self.key = key
        self.anchor = Path(anchor) if anchor else None
        self.vouched: list[ChainHead] = []  # heads kept outside (an approval record), see `vouch`

    def vouch(self, head: ChainHead) -> list[dict]:
        """Require `head` (kept outside the state folder) in every later read and append; it stands
        in for a missing anchor. Returns the records, verified against it."""
        records = self.read([head])
        self.vouched.append(head)
        return records

    def _mac(self, record: dict) -> str:
        return hmac.new(self.key, _canonical(record), hashlib.sha256).hexdigest()

    def keyed_digest(self, text: str) -> str:
        """An HMAC of `text` under the chain's key: records can name a set of values (the secrets an
        image was scanned for) without revealing them to whoever reads the log."""
        return hmac.new(self.key, b"digest\0" + text.encode("utf-8"), hashlib.sha256).hexdigest()

    def append(self, record: dict, check: Callable[[list[dict]], None] | None = None) -> dict:
        """Verify the whole chain (and its anchor), let `check` refuse on what it holds (under the
        same lock, so no other writer slips in between), then add `record` and move the anchor."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8", errors=BYTES_KEPT) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            records = self._verify(handle.read(), self.vouched)
            if check is not None:
                check(records)
            entry = {**record, "seq": len(records), "prev": records[-1]["mac"] if records else GENESIS,
                     "at": now_utc()}
            entry["mac"] = self._mac(entry)
            handle.seek(0, os.SEEK_END)
            handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            if self.anchor is not None:
                self._write_anchor(ChainHead.of(entry))
        return entry

    def read(self, heads: Sequence[ChainHead] = (), *, require_anchor: bool = True) -> list[dict]:
        """Every record, verified against the anchor and any `heads` kept elsewhere; TamperedLog
        names the first thing that fails. `require_anchor=False` accepts a chain without anchor
        (only until an outside head is known: see `vouch`)."""
        heads = [*self.vouched, *heads]
        if not self.path.is_file():
            return self._verify("", heads, require_anchor)
        with open(self.path, encoding="utf-8", errors=BYTES_KEPT) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)  # not between an append and its anchor update
            return self._verify(handle.read(), heads, require_anchor)

    def adopt(self) -> ChainHead | None:
        """Anchor a chain that has none (a copy someone trusts), after checking every record."""
        if self.anchor is None or self.anchor.is_file():
            raise UsageError(f"{self.path} is already anchored ({self.anchor})",
                             hint="nothing to adopt; `genaiops audit verify` checks it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8", errors=BYTES_KEPT) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            records = self._verify_records(handle.read())
            if records:
                self._write_anchor(ChainHead.of(records[-1]))
        return ChainHead.of(records[-1]) if records else None

    # -- verification
    def _verify(self, text: str, heads: Sequence[ChainHead], require_anchor: bool = True) -> list[dict]:
        records = self._verify_records(text)
        anchored = self._read_anchor()
        if anchored is not None:
            self._require_head(records, anchored, f"its anchor {self.anchor}")
        elif self.anchor is not None and records and not heads and require_anchor:
            raise TamperedLog(
                f"{self.path} holds {len(records)} record(s) but has no anchor ({self.anchor} is "
                "missing): it cannot be shown that no newer record was removed",
                hint="restore the anchor from the trust folder that wrote this log; if this copy of "
                     "the log is one you trust, anchor it: genaiops audit verify --adopt")
        for head in heads:
            self._require_head(records, head, "the approval record")
        return records

    def _verify_records(self, text: str) -> list[dict]:
        records, prev = [], GENESIS
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if _UNDECODED.search(line):
                raise self._tampered(number, "holds bytes that are not UTF-8 text")
            try:
                record = json.loads(line)
            except ValueError:
                raise self._tampered(number, "is not valid JSON") from None
            if not isinstance(record, dict) or record.get("prev") != prev or record.get("seq") != len(records):
                raise self._tampered(number, "is out of sequence (a record was removed, added or reordered)")
            if not hmac.compare_digest(str(record.get("mac", "")), self._mac(record)):
                raise self._tampered(number, "was modified after it was written, or signed with "
                                             "another key")
            records.append(record)
            prev = record["mac"]
        return records

    def _require_head(self, records: list[dict], head: ChainHead, where: str) -> None:
        if head.seq >= len(records):
            last = f"ends at seq {len(records) - 1}" if records else "is empty"
            raise TamperedLog(f"{self.path} {last}, but {where} records seq {head.seq}: records were "
                              "removed (deleted, truncated or rolled back)",
                              hint="restore the log from a trusted copy; nothing is trusted from it until then")
        if not hmac.compare_digest(str(records[head.seq]["mac"]), head.mac):
            raise TamperedLog(f"{self.path} record seq {head.seq} is not the one {where} records: the "
                              "log was replaced or rewritten",
                              hint="restore the log from a trusted copy; nothing is trusted from it until then")

    def _anchor_mac(self, head: ChainHead) -> str:
        return hmac.new(self.key, f"anchor\0{self.path}\0{head}".encode(), hashlib.sha256).hexdigest()

    def _read_anchor(self) -> ChainHead | None:
        if self.anchor is None or not self.anchor.is_file():
            return None
        try:
            data = json.loads(self.anchor.read_text(encoding="utf-8"))
            head = ChainHead(int(data["seq"]), str(data["mac"]))
            valid = hmac.compare_digest(str(data["anchor_mac"]), self._anchor_mac(head))
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise TamperedLog(f"the anchor {self.anchor} of {self.path} does not verify: it was edited, "
                              "or the key changed", hint="restore the key or the anchor from a backup")
        return head

    def _write_anchor(self, head: ChainHead) -> None:
        self.anchor.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_json(self.anchor, {"log": str(self.path), "seq": head.seq, "mac": head.mac,
                                        "at": now_utc(), "anchor_mac": self._anchor_mac(head)})

    def _tampered(self, line: int, what: str) -> TamperedLog:
        return TamperedLog(f"audit chain damaged: {self.path} line {line} {what}: the log fails its "
                           "integrity check",
                           hint="restore the file from a trusted copy; nothing is trusted from it until then")


def audit_log(workspace) -> ChainedLog:
    """The workspace's audit chain, anchored in the trust folder."""
    key = audit_key(workspace)
    _require_outside_state(workspace, workspace.audit_anchor_file)
    return ChainedLog(workspace.audit_log, key, workspace.audit_anchor_file)


def record_incident(workspace, event: dict) -> dict | None:
    """Note a refusal the chain itself cannot take (it failed to verify) in the trust folder's
    incident log; None when not even that is possible (no key)."""
    try:
        log = ChainedLog(workspace.audit_incidents_log, audit_key(workspace))
        return log.append({**event, "state": str(workspace.root)})
    except GenaiopsError:
        return None


@contextmanager
def incident_on_damage(workspace, event: dict):
    """Run a read or append of the chain; if the chain fails its check, note `event` (with the
    reason) in the trust folder's incident log before the TamperedLog goes on to the user."""
    try:
        yield
    except TamperedLog as exc:
        record_incident(workspace, {**event, "reason": exc.message})
        raise


class DeploymentRecord(TypedDict):
    """A deploy as the chain holds it (`event` deployed / deploy_failed): what `run deploy`
    appends and `--json` prints, and what rollback, `approve` and the next deploy read back.
    The nested blocks are the `as_dict()` of the objects named; the last four are the chain's."""

    use_case: str
    env: str
    target: str
    variant: dict  # deploy.variant.ChosenVariant
    flow_hash: str
    image: dict  # deploy.image.ImageRef
    artifact: str
    git_commit: str
    event: Literal["deployed", "deploy_failed"]
    ok: bool
    registration: str  # where the flow was registered (its uri)
    outcome: dict  # deploy.targets.base.DeployOutcome
    approval: dict | None  # deploy.approvals.ApprovalGrant.as_ref()
    previous_artifact: str | None
    duration_s: float
    seq: int
    prev: str
    at: str
    mac: str


def deployments(records: list[dict], use_case: str, env: str) -> list[DeploymentRecord]:
    return [cast(DeploymentRecord, r) for r in records if r.get("event") in ("deployed", "deploy_failed")
            and r.get("use_case") == use_case and r.get("env") == env]


def last_successful(records: list[dict], use_case: str, env: str) -> DeploymentRecord | None:
    for record in reversed(deployments(records, use_case, env)):
        if record.get("ok"):
            return record
    return None
