"""Verification by code: what any generator wrote becomes what the user may read.

1. Every citation must name a retrieved article: ``[n]`` within 1..len(sources), or a retrieved PMID.
   Others (a hallucinated PMID, an out-of-range or malformed number) are removed and reported.
2. Each cited article must support the sentence: some sentence of its abstract (never one that looks like an
   instruction to a model) is at least ``support_threshold`` similar to it. Citations that do not support
   the sentence are removed; a sentence left without any is marked unsupported.
3. Citations are renumbered in order of first use and carry the quote that supports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rag.answer import AnswerSentence, Citation, RemovedCitation
from rag.evidence import evidence_level
from rag.generators import Draft, DraftSentence, Evidence
from rag.sentences import citation_markers, split_sentences

_LEADING_MARKERS = re.compile(r"^((?:\s*(?:\[[^\]]{1,40}\]|\(\s*PMIDs?\b[^)]{0,40}\)))+)\s*", re.I)
_GLUED_MARKER = re.compile(r"([.!?])(?=\[[^\]]{1,40}\])")  # "effect.[1] Next": a boundary after the stop


@dataclass(slots=True)
class Verified:
    sentences: list[AnswerSentence]
    citations: list[Citation]
    removed: list[RemovedCitation]


def split_answer(text: str) -> list[str]:
    """Answer sentences; markers written after the full stop ("... effect. [1]", "... effect.[1]",
    "... effect. (PMID 123)") stay on their sentence."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=\s*[-*•]|\s*\d+[.)]\s)", text):
        paragraph = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", paragraph.strip())
        for sentence in split_sentences(_GLUED_MARKER.sub(r"\1 ", paragraph)):
            lead = _LEADING_MARKERS.match(sentence)
            if lead and pieces:
                pieces[-1] = f"{pieces[-1]} {lead.group(1).strip()}"
                sentence = sentence[lead.end() :]
            if re.search(r"\w", sentence):  # not the "." left of "effect. [1]."
                pieces.append(sentence)
    return pieces


