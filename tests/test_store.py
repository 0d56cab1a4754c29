"""The library's own guarantees: records stored compressed and read back whole, a failed batch leaves
nothing, older libraries migrate (FTS5 dropped, records compressed, content hashes kept), migrations are
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
from ingest.article import AbstractSection, Article
from ingest.migrations import MIGRATIONS, applied, migrate
from ingest.store import Store


def article(pmid: int, title: str, abstract: str) -> Article:
    return Article(pmid=pmid, title=title, abstract_sections=[AbstractSection(text=abstract)])


def test_records_are_stored_compressed_and_read_back_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    run = store.start_run("test", {})
    articles = [
        article(1, "Metformin and cancer", "Cohort study of " + "patients with diabetes " * 40),
        article(2, "β-blockers après infarctus", "Étude ±4.1 ml·kg-1·min-1."),
    ]
    store.apply(articles, run_id=run, origin="a")
    rows = store.conn.execute("SELECT typeof(record), length(record) FROM articles ORDER BY pmid").fetchall()
    assert [kind for kind, _n in rows] == ["blob", "blob"]
    assert rows[0][1] < len(articles[0].to_json().encode()) / 3
    assert store.get(1) == articles[0] and store.get(2) == articles[1]
    assert store.get_many([2, 1]) == {1: articles[0], 2: articles[1]}
    digest = store.conn.execute("SELECT content_hash FROM articles WHERE pmid = 2").fetchone()[0]
    assert digest == articles[1].content_hash()  # the hash of the JSON, not of its stored form


def test_a_damaged_record_is_one_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    store.apply([article(1, "Metformin", "Text.")], run_id=store.start_run("test", {}), origin="t")
    store.conn.execute("UPDATE articles SET record = substr(record, 1, 20) WHERE pmid = 1")
    with pytest.raises(LibraryError, match="damaged"):
        store.get(1)


def test_a_failed_batch_leaves_the_library_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    run = store.start_run("test", {})
    store.apply([article(1, "Metformin", "Text.")], run_id=run, origin="t")
    with pytest.raises(RuntimeError), store.transaction():
        store.apply_in_transaction([article(2, "Metformin two", "Text.")], run_id=run, origin="t")
        raise RuntimeError("killed before the commit")
    assert [r[0] for r in store.conn.execute("SELECT pmid FROM articles")] == [1]


def _old_library(path: Path) -> Article:
    """A library as medlit left it before migrations 007-008: FTS5 inside, records as JSON text."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn)
    old = [(name, fn) for name, fn in MIGRATIONS if name < "007"]
    with patch("ingest.migrations.MIGRATIONS", old):
        migrate(db)
    stored = article(1, "Metformin and cancer", "Cohort.")
    conn.execute(
        "INSERT INTO articles (pmid, version, title, abstract, has_abstract, retracted, kind, record, "
        "content_hash) VALUES (1, 1, 'Metformin and cancer', 'Cohort.', 1, 0, 'article', ?, ?)",
        (stored.to_json(), stored.content_hash()),
    )
    conn.execute("INSERT INTO articles_fts (rowid, title, abstract) VALUES (1, 'Metformin and cancer', 'x')")
    conn.close()
    return stored


def test_an_older_library_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    stored = _old_library(path)
    store = Store(path)
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not any(name.startswith("articles_fts") for name in tables)
    assert store.conn.execute("SELECT typeof(record), content_hash FROM articles").fetchone() == (
        "blob",
        stored.content_hash(),
    )
    assert store.get(1) == stored


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
