"""Does an evidence sentence support an answer sentence? A trained pair model instead of a cosine threshold.

``SupportClassifier.load(dir).score(pairs)`` gives P(supported) for (answer sentence, evidence text) pairs.
It is trained (``medlit train support``) from BioASQ ideal answers: each ideal-answer sentence with the
closest sentence of its own relevant articles (supported), and as unsupported

- the closest sentence of the closest *non-relevant* articles (what a model citing the wrong one of several
  similar papers would cite),
- perturbed claims against their own supporting sentence: negated, with changed numbers, with another
  question's drug / gene / disease swapped in — the errors a cosine threshold cannot see.

``support_pairs`` builds the pairs; ``compare_with_cosine`` measures the classifier against the verifier's
cosine threshold on held-out questions.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foundation.errors import InputError
from foundation.progress import progress_bar
from indexes.hit import Filters
from indexes.pair_model import PairClassifier
from indexes.reranker_data import batch_matches
from indexes.training import PairExample, file_digest
from rag.sentences import article_sentences, split_sentences

LABELS = ["unsupported", "supported"]


class SupportClassifier:
    """A trained support model (task 'support'); ``score`` is P(supported) per pair."""

    def __init__(self, model: PairClassifier) -> None:
        if model.task != "support":
            raise InputError(f"{model.directory} is a {model.task} model, not a support model")
        self.model = model
        self.positive = model.labels.index("supported") if "supported" in model.labels else 1
        self.threshold = float(model.manifest.get("threshold", 0.5))

    @classmethod
    def load(cls, path: str | Path) -> SupportClassifier:
        return cls(PairClassifier.load(path, task="support"))

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        return self.model.predict_proba(list(pairs))[:, self.positive]


# ----- perturbed claims -------------------------------------------------------------------------------------

_AUXILIARY = re.compile(
    r"\b(is|are|was|were|can|could|does|do|did|has|have|had|will|would|may|might|should|must)\b(?!\s+not\b)",
    re.I,
)
_NEGATED = re.compile(
    r"\b(is|are|was|were|can|could|does|do|did|has|have|had|will|would|may|might|should|must)\s+not\b", re.I
)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)")
_STOP = frozenset(
    [
        "the",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "which",
        "while",
        "where",
        "when",
        "with",
        "within",
        "without",
        "between",
        "among",
        "about",
        "patients",
        "patient",
        "disease",
        "diseases",
        "treatment",
        "treatments",
        "therapy",
        "studies",
        "study",
        "results",
        "however",
        "although",
        "associated",
        "increased",
        "decreased",
        "significant",
        "significantly",
        "include",
        "includes",
        "including",
        "several",
        "different",
        "important",
        "common",
        "symptoms",
        "syndrome",
        "clinical",
        "protein",
        "proteins",
        "cells",
        "gene",
        "genes",
    ]
)


def negate(claim: str) -> str | None:
    """The claim with its first auxiliary negated (or an existing 'not' removed); None when it has none."""
    negated = _NEGATED.search(claim)
    if negated:
        return claim[: negated.start()] + negated.group(1) + claim[negated.end() :]
    match = _AUXILIARY.search(claim)
    if match is None:
        return None
    word = match.group(1)
    replacement = "cannot" if word.lower() == "can" else f"{word} not"
    return claim[: match.start()] + replacement + claim[match.end() :]


def change_numbers(claim: str, rng: random.Random) -> str | None:
    """Every number in the claim replaced by a clearly different one; None when it has no number."""
    if not _NUMBER.search(claim):
        return None

    def other(match: re.Match[str]) -> str:
        text = match.group(1)
        value = float(text)
        changed = value * rng.choice([2, 3, 5]) + rng.choice([1, 7, 13])
        return f"{changed:.{len(text.split('.')[1])}f}" if "." in text else str(int(changed))

    return _NUMBER.sub(other, claim)


def specific_terms(text: str) -> list[str]:
    """Words likely to name a drug, gene or disease: with a digit or an inner capital, or long and unusual."""
    terms = []
    for word in re.findall(r"[A-Za-z][A-Za-z0-9-]{2,}", text):
        lower = word.lower()
        if lower in _STOP:
            continue
        if any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:]) or len(word) >= 9:
            terms.append(word)
    return terms


def swap_term(claim: str, others: Sequence[str], rng: random.Random) -> str | None:
    """The claim with one of its specific terms replaced by another question's; None when it has none."""
    own = specific_terms(claim)
    pool = [t for t in others if t.lower() not in {o.lower() for o in own}]
    if not own or not pool:
        return None
    target = rng.choice(own)
    return re.sub(rf"\b{re.escape(target)}\b", rng.choice(pool), claim, count=1)


