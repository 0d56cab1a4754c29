"""Retrieval evaluation: a throwaway library from a corpus (plus distractors), every question in every mode.

For each (question file, mode): recall@k = |relevant ∩ top k| / min(|relevant|, k), nDCG@k (binary gains),
MRR@k, averaged over questions, and the median latency of one search.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.settings import Settings, get_settings
from indexes.search import MODES, Searcher
from ingest.store import Store


@dataclass(slots=True)
class Question:
    text: str
    relevant: set[int]


def question_records(path: str | Path) -> Iterator[tuple[dict[str, Any], str, set[int]]]:
    """(record, question text, relevant PMIDs) for each line of a question JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such questions file")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                text = item["question"]
                relevant = {int(p) for p in item.get("relevant_pmids") or []}
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a question record ({exc})") from None
            if isinstance(text, str) and text.strip():
                yield item, text, relevant


def read_questions(path: str | Path) -> list[Question]:
    """JSONL with ``question`` and ``relevant_pmids``; questions without relevant PMIDs are skipped."""
    questions = [Question(text=t, relevant=r) for _item, t, r in question_records(path) if r]
    if not questions:
        raise InputError(f"{path}: no questions with relevant_pmids")
    return questions


def recall_at(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    return len(relevant.intersection(ranked[:k])) / min(len(relevant), k)


def ndcg_at(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, pmid in enumerate(ranked[:k]) if pmid in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def mrr_at(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    for i, pmid in enumerate(ranked[:k]):
        if pmid in relevant:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(searcher: Searcher, questions: list[Question], mode: str, k: int = 10) -> dict[str, Any]:
    """Metrics of one mode over one question set, against an existing library."""
    recalls, ndcgs, mrrs, times = [], [], [], []
    for question in questions:
        started = time.perf_counter()
        hits = searcher.search(question.text, k, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
        ranked = [hit.pmid for hit in hits]
        recalls.append(recall_at(ranked, question.relevant, k))
        ndcgs.append(ndcg_at(ranked, question.relevant, k))
        mrrs.append(mrr_at(ranked, question.relevant, k))
    return {
        "mode": mode,
        "n": len(questions),
        f"recall@{k}": round(statistics.fmean(recalls), 4),
        f"ndcg@{k}": round(statistics.fmean(ndcgs), 4),
        f"mrr@{k}": round(statistics.fmean(mrrs), 4),
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(_percentile(times, 99), 2),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def evaluate_retrieval(
    corpus: str | Path | Sequence[str | Path],
    question_files: Sequence[str | Path],
    *,
    modes: Sequence[str] = MODES,
    distractors: Sequence[str | Path] = (),
    settings: Settings | None = None,
    embedder: Any = None,
    k: int = 10,
    progress: bool = True,
    workdir: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Build a throwaway library from ``corpus`` (one JSONL file or several, + distractor PubMed files),
    then yield one result per (question file, mode). ``workdir`` keeps the library there instead."""
    from indexes.dense_index import embedder_from_settings

    settings = settings or get_settings()
    corpora = [Path(corpus)] if isinstance(corpus, str | Path) else [Path(c) for c in corpus]
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"mode must be among {', '.join(MODES)} (got {mode!r})")
    question_sets = [(Path(path), read_questions(path)) for path in question_files]
    if embedder is None and any(mode != "bm25" for mode in modes):
        embedder = embedder_from_settings(settings)
    with eval_library(
        corpora,
        distractors,
        settings,
        embedder,
        workdir,
        progress,
        dense=any(mode != "bm25" for mode in modes),
    ) as searcher:
        for path, questions in question_sets:
            for mode in modes:
                result = evaluate(searcher, questions, mode, k)
                yield {"questions": str(path), **result}


@contextlib.contextmanager
def eval_library(
    corpora: Sequence[Path],
    distractors: Sequence[str | Path],
    settings: Settings,
    embedder: Any,
    workdir: str | Path | None,
    progress: bool,
    *,
    dense: bool = True,
) -> Iterator[Searcher]:
    """A library of the corpora (+ distractor PubMed files), indexed, in ``workdir`` or a temporary directory
    removed afterwards; yields its ``Searcher`` (``searcher.store``, ``searcher.settings``)."""
    from ingest.run import ingest_files, ingest_jsonl

    with tempfile.TemporaryDirectory(prefix="medlit-eval-") as tmp:
        home = Path(workdir) if workdir is not None else Path(tmp)
        local = settings.model_copy(update={"home": home})
        with Store.open(local) as store:
            for path in corpora:
                _say(progress, f"ingesting {path}")
                ingest_jsonl(store, path)
            if distractors:
                _say(progress, f"ingesting {len(distractors)} distractor file(s)")
                ingest_files(store, distractors, progress=progress)
            searcher = Searcher(store, local, embedder=embedder)
            lexical = searcher.lexical.update(progress=progress)  # incremental when --keep reuses a library
            _say(progress, f"lexical index: {lexical.added:,} articles indexed, {lexical.count:,} in all")
            if dense:
                name = searcher.dense.embedder.name
                todo = searcher.dense.pending()
                _say(progress, f"embedding {todo:,} new or changed articles with {name}")
                searcher.dense.update(progress=progress)
            yield searcher


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr)
