"""Verdicts without an LLM: yes / no / uncertain from the retrieved evidence of a question.

Three models, one interface (``VerdictClassifier.load(path).predict(evidence) -> VerdictPrediction``):

- a fine-tuned cross-encoder (``medlit train verdict``, a ``PairClassifier`` directory) over
  (question, ``verdict_passage(evidence)``);
- a linear head (``medlit train verdict --head linear``, one small JSON file): multinomial logistic
  regression over what the packaged embedder already computed for the answer (question vector, the chosen
  evidence sentences' vectors, their product) plus cue counts (negations, "no significant difference",
  hedges);
- a findings head (``--head findings``, the same JSON format with ``"features": "findings-stance"``):
  logistic regression over what the best-ranked article about the question reports: its p-values under and
  over 0.05, "not significant", ratios whose confidence interval excludes or holds 1, "significant" and its
  negations, the cue counts, and how its findings read against the question (``rag.stance``'s polarity,
  with the question's direction and safety). Heads saved with ``"features": "findings"`` (without the
  polarity) still load.

All are trained through the same path as inference: real retrieval (``Answerer.retrieve``) on a library of
the corpora, never the gold abstract, so training and answering inputs look alike. PubMedQA's "maybe" is
reported as "uncertain", and a call whose best definite probability is under the calibrated
``uncertain_below`` becomes "uncertain" too: an honest "uncertain" beats a wrong "yes".
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foundation.durable import atomic_path
from foundation.errors import InputError
from foundation.progress import progress_bar
from indexes.pair_model import PairClassifier
from indexes.reranker_data import batch_matches
from indexes.training import PairExample, Recipe, TrainedModel, file_digest, train_pair_classifier
from rag.generators import Evidence
from rag.stance import finding_polarity

LABELS = ["yes", "no", "maybe"]
SHOWN = {"yes": "yes", "no": "no", "maybe": "uncertain"}
PASSAGE_WORDS = 150  # ~ 200 word pieces: with the question, inside the default max_length
LINEAR_FORMAT = 1
_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")


# ----- the classifier's second input ------------------------------------------------------------------------


def passage_sentences(evidence: Evidence, *, words: int = PASSAGE_WORDS, sources: int = 5) -> list[int]:
    """Indices of the evidence sentences a verdict is read from: the most question-similar abstract sentences
    of the top ``sources`` articles (conclusions +0.06, results +0.03, background/methods -0.05), best first,
    until ``words`` words."""
    if not len(evidence.sentences):
        return []
    top = {s.pmid for s in evidence.sources[:sources]}
    sims = evidence.vectors @ evidence.question_vector
    scored = []
    for i, sentence in enumerate(evidence.sentences):
        if sentence.pmid not in top or sentence.position == 0 or sentence.instruction_like:
            continue
        if sentence.text.rstrip().endswith("?"):
            continue
        section = f"{sentence.label or ''} {sentence.category or ''}".upper()
        bonus = 0.0
        if sentence.is_conclusion:
            bonus = 0.06
        elif "RESULT" in section or "FINDING" in section:
            bonus = 0.03
        elif any(name in section for name in ("BACKGROUND", "INTRODUCTION", "METHOD", "OBJECTIVE", "AIM")):
            bonus = -0.05
        scored.append((float(sims[i]) + bonus, i))
    scored.sort(key=lambda item: -item[0])
    chosen: list[int] = []
    used = 0
    for _score, i in scored:
        length = len(evidence.sentences[i].text.split())
        if chosen and used + length > words:
            continue
        chosen.append(i)
        used += length
        if used >= words:
            break
    return chosen


def verdict_passage(evidence: Evidence, *, words: int = PASSAGE_WORDS) -> str:
    """The verdict classifier's second input, built from what ``Answerer.retrieve`` returned."""
    return " ".join(evidence.sentences[i].text for i in passage_sentences(evidence, words=words))


# ----- cue features (the linear head) -----------------------------------------------------------------------

