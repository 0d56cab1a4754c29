"""The answer pipeline: retrieve → (abstain?) → generate → verify → ``Answer``.

``Answerer`` holds one library's searcher, embedder and generator so that many questions (a batch job, the
HTTP API) share them; ``ask()`` is the one-call form. Question text is never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from foundation.errors import InputError, MedlitError
from foundation.settings import Settings
from indexes.hit import Filters, Hit
from indexes.search import Searcher
from ingest.store import Store
from rag.answer import INSUFFICIENT, MISSING_CONCEPT, Answer, AnswerSentence, Citation, Trace
from rag.appraise import age_group_unstudied, answer_notes, appraise, outcomes_unreported, tally
from rag.focus import abbreviation_map, expand_abbreviations
from rag.generators import (
    Draft,
    Evidence,
    ExtractiveGenerator,
    GenerationError,
    Source,
    defined_abbreviations,
    is_insufficient,
    make_generator,
    read_verdict,
)
from rag.sentences import SourceSentence, article_sentences
from rag.verify import Verifier, split_answer

log = logging.getLogger("medlit.ask")

MAX_ANSWER_K = 100
# The verdict head that ships: a few KB of JSON, trained as docs/answers.md ("Verdicts") shows
PACKAGED_VERDICT = Path(__file__).resolve().parent / "data" / "verdict-findings.json"
GENERATOR_INSUFFICIENT = "the generator found the retrieved evidence insufficient"


class Answerer:
    """Answers questions from one library. Not thread-safe: give each thread its own (they are cheap once
    the embedder is shared through ``embedder=``)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        generator: Any = None,
        embedder: Any = None,
        searcher: Searcher | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.searcher = searcher or Searcher(store, settings, embedder=embedder)
        if generator is None:
            generator = make_generator(None, settings.answer, home=settings.home)
        self.generator = generator
        self._verdict_model: Any = None  # loaded on the first yes/no question (False: none configured)
        self._support_model: Any = None  # loaded with the first answer checked (False: none configured)

    @property
    def embedder(self) -> Any:
        return self.searcher.dense.embedder

    def retrieve(
        self, question: str, *, k: int | None = None, filters: Filters | None = None, mode: str | None = None
    ) -> tuple[list[Hit], Evidence | None, Trace]:
        cfg = self.settings.answer
        k = cfg.k if k is None else k
        mode = mode or cfg.mode
        if not isinstance(k, int) or not 1 <= k <= MAX_ANSWER_K:
            raise InputError(f"k must be between 1 and {MAX_ANSWER_K} (got {k})")
        filters = filters or Filters()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        hits = self.searcher.search(question, k, filters, mode)
        timings["search"] = (time.perf_counter() - started) * 1000
        trace = Trace(
            query=question,
            mode=mode,
            k=k,
            filters=filters.to_dict(),
            hits=len(hits),
            retrieved=[h.pmid for h in hits],
            threshold=cfg.abstain_threshold,
            timings_ms=timings,
        )
        if not hits:
            return hits, None, trace
        reranked = [h.rerank_score for h in hits if h.rerank_score is not None]
        trace.rerank_relevance = max(reranked) if reranked else None
        started = time.perf_counter()
        evidence = self._evidence(question, hits)
        timings["embed_sentences"] = (time.perf_counter() - started) * 1000
        trace.relevance = evidence.relevance()
        started = time.perf_counter()
        appraise(evidence, self.embedder, known=self.store.known_mesh)
        timings["appraise"] = (time.perf_counter() - started) * 1000
        return hits, evidence, trace

    def _evidence(self, question: str, hits: list[Hit]) -> Evidence:
        articles = self.store.get_many(h.pmid for h in hits)
        sources: list[Source] = []
        sentences: list[SourceSentence] = []
        texts: list[str] = []  # what is embedded: each sentence with its article's abbreviations written out
        for hit in hits:
            article = articles.get(hit.pmid)
            if article is None:
                continue
            own = article_sentences(article)
            abbreviated = abbreviation_map(" ".join(s.text for s in own))
            sources.append(
                Source(
                    number=len(sources) + 1,
                    pmid=hit.pmid,
                    title=article.title,
                    journal=article.journal_iso or article.journal,
                    year=article.year,
                    publication_types=list(article.publication_types),
                    rank=hit.rank,
                    sentences=own,
                    mesh=[m.descriptor for m in article.mesh],
                    retracted=article.retracted,
                    doi=article.doi,
                    keywords=list(article.keywords),
                    abbreviations=abbreviated,
                )
            )
            sentences.extend(own)
            texts.extend(expand_abbreviations(s.text, abbreviated) for s in own)
        embedder = self.embedder
        vectors = embedder.embed_documents(texts) if sentences else np.zeros((0, 1), dtype=np.float32)
        asked = expand_abbreviations(question, defined_abbreviations(sources))  # as the articles write it
        return Evidence(
            question=question,
            sources=sources,
            sentences=sentences,
            vectors=np.asarray(vectors, dtype=np.float32),
            question_vector=np.asarray(embedder.embed_query(asked), dtype=np.float32),
        )

    def _precheck(self, question: str, trace: Trace, evidence: Evidence | None) -> Answer | None:
        """The abstention that needs no generator: nothing retrieved, or nothing close enough."""
        name = self.generator.name
        if evidence is None or not evidence.sources:
            return _abstain(question, trace, name, _nothing_found(trace))
        calibrated = self._rerank_threshold(trace)
        if calibrated is not None:
            trace.rerank_threshold = calibrated
            if trace.rerank_relevance is not None and trace.rerank_relevance < calibrated:
                return _abstain(
                    question,
                    trace,
                    name,
                    f"no retrieved article is likely to answer the question (the reranker's best score "
                    f"{trace.rerank_relevance:.2f} < {calibrated:.2f}, calibrated on held-out questions)",
                )
        threshold = self.settings.answer.abstain_threshold
        if calibrated is None and (trace.relevance is None or trace.relevance < threshold):
            return _abstain(
                question,
                trace,
                name,
                f"no retrieved article is close enough to the question (best similarity "
                f"{trace.relevance or 0:.2f} < {threshold:.2f})",
            )
        focus = evidence.focus
        if focus is not None and focus.main and not evidence.on_point():
            answer = _abstain(
                question,
                trace,
                name,
                "no retrieved article is about "
                + " or ".join(c.text for c in focus.main[:3])
                + " (the closest ones concern other topics)",
            )
            answer.focus = focus.to_dict()
            return answer
        return None

    def _rerank_threshold(self, trace: Trace) -> float | None:
        """The reranker's calibrated abstention threshold, when it reranked these hits and may decide."""
        reranker = self.searcher.reranker
        if not self.settings.index.rerank_abstain or reranker is None or trace.rerank_relevance is None:
            return None
        return reranker.abstain_below

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
    ) -> Answer:
        """Answer ``question`` from the library, with citations verified against what was retrieved."""
        _hits, evidence, trace = self.retrieve(question, k=k, filters=filters, mode=mode)
        return self._answer(question, trace, evidence)

    def _answer(self, question: str, trace: Trace, evidence: Evidence | None) -> Answer:
        early = self._precheck(question, trace, evidence)
        if early is not None or evidence is None:
            return early  # type: ignore[return-value]
        started = time.perf_counter()
        draft = self._draft(evidence)
        trace.timings_ms["generate"] = (time.perf_counter() - started) * 1000
        if draft.insufficient:
            return _abstain(question, trace, self.generator.name, GENERATOR_INSUFFICIENT)
        started = time.perf_counter()
        verifier = self._verifier(evidence)
        verifier.check_draft(draft)
        trace.timings_ms["verify"] = (time.perf_counter() - started) * 1000
        return self._finish(question, trace, verifier, draft.verdict)

    def _verifier(self, evidence: Evidence) -> Verifier:
        cfg = self.settings.answer
        return Verifier(
            evidence,
            self.embedder,
            cfg.support_threshold,
            summary_threshold=cfg.summary_threshold,
            support_model=self.support_model(),
        )

    def _finish(
        self,
        question: str,
        trace: Trace,
        verifier: Verifier,
        verdict: str | None,
        *,
        name: str | None = None,
        fallback: bool = True,
    ) -> Answer:
        checked = verifier.result()
        name = name or self.generator.name
        evidence = verifier.evidence
        focus = evidence.focus
        if not any(s.supported for s in checked.sentences):
            reason = "no sentence of the generated answer is supported by a retrieved abstract"
            if checked.off_point and not checked.sentences:
                reason = "no sentence of the generated answer is about the question"
            quoted = self._quoted_instead(question, trace, evidence, reason) if fallback else None
            if quoted is not None:
                return quoted
            answer = _abstain(question, trace, name, reason)
            answer.removed_citations = checked.removed
            answer.sentences = checked.sentences
            answer.off_point = checked.off_point
            answer.focus = focus.to_dict() if focus is not None else None
            return answer
        citations = sorted(checked.citations, key=lambda c: c.number)
        cited = {c.pmid: c.number for c in citations}
        notes = answer_notes(evidence, cited)
        opening = next((n for n in notes if n.startswith(MISSING_CONCEPT)), None)
        answer = Answer(
            question=question,
            text=" ".join(
                ([opening] if opening else [])
                + [s.marked if s.supported else f"{s.text} [unsupported]" for s in checked.sentences]
            ),
            sentences=checked.sentences,
            citations=citations,
            trace=trace,
            generator=name,
            removed_citations=checked.removed,
            notes=notes,
            focus=focus.to_dict() if focus is not None else None,
            off_point=checked.off_point,
        )
        self._decide(answer, evidence, verdict)
        return answer

    def _quoted_instead(self, question: str, trace: Trace, evidence: Evidence, reason: str) -> Answer | None:
        """A model's answer of which no sentence was verified: the sources quoted instead (the extractive
        generator on the same evidence, verified the same way), or None when that finds nothing either or
        the generator already quotes. The model's own verdict line goes with its rejected answer."""
        cfg = self.settings.answer
        if not cfg.quote_fallback or isinstance(self.generator, ExtractiveGenerator):
            return None
        quoting = ExtractiveGenerator.from_settings(cfg)
        verifier = self._verifier(evidence)
        verifier.check_draft(quoting.generate(evidence))
        trace.verdicts.pop("model", None)
        answer = self._finish(
            question, trace, verifier, None, name=f"{quoting.name} (instead of {self.generator.name})",
            fallback=False,
        )  # fmt: skip
        if answer.abstained:
            return None
        answer.notes.insert(0, f"Quoted from the sources: the model's answer was set aside ({reason}).")
        return answer

    def _decide(self, answer: Answer, evidence: Evidence, model_verdict: str | None) -> None:
        """The verdict of a yes/no question and what it rests on, and the for/against counts of the cited
        studies. Every verdict formed is kept in the trace; the one shown is, first found: a trained verdict
        classifier's (``answer.verdict_model``), the model's "Verdict:" line, the cited studies' stances.
        A question that is not yes/no gets no verdict (a model's "Verdict:" line is dropped)."""
        focus = evidence.focus
        if focus is not None and not focus.yes_no:
            return
        counted = tally(evidence, [c.pmid for c in answer.citations])
        if counted is not None:
            answer.stance_summary = counted.summary
            answer.stances = counted.counts
        chosen: list[tuple[str, str]] = []  # (verdict, basis)
        classifier = self.verdict_model()
        if classifier is not None:
            prediction = classifier.predict(evidence)
            answer.trace.verdicts["classifier"] = prediction.label
            p = prediction.probabilities.get(prediction.label, 0.0)
            chosen.append((prediction.label, f"the verdict classifier {classifier.source.name} (p={p:.2f})"))
        if model_verdict is not None:
            answer.trace.verdicts["model"] = model_verdict
            chosen.append((model_verdict, f"the model {self.generator.name}"))
        if counted is not None:
            answer.trace.verdicts["stances"] = counted.verdict
            chosen.append((counted.verdict, f"the stances of the cited studies ({counted.summary})"))
        if chosen:
            answer.verdict, answer.verdict_basis = chosen[0]
        if evidence.missing_primary and answer.verdict is not None and focus is not None:
            primary = focus.primary.text if focus.primary else "the question's subject"
            answer.verdict = "uncertain"
            answer.verdict_basis = f"no retrieved article studies {primary}"
        elif (
            answer.verdict is not None
            and focus is not None
            and age_group_unstudied(evidence, [c.pmid for c in answer.citations])
        ):  # "safe in general" is not "safe in older adults"
            answer.verdict = "uncertain"
            answer.verdict_basis = (
                f"none of the cited studies says it studied {' and '.join(sorted(focus.age_groups))}"
            )
        elif answer.verdict is not None and focus is not None:
            cited = [c.pmid for c in answer.citations]
            unreported = outcomes_unreported(evidence, cited)
            if unreported and len(unreported) == len(focus.by_role("outcome")):  # not one outcome asked about
                answer.verdict = "uncertain"
                answer.verdict_basis = f"none of the cited studies reports {' and '.join(unreported)}"

    def verdict_model(self) -> Any:
        """The verdict classifier of the settings, else $MEDLIT_HOME/models/verdict, else the packaged
        findings head; None when set to 'none'."""
        if self._verdict_model is None:
            cfg = self.settings.answer
            path = self.settings.trained_model(cfg.verdict_model, "verdict")
            if path is None and cfg.verdict_model is None:
                path = PACKAGED_VERDICT
            if path is None:
                self._verdict_model = False
            else:
                from rag.verdict import VerdictClassifier

                self._verdict_model = VerdictClassifier.load(
                    path, uncertain_below=cfg.verdict_uncertain_below
                )
        return self._verdict_model or None

    def support_model(self) -> Any:
        """The support classifier of the settings, else $MEDLIT_HOME/models/support; None when there is
        none (the similarity threshold decides) or it is set to 'none'."""
        if self._support_model is None:
            path = self.settings.trained_model(self.settings.answer.support_model, "support")
            if path is None:
                self._support_model = False
            else:
                from rag.support_model import SupportClassifier

                self._support_model = SupportClassifier.load(path)
        return self._support_model or None

    def _draft(self, evidence: Evidence) -> Draft:
        draft = self.generator.generate(evidence)
        if not isinstance(draft, Draft):
            raise GenerationError(
                f"generator {self.generator.name} returned {type(draft).__name__}, not a Draft"
            )
        return draft

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events for a live view: ``retrieved`` (the trace), ``sentence`` as each sentence of the answer is
        written *and verified* (with the citations it introduces), then ``answer`` (the whole verified
        answer) — or ``error``. Nothing unverified is ever sent: a model's text is held until a sentence is
        complete, then checked like any other."""
        try:
            _hits, evidence, trace = self.retrieve(question, k=k, filters=filters, mode=mode)
            yield {"event": "retrieved", "data": trace.to_dict()}
            early = self._precheck(question, trace, evidence)
            if early is not None or evidence is None:
                yield {"event": "answer", "data": early.to_dict() if early else {}}
                return
            stream = getattr(self.generator, "stream", None)
            if stream is None:
                answer = self._answer(question, trace, evidence)
                for sentence in answer.sentences:
                    numbers = set(sentence.citations)
                    yield _sentence_event(sentence, [c for c in answer.citations if c.number in numbers])
                yield {"event": "answer", "data": answer.to_dict()}
                return
            yield from self._stream_model(question, trace, evidence, stream)
        except MedlitError as exc:
            yield {"event": "error", "data": {"message": str(exc), "kind": type(exc).__name__}}

    def _stream_model(
        self, question: str, trace: Trace, evidence: Evidence, stream: Callable[[Evidence], Iterator[str]]
    ) -> Iterator[dict[str, Any]]:
        verifier = self._verifier(evidence)
        started = time.perf_counter()
        text, verdict, head_done, emitted = "", None, False, 0
        for chunk in stream(evidence):
            text += chunk
            if not head_done:
                if "\n" not in text and len(text) < 40:
                    continue  # a "Verdict: yes" line may still be arriving
                verdict, start = read_verdict(text)
                text, head_done = text[start:], True
            pieces = split_answer(text)
            # a sentence is complete once the next one has begun with words (not a "[2" still arriving)
            if len(pieces) - 1 <= emitted or pieces[-1].lstrip().startswith(("[", "(")):
                continue
            yield from self._shown(verifier, verifier.check_text(" ".join(pieces[emitted:-1])))
            emitted = len(pieces) - 1
        if not head_done:
            verdict, start = read_verdict(text)
            text = text[start:]
        rest = " ".join(split_answer(text)[emitted:])
        if not verifier.sentences and is_insufficient(rest):
            answer = _abstain(question, trace, self.generator.name, GENERATOR_INSUFFICIENT)
            yield {"event": "answer", "data": answer.to_dict()}
            return
        yield from self._shown(verifier, verifier.check_text(rest))
        yield from self._shown(verifier, verifier.finish())  # opening summaries, once all is cited
        trace.timings_ms["generate_and_verify"] = (time.perf_counter() - started) * 1000
        yield {"event": "answer", "data": self._finish(question, trace, verifier, verdict).to_dict()}

    def _shown(self, verifier: Verifier, sentences: list[AnswerSentence]) -> Iterator[dict[str, Any]]:
        """Sentence events for what the user may see now: sentences about the question, once verified;
        an uncited one waits for the end of the answer (it may rest on what the rest cites)."""
        for sentence in sentences:
            if not sentence.on_point or verifier.pending(sentence):
                continue
            event = _sentence_event(sentence, verifier.cited(sentence))
            event["data"]["index"] = verifier.sentences.index(sentence)
            yield event


def _sentence_event(sentence: AnswerSentence, cited: list[Citation]) -> dict[str, Any]:
    return {"event": "sentence", "data": {**sentence.to_dict(), "cited": [c.to_dict() for c in cited]}}


def _nothing_found(trace: Trace) -> str:
    if any(v for key, v in trace.filters.items() if key != "include_retracted"):
        return "no article in the library passes the filters and matches the question"
    return "no article in the library matches the question"


def _abstain(question: str, trace: Trace, generator: str, reason: str) -> Answer:
    return Answer(
        question=question,
        text=INSUFFICIENT,
        sentences=[],
        citations=[],
        trace=trace,
        generator=generator,
        abstained=True,
        reason=reason,
    )
