"""BM25 over the library's FTS5 table: the query builder, ranking, and filters applied in SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexes.hit import Filters
from indexes.lexical import LexicalIndex, allowed_pmids, filter_sql, retracted_pmids, to_fts_query
from ingest.article import AbstractSection, Article, MeshHeading
from ingest.store import Store


@pytest.mark.parametrize(
    ("question", "query"),
    [
        ("What is the role of IL-6 in COVID-19?", '"role" OR "il-6" OR "covid-19"'),
        (
            "Does metformin reduce type 2 diabetes risk?",
            '"metformin" OR "reduce" OR "type" OR "type 2" OR "diabetes" OR "risk"',
        ),
        (
            "Is vitamin D linked to Alzheimer's disease?",
            '"vitamin" OR "vitamin d" OR "linked" OR "alzheimer" OR "disease"',
        ),
        ("Which genes does SARS-CoV-2 use? Which genes?", '"genes" OR "sars-cov-2" OR "use"'),
        (
            'List the "side-effects" of 5-HT3 antagonists (phase 3).',
            '"side-effects" OR "5-ht3" OR "antagonists" OR "phase" OR "phase 3"',
        ),
        ("β-blockers après infarctus", '"β-blockers" OR "après" OR "infarctus"'),
        ("What is it?", None),
        ("2020 3", None),
        ('"" ** OR NEAR( AND', '"near"'),  # FTS5 syntax becomes quoted terms,
        ("", None),
    ],
)
def test_to_fts_query(question: str, query: str | None) -> None:
    assert to_fts_query(question) == query


def test_query_terms_are_bounded() -> None:
    query = to_fts_query(" ".join(f"term{i}" for i in range(500)))
    assert query is not None and query.count(" OR ") == 63


def article(
    pmid: int,
    title: str,
    abstract: str,
    *,
    year: int = 2020,
    language: str = "eng",
    types: tuple[str, ...] = ("Journal Article",),
    mesh: tuple[str, ...] = (),
) -> Article:
    return Article(
        pmid=pmid,
        title=title,
        abstract_sections=[AbstractSection(abstract)],
        year=year,
        languages=[language],
        publication_types=list(types),
        mesh=[MeshHeading(descriptor=d) for d in mesh],
    )


ARTICLES = [
    article(
        1, "Metformin and cancer risk", "A cohort of patients with diabetes.", year=2015, mesh=("Metformin",)
    ),
    article(2, "Diet in type 2 diabetes", "Metformin was given to some patients.", year=2019),
    article(
        3,
        "Aspirin after stroke",
        "A randomised trial of aspirin; metformin was not studied.",
        year=2021,
        types=("Randomized Controlled Trial",),
        mesh=("Aspirin", "Stroke"),
    ),
    article(4, "Statins et cholestérol", "Étude de la metformine.", year=2022, language="fre"),
    article(
        5,
        "Metformin cures everything",
        "Metformin metformin metformin.",
        year=2018,
        types=("Journal Article", "Retracted Publication"),
    ),
    article(6, "Unrelated title", "Nothing about drugs here.", year=2010),
]


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "library.db")
    store.apply(ARTICLES, run_id=store.start_run("test", {}), origin="test")
    yield store
    store.close()


def pmids(hits: list[tuple[int, float]]) -> list[int]:
    return [pmid for pmid, _ in hits]


def test_title_match_ranks_first(library: Store) -> None:
    hits = LexicalIndex(library.conn).search("metformin", 10)
    assert pmids(hits)[0] == 1  # in the title; 2, 3 and 4 (metformine, stemmed) only mention it
    assert set(pmids(hits)) == {1, 2, 3, 4}  # 5 is retracted
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def test_title_weight_moves_title_matches_up(library: Store) -> None:
    question = "aspirin metformin"  # 3 has aspirin in its title; 1 has metformin in its title
    assert pmids(LexicalIndex(library.conn, title_weight=10).search(question, 1)) == [3]
    assert pmids(LexicalIndex(library.conn, title_weight=0.01).search(question, 3))[0] == 3


def test_nothing_searchable_or_no_k(library: Store) -> None:
    lexical = LexicalIndex(library.conn)
    assert lexical.search("What is it?", 10) == []
    assert lexical.search("metformin", 0) == []
    assert lexical.search("zzzunknownword", 10) == []


def test_stemming_and_diacritics_come_from_fts5(library: Store) -> None:
    lexical = LexicalIndex(library.conn)
    assert 3 in pmids(lexical.search("randomised trials", 10))
    assert pmids(lexical.search("cholesterol etude", 10)) == [4]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(year_min=2016), {2, 3, 4}),
        (Filters(year_max=2016), {1}),
        (Filters(year_min=2016, year_max=2019), {2}),
        (Filters(publication_types=["randomized controlled trial"]), {3}),
        (Filters(mesh=["Metformin", "Stroke"]), {1, 3}),
        (Filters(languages=["FRE"]), {4}),
        (Filters(languages=["eng"]), {1, 2, 3}),
        (Filters(include_retracted=True), {1, 2, 3, 4, 5}),
        (Filters(include_retracted=True, year_min=2018, year_max=2018), {5}),
    ],
)
def test_filters(library: Store, filters: Filters, expected: set[int]) -> None:
    hits = LexicalIndex(library.conn).search("metformin", 10, filters=filters)
    assert set(pmids(hits)) == expected
    where, params = filter_sql(filters)
    rows = library.conn.execute(f"SELECT a.pmid FROM articles a WHERE {where}", params).fetchall()
    assert expected <= {row[0] for row in rows}


def test_filter_sql_defaults() -> None:
    assert filter_sql(None) == ("a.retracted = 0", [])
    assert filter_sql(Filters(include_retracted=True)) == ("1", [])
    where, params = filter_sql(Filters(year_min=2000, languages=["eng", "fre"], mesh=["Aspirin"]))
    assert where.count("?") == len(params) == 4


def test_allowed_and_retracted_pmids(library: Store) -> None:
    assert allowed_pmids(library.conn, None) is None
    assert allowed_pmids(library.conn, Filters()) is None  # no filter: drop retracted_pmids instead
    assert retracted_pmids(library.conn).tolist() == [5]
    allowed = allowed_pmids(library.conn, Filters(year_min=2018))
    assert allowed is not None and allowed.dtype == np.int64
    assert allowed.tolist() == [2, 3, 4]
    both = allowed_pmids(library.conn, Filters(year_min=2018, include_retracted=True))
    assert both is not None and both.tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("include_retracted", [False, True])
@pytest.mark.parametrize(
    "question", ["metformin cancer", "stroke aspirin trial", "diabetes", "type 2 diabetes"]
)
def test_rank_fast_path_gives_the_same_results(
    library: Store, question: str, include_retracted: bool
) -> None:
    fast = LexicalIndex(library.conn)
    slow = LexicalIndex(library.conn)
    assert fast._fast  # the library's FTS5 rank is configured to the default weights by a migration
    slow._fast = False
    filters = Filters(include_retracted=include_retracted)
    for k in (1, 3, 10):
        assert fast.search(question, k, filters=filters) == slow.search(question, k, filters=filters)