_CUES = {
    "negation": r"\b(?:no|not|nor|none|neither|never|without|cannot|lack(?:s|ed|ing)?|absence|absent|"
    r"fail(?:s|ed)?)\b",
    "no_difference": r"\b(?:no|not|nor)\b[^.]{0,60}\b(?:significant(?:ly)?|difference|differ(?:ed)?|"
    r"associat\w*|effect|improv\w*|change[sd]?|correlat\w*)\b|\bsimilar\b|\bcomparable\b",
    "significant": r"\bsignificant(?:ly)?\b|\bp\s*[<=]\s*0?\.0[0-5]",
    "positive_change": r"\b(?:improv\w*|reduc\w*|increas\w*|decreas\w*|lower\w*|higher|better|benefit\w*|"
    r"effective|associated with|predict\w*|associat\w*)\b",
    "hedge": r"\b(?:may|might|could|possibl\w*|unclear|uncertain|inconclusive|further (?:research|studies|"
    r"study|investigation)|limited|controvers\w*|remains? to be|warrant\w*|suggest\w*)\b",
    "contrast": r"\b(?:however|although|but|whereas|despite|nevertheless)\b",
}
_CUE_PATTERNS = {name: re.compile(pattern, re.I) for name, pattern in _CUES.items()}
_QUESTION_CUES = {
    "question_negation": re.compile(r"\b(?:not|no|without|never)\b", re.I),
    "question_comparison": re.compile(
        r"\b(?:than|versus|vs|compared|better|worse|superior|inferior)\b", re.I
    ),
}


def cue_features(question: str, sentences: Sequence[str]) -> np.ndarray:
    """Cue counts per sentence of the passage (and two question cues), as float32."""
    n = max(1, len(sentences))
    values = [sum(len(p.findall(s)) for s in sentences) / n for p in _CUE_PATTERNS.values()]
    values += [float(bool(p.search(question))) for p in _QUESTION_CUES.values()]
    values.append(math.log1p(len(sentences)))
    return np.asarray(values, dtype=np.float32)


def linear_features(evidence: Evidence, *, words: int = PASSAGE_WORDS) -> np.ndarray:
    """The linear head's input: [question vector, mean passage vector, their product, cues, best cosine]."""
    chosen = passage_sentences(evidence, words=words)
    q = np.asarray(evidence.question_vector, dtype=np.float32)
    if chosen:
        vectors = evidence.vectors[chosen]
        mean = vectors.mean(axis=0)
        best = float((vectors @ q).max())
    else:
        mean, best = np.zeros_like(q), 0.0
    cues = cue_features(evidence.question, [evidence.sentences[i].text for i in chosen])
    return np.concatenate([q, mean, q * mean, cues, np.asarray([best], dtype=np.float32)]).astype(np.float32)


# ----- what the findings report (the findings head) ---------------------------------------------------------

# "p < 0.05", "P=.003", "p-value > 0.1"; "NS", "not significant"; a ratio with its confidence interval
# ("OR 1.8 (95% CI 1.2-2.7)", "HR, 0.9; 95% CI, 0.7 to 1.2"): whether the interval holds 1 is what the
# authors' "significant" means for a ratio.
_P_VALUE = re.compile(r"\bp\s*(?:-?\s*values?\s*)?(<=|>=|<|>|=|≤|≥)\s*(0?\.\d+|1(?:\.0+)?)(?![\d.])", re.I)
_NOT_SIGNIFICANT = re.compile(
    r"\b(?:not\s+(?:statistically\s+)?significant(?:ly)?|non-?significant(?:ly)?|insignificant(?:ly)?)\b|"
    r"\bN\.?S\b\.?"
)
_RATIO_CI = re.compile(
    r"\b(?:a?ORs?|RRs?|a?HRs?|IRRs?|odds\s+ratios?|risk\s+ratios?|hazard\s+ratios?|relative\s+risks?)\b"
    r"[^()\d]{0,20}(\d+(?:\.\d+)?)\s*[,;(\[]?\s*(?:95\s*%\s*(?:CI|confidence\s+intervals?)\s*[:,=]?\s*)?"
    r"(\d+(?:\.\d+)?)\s*(?:-|–|to|,)\s*(\d+(?:\.\d+)?)",
    re.I,
)
_SIGNIFICANT = re.compile(r"\bsignificant(?:ly)?\b", re.I)
_NEGATED_SIGNIFICANT = re.compile(r"\b(?:no|not|nor|without|non)\b[^.;]{0,40}?\bsignifican", re.I)


