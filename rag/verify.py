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

_LEADING_MARKERS = re.compile(r"^((?:\s*\[[^\]]{1,40}\])+)\s*")


@dataclass(slots=True)
class Verified:
    sentences: list[AnswerSentence]
    citations: list[Citation]
    removed: list[RemovedCitation]


def split_answer(text: str) -> list[str]:
    """Answer sentences; markers written after the full stop ("... effect. [1]") stay on their sentence."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=\s*[-*•]|\s*\d+[.)]\s)", text):
        paragraph = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", paragraph.strip())
        for sentence in split_sentences(paragraph):
            lead = _LEADING_MARKERS.match(sentence)
            if lead and pieces:
                pieces[-1] = f"{pieces[-1]} {lead.group(1).strip()}"
                sentence = sentence[lead.end() :]
            if sentence.strip():
                pieces.append(sentence)
    return pieces


def verify(draft: Draft, evidence: Evidence, embedder: object, support_threshold: float) -> Verified:
    by_pmid = evidence.by_pmid()
    removed: list[RemovedCitation] = []
    drafts = draft.sentences if draft.sentences is not None else _parse(draft.text, evidence, removed)
    drafts = [d for d in drafts if d.text.strip()]

    vectors = _embed(embedder, [d.text for d in drafts]) if drafts else np.zeros((0, 1), dtype=np.float32)
    usable = np.array([not s.instruction_like for s in evidence.sentences], dtype=bool)
    owner = np.array([s.pmid for s in evidence.sentences], dtype=np.int64)

    numbers: dict[int, int] = {}
    quotes: dict[int, tuple[float, str]] = {}
    out: list[AnswerSentence] = []
    for index, (sentence, vector) in enumerate(zip(drafts, vectors, strict=True)):
        kept: list[int] = []
        best_support: float | None = None
        for pmid in dict.fromkeys(sentence.pmids):
            if pmid not in by_pmid:  # only a structured draft can get here: model output is parsed above
                removed.append(RemovedCitation(f"PMID {pmid}", "not among the retrieved articles", index))
                continue
            mask = usable & (owner == pmid)
            if not mask.any():
                removed.append(RemovedCitation(f"PMID {pmid}", "the article has no usable text", index))
                continue
            sims = evidence.vectors[mask] @ vector
            best = int(np.argmax(sims))
            score = float(sims[best])
            best_support = score if best_support is None else max(best_support, score)
            if score < support_threshold:
                removed.append(
                    RemovedCitation(
                        f"[{by_pmid[pmid].number}] PMID {pmid}",
                        f"its abstract does not support the sentence (similarity {score:.2f} < "
                        f"{support_threshold:.2f})",
                        index,
                    )
                )
                continue
            kept.append(pmid)
            quote = [s for s, m in zip(evidence.sentences, mask, strict=True) if m][best].text
            if pmid not in quotes or score > quotes[pmid][0]:
                quotes[pmid] = (score, quote)
        for pmid in kept:
            numbers.setdefault(pmid, len(numbers) + 1)
        supported = bool(kept)
        note = None
        if not supported:
            note = "no citation" if not sentence.pmids else "no cited abstract supports it"
        out.append(
            AnswerSentence(
                text=sentence.text,
                citations=[numbers[p] for p in kept],
                supported=supported,
                support=best_support,
                note=note,
            )
        )

    citations = []
    for pmid, number in numbers.items():
        source = by_pmid[pmid]
        level = evidence_level(source.publication_types, source.mesh)
        citations.append(
            Citation(
                number=number,
                pmid=pmid,
                title=source.title,
                journal=source.journal,
                year=source.year,
                publication_types=list(source.publication_types),
                evidence_level=level.label,
                evidence_rank=int(level),
                retracted=source.retracted,
                quote=quotes[pmid][1],
                doi=source.doi,
            )
        )
    return Verified(sentences=out, citations=citations, removed=removed)


def _parse(text: str, evidence: Evidence, removed: list[RemovedCitation]) -> list[DraftSentence]:
    """Model text into sentences with the PMIDs their markers resolve to; bad markers are reported."""
    by_number = {s.number: s.pmid for s in evidence.sources}
    retrieved = {s.pmid for s in evidence.sources}
    drafts = []
    for index, raw in enumerate(split_answer(text)):
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
