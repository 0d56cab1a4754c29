"""Reranking hybrid candidates with a trained pair model (``indexes.reranker_data`` builds its pairs).

``PairReranker`` scores (question, title + abstract) of the top ``candidates`` fused hits with a
``PairClassifier`` (task 'reranker'); P(relevant) becomes ``Hit.rerank_score`` (and ``Hit.score``). With
``fusion``, the candidates are ordered by the reranker's score interpolated with the search's: both as
z-scores over the candidates (the reranker's as a log-odds), the reranker weighted by the ``fusion.weight``
its training calibrated on held-out questions (``DEFAULT_FUSION_WEIGHT`` for a reranker without one). Fusion
keeps what the search knew: a reranker trained on one kind of labelled documents (BioASQ's snippets)
misjudges another (whole abstracts), and the fused order lost less where it did and gained more where it did
not (docs/benchmarks.md, "Training").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from foundation.errors import InputError
from indexes.hit import Hit
from indexes.pair_model import PairClassifier

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 20  # ~120-170 ms p50 on 2 CPU cores for a MiniLM-sized model, batches of 4
MAX_DOCUMENT_CHARS = 4000  # the model sees max_length tokens; longer text is only tokenised in vain
DEFAULT_FUSION_WEIGHT = 0.5  # the reranker's weight when its training calibrated none
FUSION_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))  # the grid calibration chooses from


def document_text(title: str, abstract: str) -> str:
    """The second text of a reranker pair: what training and search both feed the model."""
    return f"{title.strip()}\n{abstract.strip()}".strip()[:MAX_DOCUMENT_CHARS]


def _z(values: Sequence[float]) -> list[float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / spread if spread > 1e-12 else 0.0 for v in values]


def log_odds(probability: float) -> float:
    p = min(max(probability, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def fused_order(search_scores: Sequence[float], model_scores: Sequence[float], weight: float) -> list[int]:
    """Candidate positions 0..n-1 ordered by ``weight`` x the reranker's z-score (of its log-odds) plus
    ``1 - weight`` x the search's z-score; ties keep the search's order. Weight 1 is the reranker alone,
    0 the search alone."""
    if len(search_scores) != len(model_scores):
        raise ValueError("one search score and one reranker score per candidate")
    if not model_scores:
        return []
    model = _z([log_odds(p) for p in model_scores])
    search = _z(list(search_scores))
    fused = [weight * m + (1 - weight) * s for m, s in zip(model, search, strict=True)]
    return sorted(range(len(fused)), key=lambda i: (-fused[i], i))


class PairReranker:
    """Reorders the best ``candidates`` hits by a reranker's P(relevant); the rest keep their order."""

    def __init__(
        self, model: PairClassifier, candidates: int = DEFAULT_CANDIDATES, fusion: bool = True
    ) -> None:
        if model.task != "reranker":
            raise InputError(f"{model.directory} is a {model.task} model, not a reranker")
        self.model = model
        self.candidates = max(1, candidates)
        self.fusion = fusion  # False: the reranker's score alone
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
        fusion: bool = True,
    ) -> PairReranker:
        return cls(PairClassifier.load(path, cache_dir=cache_dir, task="reranker"), candidates, fusion)

    @property
    def abstain_below(self) -> float | None:
        """The abstention threshold calibrated when the reranker was trained (None: not calibrated)."""
        value = (self.model.manifest.get("abstention") or {}).get("abstain_below")
        return float(value) if isinstance(value, int | float) else None

    @property
    def fusion_weight(self) -> float:
        """The reranker's weight in the fused order: calibrated when it was trained, else the default."""
        value = (self.model.manifest.get("fusion") or {}).get("weight")
        return float(value) if isinstance(value, int | float) else DEFAULT_FUSION_WEIGHT

    def order(
        self, search_scores: Sequence[float], model_scores: Sequence[float], weight: float | None = None
    ) -> list[int]:
        """The candidates' positions as this reranker orders them (fused, at ``weight`` or its own
        ``fusion_weight``, or by its score alone)."""
        if self.fusion:
            return fused_order(search_scores, model_scores, self.fusion_weight if weight is None else weight)
        return sorted(range(len(model_scores)), key=lambda i: (-model_scores[i], i))

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        probabilities = self.model.predict_proba([(query, text) for text in texts])
        return [float(p) for p in probabilities[:, self.positive]]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        head, tail = hits[: self.candidates], hits[self.candidates :]
        scores = self.scores(query, [document_text(h.title, h.abstract) for h in head])
        order = self.order([h.score for h in head], scores)
        ranked = [head[i] for i in order] + tail
        for rank, hit in enumerate(ranked, start=1):
            hit.rank = rank
        for i in order:
            head[i].rerank_score = scores[i]
            head[i].score = scores[i]
        return ranked
