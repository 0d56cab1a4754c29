"""Answer evaluation: ask every question of a set against a throwaway library and measure what users rely on.

Per question set:
- ``citations_in_retrieved``: share of cited PMIDs that were among the retrieved articles (must be 1.0);
- ``citation_precision``: share of cited PMIDs that are gold relevant; ``answers_citing_only_relevant``;
  ``cites_relevant``: share of answered questions citing at least one relevant PMID (PubMedQA has one gold
  article per question: there it says whether it is cited);
- ``sentences_supported``; ``sentences_on_point``: share of answer sentences that name a main concept of
  the question (``rag.focus``; or a synonym its cited articles define); ``sentences_set_aside``: generated
  sentences dropped as not about it;
- ``abstention_rate`` (every question of these sets is answerable: its relevant articles are in the library);
  ``written_by``: answered questions per generator (a model's answer, or "extractive (instead of ...)" when
  none of its sentences was verified and the sources were quoted);
- ``accuracy`` and ``macro_f1`` of the verdict over *all* labelled questions (PubMedQA ``answer``, BioASQ
  yes/no ``exact_answer``; "uncertain" is "maybe"; an abstention or a missing verdict counts as wrong),
  ``accuracy_answered`` over the answered ones, and ``always_yes`` for scale;
- ``p50_ms``, ``p99_ms``: seconds per answer, retrieval included.
"""

from __future__ import annotations

import math
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
from rag.focus import Focus, read_question
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
    cited = in_retrieved = relevant_cited = sentences = supported = on_point = abstained = 0
    relevant_hits = all_relevant = answered = set_aside = 0
    verdicts: list[tuple[str, str]] = []  # (gold, predicted) for every labelled question
    candidates: dict[str, list[tuple[str, str]]] = {}  # the same for each verdict formed (model, stances...)
    times = []
    written_by: dict[str, int] = {}  # answered questions per generator (a model's, or the sources quoted)
    for question in questions:
        started = time.perf_counter()
        answer = answerer.ask(question.text)
        times.append((time.perf_counter() - started) * 1000)
        if not answer.abstained:
            written_by[answer.generator] = written_by.get(answer.generator, 0) + 1
        retrieved = set(answer.trace.retrieved)
        pmids = [c.pmid for c in answer.citations]
        cited += len(pmids)
        in_retrieved += sum(p in retrieved for p in pmids)
        if question.label:
            predicted = _label(answer.verdict) if not answer.abstained else "none"
            verdicts.append((question.label, predicted))
            for name in ("classifier", "model", "stances"):
                formed = answer.trace.verdicts.get(name)
                candidates.setdefault(name, []).append(
                    (question.label, _label(formed) if not answer.abstained else "none")
                )
        if answer.abstained:
            abstained += 1
            continue
        answered += 1
        relevant_cited += sum(p in question.relevant for p in pmids)
        sentences += len(answer.sentences)
        supported += sum(s.supported for s in answer.sentences)
        set_aside += len(answer.off_point)
        focus = _read_with_synonyms(answerer, question.text, pmids)
        on_point += sum(bool(focus.mentioned(s.text, loose=True)) or not focus.main for s in answer.sentences)
        relevant_hits += any(p in question.relevant for p in pmids)
        all_relevant += bool(pmids) and all(p in question.relevant for p in pmids)
    answered_verdicts = [(g, p) for g, p in verdicts if p != "none"]
    result: dict[str, Any] = {
        "n": len(questions),
        "answered": answered,
        "abstention_rate": round(abstained / len(questions), 4),
        "citations": cited,
        "citations_in_retrieved": _share(in_retrieved, cited),
        "citation_precision": _share(relevant_cited, cited),
        "answers_citing_only_relevant": _share(all_relevant, answered),
        "cites_relevant": _share(relevant_hits, answered),
        "sentences_supported": _share(supported, sentences),
        "sentences_on_point": _share(on_point, sentences),
        "sentences_set_aside": set_aside,
        "written_by": dict(sorted(written_by.items(), key=lambda item: -item[1])),
        "labelled": len(verdicts),
        "verdicts": sum(p not in ("none", "missing") for _g, p in verdicts),
        "accuracy": _share(sum(g == p for g, p in verdicts), len(verdicts)),
        "macro_f1": round(_macro_f1(verdicts), 4) if verdicts else None,
        "accuracy_answered": _share(sum(g == p for g, p in answered_verdicts), len(answered_verdicts)),
        "always_yes": _share(sum(g == "yes" for g, _p in verdicts), len(verdicts)),
        # a wrong "yes" or "no" is what misleads; an "uncertain" or no verdict only fails to help
        "wrong_definite": _share(sum(p in ("yes", "no") and p != g for g, p in verdicts), len(verdicts)),
        "verdicts_shown": {
            name: sum(p == name for _g, p in verdicts) for name in ("yes", "no", "maybe", "missing", "none")
        },
        "accuracy_by_basis": {
            name: _share(sum(g == p for g, p in pairs), len(pairs))
            for name, pairs in candidates.items()
            if any(p not in ("none", "missing") for _g, p in pairs)
        },
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(_percentile(times, 99), 1),
    }
    return result


def _read_with_synonyms(answerer: Answerer, question: str, pmids: list[int]) -> Focus:
    """The question's concepts, with the synonyms its cited articles define (abbreviations, MeSH headings,
    keywords): "no difference in VAP" is about ventilator-associated pneumonia in an article that says so."""
    focus = read_question(question)
    articles = list(answerer.store.get_many(pmids).values()) if pmids else []
    focus.learn_synonyms(
        (f"{a.title} {a.abstract}" for a in articles),
        [h for a in articles for h in (*(m.descriptor for m in a.mesh), *a.keywords)],
    )
    return focus


def _label(verdict: str | None) -> str:
    """A verdict as the gold labels name it: "uncertain" is PubMedQA's "maybe"; no verdict is "missing"."""
    if verdict is None:
        return "missing"
    return "maybe" if verdict == "uncertain" else verdict


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def _macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Macro-F1 over the gold labels (a missing verdict or an abstention counts as wrong for its label)."""
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
