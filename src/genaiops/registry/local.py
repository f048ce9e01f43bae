"""The embedded registry: a SQLite catalogue plus a content-addressed blob store, no server.

`<state_dir>/registry/catalog.sqlite` holds one row per (name, version); UNIQUE(name, version) and
UNIQUE(name, content_hash) make duplicates impossible even if the lock were bypassed. Writers take
`BEGIN IMMEDIATE` (one writer at a time, others wait up to `busy_timeout`), and WAL lets readers
run alongside, so concurrent `genaiops` processes serialise instead of corrupting the catalogue.

Nothing here is trusted unread: each version also has a sealed registration record
(`registry.journal`), the catalogue is checked against those records when a store first opens it
and rebuilt from them when it is lost (a 0-byte or garbled file) or disagrees with them, and a
blob is checked against its hash whenever it is reused or shown. Damage is quarantined in the
workspace with a notice; what cannot be recovered is an error that says what to do.
"""

from __future__ import annotations

import fcntl
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
from genaiops.registry.journal import FIELDS, Journal
from genaiops.workspace.integrity import Damaged, StateDamaged, quarantine

SCHEMA_VERSION = 2  # 2: every row has a registration record (1 had none: written on upgrade)
RESTORE = ("restore .genaiops/registry from a backup, or move it away to start an empty registry "
           "(pins such as local:NAME:N made before then no longer resolve)")
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

    def __init__(self, root: Path, workspace):
        self.root = Path(root)
        self.workspace = workspace  # where damage is quarantined
        self.db_path = self.root / "catalog.sqlite"
        self.journal = Journal(self.root)
        self.blobs = BlobStore(self.root / "blobs", on_damage=self._quarantine)
        self._conn: sqlite3.Connection | None = None  # set only inside transaction()
        self._checked = False  # the catalogue agreed with the records once in this store

    @classmethod
    def for_workspace(cls, workspace, settings: dict | None = None) -> LocalStore:
        """The store in `workspace` (or at `settings["path"]`), quarantining into `workspace`."""
        root = (settings or {}).get("path")
        return cls(Path(root) if root else workspace.registry_dir, workspace)

    def _quarantine(self, damage: Damaged, recovery: str) -> None:
        quarantine(self.workspace, damage, recovery=recovery)

    # -- connection ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            return conn
        except BaseException:
            conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """A connection to a catalogue that agrees with the registration records (rebuilt from
        them first when it does not)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._open()
            try:
                self._ensure_schema(conn)
                problem = None if self._checked else self._locked_disagreement(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            if not self.journal.paths():
                raise self._broken(exc) from exc
            conn, problem = None, f"unreadable as a database ({exc})"
        if problem is None:
            self._checked = True
            return conn
        if conn is not None:
            conn.close()
        self._rebuild(problem)
        self._checked = True
        return self._open()

    def _locked_disagreement(self, conn: sqlite3.Connection) -> str | None:
        """`_disagreement` holding the write lock: another process's registration writes its record
        and its row under that lock, so none is half done while the two are compared (read apart,
        a version registered between the reads looked like a row with no record: damage)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            return self._disagreement(conn)
        finally:
            conn.execute("ROLLBACK")

    def _disagreement(self, conn: sqlite3.Connection) -> str | None:
        """How the catalogue differs from the registration records, or None when it agrees."""
        try:
            records = self.journal.read_all()
        except Damaged as damage:
            self._quarantine(damage, "the catalogue row it backed can no longer be verified")
            raise StateDamaged(f"a registration record of the local registry is damaged: "
                               f"{damage.path} ({damage.reason})", hint=RESTORE) from None
        rows = {(r["name"], r["version"]): self._row_fields(r)
                for r in conn.execute(f"SELECT {_COLUMNS} FROM assets").fetchall()}
        unbacked = sorted(set(rows) - set(records))
        if unbacked:
            raise StateDamaged(f"{len(unbacked)} version(s) in {self.db_path} have no registration "
                               f"record (e.g. {unbacked[0][0]}:{unbacked[0][1]}): they cannot be "
                               "verified", hint=RESTORE)
        for key, record in records.items():
            if key not in rows:
                return f"{len(set(records) - set(rows))} registered version(s) are missing from it"
            if rows[key] != record:
                return f"its row for {key[0]}:{key[1]} differs from the registration record"
        return None

    @staticmethod
    def _row_fields(row: sqlite3.Row) -> dict:
        return {**{k: row[k] for k in FIELDS}, "tags": json.loads(row["tags"])}

    def _still_disagrees(self) -> bool:
        """Checked again holding the catalogue's write lock: a writer between its record and its
        COMMIT, or another process that rebuilt the catalogue first, is no damage."""
        try:
            with closing(self._open()) as conn:
                self._ensure_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    return self._disagreement(conn) is not None
                finally:
                    conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            return True

    def _rebuild(self, problem: str) -> None:
        """Quarantine the catalogue and write a new one from the registration records."""
        with (self.root / ".rebuild.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._still_disagrees():
                return
            records = self.journal.read_all()
            companions = [Path(f"{self.db_path}{suffix}") for suffix in ("-wal", "-shm")]
            quarantine(self.workspace, Damaged(self.db_path, problem), *companions,
                       recovery=f"the catalogue was rebuilt from its {len(records)} registration "
                                "record(s); versions are kept")
            with closing(self._open()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.executemany(
                    f"INSERT INTO assets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [tuple(json.dumps(r[k], sort_keys=True) if k == "tags" else r[k]
                           for k in FIELDS) for r in records.values()])
                conn.execute("COMMIT")

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
        """Create the table in a new catalogue; give an upgraded one its registration records.
        A catalogue without a table while records exist was lost: `_disagreement` says so."""
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
            if found == 1:  # trusted once, as it stands, when genaiops is upgraded
                for row in conn.execute(f"SELECT {_COLUMNS} FROM assets").fetchall():
                    self.journal.write(self._row_fields(row))
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
            self.journal.write(self._row_fields(row))  # before COMMIT: never a row without one
        return self._row(row, created=True)

    def verify(self, registration: Registration) -> None:
        """The registered bytes still hash to the registration's content hash; a damaged blob is
        quarantined and StateDamaged says how to store it again."""
        try:
            self.blobs.verify(registration.content_hash)
        except Damaged as damage:
            self._quarantine(damage, "register the asset again to store its bytes anew")
            raise StateDamaged(f"the registered bytes of {registration.uri} are damaged and were "
                               "quarantined", hint="run `genaiops run init` (or register the asset "
                               "again) while its source still has that content") from None

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
