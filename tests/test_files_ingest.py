"""ingest_files end to end into a real library (a Store in tmp_path): the 2016 MEDLINE file and current
records, PubMed's file ordering rules (name order, Version, DeleteCitation), MD5 sidecars, bad input,
interrupted and truncated runs, and the faithful round trip of an Article through the library."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.hit import Filters
from indexes.lexical_index import LexicalIndex
from ingest.article import Article
from ingest.pubmed_xml import iter_records
from ingest.record_codec import decode
from ingest.run import ingest_files
from ingest.store import Store
from tests.conftest import SHARED_DATA

ENTREZ = SHARED_DATA / "fixtures" / "entrez"
PUBMED_XML = SHARED_DATA / "fixtures" / "pubmed_xml"
MEDLINE16 = PUBMED_XML / "medline16n0902.xml.gz"
CURRENT = PUBMED_XML / "test_current_medline.xml.gz"
DELETED_BY_MEDLINE16 = 26432306


# ----- helpers ----------------------------------------------------------------------------------------


def ingest(store: Store, *paths: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", False)
    report = ingest_files(store, list(paths), **kwargs)
    assert report.counts.consistent, report.to_dict()
    return report


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a user could see of the library, row for row."""
    conn = store.conn
    return {
        "articles": conn.execute("SELECT * FROM articles ORDER BY pmid").fetchall(),
        "mesh": conn.execute("SELECT * FROM article_mesh ORDER BY pmid, descriptor").fetchall(),
        "types": conn.execute("SELECT * FROM article_publication_types ORDER BY pmid, name").fetchall(),
        "deleted": conn.execute("SELECT * FROM deleted_articles ORDER BY pmid").fetchall(),
        "files": conn.execute("SELECT * FROM files ORDER BY id").fetchall(),
    }


def content(store: Store) -> dict[str, Any]:
    """The library's content, independent of when and by which run it was written."""
    conn = store.conn
    return {
        "articles": conn.execute(
            "SELECT pmid, version, content_hash, record FROM articles ORDER BY pmid"
        ).fetchall(),
        "deleted": [r[0] for r in conn.execute("SELECT pmid FROM deleted_articles ORDER BY pmid")],
    }


def _lexical(store: Store) -> LexicalIndex:
    """The store's lexical index, brought up to date (in a folder of its own beside the library)."""
    index = LexicalIndex(store, Settings(home=store.path.with_suffix(".home")))
    index.update(progress=False)
    return index


def fts(store: Store, word: str) -> set[int]:
    """The articles whose title or abstract holds ``word``, as the lexical index finds them."""
    return {pmid for pmid, _s in _lexical(store).search(word, 1000, filters=Filters(include_retracted=True))}


def fts_intact(store: Store) -> None:
    report = _lexical(store).verify()
    assert report.ok, report.to_dict()


def file_row(store: Store, name: str) -> dict[str, Any]:
    cursor = store.conn.execute("SELECT * FROM files WHERE name = ? ORDER BY id DESC", (name,))
    row = cursor.fetchone()
    assert row is not None, name
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def citation(pmid: int, title: str, *, version: int = 1, abstract: str = "A plain abstract.") -> str:
    return f"""
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="{version}">{pmid}</PMID>
    <Article PubModel="Print">
      <Journal><JournalIssue><PubDate><Year>2020</Year></PubDate></JournalIssue>
        <Title>Journal of constructed examples</Title><ISOAbbreviation>J Constr Ex</ISOAbbreviation></Journal>
      <ArticleTitle>{title}</ArticleTitle>
      <Abstract><AbstractText>{abstract}</AbstractText></Abstract>
      <Language>eng</Language>
      <PublicationTypeList>
        <PublicationType UI="D016428">Journal Article</PublicationType>
      </PublicationTypeList>
    </Article>
  </MedlineCitation>
  <PubmedData><PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList></PubmedData>
</PubmedArticle>"""