def statistic_features(sentences: Sequence[str]) -> np.ndarray:
    """What the reported statistics say, as float32: tests under 0.05, tests at or over it (and "not
    significant"), ratios whose interval excludes 1, ratios whose interval holds it, "significant" less its
    negated uses, negated uses, the share of significant results among those read, and whether any was."""
    text = " ".join(sentences)
    small = large = 0
    for operator, value in _P_VALUE.findall(text):
        number = float(value)
        if (operator in ("<", "<=", "≤") and number <= 0.05) or (operator == "=" and number < 0.05):
            small += 1
        elif operator in (">", ">=", "≥", "=") and number >= 0.05:
            large += 1
    large += len(_NOT_SIGNIFICANT.findall(text))
    excludes = holds = 0
    for match in _RATIO_CI.finditer(text):
        low, high = float(match.group(2)), float(match.group(3))
        if low <= 1.0 <= high:
            holds += 1
        elif low < high:
            excludes += 1
    negated = len(_NEGATED_SIGNIFICANT.findall(text))
    signed = len(_SIGNIFICANT.findall(text)) - negated
    read = small + large + excludes + holds
    values = [small, large, excludes, holds, signed, negated]
    out = [math.copysign(math.log1p(abs(v)), v) for v in values]
    out += [(small + excludes) / read if read else 0.5, float(read > 0)]
    return np.asarray(out, dtype=np.float32)


def finding_sentences(evidence: Evidence) -> list[int]:
    """Indices of the sentences the findings head reads: the best-ranked article about the question (the
    best-ranked retrieved one when none was appraised as about it), all its abstract sentences but the title
    and questions. One article: PubMedQA-style questions are answered by one study, and a second one's
    statistics blur the first's."""
    if not evidence.sources:
        return []
    source = (evidence.on_point() or list(evidence.sources))[0]
    return [
        i
        for i, sentence in enumerate(evidence.sentences)
        if sentence.pmid == source.pmid
        and sentence.position > 0
        and not sentence.instruction_like
        and not sentence.text.rstrip().endswith("?")
    ]


def findings_text(evidence: Evidence) -> str:
    return " ".join(evidence.sentences[i].text for i in finding_sentences(evidence))


def findings_features(evidence: Evidence) -> np.ndarray:
    """The findings head's input: cue counts and statistic features of ``finding_sentences``."""
    texts = [evidence.sentences[i].text for i in finding_sentences(evidence)]
    return np.concatenate([cue_features(evidence.question, texts), statistic_features(texts)]).astype(
        np.float32
    )