# ----- training pairs from BioASQ ideal answers -------------------------------------------------------------


@dataclass(slots=True)
class SupportQuestion:
    key: str
    text: str
    ideal: list[str]  # ideal-answer sentences
    relevant: set[int]
    source: str


def read_support_questions(paths: Sequence[str | Path], batches: Sequence[str] = ()) -> list[SupportQuestion]:
    """BioASQ-style JSONL with ``ideal_answer`` (a string or a list; the first is used) and relevant_pmids."""
    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such questions file")
        for number, line in enumerate(path.open(encoding="utf-8"), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                text = str(item["question"])
                relevant = {int(p) for p in item.get("relevant_pmids") or []}
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a question record ({exc})") from None
            if not batch_matches(item.get("batch"), batches):
                continue
            ideal = item.get("ideal_answer")
            ideal = ideal[0] if isinstance(ideal, list) and ideal else ideal
            if not isinstance(ideal, str) or not relevant:
                continue
            sentences = [s for s in split_sentences(ideal) if len(s.split()) >= 6][:3]
            if sentences:
                out.append(SupportQuestion(str(item.get("id") or text), text, sentences, relevant, str(path)))
    if not out:
        raise InputError(
            "no questions with an ideal_answer and relevant_pmids in " + ", ".join(map(str, paths))
        )
    return out


@dataclass(slots=True)
class SupportPair:
    """One (answer sentence, evidence sentence) pair, its label, its kind and its cosine (the baseline)."""

    group: str
    claim: str
    evidence: str
    label: int
    kind: str  # supported | other_article | negated | numbers | swapped
    cosine: float


def support_pairs(
    searcher: Any,
    embedder: Any,
    questions: Sequence[SupportQuestion],
    *,
    hard: int = 3,
    seed: int = 13,
    progress: bool = True,
) -> list[SupportPair]:
    """Positive, hard-negative and perturbed pairs for each ideal-answer sentence (see the module doc)."""
    rng = random.Random(seed)
    store = searcher.store
    terms = [t for q in questions for s in q.ideal for t in specific_terms(s)]
    cache: dict[int, tuple[list[str], np.ndarray]] = {}

    def sentences_of(pmids: Sequence[int]) -> tuple[list[str], np.ndarray]:
        missing = [p for p in pmids if p not in cache]
        for pmid, article in store.get_many(missing).items():
            own = [s.text for s in article_sentences(article) if s.position > 0 and not s.instruction_like]
            vectors = embedder.embed_documents(own) if own else np.zeros((0, embedder.dimension), np.float32)
            cache[pmid] = (own, np.asarray(vectors, dtype=np.float32))
        texts: list[str] = []
        rows = []
        for pmid in pmids:
            if pmid in cache and cache[pmid][0]:
                texts += cache[pmid][0]
                rows.append(cache[pmid][1])
        return texts, (np.vstack(rows) if rows else np.zeros((0, embedder.dimension), np.float32))

    pairs: list[SupportPair] = []
    unfiltered = Filters(include_retracted=True)
    with progress_bar(len(questions), "building support pairs", "question", progress) as bar:
        for question in questions:
            bar.update(1)
            own_texts, own_vectors = sentences_of(sorted(question.relevant))
            if not own_texts:
                continue
            near = searcher.search(" ".join(question.ideal)[:2000], hard + len(question.relevant), unfiltered)
            other_texts, other_vectors = sentences_of(
                [h.pmid for h in near if h.pmid not in question.relevant][:hard]
            )
            claims = embedder.embed_documents(question.ideal)
            for claim, vector in zip(question.ideal, claims, strict=True):
                sims = own_vectors @ vector
                best = int(np.argmax(sims))
                evidence = own_texts[best]
                pairs.append(SupportPair(question.key, claim, evidence, 1, "supported", float(sims[best])))
                if other_texts:
                    other_sims = other_vectors @ vector
                    j = int(np.argmax(other_sims))
                    pairs.append(
                        SupportPair(
                            question.key, claim, other_texts[j], 0, "other_article", float(other_sims[j])
                        )
                    )
                perturbed = [
                    ("negated", negate(claim)),
                    ("numbers", change_numbers(claim, rng)),
                    ("swapped", swap_term(claim, terms, rng)),
                ]
                kept = [(kind, text) for kind, text in perturbed if text and text != claim]
                for kind, text in rng.sample(kept, min(2, len(kept))):
                    cosine = float(embedder.embed_documents([text])[0] @ own_vectors[best])
                    pairs.append(SupportPair(question.key, text, evidence, 0, kind, cosine))
    return pairs


def support_examples(pairs: Sequence[SupportPair]) -> list[PairExample]:
    return [PairExample(p.group, p.claim, p.evidence, p.label) for p in pairs]


def support_data_summary(
    questions: Sequence[SupportQuestion], pairs: Sequence[SupportPair]
) -> dict[str, Any]:
    sources = sorted({q.source for q in questions})
    kinds: dict[str, int] = {}
    for pair in pairs:
        kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
    return {
        "sources": [{"file": s, "sha256": file_digest(Path(s))} for s in sources],
        "questions": len(questions),
        "pair_kinds": kinds,
    }


def precision_recall(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict[str, float]:
    tp = sum(s >= threshold and y == 1 for s, y in zip(scores, labels, strict=True))
    fp = sum(s >= threshold and y == 0 for s, y in zip(scores, labels, strict=True))
    fn = sum(s < threshold and y == 1 for s, y in zip(scores, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": round(threshold, 3),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    candidates = sorted(set(round(float(s), 3) for s in scores))
    best, best_t = -1.0, 0.5
    for t in candidates:
        f1 = precision_recall(scores, labels, t)["f1"]
        if f1 > best:
            best, best_t = f1, t
    return best_t


def compare_with_cosine(
    classifier: SupportClassifier,
    calibration: Sequence[SupportPair],
    held_out: Sequence[SupportPair],
    *,
    cosine_threshold: float = 0.75,
) -> dict[str, Any]:
    """Precision / recall / F1 on held-out pairs: the verifier's cosine threshold as configured, cosine at the
    threshold that is best on the calibration pairs, and the classifier at 0.5 and at its own best
    calibration threshold; by negative kind too (the share of each kind wrongly accepted)."""
    labels = [p.label for p in held_out]
    cosines = [p.cosine for p in held_out]
    model_scores = [float(s) for s in classifier.score([(p.claim, p.evidence) for p in held_out])]
    calibration_scores = [float(s) for s in classifier.score([(p.claim, p.evidence) for p in calibration])]
    cosine_t = best_threshold([p.cosine for p in calibration], [p.label for p in calibration])
    model_t = best_threshold(calibration_scores, [p.label for p in calibration])

    def accepted(scores: Sequence[float], threshold: float) -> dict[str, float]:
        kinds = sorted({p.kind for p in held_out})
        return {
            kind: round(
                float(
                    np.mean([s >= threshold for s, p in zip(scores, held_out, strict=True) if p.kind == kind])
                ),
                4,
            )
            for kind in kinds
        }

    return {
        "held_out_pairs": len(held_out),
        "held_out_questions": len({p.group for p in held_out}),
        "cosine_configured": precision_recall(cosines, labels, cosine_threshold),
        "cosine_calibrated": precision_recall(cosines, labels, cosine_t),
        "classifier_0.5": precision_recall(model_scores, labels, 0.5),
        "classifier_calibrated": precision_recall(model_scores, labels, model_t),
        "accepted_share_by_kind": {
            "cosine_configured": accepted(cosines, cosine_threshold),
            "classifier_0.5": accepted(model_scores, 0.5),
        },
    }
