"""Recorded LLM answers (cassettes): what makes a command's LLM calls replayable without a key.

The gateway sees every LLM call of a command, whatever the engine and however many workers, so
it is the one place to record and replay (`llm.mode`: live | record | replay).

A cassette is a folder of JSON files, content-addressed: an entry's key is the canonical hash of
the request the gateway forwards (its path below the connection - kind and, for Azure, the
deployment - and its JSON body: model, messages or prompt, tools, sampling parameters, `stream`).
Identical requests within one command (repeats of a row, duplicated rows) are told apart by
their occurrence number, assigned per key in arrival order: the n-th identical call gets the
n-th recorded answer. One file per key (`<key[:2]>/<key>.json`), pretty and sorted, holds the
request and its answers by occurrence (a stream as its SSE events) with the model that served
each. Nothing of the HTTP headers is kept - no key, no `Authorization`, no cookie - and known
secret values are masked in what is written.

Replay answers from the cassette only and opens no upstream connection; a call it has no answer
for is a miss: the client gets a non-retryable 400 (`code: replay_miss`) and the command fails
(exit 2) with what changed against the nearest recorded request.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("live", "record", "replay")
SCHEMA = 1


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(path: str, body: dict) -> str:
    """The content address of one request: its path below the connection and its JSON body."""
    return hashlib.sha256(canonical({"path": path, "body": body}).encode()).hexdigest()


def render_request(path: str, body: dict) -> list[str]:
    """A request as lines a person can diff: the path, each message, then the other fields."""
    lines = [f"path: {path}"]
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            lines.append(f"message: {canonical(message)}")
            continue
        content = message.get("content")
        text = content if isinstance(content, str) else canonical(content)
        lines.append(f"[{message.get('role', '?')}]")
        lines.extend(f"  {line}" for line in str(text).splitlines() or [""])
    if isinstance(body.get("prompt"), str):
        lines.append("[prompt]")
        lines.extend(f"  {line}" for line in body["prompt"].splitlines() or [""])
    for name in sorted(k for k in body if k not in ("messages", "prompt")):
        lines.append(f"{name}: {canonical(body[name])}")
    return lines


def served_model(answer: dict) -> str | None:
    """The model an answer says served it (JSON body, or the first stream event naming one)."""
    body = answer.get("body")
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return body["model"]
    for event in answer.get("stream") or []:
        data = event[5:].strip() if event.startswith("data:") else ""
        try:
            parsed = json.loads(data) if data and data != "[DONE]" else None
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("model"), str):
            return parsed["model"]
    return None


def _stable_fields(obj, answer_id: str):
    if isinstance(obj, dict):
        if "id" in obj and isinstance(obj["id"], str):
            obj = {**obj, "id": answer_id}
        if isinstance(obj.get("created"), int):
            obj = {**obj, "created": 0}
    return obj


def stable(answer: dict, answer_id: str) -> dict:
    """The answer without what differs from one recording to the next though the model said
    the same (its id, its creation time), so that recording again changes only what changed."""
    if isinstance(answer.get("body"), dict):
        return {**answer, "body": _stable_fields(answer["body"], answer_id)}
    if "stream" in answer:
        events = []
        for event in answer["stream"]:
            data = event[5:].strip() if event.startswith("data:") else None
            try:
                parsed = json.loads(data) if data and data != "[DONE]" else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                event = "data: " + json.dumps(_stable_fields(parsed, answer_id), ensure_ascii=False)
            events.append(event)
        return {**answer, "stream": events}
    return answer


@dataclass
class Miss:
    """A call replay had no answer for, and what changed against the nearest recorded one."""

    connection: str
    path: str
    occurrence: int
    diff: str  # unified diff nearest recorded -> this request; "" when nothing is recorded
    nearest_recorded: int = 0  # answers recorded for this very request (a repeat too many)

    def describe(self) -> str:
        if self.nearest_recorded:
            return (f"connection {self.connection!r} {self.path}: the same request was recorded "
                    f"{self.nearest_recorded} time(s), this is call {self.occurrence + 1} "
                    "(more repeats than recorded)")
        if not self.diff:
            return f"connection {self.connection!r} {self.path}: nothing recorded for this path"
        return (f"connection {self.connection!r} {self.path}: no recorded answer; what changed "
                f"against the nearest recorded request:\n{self.diff}")


@dataclass
class Cassette:
    """One use case's cassette folder, in `mode` (record or replay), for one command."""

    folder: Path
    mode: str
    secrets: frozenset[str] = frozenset()
    _entries: dict[str, dict] = field(default_factory=dict, init=False, repr=False)
    _touched: set[str] = field(default_factory=set, init=False, repr=False)
    _seen: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    misses: list[Miss] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        if self.mode not in ("record", "replay"):
            raise ValueError(self.mode)
        self._entries = load_entries(self.folder)

    # -- calls

    def occurrence(self, key: str) -> int:
        """The number of this call among identical ones of the command, from 0, in order."""
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            return n

    def answer(self, key: str, occurrence: int) -> dict | None:
        entry = self._entries.get(key)
        answers = entry["answers"] if entry else []
        return answers[occurrence] if occurrence < len(answers) else None

    def miss(self, connection: str, path: str, body: dict, key: str, occurrence: int) -> Miss:
        entry = self._entries.get(key)
        if entry is not None:
            found = Miss(connection, path, occurrence, "", len(entry["answers"]))
        else:
            found = Miss(connection, path, occurrence, self._diff_to_nearest(path, body))
        with self._lock:
            self.misses.append(found)
        return found

    def record(self, key: str, connection: str, path: str, body: dict, occurrence: int,
               answer: dict) -> None:
        """Keep `answer` (status, body or stream events) as the `occurrence`-th of the request."""
        answer = stable(answer, f"rec-{key[:16]}-{occurrence}")
        answer = {**answer, "model": served_model(answer)}
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or key not in self._touched:  # a fresh recording replaces the old
                entry = self._entries[key] = {"key": key, "connection": connection,
                                              "request": {"path": path, "body": body},
                                              "answers": []}
                self._touched.add(key)
            answers = entry["answers"]
            answers.extend([None] * (occurrence + 1 - len(answers)))
            answers[occurrence] = answer

    def _diff_to_nearest(self, path: str, body: dict) -> str:
        mine = render_request(path, body)
        best, best_ratio = None, -1.0
        for entry in self._entries.values():
            request = entry["request"]
            theirs = render_request(request["path"], request["body"])
            ratio = difflib.SequenceMatcher(None, theirs, mine, autojunk=False).ratio()
            if ratio > best_ratio:
                best, best_ratio = theirs, ratio
        if best is None:
            return ""
        return "\n".join(difflib.unified_diff(best, mine, "recorded", "this call", lineterm="",
                                              n=2))

    # -- files

    def save(self) -> list[Path]:
        """Write the entries recorded by this command (atomic, pretty, sorted, secrets masked);
        entries of requests this command did not make are kept as they were."""
        from genaiops.workspace.files import atomic_write_text

        written = []
        with self._lock:
            touched = [self._entries[key] for key in sorted(self._touched)]
        for entry in touched:
            entry = {**entry, "answers": [a for a in entry["answers"] if a is not None]}
            text = json.dumps({"schema": SCHEMA, **entry}, indent=2, sort_keys=True,
                              ensure_ascii=False) + "\n"
            for secret in sorted(self.secrets, key=len, reverse=True):
                text = text.replace(secret, "[secret]")
            path = entry_path(self.folder, entry["key"])
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            written.append(path)
        return written

    def models(self) -> dict[str, set[str]]:
        """The models that served the recorded answers, per connection."""
        found: dict[str, set[str]] = {}
        for entry in self._entries.values():
            for answer in entry["answers"]:
                if answer and answer.get("model"):
                    found.setdefault(entry["connection"], set()).add(answer["model"])
        return found


def entry_path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.json"


def load_entries(folder: Path) -> dict[str, dict]:
    """Every entry of a cassette folder by key; a file that is not one is a located error."""
    from genaiops.errors import UsageError

    entries = {}
    if not folder.is_dir():
        return entries
    for path in sorted(folder.glob("*/*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            key = entry["key"]
            ok = (path.stem == key and isinstance(entry["answers"], list)
                  and isinstance(entry["request"]["body"], dict)
                  and request_key(entry["request"]["path"], entry["request"]["body"]) == key)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}: not a cassette entry ({type(exc).__name__}: {exc})",
                             hint="record the cassette again: genaiops run ... --llm record") from None
        if not ok:
            raise UsageError(f"{path}: the entry's key is not the hash of its request (edited by hand?)",
                             hint="record the cassette again: genaiops run ... --llm record")
        entries[key] = entry
    return entries


def cassette_hash(folder: Path) -> str | None:
    """The hash that pins a cassette (its entry files); None when there is none."""
    from genaiops.hashing import hash_tree

    if not folder.is_dir() or not any(folder.glob("*/*.json")):
        return None
    return hash_tree(folder)
