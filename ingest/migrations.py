"""Schema migrations for library.db, applied in order and recorded in ``_medlit_migrations``.

Each migration runs once, inside a transaction. Add new ones at the end; never edit an applied one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from sqlite_utils import Database

from foundation.errors import LibraryError

Migration = Callable[[Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS.append((name, fn))
        return fn

    return register


@migration("001_initial")
def _initial(db: Database) -> None:
    db.table("articles").create(
        {
            "pmid": int,
            "version": int,
            "title": str,
            "abstract": str,
            "has_abstract": int,
            "journal": str,
            "journal_iso": str,
            "year": int,
            "language": str,
            "publication_types": str,
            "retracted": int,
            "kind": str,
            "record": str,
            "content_hash": str,
            "origin": str,
            "origin_rank": str,
            "run_id": int,
            "updated_at": str,
        },
        pk="pmid",
        not_null={
            "version",
            "title",
            "abstract",
            "has_abstract",
            "retracted",
            "kind",
            "record",
            "content_hash",
        },
    )
    db.table("articles").create_index(["year"])
    db.table("articles").create_index(["retracted"])
    db.execute(
        "CREATE TABLE article_publication_types (name TEXT NOT NULL, pmid INTEGER NOT NULL, "
        "PRIMARY KEY (name, pmid)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE article_mesh (descriptor TEXT NOT NULL, pmid INTEGER NOT NULL, major INTEGER NOT NULL, "
        "PRIMARY KEY (descriptor, pmid)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX article_mesh_pmid ON article_mesh (pmid)")
    db.execute("CREATE INDEX article_publication_types_pmid ON article_publication_types (pmid)")
    db.table("deleted_articles").create(
        {"pmid": int, "origin": str, "origin_rank": str, "run_id": int, "deleted_at": str}, pk="pmid"
    )
    db.table("runs").create(
        {
            "id": int,
            "source": str,
            "params": str,
            "status": str,
            "started_at": str,
            "finished_at": str,
            "seen": int,
            "inserted": int,
            "updated": int,
            "unchanged": int,
            "deleted": int,
            "failed": int,
            "error": str,
        },
        pk="id",
        defaults={"seen": 0, "inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0},
    )
    db.table("files").create(
        {
            "id": int,
            "name": str,
            "path": str,
            "sha256": str,
            "size": int,
            "md5_checked": int,
            "status": str,
            "records_done": int,
            "run_id": int,
            "started_at": str,
            "finished_at": str,
            "error": str,
        },
        pk="id",
        defaults={"records_done": 0, "md5_checked": 0},
    )
    db.table("files").create_index(["sha256"], unique=True)
    db.table("failures").create(
        {"id": int, "run_id": int, "pmid": int, "origin": str, "reason": str, "created_at": str}, pk="id"
    )
    db.table("failures").create_index(["run_id"])
    db.table("failures").create_index(["pmid"])
    db.table("articles").enable_fts(
        ["title", "abstract"],
        fts_version="FTS5",
        create_triggers=True,
        tokenize="porter unicode61 remove_diacritics 2",
    )


@migration("002_index_state")
def _index_state(db: Database) -> None:
    """What the search indexes hold, kept in the library so an index is served only if it matches.

    ``index_manifests``: one row per index (model, dimension, count, checksum, kind, file).
    ``index_entries``: the content hash and passage count of every PMID embedded in an index, written in the
    same transaction as its manifest (the vectors' ids live inside the FAISS file; this is not an id map).
    """
    db.execute(
        "CREATE TABLE index_manifests (name TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "dimension INTEGER NOT NULL, count INTEGER NOT NULL, checksum TEXT NOT NULL, kind TEXT NOT NULL, "
        "file TEXT NOT NULL, "
        "created_at TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}')"
    )
    db.execute(
        "CREATE TABLE index_entries (name TEXT NOT NULL, pmid INTEGER NOT NULL, content_hash TEXT NOT NULL, "
        "passages INTEGER NOT NULL, PRIMARY KEY (name, pmid)) WITHOUT ROWID"
    )


@migration("003_library_state")
def _library_state(db: Database) -> None:
    """Small key/value facts about the library (e.g. FTS triggers set aside during a bulk load)."""
    db.execute("CREATE TABLE library_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration("004_fts_rank")
def _fts_rank(db: Database) -> None:
    """FTS5's own ranking = BM25 with titles weighted 2 (lets ``ORDER BY rank LIMIT`` take its fast path)."""
    db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('rank', 'bm25(2.0, 1.0)')")


@migration("005_fts_written_with_articles")
def _fts_written_with_articles(db: Database) -> None:
    """The FTS5 index is written by ``Store._write`` in the same statements' transaction as the articles,
    one ``INSERT ... SELECT`` per batch, instead of by row triggers (which cost ~2.5x as much CPU per row).

    A bulk load that an older medlit was killed in left the triggers aside and the index incomplete
    (``library_state`` says so): the index is rebuilt from the articles here.
    """
    conn = db.conn
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'articles'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    if conn.execute("SELECT 1 FROM library_state WHERE key = 'fts_triggers_set_aside'").fetchone():
        conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
        conn.execute("DELETE FROM library_state WHERE key = 'fts_triggers_set_aside'")


@migration("006_run_owner")
def _run_owner(db: Database) -> None:
    """Which process (host name and pid) runs an ingest, so a run whose process was killed is known to be
    over (``Store.close_abandoned_runs``) instead of looking ``running`` for ever."""
    db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")


@migration("007_lexical_index_beside_the_library")
def _lexical_index_beside_the_library(db: Database) -> None:
    """BM25 moves from FTS5 inside the library to a tantivy index beside it (``indexes/lexical_index.py``),
    built and updated from ``content_hash`` like the dense index: FTS5 cost ~500 bytes an article here and
    ~1/3 of the writer's time in ingest, and its OR-queries grow linearly with the library (289 ms p50 at
    1M articles against tantivy's ~3 ms). ``medlit index update`` builds the new index."""
    db.execute("DROP TABLE IF EXISTS articles_fts")


@migration("008_compressed_records")
def _compressed_records(db: Database) -> None:
    """``record`` and ``abstract`` stored zstd-compressed with medlit's record dictionary
    (``ingest/record_codec.py``): ~2.6 KB of JSON becomes ~650 bytes, an ~800-character abstract ~400. The
    content hashes (of the JSON) stay, so no index goes stale. The freed pages are reused by later writes;
    ``VACUUM`` returns them to the file system at once."""
    from ingest.record_codec import encode

    conn = db.conn
    last = 0
    while True:
        rows = conn.execute(
            "SELECT pmid, record, abstract FROM articles WHERE pmid > ? AND typeof(record) = 'text' "
            "ORDER BY pmid LIMIT 2000",
            (last,),
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            "UPDATE articles SET record = ?, abstract = ? WHERE pmid = ?",
            [(encode(record), encode(abstract) if abstract else "", pmid) for pmid, record, abstract in rows],
        )
        last = rows[-1][0]


def applied(db: Database) -> list[str]:
    if "_medlit_migrations" not in db.table_names():
        return []
    return [row[0] for row in db.execute("SELECT name FROM _medlit_migrations ORDER BY rowid").fetchall()]


def migrate(db: Database) -> list[str]:
    """Apply every pending migration; returns the names applied now."""
    known = [name for name, _ in MIGRATIONS]
    done = applied(db)
    unknown = [name for name in done if name not in known]
    if unknown:
        raise LibraryError(
            "library schema is newer than this medlit "
            f"(unknown migrations: {', '.join(unknown)}); upgrade medlit"
        )
    ran = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        conn: sqlite3.Connection = db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _medlit_migrations "
                "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            if conn.execute("SELECT 1 FROM _medlit_migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            fn(db)
            conn.execute(
                "INSERT INTO _medlit_migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran
