"""The lexical index kept identical to the library: the change feed (new, changed, deleted), generations
that never touch the one being served, verify, and damage refused clearly and repaired by a build."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from foundation.errors import LibraryError
from foundation.settings import Settings
from indexes.lexical_index import NAME, SCHEMA_VERSION, LexicalIndex
from indexes.search import Searcher
from ingest.article import AbstractSection, Article, Deletion
from ingest.store import Store
from medlit.cli import cli


def article(pmid: int, title: str, abstract: str = "") -> Article:
    sections = [AbstractSection(text=abstract)] if abstract else []
    return Article(pmid=pmid, title=title, abstract_sections=sections, year=2020)


@pytest.fixture
def library(tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    settings = Settings(home=tmp_path / "home")
    with Store.open(settings) as store:
        store.apply(
            [
                article(1, "Metformin and cancer", "A cohort of patients with diabetes."),
                article(2, "Aspirin after stroke", "A randomised trial."),
                article(3, "Statins and cholesterol", "A meta-analysis."),
                Article(pmid=4),  # no title, no abstract: nothing to index
            ],
            run_id=store.start_run("test", {}),
            origin="t",
        )
        yield store, settings


def found(index: LexicalIndex, question: str) -> set[int]:
    return {pmid for pmid, _s in index.search(question, 100)}


def test_the_change_feed_adds_changes_and_removes(library: tuple[Store, Settings]) -> None:
    store, settings = library
    index = LexicalIndex(store, settings)
    first = index.build(progress=False)
    assert (first.added, first.removed, first.count) == (3, 0, 3)
    assert index.verify().ok
    assert found(index, "metformin") == {1}
    run = store.start_run("test", {})
    store.apply(
        [article(2, "Metformin after stroke", "A randomised trial."), Deletion([3]), article(5, "Insulin")],
        run_id=run,
        origin="t",
    )
    stale = index.verify()
    assert (stale.ok, stale.missing, stale.extra, stale.stale) == (False, [5], [3], [2])
    assert found(index, "statins") == {3}  # the index as it was is served until it is updated
    assert Searcher(store, settings).search("statins", 5, mode="bm25") == []  # deleted: never served
    update = index.update(progress=False)
    assert (update.added, update.removed, update.unchanged, update.count) == (2, 2, 1, 3)
    assert index.verify().ok
    assert found(index, "metformin") == {1, 2}
    assert found(index, "statins") == set() and found(index, "aspirin") == set()  # the old text left
    assert found(index, "insulin") == {5}
    again = index.update(progress=False)
    assert (again.added, again.removed, again.unchanged) == (0, 0, 3)


def test_an_update_leaves_the_served_generation_untouched(
    library: tuple[Store, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = library
    index = LexicalIndex(store, settings)
    index.build(progress=False)
    old = settings.index_dir / index.manifest().file
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    store.apply([article(6, "Metformin in the elderly")], run_id=store.start_run("t", {}), origin="t")
    removed: list[Path] = []
    real = shutil.rmtree
    monkeypatch.setattr(
        "indexes.lexical_index.shutil.rmtree",
        lambda path, ignore_errors=False: removed.append(Path(path)) if Path(path) == old else real(path),
    )
    index.update(progress=False)
    assert old in removed  # removed only after the library named the new one...
    after = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    assert {n: b for n, b in after.items() if not n.startswith(".tantivy")} == {
        n: b for n, b in before.items() if not n.startswith(".tantivy")
    }  # ... and not a byte of it changed meanwhile (the new one hard-links its segments)
    new = settings.index_dir / index.manifest().file
    shared = [p for p in new.iterdir() if (old / p.name).exists() and os.path.samefile(p, old / p.name)]
    assert any(p.suffix == ".idx" for p in shared)


def test_stray_generations_are_removed_and_never_served(library: tuple[Store, Settings]) -> None:
    store, settings = library
    index = LexicalIndex(store, settings)
    index.build(progress=False)
    stray = settings.index_dir / f"{NAME}-0123456789ab"
    stray.mkdir()
    (stray / "meta.json").write_text("{}")
    assert found(index, "aspirin") == {2}
    store.apply([article(7, "Warfarin")], run_id=store.start_run("t", {}), origin="t")
    index.update(progress=False)
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [index.manifest().file]


def test_search_without_an_index_names_the_command(library: tuple[Store, Settings]) -> None:
    store, settings = library
    with pytest.raises(LibraryError, match=r"no lexical index yet: run `medlit index update`"):
        Searcher(store, settings).search("metformin", 5, mode="bm25")
    assert LexicalIndex(store, settings).document_frequency("metformin") == 0


def test_another_process_updating_is_picked_up(library: tuple[Store, Settings]) -> None:
    store, settings = library
    LexicalIndex(store, settings).build(progress=False)
    serving = LexicalIndex(store, settings)
    assert found(serving, "warfarin") == set()
    with Store.open(settings) as writer:
        writer.apply([article(8, "Warfarin and bleeding")], run_id=writer.start_run("t", {}), origin="t")
        LexicalIndex(writer, settings).update(progress=False)
    assert found(serving, "warfarin") == {8}  # reopened the generation the library names now


# ----- damage, as the user meets it ---------------------------------------------------------------


def medlit(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


@pytest.fixture
def home(library: tuple[Store, Settings]) -> Path:
    store, settings = library
    LexicalIndex(store, settings).build(progress=False)
    return settings.home


def served(home: Path) -> Path:
    info = json.loads(medlit(home, "index", "info", "--only", "lexical", "--json").stdout)["lexical"]
    return Path(info["path"])


def truncate_segment(path: Path, _home: Path) -> None:
    segment = next(p for p in path.iterdir() if p.suffix == ".idx")
    segment.write_bytes(segment.read_bytes()[:-7])


def changed_meta(path: Path, _home: Path) -> None:
    (path / "meta.json").write_text((path / "meta.json").read_text().replace('"opstamp"', '"opstamp" '))


def deleted_directory(path: Path, _home: Path) -> None:
    shutil.rmtree(path)


def other_schema(_path: Path, home: Path) -> None:
    with Store(home / "library.db") as store:
        extra = json.loads(
            store.conn.execute("SELECT extra FROM index_manifests WHERE name = ?", (NAME,)).fetchone()[0]
        )
        extra["schema_version"] = SCHEMA_VERSION + 1
        store.conn.execute("UPDATE index_manifests SET extra = ? WHERE name = ?", (json.dumps(extra), NAME))


def segment_changed_in_place(path: Path, _home: Path) -> None:
    segment = next(p for p in path.iterdir() if p.suffix == ".term")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))  # same size: only verify, which hashes every file, sees it


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncate_segment, "bytes, the manifest says"),
        (changed_meta, "does not match the library's manifest"),
        (deleted_directory, "is missing"),
        (other_schema, "built by another medlit"),
    ],
)
def test_a_damaged_lexical_index_is_refused_clearly_and_rebuilt(
    home: Path, damage: Callable[[Path, Path], None], message: str
) -> None:
    damage(served(home), home)
    for args in (["search", "cancer", "--mode", "bm25"], ["index", "update", "--only", "lexical"]):
        result = medlit(home, *args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert "medlit index build" in errors[0]
    verify = medlit(home, "index", "verify", "--only", "lexical")
    assert verify.exit_code == 1 and message in verify.stdout
    assert medlit(home, "index", "build", "--only", "lexical", "-q").exit_code == 0
    assert medlit(home, "index", "verify", "--only", "lexical").exit_code == 0
    assert json.loads(medlit(home, "search", "metformin", "--mode", "bm25", "--json").stdout)


def test_verify_hashes_every_file(home: Path) -> None:
    segment_changed_in_place(served(home), home)
    verify = medlit(home, "index", "verify", "--only", "lexical", "--json")
    assert verify.exit_code == 1
    assert any("does not match its checksum" in p for p in json.loads(verify.stdout)["lexical"]["problems"])


def test_a_reader_that_read_the_manifest_just_before_a_commit_opens_the_new_index(
    library: tuple[Store, Settings],
) -> None:
    """A reader reads the manifest, another process commits a newer index and removes the directory it
    named, then the reader opens that directory: it opens the one the library names now."""
    store, settings = library
    LexicalIndex(store, settings).build(progress=False)
    stale = LexicalIndex(store, settings).manifest()
    store.apply([article(9, "Heparin")], run_id=store.start_run("t", {}), origin="t")
    LexicalIndex(store, settings).update(progress=False)
    assert not (settings.index_dir / stale.file).exists()

    class ReadJustBeforeTheCommit(LexicalIndex):
        reads = 0

        def manifest(self):  # type: ignore[no-untyped-def]
            self.reads += 1
            return stale if self.reads == 1 else super().manifest()

    assert found(ReadJustBeforeTheCommit(store, settings), "heparin") == {9}
