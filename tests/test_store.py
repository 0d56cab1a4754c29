"""The library's own guarantees: bulk loads leave FTS5 in sync even when killed, migrations are recorded."""

from __future__ import annotations

from pathlib import Path

from ingest.article import AbstractSection, Article
from ingest.migrations import MIGRATIONS, applied
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


def test_bulk_load_rebuilds_fts_and_restores_triggers(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    assert triggers(store) == 3
    assert store.begin_bulk_load()
    assert triggers(store) == 0
    run = store.start_run("test", {})
    store.apply(
        [article(1, "Metformin and cancer", "Cohort study."), article(2, "Aspirin", "Stroke.")],
        run_id=run,
        origin="t",
    )
    store.end_bulk_load()
    assert triggers(store) == 3
    assert fts(store, "metformin") == [1]
    store.apply([article(3, "Metformin again", "Trial.")], run_id=run, origin="t")  # triggers work again
    assert fts(store, "metformin") == [1, 3]


def test_a_killed_bulk_load_is_finished_by_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    store = Store(path)
    store.begin_bulk_load()
    run = store.start_run("test", {})
    store.apply([article(7, "Statins in the elderly", "Review.")], run_id=run, origin="t")
    store.conn.close()  # as if killed: end_bulk_load never ran
    reopened = Store(path)
    assert triggers(reopened) == 3
    assert fts(reopened, "statins") == [7]
    assert reopened.integrity_check() == "ok"


def test_bulk_load_only_into_an_empty_library(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    run = store.start_run("test", {})
    store.apply([article(1, "One", "Text.")], run_id=run, origin="t")
    assert not store.begin_bulk_load()
    assert triggers(store) == 3


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    Store(path).close()
    store = Store(path)
    assert applied(store.db) == [name for name, _ in MIGRATIONS]
