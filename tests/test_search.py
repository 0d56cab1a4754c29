"""Dense index kept identical to the library, hybrid search with filters, the CLI, and the evaluation,
with the deterministic FakeEmbedder (the real model has its own tests in test_embedder.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from foundation.errors import InputError, LibraryError
from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from indexes.embedder import FakeEmbedder
from indexes.evaluation import mrr_at, ndcg_at, recall_at
from indexes.hit import Filters
from indexes.index_set import IndexSet
from indexes.search import Searcher, fuse
from ingest.article import Deletion
from ingest.run import ingest_jsonl
from ingest.store import Store
from medlit.cli import cli

ARTICLES = [
    {
        "pmid": 101,
        "title": "Metformin and cancer incidence in type 2 diabetes: a cohort study",
        "abstract": "Metformin users had lower cancer incidence than sulfonylurea users in type 2 diabetes.",
        "year": 2015,
        "publication_types": ["Journal Article", "Observational Study"],
        "mesh": ["Diabetes Mellitus, Type 2", "Metformin", "Neoplasms"],
        "language": "eng",
    },
    {
        "pmid": 102,
        "title": "Metformin for cancer prevention: a randomized controlled trial",
        "abstract": "In this randomized trial metformin did not reduce cancer incidence in diabetes.",
        "year": 2021,
        "publication_types": ["Journal Article", "Randomized Controlled Trial"],
        "mesh": ["Metformin", "Neoplasms"],
        "language": "eng",
    },
    {
        "pmid": 103,
        "title": "Aspirin for secondary prevention of stroke",
        "abstract": "Aspirin reduced recurrent stroke in patients after transient ischaemic attack.",
        "year": 2010,
        "publication_types": ["Journal Article", "Meta-Analysis"],
        "mesh": ["Aspirin", "Stroke"],
        "language": "eng",
    },
    {
        "pmid": 104,
        "title": "Metformine et cancer",
        "abstract": "Etude de la metformine et du cancer chez les diabetiques.",
        "year": 2018,
        "publication_types": ["Journal Article"],
        "language": "fre",
    },
    {
        "pmid": 105,
        "title": "Metformin prevents all cancers (retracted)",
        "abstract": "Metformin cancer incidence diabetes data that were later found fabricated.",
        "year": 2016,
        "publication_types": ["Journal Article"],
        "retracted": True,
        "language": "eng",
    },
    {
        "pmid": 106,
        "title": "Statins and muscle pain",
        "abstract": "Statin myalgia in older adults.",
        "year": 2019,
    },
    {
        "pmid": 107,
        "title": "",
        "abstract": "Vitamin D supplementation and fractures in elderly women.",
        "year": 2012,
    },
]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MEDLIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
    return Settings()


def write_corpus(path: Path, articles: list[dict]) -> Path:
    path.write_text("".join(json.dumps(a) + "\n" for a in articles))
    return path


@pytest.fixture
def library(settings: Settings, tmp_path: Path):
    store = Store.open(settings)
    ingest_jsonl(store, write_corpus(tmp_path / "corpus.jsonl", ARTICLES))
    yield store
    store.close()


def searcher_for(store: Store, settings: Settings) -> Searcher:
    return Searcher(store, settings, embedder=FakeEmbedder(64))


def test_build_then_verify(library: Store, settings: Settings) -> None:
    dense = DenseIndex(library, settings, embedder=FakeEmbedder(64))
    report = dense.build(progress=False)
    assert report.added == len(ARTICLES)
    assert report.count == len(ARTICLES)
    check = dense.verify()
    assert check.ok, check.to_dict()
    info = dense.info()
    assert info["model"] == "fake-hash-64" and info["count"] == report.vectors and info["kind"] == "flat"


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_finds_the_metformin_papers_and_hides_retracted(
    library: Store, settings: Settings, mode: str
) -> None:
    searcher = searcher_for(library, settings)
    searcher.lexical.build(progress=False)
    searcher.dense.build(progress=False)
    hits = searcher.search("Does metformin reduce cancer incidence in type 2 diabetes?", 3, mode=mode)
    pmids = [h.pmid for h in hits]
    assert set(pmids[:2]) == {101, 102}
    assert 105 not in pmids
    with_retracted = searcher.search(
        "metformin cancer incidence diabetes", 5, Filters(include_retracted=True), mode=mode
    )
    assert 105 in [h.pmid for h in with_retracted]
    assert all(h.retracted == (h.pmid == 105) for h in with_retracted)


def test_hybrid_hits_carry_provenance(library: Store, settings: Settings) -> None:
    searcher = searcher_for(library, settings)
    searcher.lexical.build(progress=False)
    searcher.dense.build(progress=False)
    hits = searcher.search("metformin cancer trial", 3)
    top = hits[0]
    assert top.dense_rank is not None and top.lexical_rank is not None
    assert top.dense_score is not None and top.lexical_score is not None
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        (Filters(year_min=2016, year_max=2024), {102, 104, 106}),
        (Filters(publication_types=["Randomized Controlled Trial"]), {102}),
        (Filters(mesh=["Diabetes Mellitus, Type 2"]), {101}),
        (Filters(languages=["fre"]), {104}),
        (Filters(year_max=2012), {103, 107}),
    ],
)
def test_filters_hold_in_every_mode(
    library: Store, settings: Settings, mode: str, filters: Filters, allowed: set[int]
) -> None:
    searcher = searcher_for(library, settings)
    searcher.lexical.build(progress=False)
    searcher.dense.build(progress=False)
    hits = searcher.search("metformin cancer aspirin stroke statin vitamin", 10, filters, mode=mode)
    found = {h.pmid for h in hits}
    assert found <= allowed
    if mode == "dense":
        assert found == allowed  # every allowed article has a vector, so dense returns them all


def test_update_embeds_only_changes_and_removes_deleted(
    library: Store, settings: Settings, tmp_path: Path
) -> None:
    dense = DenseIndex(library, settings, embedder=FakeEmbedder(64))
    dense.build(progress=False)
    changed = dict(ARTICLES[2], abstract="Aspirin and clopidogrel after minor stroke.")
    new = {"pmid": 108, "title": "SGLT2 inhibitors and heart failure", "abstract": "Empagliflozin trial."}
    ingest_jsonl(library, write_corpus(tmp_path / "more.jsonl", [changed, new]))
    run = library.start_run("test", {})
    library.apply([Deletion(pmids=[106])], run_id=run, origin="test")
    assert not dense.verify().ok
    report = DenseIndex(library, settings, embedder=FakeEmbedder(64)).update(progress=False)
    assert (report.added, report.removed) == (2, 2)  # 108 new, 103 changed; 103 old and 106 deleted removed
    check = DenseIndex(library, settings, embedder=FakeEmbedder(64)).verify()
    assert check.ok, check.to_dict()
    again = DenseIndex(library, settings, embedder=FakeEmbedder(64)).update(progress=False)
    assert (again.added, again.removed) == (0, 0)


def test_verify_reports_what_differs(library: Store, settings: Settings) -> None:
    dense = DenseIndex(library, settings, embedder=FakeEmbedder(64))
    dense.build(progress=False)
    run = library.start_run("test", {})
    library.apply([Deletion(pmids=[103])], run_id=run, origin="test")
    check = DenseIndex(library, settings, embedder=FakeEmbedder(64)).verify()
    assert not check.ok
    assert check.extra == [103] and check.missing == []


def test_verify_fails_for_an_index_of_another_model(library: Store, settings: Settings) -> None:
    """As `medlit index verify` runs it: no embedder given, the configured one (fake, 64 dimensions)."""
    IndexSet(library, settings, embedder=FakeEmbedder(32)).build(progress=False)
    assert DenseIndex(library, settings, embedder=FakeEmbedder(32)).verify().ok
    check = DenseIndex(library, settings).verify()
    assert not check.ok
    assert any("built with model 'fake-hash-32'" in p and "'fake-hash-64'" in p for p in check.problems)


def test_a_mismatched_or_damaged_index_is_refused(library: Store, settings: Settings) -> None:
    IndexSet(library, settings, embedder=FakeEmbedder(64)).build(progress=False)
    with pytest.raises(LibraryError, match="built with model 'fake-hash-64'"):
        DenseIndex(library, settings, embedder=FakeEmbedder(32)).load()
    manifest = DenseIndex(library, settings).manifest()
    path = settings.index_dir / manifest.file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LibraryError):
        DenseIndex(library, settings, embedder=FakeEmbedder(64)).load()
    # ... and never silently empty: search says why
    with pytest.raises(LibraryError):
        searcher_for(library, settings).search("metformin", 3, mode="dense")


def test_no_index_is_a_clear_error_and_each_index_serves_its_mode(library: Store, settings: Settings) -> None:
    searcher = searcher_for(library, settings)
    with pytest.raises(LibraryError, match="medlit index build"):
        searcher.search("metformin", 3, mode="hybrid")
    with pytest.raises(LibraryError, match="no lexical index yet: run `medlit index update`"):
        searcher.search("metformin", 3, mode="bm25")
    searcher.lexical.build(progress=False)
    assert searcher.search("metformin", 3, mode="bm25")  # the lexical index alone serves BM25
    with pytest.raises(LibraryError, match="medlit index build"):
        searcher.search("metformin", 3, mode="dense")


@pytest.mark.parametrize(
    ("query", "k", "message"),
    [
        ("", 10, "empty"),
        ("   ", 10, "empty"),
        ("x" * 20_000, 10, "too long"),
        ("metformin", 0, "k must"),
        ("metformin", 10**9, "k must"),
    ],
)
def test_bad_questions_and_k_are_clear_errors(
    library: Store, settings: Settings, query: str, k: int, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        searcher_for(library, settings).search(query, k, mode="bm25")


def test_contradicting_filters_are_refused() -> None:
    with pytest.raises(InputError, match="empty"):
        Filters(year_min=2020, year_max=2010)
    assert Filters.parse_years("2015:2024") == (2015, 2024)
    assert Filters.parse_years("2020") == (2020, 2020)
    assert Filters.parse_years(":2012") == (None, 2012)
    with pytest.raises(InputError):
        Filters.parse_years("recent")


def test_fusion_and_metrics() -> None:
    fused = fuse([(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)], rrf_k=60)
    assert [p for p, _ in fused] == [2, 1, 3]
    assert recall_at([1, 2, 3], {2, 9}, 10) == 0.5
    assert recall_at(list(range(20)), set(range(15)), 10) == 1.0  # capped at min(|relevant|, 10)
    assert mrr_at([5, 6, 2], {2}, 10) == pytest.approx(1 / 3)
    assert ndcg_at([2, 5], {2}, 10) == 1.0
    assert ndcg_at([5, 2], {2}, 10) == pytest.approx(1 / np.log2(3))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_index_and_search(settings: Settings, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", ARTICLES)
    assert invoke("ingest", "jsonl", str(corpus)).exit_code == 0
    built = invoke("index", "build", "--json")
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["articles"] == len(ARTICLES)
    assert invoke("index", "verify").exit_code == 0
    assert json.loads(invoke("index", "info", "--json").stdout)["exists"] is True
    result = invoke(
        "search",
        "metformin cancer",
        "-k",
        "5",
        "--year",
        "2015:2024",
        "--type",
        "Randomized Controlled Trial",
        "--json",
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["pmid"] for h in hits] == [102]
    assert {"pmid", "title", "year", "score"} <= hits[0].keys()
    text = invoke("search", "aspirin stroke", "-k", "2", "--mode", "bm25").stdout
    assert "[103] Aspirin for secondary prevention of stroke" in text
    bad = invoke("search", "metformin", "--year", "2020:2010")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error:")
    # the library changes: verify fails until update
    invoke(
        "ingest", "jsonl", str(write_corpus(tmp_path / "new.jsonl", [{"pmid": 200, "title": "New trial"}]))
    )
    assert invoke("index", "verify").exit_code == 1
    assert invoke("index", "update").exit_code == 0
    assert invoke("index", "verify").exit_code == 0


def test_cli_search_lists_an_article_without_title_journal_or_year_readably(
    settings: Settings, tmp_path: Path
) -> None:
    """The BioASQ corpus holds abstracts only: no "[pmid]  ()" line."""
    corpus = write_corpus(tmp_path / "corpus.jsonl", [{"pmid": 300, "abstract": "Metformin lowers glucose."}])
    assert invoke("ingest", "jsonl", str(corpus)).exit_code == 0
    assert invoke("index", "update", "--only", "lexical").exit_code == 0
    text = invoke("search", "metformin glucose", "--mode", "bm25").stdout
    assert " 1. [300] (untitled)\n" in text


def test_eval_retrieval_prints_one_line_per_file_and_mode(settings: Settings, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", ARTICLES)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"question": "metformin and cancer", "relevant_pmids": [101, 102]})
        + "\n"
        + json.dumps({"question": "aspirin after stroke", "relevant_pmids": ["103"]})
        + "\n"
    )
    result = invoke(
        "eval", "retrieval", "--corpus", str(corpus), "--questions", str(questions), "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["mode"] for line in lines] == ["bm25", "dense", "hybrid"]
    for line in lines:
        assert {"questions", "mode", "n", "recall@10", "ndcg@10", "mrr@10", "p50_ms"} <= line.keys()
        assert line["n"] == 2
        assert line["recall@10"] == 1.0
