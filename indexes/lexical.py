"""How a question becomes lexical search terms, and the filters as SQL (for the dense side).

A question becomes its search terms (``query_terms``): stopwords and question words go, biomedical tokens
stay whole ("COVID-19", "IL-6", "5-HT" become phrases once analysed, so "COVID-19" also finds
"COVID 19"), and a bare number or letter makes a phrase with the word before it, which stays a term too
("type" and "type 2", "vitamin" and "vitamin d"); alone it would match everywhere, so it is not a term.
The lexical index (``indexes.lexical_index``) OR-s them into one BM25 query.

The same filters serve the dense search: ``filter_sql`` is the WHERE fragment over ``articles a``,
``allowed_pmids`` the explicit PMIDs it allows when a filter is active (for a FAISS ``IDSelectorBatch``)
and ``retracted_pmids`` the ones to drop otherwise. The lexical index applies them inside tantivy.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import numpy as np

from indexes.hit import Filters

MAX_TERMS = 64  # a pasted abstract still makes a bounded query

# English stopwords (NLTK's list) and the words questions are made of; BM25 would match them everywhere.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren as at be because been before being below
    between both but by can cannot could couldn did didn do does doesn doing don down during each few for
    from further had hadn has hasn have haven having he her here hers herself him himself his how i if in
    into is isn it its itself just let me more most mustn my myself no nor not now of off on once only or
    other ought our ours ourselves out over own same shan she should shouldn so some such than that the
    their theirs them themselves then there these they this those through to too under until up upon very
    was wasn we were weren what when where which while who whom whose why will with won would wouldn you
    your yours yourself yourselves s t ll re ve
    also among may might must shall within without via vs versus etc eg ie
    many much often usually commonly known
    list name names describe explain tell give please find show define mention
    """.split()  # noqa: SIM905 (a word list reads better as text than as 180 quoted strings)
)
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")  # words, hyphenated compounds kept whole
_MODIFIER = re.compile(r"^(?:\d+(?:\.\d+)?|[^\W\d_])$")  # a bare number or a single letter


def query_terms(question: str) -> list[str]:
    """The question's search terms, lowercased, in order, without repeats."""
    terms: list[str] = []
    previous_kept = False
    for match in _TOKEN.finditer(question):
        token = match.group(0).lower()
        if _MODIFIER.match(token) and token not in STOPWORDS:
            if previous_kept:  # "type 2", "vitamin d", "phase 3": a phrase with the word before, kept too
                terms.append(f"{terms[-1]} {token}")
            previous_kept = False
            continue
        if token in STOPWORDS:
            previous_kept = False
            continue
        terms.append(token)
        previous_kept = True
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def filter_sql(filters: Filters | None) -> tuple[str, list[Any]]:
    """A WHERE fragment over ``articles a`` and its parameters ("1" when nothing is excluded).

    Retracted articles are excluded unless ``filters.include_retracted``; publication types and MeSH
    descriptors match any of those given, ignoring case.
    """
    filters = filters or Filters()
    clauses: list[str] = []
    params: list[Any] = []
    if not filters.include_retracted:
        clauses.append("a.retracted = 0")
    if filters.year_min is not None:
        clauses.append("a.year >= ?")
        params.append(int(filters.year_min))
    if filters.year_max is not None:
        clauses.append("a.year <= ?")
        params.append(int(filters.year_max))
    if filters.languages:
        clauses.append(f"lower(a.language) IN ({_marks(filters.languages)})")
        params.extend(language.lower() for language in filters.languages)
    if filters.publication_types:
        clauses.append(
            "EXISTS (SELECT 1 FROM article_publication_types t WHERE t.pmid = a.pmid "
            f"AND t.name COLLATE NOCASE IN ({_marks(filters.publication_types)}))"
        )
        params.extend(filters.publication_types)
    if filters.mesh:
        clauses.append(
            "EXISTS (SELECT 1 FROM article_mesh m WHERE m.pmid = a.pmid "
            f"AND m.descriptor COLLATE NOCASE IN ({_marks(filters.mesh)}))"
        )
        params.extend(filters.mesh)
    return (" AND ".join(clauses) or "1"), params


def allowed_pmids(conn: sqlite3.Connection, filters: Filters | None) -> np.ndarray | None:
    """The sorted PMIDs an active filter allows (retracted ones out unless included), as int64.

    None when no filter is active: then nothing restricts the search inside FAISS, and the retracted
    PMIDs (``retracted_pmids``, few) are dropped from its results instead, which is cheaper than an
    allow-list of nearly the whole library.
    """
    if filters is None or not filters.active:
        return None
    where, params = filter_sql(filters)
    rows = conn.execute(f"SELECT a.pmid FROM articles a WHERE {where} ORDER BY a.pmid", params)
    return np.fromiter((row[0] for row in rows), dtype=np.int64)


def retracted_pmids(conn: sqlite3.Connection) -> np.ndarray:
    """The sorted PMIDs of retracted articles (int64)."""
    rows = conn.execute("SELECT pmid FROM articles WHERE retracted = 1 ORDER BY pmid")
    return np.fromiter((row[0] for row in rows), dtype=np.int64)


def _marks(values: list[str]) -> str:
    return ", ".join("?" * len(values))