def polarity_features(evidence: Evidence) -> np.ndarray:
    """How the findings read against the question, as ``rag.stance`` reads a cited study: the share of
    finding sentences that are positive, negative, hedged (with the question's direction, and harms deciding
    for a safety question: "no difference in complications" speaks for "safe"), the positive and negative
    shares of the last third (where results and conclusions stand), and the two question flags."""
    texts = [evidence.sentences[i].text for i in finding_sentences(evidence)]
    focus = evidence.focus
    direction = focus.direction if focus is not None else 0
    safety = bool(focus is not None and focus.safety)
    read = [finding_polarity(text, direction, safety) for text in texts]
    tail = read[len(read) * 2 // 3 :] or read
    n, m = max(1, len(read)), max(1, len(tail))
    values = [
        sum(p > 0 for p, _h in read) / n,
        sum(p < 0 for p, _h in read) / n,
        sum(h for _p, h in read) / n,
        sum(p > 0 for p, _h in tail) / m,
        sum(p < 0 for p, _h in tail) / m,
        float(safety),
        float(direction),
    ]
    return np.asarray(values, dtype=np.float32)


def findings_stance_features(evidence: Evidence) -> np.ndarray:
    """The findings head's input since the sixth session: ``findings_features`` and ``polarity_features``
    (on the same retrieved evidence: PubMedQA 5-fold 0.602 -> 0.614, BioASQ 10B 0.683 -> 0.699;
    docs/answers.md)."""
    return np.concatenate([findings_features(evidence), polarity_features(evidence)]).astype(np.float32)


# "findings" (17 values) is kept so that heads trained before the polarity features still load
FEATURE_SETS = {
    "embedding": linear_features,
    "findings": findings_features,
    "findings-stance": findings_stance_features,
}
FINDINGS = "findings-stance"  # what `medlit train verdict --head findings` trains now


# ----- the linear head --------------------------------------------------------------------------------------


@dataclass(slots=True)
class LinearHead:
    """Multinomial logistic regression on standardised features; saved as JSON (no pickle)."""

    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (features, labels)
    bias: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    features: str = "embedding"  # which of FEATURE_SETS it reads

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - self.mean) / self.scale
        logits = x @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        labels: list[str],
        *,
        l2: float = 1.0,
        steps: int = 400,
        class_weights: np.ndarray | None = None,
    ) -> LinearHead:
        """Full-batch gradient descent (Adam) on the L2-penalised multinomial log-loss."""
        x = np.asarray(features, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        x = (x - mean) / scale
        n, d = x.shape
        k = len(labels)
        y = np.zeros((n, k))
        y[np.arange(n), targets] = 1.0
        sample_weight = np.ones(n) if class_weights is None else class_weights[targets]
        sample_weight = sample_weight / sample_weight.mean()
        w = np.zeros((d, k))
        b = np.zeros(k)
        state = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
        rate, beta1, beta2 = 0.05, 0.9, 0.999
        for step in range(1, steps + 1):
            logits = x @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            error = (p - y) * sample_weight[:, None] / n
            grad_w = x.T @ error + l2 * w / n
            grad_b = error.sum(axis=0)
            for j, (grad, param) in enumerate(((grad_w, w), (grad_b, b))):
                m, v = state[2 * j], state[2 * j + 1]
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad**2
                param -= rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + 1e-8)
        return cls(list(labels), mean.astype(np.float32), scale.astype(np.float32), w, b)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LINEAR_FORMAT,
            "kind": "medlit-linear-verdict",
            "labels": self.labels,
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [[round(float(v), 6) for v in row] for row in self.weights],
            "bias": [round(float(v), 6) for v in self.bias],
            "features": self.features,
            "manifest": self.manifest,
        }

    @classmethod
    def from_json(cls, data: Any, source: Path) -> LinearHead:
        try:
            if data.get("kind") != "medlit-linear-verdict" or data.get("format") != LINEAR_FORMAT:
                raise ValueError("not a medlit linear verdict head")
            head = cls(
                [str(label) for label in data["labels"]],
                np.asarray(data["mean"], dtype=np.float32),
                np.asarray(data["scale"], dtype=np.float32),
                np.asarray(data["weights"], dtype=np.float64),
                np.asarray(data["bias"], dtype=np.float64),
                dict(data.get("manifest") or {}),
                str(data.get("features") or "embedding"),
            )
            if head.features not in FEATURE_SETS:
                raise ValueError(f"unknown feature set {head.features!r}")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a linear verdict head ({exc})") from None
        d, k = head.weights.shape if head.weights.ndim == 2 else (0, 0)
        if (
            k != len(head.labels)
            or head.mean.shape != (d,)
            or head.scale.shape != (d,)
            or head.bias.shape != (k,)
        ):
            raise InputError(f"{source}: the linear verdict head's arrays do not fit together (damaged)")
        return head


# ----- what answers use -------------------------------------------------------------------------------------


@dataclass(slots=True)
class VerdictPrediction:
    label: str  # "yes" | "no" | "uncertain"
    probabilities: dict[str, float]  # yes, no, uncertain
    basis: str  # the passage the verdict was read from

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": dict(self.probabilities), "basis": self.basis}


