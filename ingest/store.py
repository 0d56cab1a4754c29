"""The library: ``library.db``, medlit's source of truth.

SQLite in WAL mode through sqlite-utils. Articles are stored whole (the ``record`` JSON is the faithful
``Article``, zstd-compressed: see ``ingest.record_codec``) with the columns search filters need, plus side
tables for publication types and MeSH, ingest runs with counts that add up, processed files, failures with
reasons and tombstones of deleted PMIDs. The search indexes (lexical and dense) live beside the library and
follow it through ``content_hash``: the library knows nothing of them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from foundation.clock import now
from foundation.errors import LibraryError
from ingest.article import Article, Deletion, pmid_from
from ingest.migrations import migrate
from ingest.prepared import Item, PreparedArticle, prepare
from ingest.record_codec import decode, encode


@dataclass(slots=True)
class RunCounts:
    """What one ingest run did. Always: seen = inserted + updated + unchanged + deleted + failed."""

    seen: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0

    def add(self, other: RunCounts) -> None:
        for name in ("seen", "inserted", "updated", "unchanged", "deleted", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def consistent(self) -> bool:
        return self.seen == self.inserted + self.updated + self.unchanged + self.deleted + self.failed


@dataclass(slots=True)
class RunReport:
    """The outcome of an ingest: the run's id, status and counts, and per-source notes."""

    run_id: int
    source: str
    status: str
    counts: RunCounts
    files: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"run_id": self.run_id, "source": self.source, "status": self.status}
        data.update(asdict(self.counts))
        data.update(self.details)
        if self.files:
            data["files"] = self.files
        if self.notes:
            data["notes"] = self.notes
        if self.error:
            data["error"] = self.error
        return data


@dataclass(slots=True)
class _Stored:
    content_hash: str
    version: int
    origin_rank: str | None


PAGE_SIZE = 16384

# What SQLite's result codes (the primary code, the low byte) mean to the user, who can act on them.
_SQLITE_TROUBLE = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "disk I/O error (a full disk, a file size limit or a failing disk)",
    sqlite3.SQLITE_READONLY: "the library is read-only",
    sqlite3.SQLITE_BUSY: "another process kept the library locked beyond the busy timeout",
    sqlite3.SQLITE_LOCKED: "the library is locked",
}


