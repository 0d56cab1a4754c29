"""How well the verifier's support check tells a supported answer sentence from an unsupported one.

Pairs (answer sentence, cited article):

- positives: BioASQ ideal-answer sentences (experts' summaries, often of several snippets) with their own
  relevant articles, and, with ``--labels``, real model sentences labelled by hand (supported: 1);
- hard negatives: the same sentences with the closest non-relevant articles of the library;
- perturbed negatives: the sentence made false against its own articles: negated ("is" → "is not"),
  its numbers changed, or its main concept swapped for another question's;
- with ``--labels``: the hand-labelled model sentences marked unsupported (0).

Checks compared, each at its threshold chosen for best F1 on a calibration half and reported on the other:
``cosine`` (the best single abstract sentence, the verifier before issue 10) and ``support`` (the
verifier's ``support_score``: best single sentence or a pair that sums up, the sentence's numbers and its
effect / no effect checked).

    MEDLIT_HOME=/tmp/lead/dev python bench/support.py --questions 400 \
        [--labels bench/data/support_labels.jsonl]

With ``--model DIR`` a trained support classifier (``medlit train support``) is scored too (``classifier``:
P(supported) against the article's three closest sentences, as the verifier reads it, with the same number
and denial checks); use ``--batches 10B`` when it was trained on 7B-9B.

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from foundation.settings import get_settings  # noqa: E402
from indexes.hit import Filters  # noqa: E402
from ingest.store import Store  # noqa: E402
from rag.ask import Answerer  # noqa: E402
from rag.focus import read_question  # noqa: E402
from rag.generators import ExtractiveGenerator  # noqa: E402
from rag.sentences import article_sentences, split_sentences  # noqa: E402
from rag.verify import model_support, support_score  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

_NEGATIONS = [
    (r"\bis associated\b", "is not associated"),
    (r"\bare associated\b", "are not associated"),
    (r"\bwas associated\b", "was not associated"),
    (r"\bis effective\b", "is not effective"),
    (r"\bis not\b", "is"),
    (r"\bdoes not\b", "does"),
    (r"\bcan\b", "cannot"),
    (r"\bincreases\b", "does not increase"),
    (r"\breduces\b", "does not reduce"),
    (r"\bimproves\b", "does not improve"),
    (r"\bcauses\b", "does not cause"),
    (r"\bis\b", "is not"),
    (r"\bare\b", "are not"),
]


def negate(sentence: str) -> str | None:
    for pattern, replacement in _NEGATIONS:
        if re.search(pattern, sentence):
            return re.sub(pattern, replacement, sentence, count=1)
    return None


def renumber(sentence: str) -> str | None:
    numbers = re.findall(r"(?<![\w.])\d+(?:\.\d+)?", sentence)
    numbers = [n for n in numbers if not re.fullmatch(r"(?:19|20)\d\d", n) and len(n.replace(".", "")) > 1]
    if not numbers:
        return None
    target = numbers[0]
    changed = str(int(float(target) * 2 + 3)) if "." not in target else f"{float(target) * 2 + 0.3:.1f}"
    return sentence.replace(target, changed, 1)


def swap(sentence: str, question: str, other: str) -> str | None:
    mine, theirs = read_question(question).primary, read_question(other).primary
    if mine is None or theirs is None or mine.text.lower() not in sentence.lower():
        return None
    return re.sub(re.escape(mine.text), theirs.text, sentence, count=1, flags=re.I)


class Articles:
    """Sentences, vectors and text of library articles, embedded once."""

    def __init__(self, store: Store, embedder: object) -> None:
        self.store, self.embedder = store, embedder
        self.cache: dict[int, tuple[list[str], np.ndarray, str]] = {}

    def get(self, pmid: int) -> tuple[list[str], np.ndarray, str] | None:
        if pmid not in self.cache:
            article = self.store.get(pmid)
            if article is None:
                return None
            texts = [s.text for s in article_sentences(article) if not s.instruction_like]
            if not texts:
                return None
            vectors = self.embedder.embed_documents(texts)  # type: ignore[attr-defined]
            self.cache[pmid] = (texts, vectors, " ".join(texts))
        return self.cache[pmid]


CLASSIFIER: object | None = None  # --model: a trained support classifier, scored as the verifier uses it


def pair_scores(sentence: str, vector: np.ndarray, article: tuple[list[str], np.ndarray, str]) -> dict:
    texts, vectors, whole = article
    support = support_score(vector, sentence, vectors, texts, whole)
    rules = support.numbers_ok and support.polarity_ok
    scores = {"cosine": support.single, "support": support.score if rules else -1.0}
    if CLASSIFIER is not None:
        scores["classifier"] = model_support(CLASSIFIER, sentence, texts, vectors @ vector) if rules else -1.0
    return scores


def build_pairs(answerer: Answerer, items: list[dict], seed: int) -> list[dict]:
    rng = random.Random(seed)
    articles = Articles(answerer.store, answerer.embedder)
    pairs = []
    for item in items:
        ideal = item.get("ideal_answer")
        ideal = ideal[0] if isinstance(ideal, list) and ideal else ideal
        if not isinstance(ideal, str):
            continue
        sentences = [s for s in split_sentences(ideal) if len(s.split()) >= 6][:2]
        relevant = [int(p) for p in item["relevant_pmids"]]
        near = answerer.searcher.search(ideal[:2000], 3 + len(relevant), Filters(include_retracted=True))
        hard = [h.pmid for h in near if h.pmid not in set(relevant)][:2]
        other = rng.choice(items)
        for sentence in sentences:
            vector = answerer.embedder.embed_documents([sentence])[0]
            own = [a for a in (articles.get(p) for p in relevant[:5]) if a is not None]
            if not own:
                continue
            best_own = max(own, key=lambda a: float(np.max(a[1] @ vector)))
            pairs.append({"kind": "positive", "label": 1, **pair_scores(sentence, vector, best_own)})
            for pmid in hard:
                article = articles.get(pmid)
                if article is not None:
                    pairs.append({"kind": "hard", "label": 0, **pair_scores(sentence, vector, article)})
            for kind, changed in (
                ("negated", negate(sentence)),
                ("numbers", renumber(sentence)),
                ("swapped", swap(sentence, item["question"], other["question"])),
            ):
                if changed and changed != sentence:
                    v = answerer.embedder.embed_documents([changed])[0]
                    pairs.append({"kind": kind, "label": 0, **pair_scores(changed, v, best_own)})
    return pairs


def labelled_pairs(answerer: Answerer, path: Path) -> list[dict]:
    articles = Articles(answerer.store, answerer.embedder)
    pairs = []
    for line in path.open():
        if not line.strip():
            continue
        row = json.loads(line)
        article = articles.get(int(row["pmid"]))
        if article is None:
            continue
        vector = answerer.embedder.embed_documents([row["sentence"]])[0]
        pairs.append(
            {"kind": "model", "label": int(row["label"]), **pair_scores(row["sentence"], vector, article)}
        )
    return pairs


def best_threshold(pairs: list[dict], key: str) -> float:
    best, best_t = -1.0, 0.5
    for t in np.arange(0.3, 0.96, 0.01):
        tp = sum(p[key] >= t and p["label"] for p in pairs)
        fp = sum(p[key] >= t and not p["label"] for p in pairs)
        fn = sum(p[key] < t and p["label"] for p in pairs)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return round(best_t, 2)


def report(pairs: list[dict], key: str, t: float) -> dict:
    out: dict = {"threshold": t}
    positives = [p for p in pairs if p["label"]]
    tp = sum(p[key] >= t for p in positives)
    fp = sum(p[key] >= t for p in pairs if not p["label"])
    out["recall"] = round(tp / len(positives), 4) if positives else None
    out["precision"] = round(tp / (tp + fp), 4) if tp + fp else None
    for kind in sorted({p["kind"] for p in pairs if not p["label"]}):
        negatives = [p for p in pairs if p["kind"] == kind and not p["label"]]
        out[f"false_positive_rate_{kind}"] = round(sum(p[key] >= t for p in negatives) / len(negatives), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=400, help="BioASQ questions (half calibrate).")
    parser.add_argument("--labels", type=Path, help="JSONL of hand-labelled model sentences.")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--batches",
        nargs="*",
        default=[],
        help="Only BioASQ questions of these batches (e.g. 10B: the batch a support classifier trained "
        "on 7B-9B never saw).",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="A support classifier (`medlit train support`): scored as the verifier uses it, with the "
        "number and denial checks, at its manifest threshold and at its best F1 on the calibration half.",
    )
    args = parser.parse_args()
    global CLASSIFIER
    threshold = None
    if args.model:
        from rag.support_model import SupportClassifier

        CLASSIFIER = SupportClassifier.load(args.model)
        threshold = CLASSIFIER.threshold

    settings = get_settings()
    store = Store.open(settings)
    answerer = Answerer(store, settings, generator=ExtractiveGenerator())
    items = [json.loads(line) for line in (DATA / "bioasq" / "questions.jsonl").open() if line.strip()]
    items = [i for i in items if i.get("relevant_pmids") and i.get("ideal_answer")]
    if args.batches:
        items = [i for i in items if str(i.get("batch", "")).startswith(tuple(args.batches))]
    random.Random(args.seed).shuffle(items)
    items = items[: args.questions]
    half = len(items) // 2
    calibration = build_pairs(answerer, items[:half], args.seed)
    held = build_pairs(answerer, items[half:], args.seed + 1)
    model = labelled_pairs(answerer, args.labels) if args.labels else []
    if model:
        random.Random(args.seed).shuffle(model)
        calibration += model[: len(model) // 2]
        held += model[len(model) // 2 :]
    result = {
        "model": answerer.embedder.name,
        "pairs": {"calibration": len(calibration), "held_out": len(held), "hand_labelled": len(model)},
        "kinds_held_out": {k: sum(p["kind"] == k for p in held) for k in sorted({p["kind"] for p in held})},
    }
    for key in ("cosine", "support", *(["classifier"] if CLASSIFIER is not None else [])):
        t = best_threshold(calibration, key)
        default = threshold if key == "classifier" else 0.75
        result[key] = {
            "held_out": report(held, key, t),
            "held_out_model_only": report([p for p in held if p["kind"] == "model"], key, t)
            if model
            else None,
            "at_default": report(held, key, default),
            "model_only_at_default": report([p for p in held if p["kind"] == "model"], key, default)
            if model
            else None,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
