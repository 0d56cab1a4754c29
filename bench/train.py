"""The real `medlit train` recipes, measured: reranker, verdict (cross-encoder and linear head), support.

The library must hold the BioASQ and PubMedQA corpora and the two demo PubMed files as distractors, indexed
(``medlit ingest jsonl`` ×2, ``medlit ingest files``, ``medlit index update``). Every step prints JSON.

    MEDLIT_HOME=/tmp/train/lib python bench/train.py reranker --out /tmp/train/reranker
    MEDLIT_HOME=/tmp/train/lib python bench/train.py rerank-eval --model /tmp/train/reranker
    MEDLIT_HOME=/tmp/train/lib python bench/train.py verdict-evidence --cache /tmp/train/verdict-cache.jsonl
    MEDLIT_HOME=/tmp/train/lib python bench/train.py verdict-linear --cache /tmp/train/verdict-cache.jsonl
    MEDLIT_HOME=/tmp/train/lib python bench/train.py verdict-cross --cache ... --out /tmp/train/verdict
    MEDLIT_HOME=/tmp/train/lib python bench/train.py support --out /tmp/train/support
    MEDLIT_HOME=/tmp/train/lib python bench/train.py abstention --model /tmp/train/reranker
    MEDLIT_HOME=/tmp/train/lib python bench/train.py abstention-calibrate --model /tmp/train/reranker

Splits (never tuned on one set): the reranker trains on BioASQ 7B-9B and is scored on 10B and PubMedQA;
verdicts: PubMedQA in 5 folds by question (each fold scored by a head trained on BioASQ 7B-9B yes/no + the
other four folds), and BioASQ 10B yes/no scored by a head trained on 7B-9B + all of PubMedQA.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ingest.py hides ingest/
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from foundation.settings import get_settings  # noqa: E402
from indexes.evaluation import mrr_at, ndcg_at, read_questions, recall_at  # noqa: E402
from indexes.hit import Filters  # noqa: E402
from indexes.reranker_data import (  # noqa: E402
    batch_matches,
    read_question_files,
    record_calibration,
    reranker_examples,
)
from indexes.reranking import PairReranker, fused_order  # noqa: E402
from indexes.search import Searcher  # noqa: E402
from indexes.training import PairExample, Recipe, train_pair_classifier  # noqa: E402
from ingest.store import Store  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BIOASQ = DATA / "bioasq" / "questions.jsonl"
PUBMEDQA = DATA / "pubmedqa" / "questions.jsonl"
TRAIN_BATCHES = ["7B", "8B", "9B"]


def _load() -> dict[str, float]:
    one, five, fifteen = (round(x, 2) for x in __import__("os").getloadavg())
    return {"load_1m": one, "load_5m": five, "load_15m": fifteen}


def _plain_settings():  # type: ignore[no-untyped-def]
    settings = get_settings()
    return settings.model_copy(update={"index": settings.index.model_copy(update={"reranker": "none"})})


def _recipe(args: argparse.Namespace, **defaults: object) -> Recipe:
    values = dict(defaults)
    for name in ("epochs", "max_length", "max_pairs", "batch_size", "learning_rate", "freeze_layers", "loss"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    return Recipe(**values)  # type: ignore[arg-type]


# ----- reranker ---------------------------------------------------------------------------------------------


def reranker(args: argparse.Namespace) -> dict:
    settings = _plain_settings()
    with Store.open(settings) as store:
        searcher = Searcher(store, settings)
        questions = read_question_files([BIOASQ], TRAIN_BATCHES)
        started = time.perf_counter()
        modes = [m.strip() for m in args.mine.split(",") if m.strip()]
        examples, summary = reranker_examples(
            searcher, questions, negatives=args.negatives, modes=modes, negatives_from=args.negatives_from
        )
        mining = time.perf_counter() - started
    summary["batches"] = TRAIN_BATCHES
    trained = train_pair_classifier(
        "reranker",
        examples,
        out=args.out,
        recipe=_recipe(args, max_length=192, epochs=1.0, max_pairs=6000, batch_size=16, loss="listwise"),
        data=summary,
    )
    record_calibration(get_settings(), trained, examples, questions)
    m = trained.manifest
    return {
        "step": "reranker",
        "pairs": len(examples),
        "mining_seconds": round(mining, 1),
        "train_seconds": m["train_seconds"],
        "peak_memory_mb": m["peak_memory_mb"],
        "held_out": m["metrics"]["held_out"],
        "held_out_int8": m["metrics"].get("held_out_int8"),
        "recipe": m["recipe"],
        "data": {k: v for k, v in m["data"].items() if k != "sources"},
        "fusion": m["fusion"],
        "abstention": m["abstention"],
        **_load(),
    }


def abstention_calibrate(args: argparse.Namespace) -> dict:
    """The fusion weight and abstention threshold of a reranker trained before they were calibrated at
    training's end: the same pairs mined again (the same options), the same held-out questions, written into
    its manifest."""
    from indexes.training import TrainedModel

    path = Path(args.model)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    settings = _plain_settings()
    with Store.open(settings) as store:
        questions = read_question_files([BIOASQ], TRAIN_BATCHES)
        modes = [m.strip() for m in args.mine.split(",") if m.strip()]
        examples, _summary = reranker_examples(
            Searcher(store, settings),
            questions,
            negatives=args.negatives,
            modes=modes,
            negatives_from=manifest["data"].get("negatives_from", args.negatives_from),
        )
    trained = record_calibration(
        get_settings(), TrainedModel(path=path, manifest=manifest), examples, questions
    )
    return {
        "step": "abstention-calibrate",
        "model": str(path),
        "fusion": trained.manifest["fusion"],
        **trained.manifest["abstention"],
        **_load(),
    }


def _sets() -> list[tuple[str, list]]:
    tenb = [q for q in read_question_files([BIOASQ], ["10B"])]
    return [
        ("bioasq-10B", [(q.text, q.relevant) for q in tenb]),
        ("pubmedqa", [(q.text, q.relevant) for q in read_questions(PUBMEDQA)]),
    ]


def rerank_eval(args: argparse.Namespace) -> dict:
    """hybrid vs hybrid + reranker (its score alone, and fused with the search's at the weight its training
    calibrated, as index.rerank_fusion orders them), the same questions in one run; the rerank step's own
    latency."""
    settings = _plain_settings()
    model = PairReranker.load(
        args.model, candidates=args.candidates, cache_dir=settings.model_cache, fusion=False
    )
    weight = model.fusion_weight if args.fusion_weight is None else args.fusion_weight
    out: dict = {
        "step": "rerank-eval",
        "model": str(args.model),
        "candidates": args.candidates,
        "mode": args.mode or "hybrid",
        "fusion_weight": weight,
        "sets": {},
    }
    with Store.open(settings) as store:
        searcher = Searcher(store, settings)
        searcher.search("warm up the embedder and the index", 10, mode=args.mode or "hybrid")
        model.rerank("warm up", searcher.search("warm up the reranker", 10, mode=args.mode or "hybrid"))
        for name, questions in _sets():
            if args.limit:
                questions = random.Random(7).sample(questions, min(args.limit, len(questions)))
            rows = {"hybrid": [], "reranked": [], "fused": []}
            added = []
            for text, relevant in questions:
                hits = searcher.search(text, max(10, args.candidates), mode=args.mode or "hybrid")
                ranked = [h.pmid for h in hits[:10]]
                rows["hybrid"].append(
                    (recall_at(ranked, relevant), ndcg_at(ranked, relevant), mrr_at(ranked, relevant))
                )
                order = [h.pmid for h in hits]
                search_scores = [h.score for h in hits[: args.candidates]]
                started = time.perf_counter()
                reranked = model.rerank(text, hits)
                added.append((time.perf_counter() - started) * 1000)
                ranked = [h.pmid for h in reranked[:10]]
                rows["reranked"].append(
                    (recall_at(ranked, relevant), ndcg_at(ranked, relevant), mrr_at(ranked, relevant))
                )
                # the reranker's score fused with the search's, as index.rerank_fusion orders them
                scores = {h.pmid: h.rerank_score for h in reranked[: args.candidates]}
                head = order[: len(search_scores)]
                fused = [head[i] for i in fused_order(search_scores, [scores[p] for p in head], weight)]
                ranked = (fused + order[len(head) :])[:10]
                rows["fused"].append(
                    (recall_at(ranked, relevant), ndcg_at(ranked, relevant), mrr_at(ranked, relevant))
                )
            result = {}
            for system, values in rows.items():
                result[system] = {
                    "recall@10": round(statistics.fmean(v[0] for v in values), 4),
                    "ndcg@10": round(statistics.fmean(v[1] for v in values), 4),
                    "mrr@10": round(statistics.fmean(v[2] for v in values), 4),
                }
            result["ndcg_gain"] = round(result["reranked"]["ndcg@10"] - result["hybrid"]["ndcg@10"], 4)
            result["ndcg_gain_fused"] = round(result["fused"]["ndcg@10"] - result["hybrid"]["ndcg@10"], 4)
            ordered = sorted(added)
            result["added_ms_p50"] = round(statistics.median(added), 1)
            result["added_ms_p99"] = round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)
            result["n"] = len(questions)
            out["sets"][name] = result
    out.update(_load())
    return out


# ----- abstention with the reranker score -------------------------------------------------------------------


def abstention(args: argparse.Namespace) -> dict:
    """Best reranker score vs best cosine among the top k, answerable vs relevant-removed (held-out half)."""
    from rag.sentences import article_sentences

    settings = _plain_settings()
    model = PairReranker.load(args.model, candidates=args.candidates, cache_dir=settings.model_cache)
    rows = []
    with Store.open(settings) as store:
        searcher = Searcher(store, settings)
        embedder = searcher.dense.embedder
        cache: dict[int, np.ndarray] = {}

        def best_cosine(question_vector: np.ndarray, pmids: list[int]) -> float:
            missing = [p for p in pmids if p not in cache]
            for pmid, article in store.get_many(missing).items():
                texts = [s.text for s in article_sentences(article) if not s.instruction_like]
                cache[pmid] = embedder.embed_documents(texts) if texts else np.zeros((0, embedder.dimension))
            values = [
                float((cache[p] @ question_vector).max()) for p in pmids if p in cache and len(cache[p])
            ]
            return max(values, default=0.0)

        for name, questions in _sets():
            questions = random.Random(7).sample(questions, min(args.limit, len(questions)))
            for text, relevant in questions:
                hits = searcher.search(text, args.candidates + len(relevant), Filters(include_retracted=True))
                vector = embedder.embed_query(text)
                for kind, kept in (
                    ("answerable", hits[: args.candidates]),
                    ("removed", [h for h in hits if h.pmid not in relevant][: args.candidates]),
                ):
                    reranked = model.rerank(text, [h for h in kept])
                    rows.append(
                        {
                            "set": name,
                            "kind": kind,
                            "rerank": max((h.rerank_score or 0.0) for h in reranked[:10])
                            if reranked
                            else 0.0,
                            "cosine": best_cosine(vector, [h.pmid for h in kept[:10]]),
                        }
                    )
    order = list(range(0, len(rows), 2))
    random.Random(7).shuffle(order)
    half = len(order) // 2
    calibration = [j for i in order[:half] for j in (i, i + 1)]
    held = [j for i in order[half:] for j in (i, i + 1)]
    result: dict = {"step": "abstention", "questions": len(rows) // 2, "k": 10, "signals": {}}
    for signal in ("cosine", "rerank"):
        answerable = [rows[i][signal] for i in calibration if rows[i]["kind"] == "answerable"]
        threshold = float(np.percentile(answerable, 5))
        held_answerable = [rows[i][signal] for i in held if rows[i]["kind"] == "answerable"]
        held_removed = [rows[i][signal] for i in held if rows[i]["kind"] == "removed"]
        result["signals"][signal] = {
            "threshold": round(threshold, 4),
            "policy": "5th percentile of answerable questions (calibration half)",
            "held_out_answerable_answered": round(
                float(np.mean([v >= threshold for v in held_answerable])), 4
            ),
            "held_out_relevant_removed_abstained": round(
                float(np.mean([v < threshold for v in held_removed])), 4
            ),
            "median_answerable": round(float(np.median(held_answerable)), 4),
            "median_removed": round(float(np.median(held_removed)), 4),
        }
    result.update(_load())
    return result


# ----- verdicts ---------------------------------------------------------------------------------------------


def verdict_evidence(args: argparse.Namespace) -> dict:
    """Answerer.retrieve for every BioASQ yes/no and PubMedQA question, cached (passage + features)."""
    from rag.ask import Answerer
    from rag.generators import ExtractiveGenerator
    from rag.verdict import read_verdict_questions, retrieve_for_verdicts

    settings = _plain_settings()
    # the passage reads the top 5 sources only: retrieving 5 (not 10) gives the same inputs at half the cost
    settings = settings.model_copy(
        update={"answer": settings.answer.model_copy(update={"k": 5, "mode": args.mode or "hybrid"})}
    )
    questions = read_verdict_questions([BIOASQ, PUBMEDQA])
    if args.limit:  # a random subsample of the BioASQ training batches; 10B and PubMedQA stay whole
        batch_of = {str(json.loads(line)["id"]): json.loads(line)["batch"] for line in BIOASQ.open()}
        train = [q for q in questions if batch_matches(batch_of.get(q.key, ""), TRAIN_BATCHES)]
        keep = {q.key for q in random.Random(7).sample(train, min(args.limit, len(train)))}
        questions = [
            q for q in questions if q.key in keep or not batch_matches(batch_of.get(q.key, ""), TRAIN_BATCHES)
        ]
    started = time.perf_counter()
    with Store.open(settings) as store:
        answerer = Answerer(store, settings, generator=ExtractiveGenerator())
        retrieved = retrieve_for_verdicts(answerer, questions)
    batches = {}
    for line in BIOASQ.open():
        item = json.loads(line)
        batches[str(item["id"])] = item["batch"]
    with open(args.cache, "w", encoding="utf-8") as handle:
        for r in retrieved:
            q = r.question
            handle.write(
                json.dumps(
                    {
                        "key": q.key,
                        "question": q.text,
                        "label": q.label,
                        "set": "pubmedqa" if "pubmedqa" in q.source else "bioasq",
                        "batch": batches.get(q.key, ""),
                        "passage": r.passage,
                        "features": [round(float(v), 6) for v in r.features],
                        "findings": [round(float(v), 6) for v in r.findings],
                    }
                )
                + "\n"
            )
    return {
        "step": "verdict-evidence",
        "questions": len(retrieved),
        "seconds": round(time.perf_counter() - started, 1),
        **_load(),
    }


def _cache(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _folds(rows: list[dict], k: int = 5, seed: int = 7) -> list[list[dict]]:
    pubmedqa = [r for r in rows if r["set"] == "pubmedqa"]
    random.Random(seed).shuffle(pubmedqa)
    return [pubmedqa[i::k] for i in range(k)]


def _verdict_scores(gold: list[str], probabilities: np.ndarray, threshold: float) -> dict:
    from rag.verdict import LABELS, SHOWN, decide

    shown = [
        decide({SHOWN[n]: float(p) for n, p in zip(LABELS, row, strict=True)}, threshold)
        for row in probabilities
    ]
    truth = [SHOWN[g] for g in gold]
    labels = sorted(set(truth) | set(shown))
    f1s = []
    for label in labels:
        tp = sum(s == label and t == label for s, t in zip(shown, truth, strict=True))
        fp = sum(s == label and t != label for s, t in zip(shown, truth, strict=True))
        fn = sum(s != label and t == label for s, t in zip(shown, truth, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "accuracy": round(sum(s == t for s, t in zip(shown, truth, strict=True)) / len(truth), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "wrong_definite": round(
            sum(s != t and s != "uncertain" for s, t in zip(shown, truth, strict=True)) / len(truth), 4
        ),
        "uncertain_share": round(sum(s == "uncertain" for s in shown) / len(truth), 4),
        "n": len(truth),
    }


def _baseline(gold: list[str]) -> dict:
    truth = ["uncertain" if g == "maybe" else g for g in gold]
    labels = sorted(set(truth))
    accuracy = sum(t == "yes" for t in truth) / len(truth)
    tp = sum(t == "yes" for t in truth)
    f1_yes = 2 * tp / (2 * tp + (len(truth) - tp)) if tp else 0.0
    return {"accuracy": round(accuracy, 4), "macro_f1": round(f1_yes / len(labels), 4), "n": len(truth)}


def verdict_linear(args: argparse.Namespace) -> dict:
    from rag.verdict import LABELS, LinearHead, _balanced, calibrate_uncertain

    rows = _cache(args.cache)
    findings = args.features == "findings"
    key = "findings" if findings else "features"
    l2 = args.l2 if args.l2 is not None else (3.0 if findings else 30.0)  # as train_linear_verdict
    for r in rows:
        r["x"] = r[key]
    bio_train = [r for r in rows if r["set"] == "bioasq" and batch_matches(r["batch"], TRAIN_BATCHES)]
    bio_test = [r for r in rows if r["set"] == "bioasq" and batch_matches(r["batch"], ["10B"])]
    folds = _folds(rows)

    def weights(y: np.ndarray) -> np.ndarray:
        return np.ones(len(LABELS)) if findings else _balanced(y)

    def fit(train: list[dict]) -> tuple[LinearHead, float]:
        # 'uncertain' calibrated on a held-out fifth of the training questions, never on the scored fold
        order = list(range(len(train)))
        random.Random(3).shuffle(order)
        cut = len(order) // 5
        inner = [train[i] for i in order[cut:]]
        calib = [train[i] for i in order[:cut]]
        x = np.array([r["x"] for r in inner])
        y = np.array([LABELS.index(r["label"]) for r in inner])
        head = LinearHead.fit(x, y, LABELS, l2=l2, class_weights=weights(y))
        threshold = calibrate_uncertain(
            head.predict_proba(np.array([r["x"] for r in calib])), [r["label"] for r in calib], LABELS
        )["uncertain_below"]
        x = np.array([r["x"] for r in train])
        y = np.array([LABELS.index(r["label"]) for r in train])
        return LinearHead.fit(x, y, LABELS, l2=l2, class_weights=weights(y)), threshold

    started = time.perf_counter()
    gold, probabilities, thresholds = [], [], []
    for i, fold in enumerate(folds):
        train = bio_train + [r for j, f in enumerate(folds) if j != i for r in f]
        head, threshold = fit(train)
        probs = head.predict_proba(np.array([r["x"] for r in fold]))
        gold += [r["label"] for r in fold]
        probabilities.append(probs)
        thresholds.append(threshold)
    probabilities = np.vstack(probabilities)
    pubmedqa = {
        "calibrated": _verdict_scores(gold, probabilities, float(np.median(thresholds))),
        "no_uncertain_threshold": _verdict_scores(gold, probabilities, 0.0),
        "always_yes": _baseline(gold),
        "thresholds_per_fold": thresholds,
    }
    head, threshold = fit(bio_train + [r for f in folds for r in f])
    probs = head.predict_proba(np.array([r["x"] for r in bio_test]))
    gold_10b = [r["label"] for r in bio_test]
    bioasq = {
        "calibrated": _verdict_scores(gold_10b, probs, threshold),
        "no_uncertain_threshold": _verdict_scores(gold_10b, probs, 0.0),
        "always_yes": _baseline(gold_10b),
    }
    seconds = time.perf_counter() - started
    size = len(json.dumps(head.to_json(), separators=(",", ":")))
    return {
        "step": "verdict-linear",
        "pubmedqa_5fold": pubmedqa,
        "bioasq_10B": bioasq,
        "features": args.features,
        "l2": l2,
        "fit_seconds_all_folds": round(seconds, 2),
        "json_bytes": size,
        **_load(),
    }


def verdict_cross(args: argparse.Namespace) -> dict:
    """The cross-encoder on fold 0 of PubMedQA (trained on 7B-9B yes/no + folds 1-4); 10B scored by it too."""
    from indexes.pair_model import PairClassifier
    from rag.verdict import LABELS, calibrate_uncertain

    rows = _cache(args.cache)
    bio_train = [r for r in rows if r["set"] == "bioasq" and batch_matches(r["batch"], TRAIN_BATCHES)]
    bio_test = [r for r in rows if r["set"] == "bioasq" and batch_matches(r["batch"], ["10B"])]
    folds = _folds(rows)
    train = bio_train + [r for f in folds[1:] for r in f]
    examples = [PairExample(r["key"], r["question"], r["passage"], LABELS.index(r["label"])) for r in train]
    trained = train_pair_classifier(
        "verdict",
        examples,
        out=args.out,
        labels=LABELS,
        recipe=_recipe(
            args, max_length=256, epochs=2.0, batch_size=16, best_metric="macro_f1", eval_share=0.15
        ),
        data={"train": "BioASQ 7B-9B yes/no + PubMedQA folds 1-4 (retrieved evidence)"},
    )
    model = PairClassifier.load(args.out, task="verdict")
    from indexes.training import split_by_group

    _t, calib = split_by_group(examples, 0.15, 13)
    threshold = calibrate_uncertain(
        model.predict_proba([(e.first, e.second) for e in calib]), [LABELS[e.label] for e in calib], LABELS
    )["uncertain_below"]
    started = time.perf_counter()
    p0 = model.predict_proba([(r["question"], r["passage"]) for r in folds[0]])
    per_question_ms = (time.perf_counter() - started) * 1000 / max(1, len(folds[0]))
    p10 = model.predict_proba([(r["question"], r["passage"]) for r in bio_test])
    gold0 = [r["label"] for r in folds[0]]
    gold10 = [r["label"] for r in bio_test]
    return {
        "step": "verdict-cross",
        "train_seconds": trained.manifest["train_seconds"],
        "peak_memory_mb": trained.manifest["peak_memory_mb"],
        "uncertain_below": threshold,
        "pubmedqa_fold0": {
            "calibrated": _verdict_scores(gold0, p0, threshold),
            "no_uncertain_threshold": _verdict_scores(gold0, p0, 0.0),
            "always_yes": _baseline(gold0),
        },
        "bioasq_10B": {
            "calibrated": _verdict_scores(gold10, p10, threshold),
            "no_uncertain_threshold": _verdict_scores(gold10, p10, 0.0),
            "always_yes": _baseline(gold10),
        },
        "ms_per_question": round(per_question_ms, 1),
        "recipe": trained.manifest["recipe"],
        **_load(),
    }


def verdict_linear_fold0(args: argparse.Namespace) -> dict:
    """The linear head on exactly the cross-encoder's split (fold 0), for a side-by-side comparison."""
    from rag.verdict import LABELS, LinearHead, _balanced

    rows = _cache(args.cache)
    bio_train = [r for r in rows if r["set"] == "bioasq" and batch_matches(r["batch"], TRAIN_BATCHES)]
    folds = _folds(rows)
    train = bio_train + [r for f in folds[1:] for r in f]
    x = np.array([r["features"] for r in train])
    y = np.array([LABELS.index(r["label"]) for r in train])
    head = LinearHead.fit(x, y, LABELS, l2=args.l2, class_weights=_balanced(y))
    p0 = head.predict_proba(np.array([r["features"] for r in folds[0]]))
    return {
        "step": "verdict-linear-fold0",
        "no_uncertain_threshold": _verdict_scores([r["label"] for r in folds[0]], p0, 0.0),
    }