class _LibraryConnection(sqlite3.Connection):
    """A connection whose failures the user can act on (disk full, I/O, locked) become one LibraryError.

    Such a failure rolls the statement (or the transaction) back, so the message says that what was
    committed before is kept.
    """

    library = ""

    def _trouble(self, exc: sqlite3.OperationalError) -> LibraryError | None:
        what = _SQLITE_TROUBLE.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
        if what is None:
            return None
        detail = "" if str(exc) in what else f" ({exc})"
        return LibraryError(
            f"{self.library}: cannot use the library: {what}{detail}; what was committed is kept"
        )

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if (error := self._trouble(exc)) is None:
                raise
            raise error from None

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            if (error := self._trouble(exc)) is None:
                raise
            raise error from None


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one that is not ours counts: it may be)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _wal_mode(conn: sqlite3.Connection, timeout_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, waiting like any other statement when another process holds the lock.

    Switching a new database to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
    its busy handler, when another process is creating or switching the same file (two ``medlit ingest``
    into a new library): retried here until the busy timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sqlite3.Connection.execute(conn, "PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                trouble = conn._trouble(exc) if isinstance(conn, _LibraryConnection) else None
                if trouble is not None:
                    raise trouble from None
                raise
            time.sleep(0.02)


class Store:
    """Open (creating and migrating if needed) the library database at ``path``."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
                factory=_LibraryConnection,
            )
            conn.library = str(self.path)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # A new library gets 16 KB pages: an article row is ~1.8 KB, and with SQLite's default 4 KB
            # pages a quarter of every page stayed empty (2,750 -> 2,250 bytes an article on the demo
            # files). It must be set before the first table; an existing library keeps its pages.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            _wal_mode(conn, busy_timeout_ms / 1000)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path}: not a usable SQLite library ({exc})") from None
        self.conn = conn
        self.db = Database(conn)
        try:
            migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path}: cannot open the library ({exc})") from None

    @classmethod
    def open(cls, settings: Any) -> Store:
        """The library of a Settings object (``settings.library_path``)."""
        return cls(settings.library_path, busy_timeout_ms=settings.busy_timeout_ms)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk, an I/O error); a failed COMMIT leaves the
            # transaction open: either way the connection must not stay inside it
            if self.conn.in_transaction:
                with suppress(sqlite3.Error, LibraryError):
                    self.conn.execute("ROLLBACK")
            raise

    # ----- reading -------------------------------------------------------------------------------

    def get(self, pmid: int) -> Article | None:
        if pmid_from(int(pmid)) is None:  # not a PMID the library can hold (nor SQLite's INTEGER)
            return None
        row = self.conn.execute("SELECT record FROM articles WHERE pmid = ?", (int(pmid),)).fetchone()
        return Article.from_json(decode(row[0])) if row else None

    def get_many(self, pmids: Iterable[int]) -> dict[int, Article]:
        rows = self.select_in("SELECT pmid, record FROM articles WHERE pmid IN ({ids})", pmids)
        return {pmid: Article.from_json(decode(record)) for pmid, record in rows}

    def select_in(self, sql: str, ids: Iterable[int], chunk: int = 900) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` with its ``{ids}`` placeholder filled, in chunks under SQLite's variable limit."""
        unique = list(dict.fromkeys(int(i) for i in ids))
        for start in range(0, len(unique), chunk):
            part = unique[start : start + chunk]
            yield from self.conn.execute(sql.format(ids=",".join("?" * len(part))), part).fetchall()

    def known_mesh(self, names: Iterable[str]) -> set[str]:
        """The names that are MeSH descriptors of some article in the library, as written there (an exact,
        indexed lookup: callers pass the capitalisations to try)."""
        wanted = list(dict.fromkeys(n for n in names if n))
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = self.conn.execute(
            f"SELECT DISTINCT descriptor FROM article_mesh WHERE descriptor IN ({marks})", wanted
        ).fetchall()
        return {row[0] for row in rows}

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM articles").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        one = self.conn.execute(
            "SELECT count(*), coalesce(sum(has_abstract), 0), coalesce(sum(retracted), 0), "
            "min(year), max(year), coalesce(sum(kind = 'book'), 0) FROM articles"
        ).fetchone()
        runs = self.conn.execute("SELECT count(*), max(finished_at) FROM runs").fetchone()
        files = self.conn.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0]
        failures = self.conn.execute("SELECT count(*) FROM failures").fetchone()[0]
        deleted = self.conn.execute("SELECT count(*) FROM deleted_articles").fetchone()[0]
        return {
            "articles": one[0],
            "with_abstract": one[1],
            "without_abstract": one[0] - one[1],
            "retracted": one[2],
            "books": one[5],
            "year_min": one[3],
            "year_max": one[4],
            "deleted_pmids": deleted,
            "files_processed": files,
            "runs": runs[0],
            "last_run_finished": runs[1],
            "failures": failures,
            "library": str(self.path),
        }

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs; one whose process is gone shows as ``interrupted`` (nothing is written here)."""
        cursor = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        abandoned = set(self._abandoned_runs()) if any(r["status"] == "running" for r in rows) else set()
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
            if row["id"] in abandoned:
                row["status"] = "interrupted"
                row["error"] = "the ingest process ended without finishing (killed?)"
        return rows

    def failures(self, run_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT run_id, pmid, origin, reason, created_at FROM failures"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        cursor = self.conn.execute(sql + " ORDER BY id LIMIT ?", (*args, limit))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    # ----- runs ----------------------------------------------------------------------------------

    def start_run(self, source: str, params: dict[str, Any]) -> int:
        """A new ingest run; ``params`` must hold no secret (they are stored).

        Runs of this machine whose process is gone (killed: SIGKILL, the OOM killer, a power cut) are
        closed as ``interrupted`` first; what they stored stays, and a files run resumes where it stopped.
        """
        self.close_abandoned_runs()
        cursor = self.conn.execute(
            "INSERT INTO runs (source, params, status, started_at, host, pid) "
            "VALUES (?, ?, 'running', ?, ?, ?)",
            (
                source,
                json.dumps(params, sort_keys=True, default=str),
                now(),
                socket.gethostname(),
                os.getpid(),
            ),
        )
        return int(cursor.lastrowid or 0)

    def _abandoned_runs(self) -> list[int]:
        """Runs still ``running`` that this machine started in a process that no longer exists.

        Runs of another machine (a library on a shared disk), and runs of older medlit versions that
        recorded no process, are left as they are: nothing here can tell whether they still run.
        """
        host = socket.gethostname()
        rows = self.conn.execute("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (host,))
        return [run_id for run_id, pid in rows.fetchall() if pid is not None and not _process_alive(pid)]

    def close_abandoned_runs(self) -> int:
        """Mark the abandoned runs (see ``_abandoned_runs``) ``interrupted``; returns how many."""
        abandoned = self._abandoned_runs()
        for run_id in abandoned:
            self.conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ?, error = ? "
                "WHERE id = ? AND status = 'running'",
                (now(), "the ingest process ended without finishing (killed?)", run_id),
            )
        return len(abandoned)

    def run_counts(self, run_id: int) -> RunCounts:
        row = self.conn.execute(
            "SELECT seen, inserted, updated, unchanged, deleted, failed FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise LibraryError(f"no ingest run {run_id}")
        return RunCounts(*row)

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
            (status, now(), error, run_id),
        )

    def _bump(self, run_id: int, counts: RunCounts) -> None:
        self.conn.execute(
            "UPDATE runs SET seen = seen + ?, inserted = inserted + ?, updated = updated + ?, "
            "unchanged = unchanged + ?, deleted = deleted + ?, failed = failed + ? WHERE id = ?",
            (
                counts.seen,
                counts.inserted,
                counts.updated,
                counts.unchanged,
                counts.deleted,
                counts.failed,
                run_id,
            ),
        )

    # ----- writing -------------------------------------------------------------------------------

    def apply(
        self,
        records: Iterable[Item],
        *,
        run_id: int,
        origin: str,
        origin_rank: str | None = None,
        failures: Iterable[tuple[int | None, str]] = (),
    ) -> RunCounts:
        """Apply records in one transaction and add their counts to the run.

        ``origin_rank`` orders bulk files (their names): a record replaces a stored one unless the stored
        one has a higher Version, or the same Version from a file that sorts later; tombstones from later
        files keep a deleted PMID deleted. Records from other sources (rank None) always apply, by Version.
        ``failures`` are (pmid, reason) pairs recorded with the run (e.g. PMIDs efetch never returned).
        """
        counts = RunCounts()
        with self.transaction():
            self._apply(records, counts, run_id=run_id, origin=origin, origin_rank=origin_rank)
            for pmid, reason in failures:
                counts.seen += 1
                counts.failed += 1
                self._fail(run_id, pmid, origin, reason)
            self._bump(run_id, counts)
        return counts

    def apply_in_transaction(
        self, records: Iterable[Item], *, run_id: int, origin: str, origin_rank: str | None = None
    ) -> RunCounts:
        """Like apply() but inside a transaction the caller holds (to checkpoint a file atomically)."""
        counts = RunCounts()
        self._apply(records, counts, run_id=run_id, origin=origin, origin_rank=origin_rank)
        self._bump(run_id, counts)
        return counts

    def _fail(self, run_id: int, pmid: int | None, origin: str, reason: str) -> None:
        self.conn.execute(
            "INSERT INTO failures (run_id, pmid, origin, reason, created_at) VALUES (?, ?, ?, ?, ?)",
            (run_id, pmid, origin, reason, now()),
        )

    def _apply(
        self, records: Iterable[Item], counts: RunCounts, *, run_id: int, origin: str, origin_rank: str | None
    ) -> None:
        """Decide every record in order against the current state, then write the batch's net effect."""
        items = [prepare(r) if isinstance(r, Article) else r for r in records]
        pmids = [i.pmid for i in items if isinstance(i, PreparedArticle)]
        for item in items:
            if isinstance(item, Deletion):
                pmids.extend(item.pmids)
        before = self._stored_many(pmids)
        tombs = self._tombstones(pmids) if origin_rank is not None else {}
        current: dict[int, _Stored | None] = dict(before)
        final: dict[int, PreparedArticle | None] = {}  # pmid -> record to store, or None to delete
        touched_rank: dict[int, str | None] = {}
        for item in items:
            if isinstance(item, PreparedArticle):
                counts.seen += 1
                stored = current.get(item.pmid)
                outcome = _decide(item, origin_rank, stored, tombs.get(item.pmid))
                if (
                    outcome == "unchanged"
                    and stored is not None
                    and stored.content_hash == item.content_hash
                    and origin_rank is not None
                    and (stored.origin_rank is None or origin_rank > stored.origin_rank)
                ):
                    # The same record from a later file: it now counts as that file's. Never the other way:
                    # an older file repeating it must not lower the rank a later file gave it.
                    touched_rank[item.pmid] = origin_rank
                if outcome in ("inserted", "updated"):
                    final[item.pmid] = item
                    current[item.pmid] = _Stored(item.content_hash, item.version, origin_rank)
                setattr(counts, outcome, getattr(counts, outcome) + 1)
            elif isinstance(item, Deletion):
                for pmid in item.pmids:
                    counts.seen += 1
                    stored = current.get(pmid)
                    if (
                        stored is not None
                        and origin_rank is not None
                        and stored.origin_rank is not None
                        and stored.origin_rank > origin_rank
                    ):
                        counts.unchanged += 1  # a later file brought the record back: not deleted
                        continue
                    counts.deleted += 1
                    final[pmid] = None
                    current[pmid] = None
                    prior = tombs.get(pmid)
                    if origin_rank is None or prior is None or prior <= origin_rank:
                        tombs[pmid] = origin_rank  # a later file's tombstone stays (see _write)
            else:
                counts.seen += 1
                counts.failed += 1
                self._fail(run_id, item.pmid, origin, item.reason)
        self._write(final, before, touched_rank, run_id=run_id, origin=origin, rank=origin_rank)

    def _write(
        self,
        final: dict[int, PreparedArticle | None],
        before: dict[int, _Stored],
        touched_rank: dict[int, str | None],
        *,
        run_id: int,
        origin: str,
        rank: str | None,
    ) -> None:
        stamp = now()
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        removed: list[tuple[int]] = []
        tomb_rows: list[tuple[Any, ...]] = []
        for pmid, item in final.items():
            if item is None:
                if pmid in before:
                    removed.append((pmid,))
                tomb_rows.append((pmid, origin, rank, run_id, stamp))
                continue
            columns = item.columns
            # the record (column 11) and the abstract (column 2, read only to build the indexes) are stored
            # compressed; compressing here, not in the parse process, keeps the parse (the slower side of
            # ingest) as it was
            abstract = encode(columns[2]) if columns[2] else ""
            row = (
                *columns[:2],
                abstract,
                *columns[3:11],
                encode(columns[11]),
                *columns[12:],
                origin,
                rank,
                run_id,
                stamp,
                pmid,
            )
            (updates if pmid in before else inserts).append(row)
        changed = [(pmid,) for pmid in final if pmid in before]
        conn = self.conn
        conn.executemany("DELETE FROM article_publication_types WHERE pmid = ?", changed)
        conn.executemany("DELETE FROM article_mesh WHERE pmid = ?", changed)
        conn.executemany("DELETE FROM articles WHERE pmid = ?", removed)
        conn.executemany(
            "UPDATE articles SET version = ?, title = ?, abstract = ?, has_abstract = ?, journal = ?, "
            "journal_iso = ?, year = ?, language = ?, publication_types = ?, retracted = ?, kind = ?, "
            "record = ?, content_hash = ?, origin = ?, origin_rank = ?, run_id = ?, updated_at = ? "
            "WHERE pmid = ?",
            updates,
        )
        conn.executemany(
            "INSERT INTO articles (version, title, abstract, has_abstract, journal, journal_iso, year, "
            "language, publication_types, retracted, kind, record, content_hash, origin, origin_rank, "
            "run_id, updated_at, pmid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            inserts,
        )
        stored_now = [item for item in final.values() if item is not None]
        conn.executemany("DELETE FROM deleted_articles WHERE pmid = ?", [(i.pmid,) for i in stored_now])
        conn.executemany(
            "INSERT OR IGNORE INTO article_publication_types (name, pmid) VALUES (?, ?)",
            [(name, i.pmid) for i in stored_now for name in i.publication_types],
        )
        conn.executemany(
            "INSERT INTO article_mesh (descriptor, pmid, major) VALUES (?, ?, ?)",
            [(name, i.pmid, major) for i in stored_now for name, major in i.mesh],
        )
        conn.executemany(
            "INSERT INTO deleted_articles (pmid, origin, origin_rank, run_id, deleted_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (pmid) DO UPDATE SET origin = excluded.origin, "
            "origin_rank = excluded.origin_rank, "
            "run_id = excluded.run_id, deleted_at = excluded.deleted_at "
            # An older file deleting again must not replace a later file's tombstone with its lower rank
            # (a file between the two would then resurrect the PMID).
            "WHERE excluded.origin_rank IS NULL OR deleted_articles.origin_rank IS NULL "
            "OR excluded.origin_rank >= deleted_articles.origin_rank",
            tomb_rows,
        )
        conn.executemany(
            "UPDATE articles SET origin = ?, origin_rank = ? WHERE pmid = ? AND origin_rank IS NOT ?",
            [(origin, r, pmid, r) for pmid, r in touched_rank.items() if pmid not in final],
        )

    def _stored_many(self, pmids: list[int]) -> dict[int, _Stored]:
        rows = self.select_in(
            "SELECT pmid, content_hash, version, origin_rank FROM articles WHERE pmid IN ({ids})", pmids
        )
        return {pmid: _Stored(digest, version, rank) for pmid, digest, version, rank in rows}

    def _tombstones(self, pmids: list[int]) -> dict[int, str | None]:
        rows = self.select_in("SELECT pmid, origin_rank FROM deleted_articles WHERE pmid IN ({ids})", pmids)
        return dict(rows)

    # ----- files ---------------------------------------------------------------------------------

    def file_state(self, sha256: str) -> dict[str, Any] | None:
        cursor = self.conn.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def start_file(
        self, *, name: str, path: str, sha256: str, size: int, md5_checked: bool, run_id: int
    ) -> int:
        """Register a file (or take over an interrupted one); returns how many records it already applied."""
        state = self.file_state(sha256)
        if state is None:
            self.conn.execute(
                "INSERT INTO files (name, path, sha256, size, md5_checked, status, records_done, run_id, "
                "started_at) VALUES (?, ?, ?, ?, ?, 'running', 0, ?, ?)",
                (name, path, sha256, size, int(md5_checked), run_id, now()),
            )
            return 0
        self.conn.execute(
            "UPDATE files SET status = 'running', run_id = ?, path = ?, md5_checked = ?, error = NULL "
            "WHERE sha256 = ?",
            (run_id, path, int(md5_checked), sha256),
        )
        return int(state["records_done"] or 0)

    def checkpoint_file(self, sha256: str, records_done: int) -> None:
        self.conn.execute("UPDATE files SET records_done = ? WHERE sha256 = ?", (records_done, sha256))

    def finish_file(self, sha256: str, status: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE files SET status = ?, finished_at = ?, error = ? WHERE sha256 = ?",
            (status, now(), error, sha256),
        )


def _decide(item: PreparedArticle, rank: str | None, stored: _Stored | None, tomb_rank: str | None) -> str:
    """inserted / updated / unchanged for an incoming record, given what is stored now.

    A record does not replace a stored one with a higher Version, nor one of the same Version from a
    bulk file that sorts later; a bulk record older than the file that deleted its PMID stays deleted.
    """
    if stored is None:
        if rank is not None and tomb_rank is not None and tomb_rank > rank:
            return "unchanged"
        return "inserted"
    if item.version != stored.version:
        return "updated" if item.version > stored.version else "unchanged"
    if rank is not None and stored.origin_rank is not None and rank < stored.origin_rank:
        return "unchanged"
    return "unchanged" if stored.content_hash == item.content_hash else "updated"