def decide(probabilities: dict[str, float], uncertain_below: float) -> str:
    """The label shown: the likeliest, but 'uncertain' when neither yes nor no reaches ``uncertain_below``."""
    best = max(probabilities, key=lambda name: probabilities[name])
    if best != "uncertain" and probabilities[best] < uncertain_below:
        return "uncertain"
    return best


class VerdictClassifier:
    """A trained verdict model: a cross-encoder directory or a linear-head JSON file."""

    def __init__(
        self,
        *,
        pair_model: PairClassifier | None = None,
        linear: LinearHead | None = None,
        uncertain_below: float = 0.0,
        source: Path,
    ) -> None:
        self.pair_model = pair_model
        self.linear = linear
        self.uncertain_below = uncertain_below
        self.source = source
        self.labels = pair_model.labels if pair_model is not None else (linear.labels if linear else [])
        if sorted(self.labels) != sorted(LABELS):
            raise InputError(f"{source}: a verdict model has the labels yes, no, maybe (found {self.labels})")

    @property
    def manifest(self) -> dict[str, Any]:
        if self.pair_model is not None:
            return self.pair_model.manifest
        return self.linear.manifest if self.linear else {}

    @classmethod
    def load(cls, path: str | Path, *, uncertain_below: float | None = None) -> VerdictClassifier:
        """A directory from ``medlit train verdict`` or the JSON file of ``--head linear``."""
        source = Path(path).expanduser()
        if source.is_file():
            try:
                data = json.loads(source.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"{source}: unreadable verdict head ({exc})") from None
            linear = LinearHead.from_json(data, source)
            threshold = float(linear.manifest.get("uncertain_below", 0.0))
            return cls(linear=linear, uncertain_below=_threshold(uncertain_below, threshold), source=source)
        if (
            source.is_dir()
            and (source / "verdict.json").is_file()
            and not (source / "manifest.json").is_file()
        ):
            return cls.load(source / "verdict.json", uncertain_below=uncertain_below)
        model = PairClassifier.load(source, task="verdict")
        threshold = float(model.manifest.get("uncertain_below", 0.0))
        return cls(pair_model=model, uncertain_below=_threshold(uncertain_below, threshold), source=source)

    def probabilities(self, evidence: Evidence) -> dict[str, float]:
        if self.pair_model is not None:
            row = self.pair_model.predict_proba([(evidence.question, verdict_passage(evidence))])[0]
        else:
            assert self.linear is not None
            row = self.linear.predict_proba(FEATURE_SETS[self.linear.features](evidence))[0]
        return {SHOWN[label]: float(p) for label, p in zip(self.labels, row, strict=True)}

    def predict(self, evidence: Evidence) -> VerdictPrediction:
        probabilities = self.probabilities(evidence)
        return VerdictPrediction(
            label=decide(probabilities, self.uncertain_below),
            probabilities={k: round(v, 4) for k, v in probabilities.items()},
            basis=findings_text(evidence)
            if self.linear is not None and self.linear.features.startswith("findings")
            else verdict_passage(evidence),
        )


def _threshold(given: float | None, saved: float) -> float:
    return saved if given is None else float(given)


# ----- training data through the answer pipeline ------------------------------------------------------------


@dataclass(slots=True)
class VerdictQuestion:
    key: str
    text: str
    label: str  # yes | no | maybe
    source: str


def read_verdict_questions(paths: Sequence[str | Path], batches: Sequence[str] = ()) -> list[VerdictQuestion]:
    """Yes/no(/maybe) questions: PubMedQA's ``answer`` or BioASQ's ``exact_answer`` of ``type: yesno``."""
    questions = []
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
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a question record ({exc})") from None
            if not batch_matches(item.get("batch"), batches):
                continue
            answer = item.get("answer")
            if answer is None and item.get("type") == "yesno":
                answer = item.get("exact_answer")
            if isinstance(answer, list):
                answer = answer[0] if answer else None
            answer = str(answer or "").strip().lower()
            if answer in LABELS and text.strip():
                questions.append(VerdictQuestion(str(item.get("id") or text), text, answer, str(path)))
    if not questions:
        raise InputError("no yes/no/maybe questions in " + ", ".join(str(p) for p in paths))
    return questions


