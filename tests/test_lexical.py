"""The lexical index (tantivy BM25): the query builder, ranking, filters inside the engine, and the same
filters as SQL for the dense side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from foundation.settings import Settings
from indexes.hit import Filters
from indexes.lexical import allowed_pmids, filter_sql, query_terms, retracted_pmids
from indexes.lexical_index import LexicalIndex
from ingest.article import AbstractSection, Article, MeshHeading
from ingest.store import Store


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("What is the role of IL-6 in COVID-19?", ["role", "il-6", "covid-19"]),
        (
            "Does metformin reduce type 2 diabetes risk?",
            ["metformin", "reduce", "type", "type 2", "diabetes", "risk"],
        ),
        (
            "Is vitamin D linked to Alzheimer's disease?",
            ["vitamin", "vitamin d", "linked", "alzheimer", "disease"],
        ),
        ("Which genes does SARS-CoV-2 use? Which genes?", ["genes", "sars-cov-2", "use"]),
        (
            'List the "side-effects" of 5-HT3 antagonists (phase 3).',
            ["side-effects", "5-ht3", "antagonists", "phase", "phase 3"],
        ),
        ("β-blockers après infarctus", ["β-blockers", "après", "infarctus"]),
        ("What is it?", []),
        ("2020 3", []),
        ('"" ** OR NEAR( AND', ["near"]),  # query syntax is only words here
        ("", []),
    ],
)
def test_query_terms(question: str, terms: list[str]) -> None:
    assert query_terms(question) == terms


def test_query_terms_are_bounded() -> None:
    assert len(query_terms(" ".join(f"term{i}" for i in range(500)))) == 64


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
    LexicalIndex(store, Settings(home=tmp_path)).build(progress=False)
    yield store
    store.close()


def lexical_of(store: Store) -> LexicalIndex:
    return LexicalIndex(store, Settings(home=store.path.parent))


def pmids(hits: list[tuple[int, float]]) -> list[int]:
    return [pmid for pmid, _ in hits]


def test_bm25_ranking(library: Store) -> None:
    hits = lexical_of(library).search("metformin", 10)
    assert pmids(hits)[:2] == [4, 1]  # the shortest texts that name it (4: "metformine", stemmed)
    assert set(pmids(hits)) == {1, 2, 3, 4}  # 5 is retracted
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    # every matching term adds to the score: both terms beat one
    assert pmids(lexical_of(library).search("aspirin metformin", 1)) == [3]


def test_nothing_searchable_or_no_k(library: Store) -> None:
    lexical = lexical_of(library)
    assert lexical.search("What is it?", 10) == []
    assert lexical.search("metformin", 0) == []
    assert lexical.search("zzzunknownword", 10) == []


def test_stemming_and_diacritics(library: Store) -> None:
    lexical = lexical_of(library)
    assert 3 in pmids(lexical.search("randomised trials", 10))
    assert pmids(lexical.search("cholesterol etude", 10)) == [4]


def test_phrases_and_biomedical_tokens(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.db")
    store.apply(
        [
            article(11, "COVID-19 in children", "Cohort."),
            article(12, "Covid 19 vaccines", "Trial."),
            article(13, "Children with 19 symptoms of covid", "Case series."),
            article(14, "Type 2 diabetes", "Metformin."),
            article(15, "Type 1 diabetes in type A personalities", "Survey."),
        ],
        run_id=store.start_run("test", {}),
        origin="test",
    )
    lexical = LexicalIndex(store, Settings(home=tmp_path))
    lexical.build(progress=False)
    assert set(pmids(lexical.search("COVID-19", 10))) == {11, 12}  # a phrase: "covid 19" too, not apart
    assert pmids(lexical.search("type 2 diabetes", 10))[0] == 14
    assert lexical.document_frequency("diabetes") == 2
    assert lexical.document_frequency("children") == 2
    assert lexical.document_frequency("nowhere") == 0
    store.close()


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
    hits = lexical_of(library).search("metformin", 10, filters=filters)
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


@pytest.mark.parametrize(
    "filters",
    [Filters(year_min=2016), Filters(mesh=["metformin"]), Filters(languages=["eng"], year_max=2019)],
)
def test_filters_leave_the_order_of_what_they_let_through(library: Store, filters: Filters) -> None:
    lexical = lexical_of(library)
    everything = lexical.search("metformin patients diabetes", 10)
    filtered = lexical.search("metformin patients diabetes", 10, filters=filters)
    allowed = {pmid for pmid, _s in filtered}
    assert filtered == [(p, s) for p, s in everything if p in allowed]  # same scores, same order
