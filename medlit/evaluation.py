"""Answer evaluation: ask every question of a set against a throwaway library and measure what users rely on.

Per question set:
- ``citations_in_retrieved``: share of cited PMIDs that were among the retrieved articles (must be 1.0);
- ``sentences_supported``: share of answer sentences whose citations support them (answered questions);
- ``abstention_rate``; ``cites_relevant``: share of answered questions citing at least one relevant PMID;
- ``accuracy`` and ``macro_f1`` of the yes/no/maybe verdict against the gold label, when the generator gives
  verdicts (PubMedQA ``answer``, BioASQ yes/no ``exact_answer``); ``verdicts`` says how many it gave.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.settings import Settings, get_settings
from indexes.evaluation import eval_library, question_records
from rag.ask import Answerer
from rag.generators import make_generator

LABELS = ("yes", "no", "maybe")


@dataclass(slots=True)
class AnswerQuestion:
    text: str
    relevant: set[int]
    label: str | None  # yes / no / maybe when the set has one


def read_answer_questions(path: str | Path, limit: int | None = None) -> list[AnswerQuestion]:
    out = []
    for item, text, relevant in question_records(path):
        label = item.get("answer") if item.get("answer") in LABELS else None
        exact = item.get("exact_answer")
        if label is None and item.get("type") == "yesno" and isinstance(exact, str):
            label = exact.strip().lower() if exact.strip().lower() in LABELS else None
        out.append(AnswerQuestion(text=text, relevant=relevant, label=label))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InputError(f"{path}: no questions")
    return out


def score_answers(answerer: Answerer, questions: list[AnswerQuestion]) -> dict[str, Any]:
    cited = in_retrieved = sentences = supported = abstained = relevant_hits = answered = 0
    verdicts: list[tuple[str, str]] = []
    times = []
    for question in questions:
        started = time.perf_counter()
        answer = answerer.ask(question.text)
        times.append((time.perf_counter() - started) * 1000)
        retrieved = set(answer.trace.retrieved)
        for citation in answer.citations:
            cited += 1
            in_retrieved += citation.pmid in retrieved
        if answer.abstained:
            abstained += 1
            continue
        answered += 1
        sentences += len(answer.sentences)
        supported += sum(s.supported for s in answer.sentences)
        relevant_hits += any(c.pmid in question.relevant for c in answer.citations)
        if question.label and answer.verdict:
            verdicts.append((question.label, answer.verdict))
    result: dict[str, Any] = {
        "n": len(questions),
        "answered": answered,
        "abstention_rate": round(abstained / len(questions), 4),
        "citations": cited,
        "citations_in_retrieved": round(in_retrieved / cited, 4) if cited else None,
        "sentences_supported": round(supported / sentences, 4) if sentences else None,
        "cites_relevant": round(relevant_hits / answered, 4) if answered else None,
        "labelled": sum(q.label is not None for q in questions),
        "verdicts": len(verdicts),
        "accuracy": None,
        "macro_f1": None,
        "p50_ms": round(statistics.median(times), 1),
    }
    if verdicts:
        result["accuracy"] = round(sum(g == p for g, p in verdicts) / len(verdicts), 4)
        result["macro_f1"] = round(_macro_f1(verdicts), 4)
    return result


def _macro_f1(pairs: list[tuple[str, str]]) -> float:
    scores = []
    for label in {g for g, _p in pairs}:
        tp = sum(g == label and p == label for g, p in pairs)
        fp = sum(g != label and p == label for g, p in pairs)
        fn = sum(g == label and p != label for g, p in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return statistics.fmean(scores)


def evaluate_answers(
    corpora: Sequence[str | Path],
    question_files: Sequence[str | Path],
    *,
    generator: str | None = None,
    distractors: Sequence[str | Path] = (),
    settings: Settings | None = None,
    embedder: Any = None,
    limit: int | None = None,
    progress: bool = True,
    workdir: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """One result per question file (see the module docstring), from a library of ``corpora``."""
    from indexes.dense_index import embedder_from_settings

    settings = settings or get_settings()
    sets = [(Path(p), read_answer_questions(p, limit)) for p in question_files]
    gen = make_generator(generator, settings.answer, home=settings.home)
    embedder = embedder or embedder_from_settings(settings)
    with eval_library(
        [Path(c) for c in corpora], distractors, settings, embedder, workdir, progress
    ) as searcher:
        answerer = Answerer(searcher.store, searcher.settings, generator=gen, searcher=searcher)
        for path, questions in sets:
            yield {"questions": str(path), "generator": gen.name, **score_answers(answerer, questions)}