@dataclass(slots=True)
class RetrievedVerdict:
    """One question's retrieved evidence, reduced to what the verdict models read."""

    question: VerdictQuestion
    passage: str
    features: np.ndarray  # linear_features
    findings: np.ndarray  # findings_stance_features


def retrieve_for_verdicts(
    answerer: Any, questions: Sequence[VerdictQuestion], *, progress: bool = True
) -> list[RetrievedVerdict]:
    """``Answerer.retrieve`` for each question (the inference path), kept as passage + linear features;
    a question that retrieves nothing is kept with an empty passage (it happens at inference too)."""
    out = []
    with progress_bar(len(questions), "retrieving evidence", "question", progress) as bar:
        for question in questions:
            _hits, evidence, _trace = answerer.retrieve(question.text)
            if evidence is None:
                dimension = int(getattr(answerer.embedder, "dimension", 0))
                empty = Evidence(
                    question.text,
                    [],
                    [],
                    np.zeros((0, dimension), dtype=np.float32),
                    np.asarray(answerer.embedder.embed_query(question.text), dtype=np.float32),
                )
                evidence = empty
            out.append(
                RetrievedVerdict(
                    question,
                    verdict_passage(evidence),
                    linear_features(evidence),
                    findings_stance_features(evidence),
                )
            )
            bar.update(1)
    return out


def verdict_data_summary(questions: Sequence[VerdictQuestion]) -> dict[str, Any]:
    sources = sorted({q.source for q in questions})
    return {
        "sources": [{"file": s, "sha256": file_digest(Path(s))} for s in sources],
        "questions": len(questions),
        "labels": {label: sum(q.label == label for q in questions) for label in LABELS},
        "evidence": "Answerer.retrieve on the library (not the gold abstract)",
    }


