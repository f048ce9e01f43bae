"""The embedded registry: a SQLite catalogue plus a content-addressed blob store, no server.

`<state_dir>/registry/catalog.sqlite` holds one row per (name, version); UNIQUE(name, version) and
UNIQUE(name, content_hash) make duplicates impossible even if the lock were bypassed. Writers take
`BEGIN IMMEDIATE` (one writer at a time, others wait up to `busy_timeout`), and WAL lets readers
run alongside, so concurrent `genaiops` processes serialise instead of corrupting the catalogue.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from genaiops.errors import GenaiopsError
from genaiops.registry.base import AssetSpec, Registration, VersionTaken
from genaiops.registry.blobstore import BlobStore

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    kind         TEXT    NOT NULL CHECK (kind IN ('dataset', 'flow')),
    content_hash TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    tags         TEXT    NOT NULL,
    blob         TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, content_hash)
);
"""
_COLUMNS = "name, version, kind, content_hash, description, tags, blob, created_at"


class LocalStore:
    scheme = "local"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.db_path = self.root / "catalog.sqlite"
        self.blobs = BlobStore(self.root / "blobs")
        self._conn: sqlite3.Connection | None = None  # set only inside transaction()

    @classmethod
    def for_repo(cls, repo_root: Path, settings: dict | None = None) -> LocalStore:
        root = (settings or {}).get("path")
        from genaiops.workspace import Workspace

        return cls(Path(root) if root else Workspace.for_repo(repo_root).registry_dir)

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            self._ensure_schema(conn)
            return conn
        except sqlite3.DatabaseError as exc:
            raise self._broken(exc) from exc

    def _broken(self, exc: Exception) -> GenaiopsError:
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            return GenaiopsError(
                f"the local registry catalogue {self.db_path} stayed locked for "
                f"{BUSY_TIMEOUT_MS // 1000}s by another process",
                hint="wait for the other genaiops process to finish, then retry",
            )
        return GenaiopsError(
            f"the local registry catalogue {self.db_path} is unusable: {exc}",
            hint="restore it from a backup, or move it away to start an empty catalogue "
            "(registered bytes stay in blobs/)",
        )

    @staticmethod
    def _retry_locked(action, attempts: int = 50):
        """Switching to WAL can fail fast with "locked" while another process creates the file."""
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == SCHEMA_VERSION:
            return
        if found > SCHEMA_VERSION:
            raise GenaiopsError(
                f"{self.db_path} was written by a newer genaiops (schema {found} > {SCHEMA_VERSION})",
                hint="upgrade genaiops",
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if self._conn is not None:  # inside transaction(): same connection, errors handled there
            yield self._conn
            return
        with closing(self._connect()) as conn:
            try:
                yield conn
            except sqlite3.DatabaseError as exc:
                raise self._broken(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; `versions()` and `create()` inside it share the connection."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._conn = conn
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._broken(exc) from exc
        finally:
            self._conn = None
            conn.close()

    # -- AssetStore ---------------------------------------------------------------------------

    def prepare(self, snap) -> None:
        """Copy the bytes before taking the write lock: a big dataset never blocks other writers."""
        self.blobs.put(snap)

    def _row(self, row: sqlite3.Row, created: bool = False) -> Registration:
        return Registration(
            name=row["name"],
            kind=row["kind"],
            version=row["version"],
            content_hash=row["content_hash"],
            created=created,
            uri=f"local:{row['name']}:{row['version']}",
            tags=json.loads(row["tags"]),
            location=str(self.root / row["blob"]),
            created_at=row["created_at"],
            description=row["description"],
        )

    def versions(self, name: str) -> list[Registration]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM assets WHERE name = ? ORDER BY version", (name,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def create(self, spec: AssetSpec, version: int, snap, tags: dict) -> Registration:
        blob = self.blobs.path_for(snap.content_hash).relative_to(self.root).as_posix()
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._reading() as conn:
            try:
                conn.execute(
                    f"INSERT INTO assets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.name,
                        version,
                        spec.kind,
                        snap.content_hash,
                        spec.description,
                        json.dumps(tags, sort_keys=True),
                        blob,
                        created_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise VersionTaken(str(exc)) from exc
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM assets WHERE name = ? AND version = ?",
                (spec.name, version),
            ).fetchone()
        return self._row(row, created=True)

    def list_assets(self) -> list[dict]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT name, kind, MAX(version) AS latest, COUNT(*) AS n FROM assets "
                "GROUP BY name, kind ORDER BY name"
            ).fetchall()
        return [
            {
                "name": r["name"],
                "kind": r["kind"],
                "latest_version": r["latest"],
                "versions": r["n"],
            }
            for r in rows
        ]
