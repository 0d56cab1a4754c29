"""The library's own guarantees: the FTS5 index follows every write, older libraries migrate, migrations are
recorded."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from sqlite_utils import Database

from foundation.errors import LibraryError
from ingest.article import AbstractSection, Article, Deletion
from ingest.migrations import MIGRATIONS, applied, migrate
from ingest.store import Store


def article(pmid: int, title: str, abstract: str) -> Article:
    return Article(pmid=pmid, title=title, abstract_sections=[AbstractSection(text=abstract)])


def fts(store: Store, word: str) -> list[int]:
    rows = store.conn.execute(
        "SELECT rowid FROM articles_fts WHERE articles_fts MATCH ? ORDER BY rowid", (word,)
    )
    return [r[0] for r in rows]


def triggers(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0]


def fts_check(store: Store) -> None:
    """FTS5's own check that the index matches the articles' text exactly."""
    store.conn.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)")


def test_fts_follows_inserts_updates_and_deletions_in_one_batch(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    assert triggers(store) == 0  # the writer keeps the index, one statement per batch
    run = store.start_run("test", {})
    store.apply(
        [article(1, "Metformin and cancer", "Cohort study."), article(2, "Aspirin", "Stroke.")],
        run_id=run,
        origin="a",
        origin_rank="a",
    )
    assert fts(store, "metformin") == [1]
    fts_check(store)
    store.apply(
        [
            article(1, "Insulin and cancer", "Cohort study."),  # a changed record: old words leave
            Deletion(pmids=[2]),
            article(3, "Metformin again", "Trial."),
            article(4, "Statins", "Meta-analysis."),
            Deletion(pmids=[4]),  # inserted and deleted in the same batch: never indexed
        ],
        run_id=run,
        origin="b",
        origin_rank="b",
    )
    assert fts(store, "metformin") == [3]
    assert fts(store, "insulin") == [1]
    assert fts(store, "aspirin") == fts(store, "statins") == []
    fts_check(store)


def test_a_failed_batch_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    run = store.start_run("test", {})
    store.apply([article(1, "Metformin", "Text.")], run_id=run, origin="t")
    with pytest.raises(RuntimeError), store.transaction():
        store.apply_in_transaction([article(2, "Metformin two", "Text.")], run_id=run, origin="t")
        raise RuntimeError("killed before the commit")
    assert fts(store, "metformin") == [1]
    fts_check(store)


def _old_library(path: Path, *, killed_in_bulk_load: bool) -> None:
    """A library as medlit 0.1 before migration 005 left it: FTS5 row triggers, and perhaps a bulk load
    it was killed in (triggers set aside, the index missing the rows loaded meanwhile)."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn)
    old = [(name, fn) for name, fn in MIGRATIONS if name < "005"]
    with patch("ingest.migrations.MIGRATIONS", old):
        migrate(db)
    conn.execute(
        "INSERT INTO articles (pmid, version, title, abstract, has_abstract, retracted, kind, record, "
        "content_hash) VALUES (1, 1, 'Metformin and cancer', 'Cohort.', 1, 0, 'article', '{}', 'x')"
    )
    if killed_in_bulk_load:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        conn.execute("INSERT INTO library_state (key, value) VALUES ('fts_triggers_set_aside', '[]')")
        for name in names:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(
            "INSERT INTO articles (pmid, version, title, abstract, has_abstract, retracted, kind, record, "
            "content_hash) VALUES (2, 1, 'Metformin in the elderly', 'Trial.', 1, 0, 'article', '{}', 'y')"
        )
    conn.close()


@pytest.mark.parametrize("killed_in_bulk_load", [False, True])
def test_an_older_library_is_migrated_to_the_writer_kept_index(
    tmp_path: Path, killed_in_bulk_load: bool
) -> None:
    path = tmp_path / "library.db"
    _old_library(path, killed_in_bulk_load=killed_in_bulk_load)
    store = Store(path)
    assert triggers(store) == 0
    assert fts(store, "metformin") == ([1, 2] if killed_in_bulk_load else [1])
    assert store.conn.execute("SELECT count(*) FROM library_state").fetchone()[0] == 0
    fts_check(store)
    run = store.start_run("test", {})
    store.apply([article(1, "Insulin", "Cohort.")], run_id=run, origin="t")
    assert fts(store, "metformin") == ([2] if killed_in_bulk_load else [])
    fts_check(store)


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    Store(path).close()
    store = Store(path)
    assert applied(store.db) == [name for name, _ in MIGRATIONS]


def _hold_exclusive_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's view of a new library: a plain (rollback-journal) file, exclusively locked."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("CREATE TABLE IF NOT EXISTS being_created (x)")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait()
    return thread


def _open_library(path: Path, results: Any) -> None:
    try:
        Store(path, busy_timeout_ms=10_000).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_processes_creating_the_same_new_library_at_once_all_open_it(tmp_path: Path) -> None:
    """Switching a new file to WAL can answer SQLITE_BUSY without SQLite's busy handler: without the retry,
    about 1 of 50 such opens failed with "database is locked" (and so did two ``medlit ingest`` at once)."""
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(100):
        path = tmp_path / f"round{round_}" / "library.db"
        path.parent.mkdir()
        results = ctx.Queue()
        openers = [ctx.Process(target=_open_library, args=(path, results)) for _ in range(4)]
        for opener in openers:
            opener.start()
        outcomes += [results.get(timeout=60) for _ in openers]
        for opener in openers:
            opener.join()
    assert [o for o in outcomes if o != "ok"] == []


def test_a_library_locked_past_the_busy_timeout_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    holder = _hold_exclusive_lock(path, 1.5)
    with pytest.raises(LibraryError, match="locked"):
        Store(path, busy_timeout_ms=200)
    holder.join()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_was_killed_is_closed_as_interrupted(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    killed = store.start_run("files", {})
    ours = store.start_run("files", {})
    elsewhere = store.start_run("files", {})
    older = store.start_run("files", {})
    store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), killed))
    store.conn.execute(
        "UPDATE runs SET host = 'another-machine', pid = ? WHERE id = ?", (_dead_pid(), elsewhere)
    )
    store.conn.execute(
        "UPDATE runs SET host = NULL, pid = NULL WHERE id = ?", (older,)
    )  # before migration 006
    listed = {row["id"]: row["status"] for row in store.runs()}
    assert listed == {killed: "interrupted", ours: "running", elsewhere: "running", older: "running"}
    stored = dict(store.conn.execute("SELECT id, status FROM runs").fetchall())
    assert stored[killed] == "running"  # listing writes nothing
    store.start_run("jsonl", {})  # the next run closes it for good
    row = store.conn.execute("SELECT status, finished_at, error FROM runs WHERE id = ?", (killed,)).fetchone()
    assert row[0] == "interrupted" and row[1] and "killed" in row[2]
    assert dict(store.conn.execute("SELECT id, status FROM runs").fetchall())[ours] == "running"
