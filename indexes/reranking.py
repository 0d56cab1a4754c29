"""Reranking hybrid candidates with a trained pair model (``indexes.reranker_data`` builds its pairs).

``PairReranker`` scores (question, title + abstract) of the top ``candidates`` fused hits with a
``PairClassifier`` (task 'reranker'); P(relevant) becomes ``Hit.rerank_score`` (and ``Hit.score``). With
``fusion`` (an rrf_k), the candidates are ordered by reciprocal-rank fusion of their search rank and their
reranker rank, which keeps what the search knew: a reranker trained on one kind of labelled documents
(BioASQ's snippets) misjudges another (whole abstracts), and fusion lost less where it did and gained more
where it did not (docs/benchmarks.md, "Training").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from foundation.errors import InputError
from indexes.hit import Hit
from indexes.pair_model import PairClassifier

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 20  # ~240 ms p50 on 2 CPU cores for a MiniLM-sized model (30: ~360 ms)
MAX_DOCUMENT_CHARS = 4000  # the model sees max_length tokens; longer text is only tokenised in vain


def document_text(title: str, abstract: str) -> str:
    """The second text of a reranker pair: what training and search both feed the model."""
    return f"{title.strip()}\n{abstract.strip()}".strip()[:MAX_DOCUMENT_CHARS]


def fused_order(model_order: Sequence[int], k: int) -> list[int]:
    """Search positions 0..n-1 ordered by reciprocal-rank fusion (constant ``k``) of the search's rank and
    the reranker's; ``model_order`` is the positions by the reranker's score, best first. Ties keep the
    search's order."""
    by_model = {position: rank for rank, position in enumerate(model_order, start=1)}
    return sorted(by_model, key=lambda i: (-(1 / (k + i + 1) + 1 / (k + by_model[i])), i))


class PairReranker:
    """Reorders the best ``candidates`` hits by a reranker's P(relevant); the rest keep their order."""

    def __init__(
        self, model: PairClassifier, candidates: int = DEFAULT_CANDIDATES, fusion: int | None = None
    ) -> None:
        if model.task != "reranker":
            raise InputError(f"{model.directory} is a {model.task} model, not a reranker")
        self.model = model
        self.candidates = max(1, candidates)
        self.fusion = fusion  # rrf_k of the fused order; None: the reranker's score alone
        self.positive = (
            model.labels.index("relevant") if "relevant" in model.labels else len(model.labels) - 1
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        candidates: int = DEFAULT_CANDIDATES,
        cache_dir: Path | None = None,
        fusion: int | None = None,
    ) -> PairReranker:
        return cls(PairClassifier.load(path, cache_dir=cache_dir, task="reranker"), candidates, fusion)

    @property
    def abstain_below(self) -> float | None:
        """The abstention threshold calibrated when the reranker was trained (None: not calibrated)."""
        value = (self.model.manifest.get("abstention") or {}).get("abstain_below")
        return float(value) if isinstance(value, int | float) else None

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        probabilities = self.model.predict_proba([(query, text) for text in texts])
        return [float(p) for p in probabilities[:, self.positive]]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        head, tail = hits[: self.candidates], hits[self.candidates :]
        scores = self.scores(query, [document_text(h.title, h.abstract) for h in head])
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        if self.fusion is not None:
            order = fused_order(order, self.fusion)
        ranked = [head[i] for i in order] + tail
        for rank, hit in enumerate(ranked, start=1):
            hit.rank = rank
        for i in order:
            head[i].rerank_score = scores[i]
            head[i].score = scores[i]
        return ranked