def deletion(*pmids: int) -> str:
    return "<DeleteCitation>" + "".join(f'<PMID Version="1">{p}</PMID>' for p in pmids) + "</DeleteCitation>"


def pubmed_file(path: Path, *parts: str) -> Path:
    path.write_text('<?xml version="1.0" ?>\n<PubmedArticleSet>' + "".join(parts) + "</PubmedArticleSet>\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "library.db") as opened:
        yield opened


# ----- whole files ----------------------------------------------------------------------------------------


def test_medline_and_current_files(store: Store) -> None:
    report = ingest(store, CURRENT, MEDLINE16)
    assert report.status == "done"
    counts = report.counts
    assert (
        counts.seen,
        counts.inserted,
        counts.updated,
        counts.unchanged,
        counts.deleted,
        counts.failed,
    ) == (
        609,
        608,
        0,
        0,
        1,
        0,
    )
    # Name order, whatever the command line said.
    assert [(f["file"], f["status"], f["records"]) for f in report.files] == [
        ("medline16n0902.xml.gz", "applied", 605),
        ("test_current_medline.xml.gz", "applied", 4),
    ]
    stats = store.stats()
    assert stats["articles"] == 608
    assert stats["with_abstract"] == 529  # 526 of the MEDLINE file + 3 of the 4 current records
    assert stats["without_abstract"] == 79
    assert (stats["year_min"], stats["year_max"]) == (1985, 2023)
    assert (stats["books"], stats["retracted"], stats["failures"]) == (0, 0, 0)
    assert (stats["deleted_pmids"], stats["files_processed"], stats["runs"]) == (1, 2, 1)
    [run] = store.runs()
    assert run["status"] == "done"
    assert (run["seen"], run["inserted"], run["deleted"]) == (609, 608, 1)
    # The lexical index over title and abstract, built from the library.
    assert fts(store, "neuroplasticity") == {17942999, 19368899, 26703906}
    assert {36400559, 2930949, 11446611} <= fts(store, "back pain")
    assert 2930949 in fts(store, "lumbar")  # abstract only: "Lumbar spine radiographs are overused"
    fts_intact(store)
    # The DeleteCitation PMID is a tombstone, not an article.
    assert store.get(DELETED_BY_MEDLINE16) is None
    assert store.conn.execute(
        "SELECT origin, origin_rank FROM deleted_articles WHERE pmid = ?", (DELETED_BY_MEDLINE16,)
    ).fetchall() == [("medline16n0902.xml.gz", "medline16n0902.xml.gz")]
    # Side tables for filters.
    assert store.conn.execute(
        "SELECT descriptor, major FROM article_mesh WHERE pmid = 36400559 ORDER BY descriptor"
    ).fetchall() == [
        ("Anti-Inflammatory Agents, Non-Steroidal", 0),
        ("Back Pain", 0),
        ("Cognitive Behavioral Therapy", 1),
        ("Diagnosis, Differential", 0),
        ("Humans", 0),
        ("Low Back Pain", 1),
    ]
    assert store.conn.execute(
        "SELECT name FROM article_publication_types WHERE pmid = 28786991 ORDER BY name"
    ).fetchall() == [("Journal Article",), ("Meta-Analysis",), ("Review",), ("Systematic Review",)]
    assert file_row(store, "medline16n0902.xml.gz")["records_done"] == 605
    assert store.integrity_check() == "ok"


def test_reingesting_the_same_file_changes_nothing(store: Store, tmp_path: Path) -> None:
    ingest(store, MEDLINE16)
    before = snapshot(store)
    again = ingest(store, MEDLINE16)
    assert again.status == "done"
    assert again.files == [{"file": "medline16n0902.xml.gz", "status": "already applied", "records": 605}]
    assert (again.counts.seen, again.counts.inserted, again.counts.updated) == (0, 0, 0)
    assert snapshot(store) == before
    # The same bytes under another name are the same file.
    renamed = shutil.copy(MEDLINE16, tmp_path / "copy-of-medline16.xml.gz")
    assert ingest(store, Path(renamed)).files[0]["status"] == "already applied"
    assert snapshot(store) == before


def test_files_run_with_the_parser_in_a_worker_process(store: Store, tmp_path: Path) -> None:
    report = ingest(store, CURRENT, workers=True, batch_size=3)
    assert (report.status, report.counts.inserted) == ("done", 4)
    serial = Store(tmp_path / "serial.db")
    ingest(serial, CURRENT)
    assert content(store) == content(serial)


# ----- PubMed's ordering rules ----------------------------------------------------------------------------


def test_later_file_name_wins_whatever_the_command_line_order(store: Store, tmp_path: Path) -> None:
    a = pubmed_file(tmp_path / "pubmed25n0001.xml", citation(40000001, "Alpha title about kidneys."))
    b = pubmed_file(tmp_path / "pubmed25n0002.xml", citation(40000001, "Beta title about livers."))
    report = ingest(store, b, a)
    assert [f["file"] for f in report.files] == ["pubmed25n0001.xml", "pubmed25n0002.xml"]
    assert (report.counts.inserted, report.counts.updated) == (1, 1)
    article = store.get(40000001)
    assert article is not None and article.title == "Beta title about livers."
    assert fts(store, "livers") == {40000001}
    assert fts(store, "kidneys") == set()  # the lexical index followed the update
    fts_intact(store)


def test_an_older_file_applied_later_does_not_replace(store: Store, tmp_path: Path) -> None:
    b = pubmed_file(tmp_path / "pubmed25n0002.xml", citation(40000002, "Newer text."))
    a = pubmed_file(tmp_path / "pubmed25n0001.xml", citation(40000002, "Older text."))
    ingest(store, b)
    report = ingest(store, a)
    assert (report.counts.seen, report.counts.unchanged) == (1, 1)
    article = store.get(40000002)
    assert article is not None and article.title == "Newer text."


def test_higher_version_wins_regardless_of_file_order(store: Store, tmp_path: Path) -> None:
    a = pubmed_file(tmp_path / "pubmed25n0001.xml", citation(40000003, "Second version.", version=2))
    b = pubmed_file(tmp_path / "pubmed25n0002.xml", citation(40000003, "First version.", version=1))
    report = ingest(store, a, b)
    assert (report.counts.inserted, report.counts.unchanged) == (1, 1)
    article = store.get(40000003)
    assert article is not None and (article.version, article.title) == (2, "Second version.")
    # And a higher Version in an older file applied later still replaces a lower one.
    other = Store(tmp_path / "other.db")
    ingest(other, b)
    assert ingest(other, a).counts.updated == 1
    again = other.get(40000003)
    assert again is not None and (again.version, again.title) == (2, "Second version.")


def test_delete_citation_in_a_later_file_removes(store: Store, tmp_path: Path) -> None:
    a = pubmed_file(
        tmp_path / "pubmed25n0001.xml",
        citation(40000004, "Doomed record about spleens."),
        citation(40000005, "Kept record."),
    )
    c = pubmed_file(tmp_path / "pubmed25n0003.xml", citation(40000006, "Unrelated."), deletion(40000004))
    ingest(store, a)
    report = ingest(store, c)
    assert (report.counts.seen, report.counts.inserted, report.counts.deleted) == (2, 1, 1)
    assert store.get(40000004) is None
    assert store.get(40000005) is not None
    assert fts(store, "spleens") == set()
    assert store.conn.execute("SELECT count(*) FROM article_mesh WHERE pmid = 40000004").fetchone()[0] == 0
    assert store.conn.execute("SELECT origin FROM deleted_articles WHERE pmid = 40000004").fetchone() == (
        "pubmed25n0003.xml",
    )
    fts_intact(store)
    # An older file ingested afterwards does not resurrect it...
    b = pubmed_file(tmp_path / "pubmed25n0002.xml", citation(40000004, "Doomed record, revised."))
    assert ingest(store, b).counts.unchanged == 1
    assert store.get(40000004) is None
    # ...even when that run also carries an older deletion of the same PMID before it
    # (the later file's tombstone must not be replaced by the older one's).
    a0 = pubmed_file(tmp_path / "pubmed25n0000.xml", citation(40000007, "Filler."), deletion(40000004))
    b2 = pubmed_file(tmp_path / "pubmed25n0002b.xml", citation(40000004, "Doomed record, again."))
    ingest(store, b2, a0)
    assert store.get(40000004) is None
    assert store.conn.execute("SELECT origin FROM deleted_articles WHERE pmid = 40000004").fetchone() == (
        "pubmed25n0003.xml",
    )
    # A file later than the deletion brings it back, and the tombstone goes.
    d = pubmed_file(tmp_path / "pubmed25n0004.xml", citation(40000004, "Reinstated."))
    assert ingest(store, d).counts.inserted == 1
    reinstated = store.get(40000004)
    assert reinstated is not None and reinstated.title == "Reinstated."
    assert store.conn.execute("SELECT count(*) FROM deleted_articles WHERE pmid = 40000004").fetchone() == (
        0,
    )


def test_an_older_copy_of_a_record_does_not_lower_its_rank(store: Store, tmp_path: Path) -> None:
    # 0003 and 0001 carry the same record; 0002 (between them) a different one. By name order 0003 wins.
    # (Each file also has a record of its own: files are told apart by their content.)
    latest = pubmed_file(
        tmp_path / "pubmed25n0003.xml", citation(40000008, "Final wording."), citation(40000013, "Three.")
    )
    oldest = pubmed_file(
        tmp_path / "pubmed25n0001.xml", citation(40000008, "Final wording."), citation(40000011, "One.")
    )
    middle = pubmed_file(
        tmp_path / "pubmed25n0002.xml", citation(40000008, "Interim wording."), citation(40000012, "Two.")
    )
    ingest(store, latest)
    ingest(store, oldest)
    ingest(store, middle)
    article = store.get(40000008)
    assert article is not None and article.title == "Final wording."
    reference = Store(tmp_path / "reference.db")
    ingest(reference, middle, oldest, latest)
    assert content(store)["articles"] == content(reference)["articles"]


def test_a_directory_is_expanded_to_its_xml_files_in_name_order(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "updates"
    folder.mkdir()
    b = pubmed_file(folder / "pubmed25n0002.xml", citation(40000009, "From the second file."))
    a = pubmed_file(folder / "pubmed25n0001.xml", citation(40000009, "From the first file."))
    digest = hashlib.md5(a.read_bytes(), usedforsecurity=False).hexdigest()
    (folder / "pubmed25n0001.xml.md5").write_text(f"MD5(pubmed25n0001.xml)= {digest}\n")
    (folder / "README.txt").write_text("not a PubMed file\n")
    report = ingest(store, folder)
    assert [(f["file"], f["md5_checked"]) for f in report.files] == [
        ("pubmed25n0001.xml", True),
        ("pubmed25n0002.xml", False),
    ]
    article = store.get(40000009)
    assert article is not None and article.title == "From the second file."
    assert b.exists()


# ----- MD5 sidecars ---------------------------------------------------------------------------------------


def test_md5_sidecar_accepted(store: Store, tmp_path: Path) -> None:
    path = Path(shutil.copy(CURRENT, tmp_path / "pubmed25n1275.xml.gz"))
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    (tmp_path / "pubmed25n1275.xml.gz.md5").write_text(f"MD5(pubmed25n1275.xml.gz)= {digest}\n")
    report = ingest(store, path)
    assert report.files == [
        {"file": "pubmed25n1275.xml.gz", "status": "applied", "records": 4, "md5_checked": True}
    ]
    assert file_row(store, "pubmed25n1275.xml.gz")["md5_checked"] == 1
    assert store.count() == 4


def test_md5_mismatch_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = Path(shutil.copy(CURRENT, tmp_path / "pubmed25n1275.xml.gz"))
    wrong = hashlib.md5(b"something else", usedforsecurity=False).hexdigest()
    (tmp_path / "pubmed25n1275.xml.gz.md5").write_text(f"MD5(pubmed25n1275.xml.gz)= {wrong}\n")
    with pytest.raises(InputError, match=r"MD5 mismatch"):
        ingest(store, path)
    assert store.count() == 0
    assert store.conn.execute("SELECT count(*) FROM files").fetchone() == (0,)
    assert store.runs() == []


# ----- bad input leaves the library as it was -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.xml", None, "no such file"),
        ("notes.xml", b"PMID- 12345\nTI  - MEDLINE text, not XML\n", "not an XML"),
        ("empty.xml.gz", b"", "empty file"),
    ],
    ids=["missing", "text", "empty"],
)
def test_bad_file_among_good_ones_applies_nothing(
    store: Store, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    ingest(store, CURRENT)
    before = snapshot(store)
    runs_before = store.runs()
    good = pubmed_file(tmp_path / "aaa-first.xml", citation(40000010, "Good record."))
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        ingest(store, good, bad, MEDLINE16)
    assert snapshot(store) == before
    assert store.runs() == runs_before
    assert store.get(40000010) is None


def test_html_saved_as_xml_among_good_files_applies_nothing(store: Store, tmp_path: Path) -> None:
    html = Path(shutil.copy(ENTREZ / "pubmed3.html", tmp_path / "zzz-efetch.xml"))
    good = pubmed_file(tmp_path / "aaa-first.xml", citation(40000011, "Good record."))
    with pytest.raises(InputError, match="not a PubMed XML"):
        ingest(store, good, html)
    assert store.count() == 0


def test_html_saved_as_xml_alone_fails_clearly(store: Store, tmp_path: Path) -> None:
    html = Path(shutil.copy(ENTREZ / "pubmed3.html", tmp_path / "efetch.xml"))
    with pytest.raises(InputError, match=r"not a PubMed XML file \(root element is html\)"):
        ingest(store, html)
    assert store.count() == 0
    assert store.runs() == []


# ----- interrupted and truncated runs ---------------------------------------------------------------------


def interrupting(after: int) -> Callable[[Path], Iterator[Any]]:
    """A parser that stops like Ctrl-C after ``after`` records."""

    def parse(path: Path) -> Iterator[Any]:
        for index, record in enumerate(iter_records(path)):
            if index == after:
                raise KeyboardInterrupt
            yield record

    return parse


def test_interrupted_run_resumes_to_the_same_library(store: Store, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        ingest(store, MEDLINE16, batch_size=50, parse=interrupting(230))
    # Four batches of 50 were committed with their checkpoint; the fifth was rolled back.
    assert store.count() == 200
    state = file_row(store, "medline16n0902.xml.gz")
    assert (state["status"], state["records_done"]) == ("running", 200)
    resumed = ingest(store, MEDLINE16, batch_size=50, workers=True)
    assert resumed.status == "done"
    assert resumed.notes == ["medline16n0902.xml.gz: resuming after 200 records"]
    counts = resumed.counts
    assert (counts.seen, counts.inserted, counts.updated, counts.unchanged, counts.deleted) == (
        405,
        404,
        0,
        0,
        1,
    )
    state = file_row(store, "medline16n0902.xml.gz")
    assert (state["status"], state["records_done"]) == ("done", 605)
    uninterrupted = Store(tmp_path / "uninterrupted.db")
    ingest(uninterrupted, MEDLINE16)
    assert content(store) == content(uninterrupted)
    fts_intact(store)


def test_interrupted_run_is_recorded_as_such(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        ingest(store, MEDLINE16, batch_size=50, parse=interrupting(60))
    [run] = store.runs()
    assert run["status"] != "running"
    assert run["finished_at"] is not None


def truncated_copy(directory: Path) -> Path:
    directory.mkdir()
    data = MEDLINE16.read_bytes()
    path = directory / MEDLINE16.name
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_gzip_fails_clearly_and_the_complete_file_finishes(store: Store, tmp_path: Path) -> None:
    cut = truncated_copy(tmp_path / "partial")
    report = ingest(store, cut, batch_size=50)
    assert report.status == "failed"
    assert report.error.startswith(f"{cut}: compressed file is truncated or corrupt after 209 records")
    assert report.files[0]["status"] == "failed"
    state = file_row(store, MEDLINE16.name)
    assert state["status"] == "failed"
    assert state["error"] == report.error
    assert store.runs()[0]["status"] == "failed"
    # What was stored is a complete, correct prefix of the file.
    expected = [r for r in iter_records(MEDLINE16) if isinstance(r, Article)]
    stored = state["records_done"]
    assert 0 < stored <= 209
    assert store.count() == stored
    for article in expected[:stored]:
        assert store.get(article.pmid) == article
    # The complete file, downloaded again, finishes the job.
    done = ingest(store, MEDLINE16)
    assert done.status == "done"
    assert (done.counts.seen, done.counts.unchanged, done.counts.inserted) == (605, stored, 604 - stored)
    uninterrupted = Store(tmp_path / "uninterrupted.db")
    ingest(uninterrupted, MEDLINE16)
    assert content(store) == content(uninterrupted)


def test_truncated_gzip_keeps_every_record_before_the_cut(store: Store, tmp_path: Path) -> None:
    cut = truncated_copy(tmp_path / "partial")
    report = ingest(store, cut, batch_size=50)
    assert report.status == "failed"
    assert store.count() == 209
    assert file_row(store, MEDLINE16.name)["records_done"] == 209


# ----- the round trip -------------------------------------------------------------------------------------


def test_store_get_returns_the_parsed_article(store: Store) -> None:
    files = [ENTREZ / f"pubmed{n}.xml" for n in (1, 2, 4, 5, 6, 7)] + [
        PUBMED_XML / "pubmed-29768149.xml",
        CURRENT,
    ]
    ingest(store, *files)
    parsed = [r for path in files for r in iter_records(path) if isinstance(r, Article)]
    assert len(parsed) == 13
    for article in parsed:
        assert store.get(article.pmid) == article
    assert store.get_many([a.pmid for a in parsed]) == {a.pmid: a for a in parsed}
    unicode_rich = store.get(30108519)
    assert unicode_rich is not None
    assert "67.6 ± 4.1 ml·kg-1·min-1" in unicode_rich.abstract
    assert "≈7%" in unicode_rich.abstract
    imaging = store.get(29963580)
    assert imaging is not None and "Xe129\N{THIN SPACE}MRI" in imaging.abstract
    # Stored as UTF-8 text, not \\u escapes, in both the record (once decompressed) and the search columns.
    stored, stored_abstract = store.conn.execute(
        "SELECT record, abstract FROM articles WHERE pmid = 30108519"
    ).fetchone()
    record, abstract = decode(stored), decode(stored_abstract)
    assert "±" in record and "\\u00b1" not in record
    assert "±" in abstract
    assert 30108519 in fts(store, "consanguinity") | fts(store, "blood relationship")


def test_italian_records_round_trip(store: Store) -> None:
    ingest(store, MEDLINE16)
    italian = [r for r in iter_records(MEDLINE16) if isinstance(r, Article) and r.languages == ["ita"]]
    assert len(italian) == 18
    assert any(not a.title.isascii() for a in italian)
    for article in italian:
        assert store.get(article.pmid) == article
