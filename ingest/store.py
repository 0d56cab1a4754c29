"""The library: ``library.db``, medlit's source of truth.

SQLite in WAL mode through sqlite-utils. Articles are stored whole (the ``record`` JSON is the faithful
``Article``) with the columns search filters need, plus side tables for publication types and MeSH, an
FTS5 index over title + abstract kept in sync by triggers, ingest runs with counts that add up, processed
files, failures with reasons and tombstones of deleted PMIDs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ingest.article import Article, Deletion, Rejected
from ingest.errors import LibraryError
from ingest.migrations import migrate

Record = Article | Deletion | Rejected


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"run_id": self.run_id, "source": self.source, "status": self.status}
        data.update(asdict(self.counts))
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


class Store:
    """Open (creating and migrating if needed) the library database at ``path``."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
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
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ----- reading -------------------------------------------------------------------------------

    def get(self, pmid: int) -> Article | None:
        row = self.conn.execute("SELECT record FROM articles WHERE pmid = ?", (int(pmid),)).fetchone()
        return Article.from_json(row[0]) if row else None

    def get_many(self, pmids: Iterable[int]) -> dict[int, Article]:
        ids = [int(p) for p in pmids]
        found: dict[int, Article] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for pmid, record in self.conn.execute(
                f"SELECT pmid, record FROM articles WHERE pmid IN ({marks})", chunk
            ):
                found[pmid] = Article.from_json(record)
        return found

    def iter_articles(self, *, batch_size: int = 1000) -> Iterator[Article]:
        """Every article in PMID order, streamed."""
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT pmid, record FROM articles WHERE pmid > ? ORDER BY pmid LIMIT ?", (last, batch_size)
            ).fetchall()
            if not rows:
                return
            for _pmid, record in rows:
                yield Article.from_json(record)
            last = rows[-1][0]

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
        cursor = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
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
        """A new ingest run; ``params`` must hold no secret (they are stored)."""
        cursor = self.conn.execute(
            "INSERT INTO runs (source, params, status, started_at) VALUES (?, ?, 'running', ?)",
            (source, json.dumps(params, sort_keys=True, default=str), now()),
        )
        return int(cursor.lastrowid or 0)

    def run_counts(self, run_id: int) -> RunCounts:
        row = self.conn.execute(
            "SELECT seen, inserted, updated, unchanged, deleted, failed FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise LibraryError(f"no ingest run {run_id}")
        return RunCounts(*row)

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?", (status, now(), error, run_id)
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
        records: Iterable[Record],
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
        self, records: Iterable[Record], *, run_id: int, origin: str, origin_rank: str | None = None
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
        self, records: Iterable[Record], counts: RunCounts, *, run_id: int, origin: str, origin_rank: str | None
    ) -> None:
        stamp = now()
        for record in records:
            if isinstance(record, Article):
                counts.seen += 1
                outcome = self._upsert(record, run_id=run_id, origin=origin, rank=origin_rank, stamp=stamp)
                setattr(counts, outcome, getattr(counts, outcome) + 1)
            elif isinstance(record, Deletion):
                for pmid in record.pmids:
                    counts.seen += 1
                    counts.deleted += 1
                    self._delete(pmid, run_id=run_id, origin=origin, rank=origin_rank, stamp=stamp)
            else:
                counts.seen += 1
                counts.failed += 1
                self._fail(run_id, record.pmid, origin, record.reason)

    def _stored(self, pmid: int) -> _Stored | None:
        row = self.conn.execute(
            "SELECT content_hash, version, origin_rank FROM articles WHERE pmid = ?", (pmid,)
        ).fetchone()
        return _Stored(*row) if row else None

    def _upsert(self, article: Article, *, run_id: int, origin: str, rank: str | None, stamp: str) -> str:
        stored = self._stored(article.pmid)
        if stored is None and rank is not None:
            tomb = self.conn.execute(
                "SELECT origin_rank FROM deleted_articles WHERE pmid = ?", (article.pmid,)
            ).fetchone()
            if tomb is not None and tomb[0] is not None and tomb[0] > rank:
                return "unchanged"  # deleted by a later file: this older record stays deleted
        if stored is not None and _is_older(article.version, rank, stored):
            return "unchanged"
        record_json = article.to_json()
        digest = article.content_hash(record_json)
        if stored is not None and stored.content_hash == digest:
            if rank != stored.origin_rank:
                self.conn.execute(
                    "UPDATE articles SET origin = ?, origin_rank = ? WHERE pmid = ?", (origin, rank, article.pmid)
                )
            return "unchanged"
        values = (
            article.version,
            article.title,
            article.abstract,
            int(article.has_abstract),
            article.journal,
            article.journal_iso,
            article.year,
            article.language,
            json.dumps(article.publication_types, ensure_ascii=False),
            int(article.retracted),
            article.kind,
            record_json,
            digest,
            origin,
            rank,
            run_id,
            stamp,
        )
        if stored is None:
            self.conn.execute(
                "INSERT INTO articles (version, title, abstract, has_abstract, journal, journal_iso, year, "
                "language, publication_types, retracted, kind, record, content_hash, origin, origin_rank, "
                "run_id, updated_at, pmid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, article.pmid),
            )
            self.conn.execute("DELETE FROM deleted_articles WHERE pmid = ?", (article.pmid,))
        else:
            self.conn.execute(
                "UPDATE articles SET version = ?, title = ?, abstract = ?, has_abstract = ?, journal = ?, "
                "journal_iso = ?, year = ?, language = ?, publication_types = ?, retracted = ?, kind = ?, "
                "record = ?, content_hash = ?, origin = ?, origin_rank = ?, run_id = ?, updated_at = ? "
                "WHERE pmid = ?",
                (*values, article.pmid),
            )
            self._clear_side_tables(article.pmid)
        self.conn.executemany(
            "INSERT OR IGNORE INTO article_publication_types (name, pmid) VALUES (?, ?)",
            [(name, article.pmid) for name in article.publication_types],
        )
        mesh: dict[str, bool] = {}
        for heading in article.mesh:
            mesh[heading.descriptor] = mesh.get(heading.descriptor, False) or heading.major
        self.conn.executemany(
            "INSERT INTO article_mesh (descriptor, pmid, major) VALUES (?, ?, ?)",
            [(name, article.pmid, int(major)) for name, major in mesh.items()],
        )
        return "inserted" if stored is None else "updated"

    def _clear_side_tables(self, pmid: int) -> None:
        self.conn.execute("DELETE FROM article_publication_types WHERE pmid = ?", (pmid,))
        self.conn.execute("DELETE FROM article_mesh WHERE pmid = ?", (pmid,))

    def _delete(self, pmid: int, *, run_id: int, origin: str, rank: str | None, stamp: str) -> None:
        stored = self._stored(pmid)
        if stored is not None and rank is not None and stored.origin_rank is not None and stored.origin_rank > rank:
            return  # a later file brought the record back; this older deletion does not apply
        if stored is not None:
            self.conn.execute("DELETE FROM articles WHERE pmid = ?", (pmid,))
            self._clear_side_tables(pmid)
        self.conn.execute(
            "INSERT INTO deleted_articles (pmid, origin, origin_rank, run_id, deleted_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (pmid) DO UPDATE SET origin = excluded.origin, origin_rank = excluded.origin_rank, "
            "run_id = excluded.run_id, deleted_at = excluded.deleted_at",
            (pmid, origin, rank, run_id, stamp),
        )

    # ----- files ---------------------------------------------------------------------------------

    def file_state(self, sha256: str) -> dict[str, Any] | None:
        cursor = self.conn.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def start_file(self, *, name: str, path: str, sha256: str, size: int, md5_checked: bool, run_id: int) -> int:
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
            "UPDATE files SET status = 'running', run_id = ?, path = ?, error = NULL WHERE sha256 = ?",
            (run_id, path, sha256),
        )
        return int(state["records_done"] or 0)

    def checkpoint_file(self, sha256: str, records_done: int) -> None:
        self.conn.execute("UPDATE files SET records_done = ? WHERE sha256 = ?", (records_done, sha256))

    def finish_file(self, sha256: str, status: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE files SET status = ?, finished_at = ?, error = ? WHERE sha256 = ?",
            (status, now(), error, sha256),
        )


def _is_older(version: int, rank: str | None, stored: _Stored) -> bool:
    """True when an incoming record must not replace the stored one."""
    if version != stored.version:
        return version < stored.version
    if rank is None or stored.origin_rank is None:
        return False
    return rank < stored.origin_rank
