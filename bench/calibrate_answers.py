"""Calibrate the two thresholds of answer verification on real question sets, and report them held out.

Abstention (``answer.abstain_threshold``): for each question, the best question-to-sentence similarity among
the k retrieved articles, (a) as retrieved ("answerable") and (b) with the question's relevant articles
removed from the library's results ("relevant removed"), plus off-topic questions. The threshold is the
5th percentile of (a) on the calibration half: 95% of answerable questions are answered by construction; the
report gives the held-out half's figures for (a), (b) and off-topic questions.

Support (``answer.support_threshold``): BioASQ ideal answers are expert sentences written from the relevant
articles. Positive pairs: each ideal-answer sentence with its own relevant articles; negative pairs: the same
sentence with another question's relevant articles. Support = best similarity to any sentence of the cited
articles. The threshold maximises F1 on the calibration half; precision/recall are reported held out.

    MEDLIT_HOME=/tmp/cal/home python bench/calibrate_answers.py --questions 300 > calibration.json

The library must hold the corpora (``medlit ingest jsonl`` of ../shared/data/{pubmedqa,bioasq}/corpus.jsonl,
then ``medlit index update``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ingest.py hides ingest/
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from foundation.settings import get_settings  # noqa: E402
from indexes.hit import Filters  # noqa: E402
from ingest.store import Store  # noqa: E402
from rag.ask import Answerer  # noqa: E402
from rag.generators import ExtractiveGenerator  # noqa: E402
from rag.sentences import article_sentences, split_sentences  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

OFF_TOPIC = [
    "What is the best pizza topping in Naples?",
    "Who won the football world cup in 1998?",
    "How do I change a flat tyre on a bicycle?",
    "What is the capital city of Australia?",
    "How many moons does Jupiter have?",
    "Which programming language is best for web development?",
    "What time does the stock market open in Tokyo?",
    "How do you bake sourdough bread at home?",
    "What is the plot of the novel Moby Dick?",
    "Which smartphone has the best camera this year?",
    "How do I train my dog to sit?",
    "What is the exchange rate between the euro and the dollar?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How long does it take to fly from London to New York?",
    "What are the rules of chess castling?",
    "How do solar panels convert light into electricity?",
    "What is the tallest mountain in Africa?",
    "How should I invest for retirement?",
    "What is the recipe for French onion soup?",
    "When was the Eiffel Tower built?",
]


def load(path: Path, n: int, seed: int) -> list[dict]:
    items = [json.loads(line) for line in path.open() if line.strip()]
    items = [i for i in items if i.get("relevant_pmids")]
    random.Random(seed).shuffle(items)
    return items[:n]


def relevance(answerer: Answerer, question: str, exclude: set[int], k: int) -> float:
    """Best question-to-sentence similarity over the top k hits that are not in ``exclude``."""
    hits = answerer.searcher.search(question, k + len(exclude), Filters(include_retracted=True))
    hits = [h for h in hits if h.pmid not in exclude][:k]
    if not hits:
        return 0.0
    return answerer._evidence(question, hits).relevance() or 0.0


def support_scores(
    answerer: Answerer, items: list[dict], seed: int
) -> tuple[list[float], list[float], list[float]]:
    rng = random.Random(seed)
    embedder = answerer.embedder
    store = answerer.store
    cache: dict[int, np.ndarray] = {}

    def vectors(pmids: list[int]) -> np.ndarray:
        rows = []
        missing = [p for p in pmids if p not in cache]
        for pmid, article in store.get_many(missing).items():
            texts = [s.text for s in article_sentences(article)]
            cache[pmid] = embedder.embed_documents(texts) if texts else np.zeros((0, embedder.dimension))
        for pmid in pmids:
            if pmid in cache and len(cache[pmid]):
                rows.append(cache[pmid])
        return np.vstack(rows) if rows else np.zeros((0, embedder.dimension), dtype=np.float32)

    positives, negatives, hard_negatives = [], [], []
    for item in items:
        ideal = item.get("ideal_answer")
        ideal = ideal[0] if isinstance(ideal, list) and ideal else ideal
        if not isinstance(ideal, str):
            continue
        sentences = [s for s in split_sentences(ideal) if len(s.split()) >= 6][:3]
        if not sentences:
            continue
        relevant = {int(p) for p in item["relevant_pmids"]}
        own = vectors(sorted(relevant))
        other_item = rng.choice(items)
        while other_item is item:
            other_item = rng.choice(items)
        other = vectors([int(p) for p in other_item["relevant_pmids"]])
        # hard negatives: the closest articles that are not relevant (what a model citing the wrong one of
        # several similar papers would cite)
        near = answerer.searcher.search(ideal[:2000], 3 + len(relevant), Filters(include_retracted=True))
        hard = vectors([h.pmid for h in near if h.pmid not in relevant][:3])
        if not len(own) or not len(other) or not len(hard):
            continue
        sv = embedder.embed_documents(sentences)
        positives += (sv @ own.T).max(axis=1).tolist()
        negatives += (sv @ other.T).max(axis=1).tolist()
        hard_negatives += (sv @ hard.T).max(axis=1).tolist()
    return positives, negatives, hard_negatives


def best_f1_threshold(pos: list[float], neg: list[float]) -> float:
    best, best_t = -1.0, 0.5
    for t in np.arange(0.2, 0.95, 0.01):
        tp = sum(p >= t for p in pos)
        fp = sum(n >= t for n in neg)
        fn = len(pos) - tp
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return round(best_t, 2)


def rates(pos: list[float], neg: list[float], t: float) -> dict[str, float]:
    tp = sum(p >= t for p in pos)
    fp = sum(n >= t for n in neg)
    return {
        "recall": round(tp / len(pos), 4) if pos else 0.0,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "false_positive_rate": round(fp / len(neg), 4) if neg else 0.0,
        "positives": len(pos),
        "negatives": len(neg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=300, help="Questions per set (half calibrate).")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = get_settings()
    store = Store.open(settings)
    answerer = Answerer(store, settings, generator=ExtractiveGenerator())
    answerable, removed, sets = [], [], {}
    for name in ("pubmedqa", "bioasq"):
        items = load(DATA / name / "questions.jsonl", args.questions, args.seed)
        sets[name] = items
        for item in items:
            relevant = {int(p) for p in item["relevant_pmids"]}
            answerable.append((name, relevance(answerer, item["question"], set(), args.k)))
            removed.append((name, relevance(answerer, item["question"], relevant, args.k)))
        print(f"{name}: {len(items)} questions scored", file=sys.stderr)
    off_topic = [relevance(answerer, q, set(), args.k) for q in OFF_TOPIC]

    half = len(answerable) // 2
    order = list(range(len(answerable)))
    random.Random(args.seed).shuffle(order)
    cal, held = order[:half], order[half:]
    threshold = round(float(np.percentile([answerable[i][1] for i in cal], 5)), 2)

    def answered(values: list[float]) -> float:
        return round(sum(v >= threshold for v in values) / len(values), 4) if values else 0.0

    abstention = {
        "threshold": threshold,
        "policy": "5th percentile of answerable questions' best similarity (calibration half)",
        "held_out": {
            "answerable_answered": answered([answerable[i][1] for i in held]),
            "relevant_removed_abstained": round(1 - answered([removed[i][1] for i in held]), 4),
            "off_topic_abstained": round(1 - answered(off_topic), 4),
            "by_set": {
                name: {
                    "answerable_answered": answered(
                        [answerable[i][1] for i in held if answerable[i][0] == name]
                    ),
                    "relevant_removed_abstained": round(
                        1 - answered([removed[i][1] for i in held if removed[i][0] == name]), 4
                    ),
                }
                for name in sets
            },
        },
        "median_best_similarity": {
            "answerable": round(float(np.median([v for _n, v in answerable])), 4),
            "relevant_removed": round(float(np.median([v for _n, v in removed])), 4),
            "off_topic": round(float(np.median(off_topic)), 4),
        },
    }

    bio = sets["bioasq"]
    cal_items, held_items = bio[: len(bio) // 2], bio[len(bio) // 2 :]
    pos_c, _neg_c, hard_c = support_scores(answerer, cal_items, args.seed)
    pos_h, neg_h, hard_h = support_scores(answerer, held_items, args.seed + 1)
    support_t = best_f1_threshold(pos_c, hard_c)
    support = {
        "threshold": support_t,
        "policy": "maximum F1 on the calibration half: BioASQ ideal-answer sentences vs their own articles "
        "(positives) and vs the 3 closest non-relevant articles (hard negatives)",
        "calibration_hard": rates(pos_c, hard_c, support_t),
        "held_out_hard": rates(pos_h, hard_h, support_t),
        "held_out_random": rates(pos_h, neg_h, support_t),
        "median": {
            "positive": round(float(np.median(pos_h)), 4),
            "hard_negative": round(float(np.median(hard_h)), 4),
            "random_negative": round(float(np.median(neg_h)), 4),
        },
    }
    print(
        json.dumps(
            {
                "model": answerer.embedder.name,
                "library_articles": store.count(),
                "k": args.k,
                "questions": {name: len(items) for name, items in sets.items()},
                "abstention": abstention,
                "support": support,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