def calibrate_uncertain(
    probabilities: np.ndarray, gold: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """The 'uncertain' threshold with the best accuracy on held-out questions (ties: the higher threshold, the
    more honest), with the whole trade-off curve (accuracy, wrong definite answers) for the docs."""
    curve = []
    for t in [0.0, *np.arange(0.40, 0.91, 0.05)]:
        shown = [
            decide({SHOWN[name]: float(p) for name, p in zip(labels, row, strict=True)}, float(t))
            for row in probabilities
        ]
        truth = [SHOWN[g] for g in gold]
        correct = sum(s == g for s, g in zip(shown, truth, strict=True))
        wrong_definite = sum(s != g and s != "uncertain" for s, g in zip(shown, truth, strict=True))
        curve.append(
            {
                "uncertain_below": round(float(t), 2),
                "accuracy": round(correct / len(truth), 4) if truth else 0.0,
                "wrong_definite": round(wrong_definite / len(truth), 4) if truth else 0.0,
                "uncertain_share": round(sum(s == "uncertain" for s in shown) / len(truth), 4)
                if truth
                else 0.0,
            }
        )
    best = max(curve, key=lambda c: (c["accuracy"], c["uncertain_below"]))
    return {"uncertain_below": best["uncertain_below"], "curve": curve}


def train_linear_verdict(
    retrieved: Sequence[RetrievedVerdict],
    out: str | Path,
    *,
    data: dict[str, Any],
    embedder_name: str,
    eval_share: float = 0.2,
    seed: int = 13,
    l2: float | None = None,
    features: str = "embedding",
) -> dict[str, Any]:
    """Fit the linear head on the retrieved questions (a share held out by question to calibrate
    'uncertain' and report metrics), then refit on all of them and save the JSON file ``out``.

    ``features``: "embedding" (``linear_features``; classes weighted to balance, L2 30) or "findings"
    (``findings_stance_features``, 24 values, saved as "findings-stance"; unweighted, L2 3: weighting the
    classes cost 20 points of accuracy on PubMedQA there, docs/benchmarks.md)."""
    from indexes.training import classification_metrics

    started = time.perf_counter()
    if len(retrieved) < 10:
        raise InputError(f"the linear verdict head needs at least 10 questions (got {len(retrieved)})")
    order = list(range(len(retrieved)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * eval_share))
    held, train = order[:cut], order[cut:]
    if features not in ("embedding", "findings"):
        raise InputError(f"unknown verdict features {features!r}: choose embedding or findings")
    findings = features == "findings"
    l2 = (3.0 if findings else 30.0) if l2 is None else l2
    x = np.stack([r.findings if findings else r.features for r in retrieved])
    y = np.array([LABELS.index(r.question.label) for r in retrieved])

    def weights(targets: np.ndarray) -> np.ndarray:
        return np.ones(len(LABELS)) if findings else _balanced(targets)

    head = LinearHead.fit(x[train], y[train], LABELS, l2=l2, class_weights=weights(y[train]))
    probabilities = head.predict_proba(x[held])
    calibration = calibrate_uncertain(probabilities, [retrieved[i].question.label for i in held], LABELS)
    held_metrics = classification_metrics(probabilities, y[held])
    final = LinearHead.fit(x, y, LABELS, l2=l2, class_weights=weights(y))
    final.features = FINDINGS if findings else features
    final.manifest = {
        "task": "verdict",
        "head": "findings" if findings else "linear",
        "labels": LABELS,
        "features": "cue counts, reported statistics (p-values, ratio intervals) and the polarity of the "
        "best-ranked article's findings"
        if findings
        else "question vector, mean passage vector, their product; cue counts; best cosine",
        "class_weights": "none" if findings else "balanced",
        "embedder": embedder_name,
        "passage_words": PASSAGE_WORDS,
        "data": data,
        "recipe": {
            "l2": l2,
            "steps": 400,
            "optimizer": "Adam, full batch",
            "eval_share": eval_share,
            "seed": seed,
        },
        "metrics": {"held_out": held_metrics, "held_out_questions": len(held)},
        "uncertain_below": calibration["uncertain_below"],
        "calibration": calibration["curve"],
        "train_seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    target = Path(out).expanduser()
    if target.suffix != ".json":
        target = target / "verdict.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(final.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
    return {"path": str(target), "bytes": target.stat().st_size, **final.manifest}


def _balanced(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    return np.where(counts > 0, len(y) / (len(LABELS) * np.maximum(counts, 1)), 0.0)


def train_cross_encoder_verdict(
    retrieved: Sequence[RetrievedVerdict],
    out: str | Path,
    *,
    data: dict[str, Any],
    base: str | Path | None = None,
    recipe: Recipe | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> TrainedModel:
    """Fine-tune the verdict cross-encoder on (question, retrieved passage), then calibrate 'uncertain' on its
    held-out questions and record it in the manifest."""
    examples = [
        PairExample(r.question.key, r.question.text, r.passage, LABELS.index(r.question.label))
        for r in retrieved
    ]
    recipe = recipe or Recipe(max_length=256, epochs=2.0, best_metric="macro_f1")
    trained = train_pair_classifier(
        "verdict",
        examples,
        out=out,
        base=base,
        labels=LABELS,
        recipe=recipe,
        data=data,
        engine=engine,
        ray_address=ray_address,
        progress=progress,
    )
    from indexes.training import split_by_group

    _train, held = split_by_group(examples, recipe.eval_share, recipe.seed)
    model = PairClassifier.load(trained.path, task="verdict")
    probabilities = model.predict_proba([(e.first, e.second) for e in held])
    calibration = calibrate_uncertain(probabilities, [LABELS[e.label] for e in held], LABELS)
    manifest = dict(trained.manifest)
    manifest["uncertain_below"] = calibration["uncertain_below"]
    manifest["calibration"] = calibration["curve"]
    with atomic_path(Path(trained.path) / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    trained.manifest = manifest
    return trained
