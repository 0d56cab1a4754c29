"""The reranker's training pairs: BioASQ-style question files (relevant PMIDs are positives; hard negatives
are the library's own BM25 and dense top-k minus the relevant ones) and a systematic reviewer's screening CSV
(``question,pmid,label`` with include/exclude), mapped onto the same ``PairExample``s.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foundation.durable import atomic_path
from foundation.errors import InputError
from foundation.progress import progress_bar
from indexes.evaluation import ndcg_at, question_records
from indexes.hit import Filters, Hit
from indexes.pair_model import MANIFEST_FILE
from indexes.reranking import DEFAULT_FUSION_WEIGHT, FUSION_WEIGHTS, PairReranker, document_text, fused_order
from indexes.search import Searcher
from indexes.training import PairExample, Recipe, file_digest, split_by_group

# ----- training pairs ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class LabelledQuestion:
    """One question with its judged articles: relevant PMIDs (positives) and, when known, judged-irrelevant
    ones (a screening's excludes)."""

    key: str
    text: str
    relevant: set[int]
    irrelevant: set[int]
    source: str


def batch_matches(batch: object, wanted: Sequence[str]) -> bool:
    """True when no batch is wanted, or ``batch`` is one of them or a numbered part of one ('7B' → '7B3')."""
    wanted = [w.strip() for w in wanted if w.strip()]
    if not wanted:
        return True
    name = str(batch or "")
    return any(name == w or (name.startswith(w) and name[len(w) :].isdigit()) for w in wanted)


def read_question_files(paths: Sequence[str | Path], batches: Sequence[str] = ()) -> list[LabelledQuestion]:
    """BioASQ-style JSONL (question, relevant_pmids; optional id, batch). ``batches`` keeps only those
    ('7B' keeps 7B1 ... 7B5)."""
    questions: list[LabelledQuestion] = []
    for path in paths:
        for item, text, relevant in question_records(path):
            if not relevant or not batch_matches(item.get("batch"), batches):
                continue
            key = str(item.get("id") or text)
            questions.append(LabelledQuestion(key, text, relevant, set(), str(path)))
    return questions


_INCLUDE = {"include", "included", "1", "yes", "relevant", "true"}
_EXCLUDE = {"exclude", "excluded", "0", "no", "irrelevant", "false"}


def read_screening_csv(path: str | Path) -> list[LabelledQuestion]:
    """A screening export: columns ``question``, ``pmid``, ``label`` (include/exclude; also included/excluded,
    1/0, yes/no). One question per distinct question text; a bad row is one clear error with its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such screening file")
    by_question: dict[str, LabelledQuestion] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
            missing = [name for name in ("question", "pmid", "label") if name not in fields]
            if missing:
                raise InputError(
                    f"{path}: a screening CSV needs the columns question, pmid, label (missing: "
                    f"{', '.join(missing)})"
                )
            for line, row in enumerate(reader, start=2):
                question = (row.get(fields["question"]) or "").strip()
                pmid_text = (row.get(fields["pmid"]) or "").strip()
                label = (row.get(fields["label"]) or "").strip().lower()
                if not question and not pmid_text and not label:
                    continue
                if not question:
                    raise InputError(f"{path}:{line}: empty question")
                if not pmid_text.isdigit() or int(pmid_text) < 1:
                    raise InputError(f"{path}:{line}: pmid {pmid_text[:20]!r} is not a PubMed id")
                if label not in _INCLUDE | _EXCLUDE:
                    raise InputError(f"{path}:{line}: label {label[:20]!r} is not include or exclude")
                entry = by_question.setdefault(
                    question, LabelledQuestion(f"screening:{question}", question, set(), set(), str(path))
                )
                (entry.relevant if label in _INCLUDE else entry.irrelevant).add(int(pmid_text))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a screening CSV was expected)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    questions = [q for q in by_question.values() if q.relevant or q.irrelevant]
    if not questions:
        raise InputError(f"{path}: no screening decisions")
    return questions


NEGATIVE_SOURCES = ("judged", "library")
JUDGED_DEPTH = 100  # how deep the rankings are read for judged negatives (fewer of them rank high)


def reranker_examples(
    searcher: Searcher,
    questions: Sequence[LabelledQuestion],
    *,
    negatives: int = 6,
    positives: int = 6,
    depth: int = 30,
    modes: Sequence[str] = ("bm25", "dense"),
    negatives_from: str = "judged",
    progress: bool = True,
) -> tuple[list[PairExample], dict[str, Any]]:
    """Training pairs for the reranker, with counts for the manifest.

    For each question: up to ``positives`` relevant articles found in the library (label 1), its judged
    excludes (label 0), and ``negatives`` hard negatives mined alternately from the BM25 and the dense
    rankings (minus the relevant and the judged ones): what the reranker must learn to push down.

    ``negatives_from``: ``judged`` (the default) mines only articles that some other question of the
    training data judged (its relevant ones or its excludes), from the top ``max(depth, JUDGED_DEPTH)``;
    ``library`` mines any article of the top ``depth``. Judged negatives are of the same kind as the
    positives: where the labelled articles differ in form from the rest of the library (BioASQ's corpus is
    rebuilt from annotators' snippets, the distractors are whole abstracts), negatives from the library let
    a model learn what a labelled document looks like instead of what answers the question (measured in
    docs/benchmarks.md: nDCG@10 fell by 0.53 on PubMedQA). ``library`` is for a library of whole abstracts
    on both sides, where it finds more, and harder, negatives.
    """
    if negatives_from not in NEGATIVE_SOURCES:
        raise InputError(
            f"negatives_from must be one of {', '.join(NEGATIVE_SOURCES)} (got {negatives_from!r})"
        )
    pool: set[int] | None = None
    if negatives_from == "judged":
        pool = {p for q in questions for p in (*q.relevant, *q.irrelevant)}
        depth = max(depth, JUDGED_DEPTH)
    store = searcher.store
    examples: list[PairExample] = []
    missing = 0
    mined = 0
    judged_negatives = 0
    used = 0
    unfiltered = Filters(include_retracted=True)
    with progress_bar(len(questions), "mining hard negatives", "question", progress) as bar:
        for question in questions:
            bar.update(1)
            judged = question.relevant | question.irrelevant
            articles = store.get_many(sorted(judged))
            missing += len(judged) - len(articles)
            present = [p for p in sorted(question.relevant) if p in articles and _has_text(articles[p])]
            pairs: list[PairExample] = []
            for pmid in present[:positives]:
                article = articles[pmid]
                pairs.append(
                    PairExample(
                        question.key, question.text, document_text(article.title, article.abstract), 1
                    )
                )
            for pmid in sorted(question.irrelevant):
                if pmid in articles and _has_text(articles[pmid]):
                    article = articles[pmid]
                    pairs.append(
                        PairExample(
                            question.key, question.text, document_text(article.title, article.abstract), 0
                        )
                    )
                    judged_negatives += 1
            lists = [
                [
                    h
                    for h in searcher.search(question.text, depth, unfiltered, mode)
                    if h.pmid not in judged and (pool is None or h.pmid in pool)
                ]
                for mode in modes
            ]
            chosen: dict[int, Hit] = {}
            for rank in range(depth):
                for ranked in lists:
                    if rank < len(ranked) and len(chosen) < negatives and _has_text_hit(ranked[rank]):
                        chosen.setdefault(ranked[rank].pmid, ranked[rank])
            for hit in chosen.values():
                pairs.append(
                    PairExample(question.key, question.text, document_text(hit.title, hit.abstract), 0)
                )
            mined += len(chosen)
            if any(p.label == 1 for p in pairs):
                examples.extend(pairs)
                used += 1
    sources = sorted({q.source for q in questions})
    summary = {
        "sources": [{"file": source, "sha256": file_digest(Path(source))} for source in sources],
        "questions_read": len(questions),
        "questions_used": used,
        "judged_pmids_missing_from_library": missing,
        "mined_negatives": mined,
        "judged_negatives": judged_negatives,
        "negatives_per_question": negatives,
        "positives_per_question": positives,
        "mining_depth": depth,
        "mining_modes": list(modes),
        "negatives_from": negatives_from,
        "library_articles": store.count(),
    }
    return examples, summary


def _has_text(article: Any) -> bool:
    return bool((article.title or "").strip() or (article.abstract or "").strip())


def _has_text_hit(hit: Hit) -> bool:
    return bool(hit.title.strip() or hit.abstract.strip())


def train_reranker(
    settings: Any,
    *,
    out: str | Path,
    question_files: Sequence[str | Path] = (),
    screening_files: Sequence[str | Path] = (),
    batches: Sequence[str] = (),
    base: str | Path | None = None,
    recipe: Any = None,
    negatives: int = 6,
    negatives_from: str = "judged",
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> Any:
    """``medlit train reranker``: pairs from the question files and screening CSVs, mined against the
    library of ``settings``, fine-tuned into ``out`` (see ``indexes.training.train_pair_classifier``)."""
    from indexes.training import train_pair_classifier
    from ingest.store import Store

    if not question_files and not screening_files:
        raise InputError("give labelled questions: --questions FILE.jsonl and/or --screening FILE.csv")
    questions = read_question_files(question_files, batches) if question_files else []
    for path in screening_files:
        questions += read_screening_csv(path)
    if not questions:
        raise InputError("no question with relevant PMIDs in the given files (and batches)")
    plain = settings.model_copy(update={"index": settings.index.model_copy(update={"reranker": "none"})})
    with Store.open(plain) as store:
        if store.count() == 0:
            raise InputError(
                f"the library {plain.library_path} is empty: ingest the articles the questions refer to first"
            )
        searcher = Searcher(store, plain)
        examples, summary = reranker_examples(
            searcher, questions, negatives=negatives, negatives_from=negatives_from, progress=progress
        )
    if not examples:
        raise InputError(
            "none of the relevant PMIDs is in the library: ingest the articles the questions refer to first"
        )
    summary["batches"] = list(batches)
    summary["embedder"] = searcher.dense.embedder.name
    trained = train_pair_classifier(
        "reranker",
        examples,
        out=out,
        base=base,
        recipe=recipe,
        data=summary,
        engine=engine,
        ray_address=ray_address,
        progress=progress,
    )
    return record_calibration(settings, trained, examples, questions, progress=progress)


# ----- calibration on held-out questions ----------------------------------------------------------------


def record_calibration(
    settings: Any,
    trained: Any,
    examples: Sequence[PairExample],
    questions: Sequence[LabelledQuestion],
    *,
    progress: bool = True,
) -> Any:
    """Calibrate a trained reranker (``TrainedModel``) on the questions its training held out (the same
    split, from its manifest's recipe): the weight of its score in the fused order, and its abstention
    threshold; both are written into its manifest (``fusion``, ``abstention``)."""
    from ingest.store import Store

    recipe = trained.manifest.get("recipe") or {}
    defaults = Recipe()
    _train, held_out = split_by_group(
        examples, float(recipe.get("eval_share", defaults.eval_share)), int(recipe.get("seed", defaults.seed))
    )
    held_keys = {e.group for e in held_out}
    plain = settings.model_copy(update={"index": settings.index.model_copy(update={"reranker": "none"})})
    with Store.open(plain) as store:
        fusion, abstention = calibrate_reranker(
            Searcher(store, plain),
            trained.path,
            [q for q in questions if q.key in held_keys],
            k=settings.answer.k,
            candidates=settings.index.rerank_candidates,
            fusion=settings.index.rerank_fusion,
            cache_dir=settings.model_cache,
            progress=progress,
        )
    trained.manifest["fusion"] = fusion
    trained.manifest["abstention"] = abstention
    with atomic_path(Path(trained.path) / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps(trained.manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return trained


ABSTAIN_PERCENTILE = 5.0  # the threshold lets at least 95% of the held-out answerable questions through
MIN_CALIBRATION_QUESTIONS = 20


def calibrate_reranker(
    searcher: Searcher,
    model_dir: str | Path,
    questions: Sequence[LabelledQuestion],
    *,
    k: int,
    candidates: int,
    fusion: bool = True,
    cache_dir: Path | None = None,
    min_questions: int = MIN_CALIBRATION_QUESTIONS,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fusion, abstention) of a reranker, from held-out questions; each question's candidates are scored
    once, as the library holds them (answerable) and with its relevant articles taken out (the library
    cannot answer it).

    - ``fusion.weight``: the reranker's weight in the fused order (``indexes.reranking.fused_order``) with
      the best mean nDCG@10 of the answerable candidates, from ``FUSION_WEIGHTS`` (ties: the one nearest
      ``DEFAULT_FUSION_WEIGHT``); the nDCG of every weight is kept.
    - ``abstention.abstain_below``: the ``ABSTAIN_PERCENTILE``-th percentile of the best reranker score
      among the top ``k`` of each answerable question (in the order ``fusion`` gives, with the calibrated
      weight); the share of relevant-removed questions it would abstain on is reported beside it."""
    policy = f"{ABSTAIN_PERCENTILE:g}th percentile of the best top-{k} score of held-out answerable questions"
    fusion_policy = f"the weight with the best mean nDCG@10 of held-out questions' top {candidates}"
    if len(questions) < min_questions:
        reason = f"{len(questions)} held-out questions; calibration needs {min_questions}"
        return (
            {"weight": None, "policy": fusion_policy, "questions": len(questions), "reason": reason},
            {"abstain_below": None, "policy": policy, "questions": len(questions), "reason": reason},
        )
    reranker = PairReranker.load(model_dir, candidates=candidates, cache_dir=cache_dir, fusion=fusion)
    scored: list[tuple[LabelledQuestion, list[Hit], list[float], list[Hit], list[float]]] = []
    with progress_bar(len(questions), "calibrating fusion and abstention", "question", progress) as bar:
        for question in questions:
            relevant = question.relevant
            hits = searcher.search(question.text, candidates + len(relevant), Filters(include_retracted=True))
            answerable = hits[:candidates]
            removed = [h for h in hits if h.pmid not in relevant][:candidates]
            scored.append(
                (
                    question,
                    answerable,
                    reranker.scores(question.text, [document_text(h.title, h.abstract) for h in answerable]),
                    removed,
                    reranker.scores(question.text, [document_text(h.title, h.abstract) for h in removed]),
                )
            )
            bar.update(1)
    by_weight: dict[float, float] = {}
    for weight in FUSION_WEIGHTS:
        gains = []
        for question, answerable, scores, _removed, _scores in scored:
            order = fused_order([h.score for h in answerable], scores, weight)
            gains.append(ndcg_at([answerable[i].pmid for i in order][:10], question.relevant))
        by_weight[weight] = round(float(np.mean(gains)), 4)
    weight = max(by_weight, key=lambda w: (by_weight[w], -abs(w - DEFAULT_FUSION_WEIGHT)))

    def top_score(hits: list[Hit], scores: list[float]) -> float:
        if not hits:
            return 0.0
        order = reranker.order([h.score for h in hits], scores, weight)
        return max(scores[i] for i in order[:k])

    answerable_top = [top_score(a, s) for _q, a, s, _r, _rs in scored]
    removed_top = [top_score(r, rs) for _q, _a, _s, r, rs in scored]
    # "lower": an observed score, so that at least 95% pass
    threshold = float(np.percentile(np.asarray(answerable_top), ABSTAIN_PERCENTILE, method="lower"))
    fusion_record = {
        "weight": weight,
        "policy": fusion_policy,
        "questions": len(scored),
        "ndcg_at_10_by_weight": {f"{w:.1f}": v for w, v in by_weight.items()},
    }
    abstention = {
        "abstain_below": round(threshold, 4),
        "policy": policy,
        "questions": len(scored),
        "answerable_answered": round(float(np.mean([s >= threshold for s in answerable_top])), 4),
        "relevant_removed_abstained": round(float(np.mean([s < threshold for s in removed_top])), 4),
        "median_answerable": round(float(np.median(answerable_top)), 4),
        "median_relevant_removed": round(float(np.median(removed_top)), 4),
    }
    return fusion_record, abstention