# ----- support ----------------------------------------------------------------------------------------------


def support(args: argparse.Namespace) -> dict:
    from rag.support_model import (
        SupportClassifier,
        compare_with_cosine,
        read_support_questions,
        support_examples,
        support_pairs,
    )

    settings = _plain_settings()
    train_questions = read_support_questions([BIOASQ], TRAIN_BATCHES)
    test_questions = read_support_questions([BIOASQ], ["10B"])
    if args.limit:  # a random subsample of each side (the pairs cost a search and embeddings each)
        train_questions = random.Random(7).sample(train_questions, min(args.limit, len(train_questions)))
        test_questions = random.Random(8).sample(test_questions, min(args.limit // 2, len(test_questions)))
    questions = train_questions + test_questions
    with Store.open(settings) as store:
        searcher = Searcher(store, settings)
        started = time.perf_counter()
        pairs = support_pairs(searcher, searcher.dense.embedder, questions)
        building = time.perf_counter() - started
    tenb = {q.key for q in test_questions}
    train_pairs = [p for p in pairs if p.group not in tenb]
    held = [p for p in pairs if p.group in tenb]
    trained = train_pair_classifier(
        "support",
        support_examples(train_pairs),
        out=args.out,
        labels=["unsupported", "supported"],
        recipe=_recipe(args, max_length=128, epochs=1.0, batch_size=16, max_pairs=6000),
        data={"train": "BioASQ 7B-9B ideal answers", "held_out": "BioASQ 10B"},
    )
    classifier = SupportClassifier.load(args.out)
    calibration = random.Random(7).sample(train_pairs, min(1500, len(train_pairs)))
    comparison = compare_with_cosine(
        classifier, calibration, held, cosine_threshold=settings.answer.support_threshold
    )
    return {
        "step": "support",
        "pairs": len(pairs),
        "building_seconds": round(building, 1),
        "train_pairs": len(train_pairs),
        "train_seconds": trained.manifest["train_seconds"],
        "peak_memory_mb": trained.manifest["peak_memory_mb"],
        "held_out_10B": comparison,
        **_load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "step",
        choices=[
            "reranker",
            "rerank-eval",
            "abstention",
            "abstention-calibrate",
            "verdict-evidence",
            "verdict-linear",
            "verdict-cross",
            "verdict-linear-fold0",
            "support",
        ],
    )
    parser.add_argument("--out")
    parser.add_argument("--model")
    parser.add_argument("--cache", default="/tmp/train/verdict-cache.jsonl")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument(
        "--fusion-weight", type=float, default=None, help="rerank-eval: instead of the calibrated one."
    )
    parser.add_argument("--limit", type=int, default=0, help="Questions per set (0: all; abstention: 150).")
    parser.add_argument("--negatives", type=int, default=6)
    parser.add_argument("--mine", default="bm25,dense", help="Where hard negatives are mined (search modes).")
    parser.add_argument("--negatives-from", default="judged", choices=["judged", "library"])
    parser.add_argument("--mode", default=None, help="Search mode of the candidates / evidence (hybrid).")
    parser.add_argument(
        "--l2", type=float, default=None, help="verdict-linear: L2 (30 embedding, 3 findings)."
    )
    parser.add_argument("--features", default="embedding", choices=["embedding", "findings"])
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--max-pairs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--freeze-layers", type=int)
    parser.add_argument("--loss", choices=["pointwise", "listwise"])
    args = parser.parse_args()
    if args.step == "abstention" and not args.limit:
        args.limit = 150
    steps = {
        "reranker": reranker,
        "rerank-eval": rerank_eval,
        "abstention": abstention,
        "abstention-calibrate": abstention_calibrate,
        "verdict-evidence": verdict_evidence,
        "verdict-linear": verdict_linear,
        "verdict-cross": verdict_cross,
        "verdict-linear-fold0": verdict_linear_fold0,
        "support": support,
    }
    started = time.perf_counter()
    result = steps[args.step](args)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
