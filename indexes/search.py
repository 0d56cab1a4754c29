"""Search the library: dense (FAISS), lexical (BM25 in tantivy) or hybrid (reciprocal-rank fusion).

Filters (years, publication types, MeSH, language; retracted articles excluded unless asked for) hold in
every mode: lexical applies them inside tantivy's query, dense inside FAISS through an id selector.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from foundation.errors import InputError
from foundation.settings import Settings, get_settings
from indexes.dense_index import DenseIndex
from indexes.hit import Filters, Hit
from indexes.lexical import allowed_pmids, retracted_pmids
from indexes.lexical_index import LexicalIndex
from indexes.reranking import PairReranker
from ingest.article import Article
from ingest.store import Store

MODES = ("hybrid", "dense", "bm25")
MAX_K = 1000
MAX_QUERY_CHARS = 10_000


class Searcher:
    """One library's search. The embedder and the dense index load on first dense/hybrid search."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        embedder: Any = None,
        reranker: PairReranker | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.dense = DenseIndex(store, settings, embedder=embedder)
        self.lexical = LexicalIndex(store, settings)
        self.reranker = reranker
        if reranker is None:
            path = settings.trained_model(settings.index.reranker, "reranker")
            if path is not None:
                self.reranker = PairReranker.load(
                    path,
                    candidates=settings.index.rerank_candidates,
                    cache_dir=settings.model_cache,
                    fusion=settings.index.rerank_fusion,
                )

    def search(
        self, query: str, k: int = 10, filters: Filters | None = None, mode: str = "hybrid"
    ) -> list[Hit]:
        """The k best articles for a question, best first, each with its dense/lexical provenance."""
        query = _check_query(query)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise InputError(f"k must be a whole number between 1 and {MAX_K} (got {str(k)[:40]!r})")
        k = int(k)
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K} (got {k})")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        filters = filters or Filters()
        candidates = max(k, self.settings.index.candidates)
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if mode in ("dense", "hybrid"):
            allowed, excluded = self._restriction(filters)
            vector = self.dense.embedder.embed_query(query)
            dense = self.dense.search(
                vector, candidates if mode == "hybrid" else k, allowed=allowed, excluded=excluded
            )
        if mode in ("bm25", "hybrid"):
            lexical = self.lexical.search(query, candidates if mode == "hybrid" else k, filters=filters)
        if mode == "dense":
            ranked = [(pmid, score) for pmid, score in dense]
        elif mode == "bm25":
            ranked = [(pmid, score) for pmid, score in lexical]
        else:
            ranked = fuse(dense, lexical, self.settings.index.rrf_k)
        keep = k if self.reranker is None else max(k, self.reranker.candidates)
        hits = self._hydrate(ranked[:keep], dense, lexical)
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)[:k]
        return hits

    def _restriction(self, filters: Filters) -> tuple[np.ndarray | None, set[int] | None]:
        """(allowed PMIDs for FAISS, or None) and (PMIDs to drop from results, or None)."""
        allowed = allowed_pmids(self.store.conn, filters)
        if allowed is not None or filters.include_retracted:
            return allowed, None
        return None, set(retracted_pmids(self.store.conn).tolist())

    def _hydrate(
        self,
        ranked: list[tuple[int, float]],
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
    ) -> list[Hit]:
        dense_pos = {pmid: (rank, score) for rank, (pmid, score) in enumerate(dense, start=1)}
        lexical_pos = {pmid: (rank, score) for rank, (pmid, score) in enumerate(lexical, start=1)}
        articles = self.store.get_many(pmid for pmid, _s in ranked)
        hits: list[Hit] = []
        for pmid, score in ranked:
            article = articles.get(pmid)
            if article is None:  # deleted since the index was built: never serve it
                continue
            hit = hit_from_article(article, score=score, rank=len(hits) + 1)
            if pmid in dense_pos:
                hit.dense_rank, hit.dense_score = dense_pos[pmid]
            if pmid in lexical_pos:
                hit.lexical_rank, hit.lexical_score = lexical_pos[pmid]
            hits.append(hit)
        return hits


def fuse(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], rrf_k: int = 10
) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: score = sum over lists of 1 / (rrf_k + rank)."""
    scores: dict[int, float] = {}
    for ranking in (dense, lexical):
        for rank, (pmid, _score) in enumerate(ranking, start=1):
            scores[pmid] = scores.get(pmid, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def hit_from_article(article: Article, *, score: float, rank: int) -> Hit:
    return Hit(
        pmid=article.pmid,
        score=score,
        rank=rank,
        title=article.title,
        abstract=article.abstract,
        journal=article.journal_iso or article.journal,
        year=article.year,
        publication_types=list(article.publication_types),
        retracted=article.retracted,
        doi=article.doi,
    )


def _check_query(query: str) -> str:
    if not isinstance(query, str):
        raise InputError("the question must be text")
    query = query.replace("\x00", " ").strip()
    if not query:
        raise InputError("the question is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"the question is too long ({len(query):,} characters; at most {MAX_QUERY_CHARS:,})")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the question is not valid Unicode text (it holds a lone surrogate)") from None
    return query


def search(
    query: str,
    k: int = 10,
    filters: Filters | None = None,
    *,
    mode: str = "hybrid",
    settings: Settings | None = None,
) -> list[Hit]:
    """Search the library of ``settings`` (default: the environment's) in one call."""
    settings = settings or get_settings()
    with Store.open(settings) as store:
        return Searcher(store, settings).search(query, k, filters, mode)
