"""The text that gets embedded for an article: title + abstract, whole or as overlapping passages.

Abstracts are long (most exceed MiniLM's 256 tokens), so by default each abstract is cut into windows of
``words`` words overlapping by ``overlap``, each prefixed with the title; the vectors of one article share its
PMID (``vector_id``), so a hit on any passage is a hit on the article.
"""

from __future__ import annotations

import numpy as np

PASSAGE_BITS = 8  # a vector id is pmid << 8 | passage number: up to 256 passages per article
MAX_PASSAGES = 1 << PASSAGE_BITS


def vector_id(pmid: int, passage: int) -> int:
    return (int(pmid) << PASSAGE_BITS) | int(passage)


def pmids_of(ids: np.ndarray) -> np.ndarray:
    """The PMIDs of vector ids (-1, FAISS's "no result", stays -1)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= 0, ids >> PASSAGE_BITS, -1)


def vector_ids(pmid: int, passages: int) -> list[int]:
    return [vector_id(pmid, j) for j in range(passages)]


def document_text(title: str, abstract: str) -> str:
    title = title.strip()
    abstract = abstract.strip()
    if title and abstract:
        return f"{title}\n{abstract}"
    return title or abstract


def passages(title: str, abstract: str, *, words: int = 160, overlap: int = 40) -> list[str]:
    """Title + abstract windows of ``words`` words overlapping by ``overlap`` (one passage when it fits)."""
    tokens = abstract.split()
    if len(tokens) <= words:
        return [document_text(title, abstract)]
    step = max(1, words - overlap)
    out = []
    for start in range(0, len(tokens), step):
        window = tokens[start : start + words]
        out.append(document_text(title, " ".join(window)))
        if start + words >= len(tokens) or len(out) == MAX_PASSAGES:
            break
    return out