class Verifier:
    """Checks answer sentences against one question's evidence, a few at a time (streaming) or all at once;
    citation numbers, quotes and removals accumulate across calls."""

    def __init__(self, evidence: Evidence, embedder: object, support_threshold: float) -> None:
        self.evidence = evidence
        self.embedder = embedder
        self.threshold = support_threshold
        self.by_pmid = evidence.by_pmid()
        self.usable = evidence.usable
        self.owner = np.array([s.pmid for s in evidence.sentences], dtype=np.int64)
        self.numbers: dict[int, int] = {}
        self.quotes: dict[int, tuple[float, str]] = {}
        self.removed: list[RemovedCitation] = []
        self.sentences: list[AnswerSentence] = []

    def check_draft(self, draft: Draft) -> list[AnswerSentence]:
        """A whole draft: its structured sentences, or its text with markers."""
        return self.check(draft.sentences) if draft.sentences is not None else self.check_text(draft.text)

    def check_text(self, text: str) -> list[AnswerSentence]:
        """Model text (with [n] / PMID markers) → verified sentences."""
        start = len(self.sentences)
        return self.check(_parse(text, self.evidence, self.removed, start))

    def check(self, drafts: list[DraftSentence]) -> list[AnswerSentence]:
        drafts = [d for d in drafts if d.text.strip()]
        if not drafts:
            return []
        vectors = _embed(self.embedder, [d.text for d in drafts])
        out = [
            self._one(len(self.sentences) + i, d, v)
            for i, (d, v) in enumerate(zip(drafts, vectors, strict=True))
        ]
        self.sentences.extend(out)
        return out

    def _one(self, index: int, sentence: DraftSentence, vector: np.ndarray) -> AnswerSentence:
        kept: list[int] = []
        best_support: float | None = None
        for pmid in dict.fromkeys(sentence.pmids):
            if pmid not in self.by_pmid:  # only a structured draft gets here: model text is parsed first
                self.removed.append(
                    RemovedCitation(f"PMID {pmid}", "not among the retrieved articles", index)
                )
                continue
            mask = self.usable & (self.owner == pmid)
            if not mask.any():
                self.removed.append(RemovedCitation(f"PMID {pmid}", "the article has no usable text", index))
                continue
            sims = self.evidence.vectors[mask] @ vector
            best = int(np.argmax(sims))
            score = float(sims[best])
            best_support = score if best_support is None else max(best_support, score)
            if score < self.threshold:
                self.removed.append(
                    RemovedCitation(
                        f"[{self.by_pmid[pmid].number}] PMID {pmid}",
                        f"its abstract does not support the sentence (similarity {score:.2f} < "
                        f"{self.threshold:.2f})",
                        index,
                    )
                )
                continue
            kept.append(pmid)
            quote = [s for s, m in zip(self.evidence.sentences, mask, strict=True) if m][best].text
            if pmid not in self.quotes or score > self.quotes[pmid][0]:
                self.quotes[pmid] = (score, quote)
        for pmid in kept:
            self.numbers.setdefault(pmid, len(self.numbers) + 1)
        note = None
        if not kept:
            note = "no citation" if not sentence.pmids else "no cited abstract supports it"
        return AnswerSentence(
            text=sentence.text,
            citations=[self.numbers[p] for p in kept],
            supported=bool(kept),
            support=best_support,
            note=note,
        )

    def citation(self, pmid: int) -> Citation:
        source = self.by_pmid[pmid]
        level = evidence_level(source.publication_types, source.mesh)
        return Citation(
            number=self.numbers[pmid],
            pmid=pmid,
            title=source.title,
            journal=source.journal,
            year=source.year,
            publication_types=list(source.publication_types),
            evidence_level=level.label,
            evidence_rank=int(level),
            retracted=source.retracted,
            quote=self.quotes[pmid][1],
            doi=source.doi,
        )

    def cited(self, sentence: AnswerSentence) -> list[Citation]:
        """The citations of one verified sentence, in its order."""
        by_number = {number: pmid for pmid, number in self.numbers.items()}
        return [self.citation(by_number[n]) for n in sentence.citations]

    def result(self) -> Verified:
        citations = [self.citation(pmid) for pmid in self.numbers]
        return Verified(sentences=list(self.sentences), citations=citations, removed=list(self.removed))


def verify(draft: Draft, evidence: Evidence, embedder: object, support_threshold: float) -> Verified:
    """Every sentence of a draft checked at once."""
    verifier = Verifier(evidence, embedder, support_threshold)
    verifier.check_draft(draft)
    return verifier.result()


def _parse(
    text: str, evidence: Evidence, removed: list[RemovedCitation], first: int = 0
) -> list[DraftSentence]:
    """Model text into sentences with the PMIDs their markers resolve to; bad markers are reported."""
    by_number = {s.number: s.pmid for s in evidence.sources}
    retrieved = {s.pmid for s in evidence.sources}
    drafts = []
    for index, raw in enumerate(split_answer(text), start=first):
        clean, markers = citation_markers(raw)
        pmids: list[int] = []
        for marker in markers:
            if marker.pmid is not None:
                if marker.pmid in retrieved:
                    pmids.append(marker.pmid)
                else:
                    removed.append(
                        RemovedCitation(f"PMID {marker.pmid}", "not among the retrieved articles", index)
                    )
            elif marker.number is None:
                removed.append(RemovedCitation(f"[{marker.raw}]", "malformed citation", index))
            elif marker.number in by_number:
                pmids.append(by_number[marker.number])
            else:
                removed.append(
                    RemovedCitation(
                        f"[{marker.number}]", f"out of range: there were {len(by_number)} sources", index
                    )
                )
        drafts.append(DraftSentence(text=clean, pmids=pmids))
    return drafts


def _embed(embedder: object, texts: list[str]) -> np.ndarray:
    return embedder.embed_documents(texts)  # type: ignore[attr-defined]
