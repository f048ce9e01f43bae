"""The embedded trace store: spans (and evaluation events) in one SQLite file under the workspace.

One row per span, keyed by (trace_id, span_id), so an exporter's retry of the same batch stores
nothing twice. Attributes, resource attributes and events are JSON text; the resource attributes
monitoring filters on (`genaiops.use_case`, `deployment.environment`, `genaiops.image`) are also
columns. Every string value is passed through the redactor before it is written, so a secret that
reached a span never reaches the disk. WAL mode: the receiver writes while `monitor` reads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.secrets import redact, redact_data

# resource attributes every deployed image sets (`engines.telemetry` in the image, docker target)
RES_USE_CASE = "genaiops.use_case"
RES_ENVIRONMENT = "deployment.environment"
RES_IMAGE = "genaiops.image"

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
  trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL, kind INTEGER NOT NULL DEFAULT 0,
  start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
  status_code INTEGER NOT NULL DEFAULT 0, status_message TEXT NOT NULL DEFAULT '',
  use_case TEXT NOT NULL DEFAULT '', environment TEXT NOT NULL DEFAULT '', image TEXT NOT NULL DEFAULT '',
  attributes TEXT NOT NULL DEFAULT '{}', resource TEXT NOT NULL DEFAULT '{}',
  events TEXT NOT NULL DEFAULT '[]', scope TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_deployment ON spans (use_case, environment, start_ns);
CREATE TABLE IF NOT EXISTS events (
  trace_id TEXT NOT NULL, span_id TEXT NOT NULL DEFAULT '', name TEXT NOT NULL,
  time_ns INTEGER NOT NULL, attributes TEXT NOT NULL DEFAULT '{}', key TEXT PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id);
"""

STATUS_ERROR = 2  # OTLP Status.code: 0 unset, 1 ok, 2 error


@dataclass
class Span:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: str = ""
    kind: int = 0
    status_code: int = 0
    status_message: str = ""
    attributes: dict = field(default_factory=dict)
    resource: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    scope: str = ""

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def failed(self) -> bool:
        return self.status_code == STATUS_ERROR or "error.type" in self.attributes


def _dumps(value) -> str:
    return json.dumps(redact_data(value), sort_keys=True, default=str)


class TraceStore:
    """A connection per thread (sqlite3 objects are not shared across threads)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def add_spans(self, spans: list[Span]) -> int:
        rows = [(s.trace_id, s.span_id, s.parent_span_id, redact(s.name), int(s.kind), int(s.start_ns),
                 int(s.end_ns), int(s.status_code), redact(s.status_message or ""),
                 str(s.resource.get(RES_USE_CASE, "")), str(s.resource.get(RES_ENVIRONMENT, "")),
                 str(s.resource.get(RES_IMAGE, "")), _dumps(s.attributes), _dumps(s.resource),
                 _dumps(s.events), s.scope) for s in spans]
        with self._write_lock, self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def add_events(self, events: list[dict]) -> int:
        """Events not part of a span export (e.g. `gen_ai.evaluation.result` from `monitor`);
        `key` makes writing the same event twice a no-op."""
        rows = [(e["trace_id"], e.get("span_id", ""), e["name"], int(e["time_ns"]),
                 _dumps(e.get("attributes") or {}), e["key"]) for e in events]
        with self._write_lock, self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)", rows)
        return len(rows)

    def spans(self, *, use_case: str | None = None, environment: str | None = None,
              image: str | None = None, since_ns: int = 0, trace_ids: list[str] | None = None) -> list[Span]:
        where, args = ["start_ns >= ?"], [int(since_ns)]
        for column, value in (("use_case", use_case), ("environment", environment), ("image", image)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if trace_ids is not None:
            where.append(f"trace_id IN ({','.join('?' * len(trace_ids))})")
            args.extend(trace_ids)
        cur = self._conn().execute(
            "SELECT trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code,"
            " status_message, attributes, resource, events, scope FROM spans WHERE "
            + " AND ".join(where) + " ORDER BY start_ns, trace_id, span_id", args)
        return [Span(trace_id=r[0], span_id=r[1], parent_span_id=r[2], name=r[3], kind=r[4], start_ns=r[5],
                     end_ns=r[6], status_code=r[7], status_message=r[8], attributes=json.loads(r[9]),
                     resource=json.loads(r[10]), events=json.loads(r[11]), scope=r[12]) for r in cur]

    def events(self, *, name: str | None = None, trace_id: str | None = None) -> list[dict]:
        where, args = ["1=1"], []
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if trace_id is not None:
            where.append("trace_id = ?")
            args.append(trace_id)
        cur = self._conn().execute("SELECT trace_id, span_id, name, time_ns, attributes FROM events WHERE "
                                   + " AND ".join(where) + " ORDER BY time_ns", args)
        return [{"trace_id": r[0], "span_id": r[1], "name": r[2], "time_ns": r[3],
                 "attributes": json.loads(r[4])} for r in cur]
