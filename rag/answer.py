"""What a user gets back: ``Answer`` with its ``Citation``s, sentences and retrieval trace.

Every answer carries the disclaimer; renderings for the terminal, Markdown, JSON and Jupyter live here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

DISCLAIMER = (
    "This summary of the retrieved literature supports, and does not replace, a clinician's judgement. "
    "Check the cited articles before acting on it."
)
INSUFFICIENT = "The evidence found is insufficient to answer this question."
# The note that opens an answer when no retrieved article studies what the question is about.
MISSING_CONCEPT = "No retrieved article studies"


def with_marks(text: str, numbers: list[int], inline: list[int] | tuple[int, ...] = ()) -> str:
    """ "Sentence." and [1, 2] → "Sentence [1][2]." (markers before the closing punctuation); numbers
    already written inside the sentence (``inline``) are not repeated."""
    marks = "".join(f"[{n}]" for n in numbers if n not in inline)
    if not marks:
        return text
    body = text.rstrip()
    end = ""
    while body and body[-1] in ".!?;:":
        end = body[-1] + end
        body = body[:-1]
    return f"{body.rstrip()} {marks}{end}"


@dataclass(slots=True)
class Citation:
    """A retrieved article that the answer cites, with the sentence of its abstract that supports it."""

    number: int  # [n] in the answer text
    pmid: int
    title: str
    journal: str | None
    year: int | None
    publication_types: list[str]
    evidence_level: str
    evidence_rank: int  # 1 (systematic review) .. 8 (other): lower is stronger
    retracted: bool
    quote: str  # the abstract sentence that best supports the answer sentence(s) citing it
    doi: str | None = None
    design: str | None = None  # short design label: "RCT", "meta-analysis", "cohort", "case report"...
    sample_size: int | None = None  # people studied, when the abstract says
    size: str | None = None  # "n=1,204", or "24 studies" for a review
    stance: str | None = None  # supports / contradicts / unclear: its finding on a yes/no question

    @property
    def url(self) -> str:
        return f"https://pubmed.ncbi.nlm.nih.gov/{self.pmid}/"

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "pmid": self.pmid,
            "title": self.title,
            "journal": self.journal,
            "year": self.year,
            "publication_types": list(self.publication_types),
            "evidence_level": self.evidence_level,
            "evidence_rank": self.evidence_rank,
            "retracted": self.retracted,
            "url": self.url,
            "doi": self.doi,
            "quote": self.quote,
            "design": self.design,
            "sample_size": self.sample_size,
            "size": self.size,
            "stance": self.stance,
        }


@dataclass(slots=True)
class AnswerSentence:
    """One sentence of the answer, the citations it keeps after verification, and whether it is supported."""

    text: str  # without citation markers
    citations: list[int] = field(default_factory=list)  # citation numbers
    supported: bool = False
    support: float | None = None  # best similarity to a sentence of a cited abstract
    note: str | None = None  # why it is flagged, when it is
    on_point: bool = True  # it is about the question (mentions its main concepts)
    inline: list[int] = field(default_factory=list)  # citation numbers written inside ``text`` already

    @property
    def marked(self) -> str:
        """The sentence as shown: its text with its citation markers."""
        return with_marks(self.text, self.citations, self.inline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "supported": self.supported,
            "support": None if self.support is None else round(self.support, 4),
            "note": self.note,
            "on_point": self.on_point,
            "inline": list(self.inline),
            "marked": self.marked,
        }


@dataclass(slots=True)
class RemovedCitation:
    """A citation the generator wrote that verification took out, and why."""

    marker: str
    reason: str
    sentence: int  # index of the answer sentence it was in

    def to_dict(self) -> dict[str, Any]:
        return {"marker": self.marker, "reason": self.reason, "sentence": self.sentence}


@dataclass(slots=True)
class Trace:
    """What was searched: enough to reproduce the retrieval and to explain an abstention."""

    query: str
    mode: str
    k: int
    filters: dict[str, Any]
    hits: int
    retrieved: list[int]
    relevance: float | None = None  # best question-to-sentence similarity among the hits
    threshold: float | None = None  # abstention threshold it was compared with
    rerank_relevance: float | None = None  # the trained reranker's best P(relevant) among the hits
    rerank_threshold: float | None = None  # its calibrated abstention threshold, when that decided
    live: dict[str, Any] | None = None  # the PubMed query and counts when --live fetched new records
    timings_ms: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # every verdict formed: model, classifier, stances

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "k": self.k,
            "filters": self.filters,
            "hits": self.hits,
            "retrieved": list(self.retrieved),
            "relevance": None if self.relevance is None else round(self.relevance, 4),
            "threshold": self.threshold,
            "rerank_relevance": None if self.rerank_relevance is None else round(self.rerank_relevance, 4),
            "rerank_threshold": self.rerank_threshold,
            "live": self.live,
            "timings_ms": {name: round(ms, 1) for name, ms in self.timings_ms.items()},
            "verdicts": dict(self.verdicts),
        }


@dataclass(slots=True)
class Answer:
    question: str
    text: str
    sentences: list[AnswerSentence]
    citations: list[Citation]
    trace: Trace
    generator: str
    abstained: bool = False
    reason: str | None = None  # why it abstained
    verdict: str | None = None  # yes / no / uncertain, for a yes/no question when one could be formed
    removed_citations: list[RemovedCitation] = field(default_factory=list)
    disclaimer: str = DISCLAIMER
    verdict_basis: str | None = None  # what the verdict rests on ("local LLM ...", "the cited studies' ...")
    stance_summary: str | None = None  # "2 RCTs for, 1 cohort against, 1 unclear"
    stances: dict[str, int] | None = None  # {"supports": n, "contradicts": n, "unclear": n}
    notes: list[str] = field(default_factory=list)  # what a clinician must see (missing concept, population)
    focus: dict[str, Any] | None = None  # what the question was read to be about
    off_point: list[AnswerSentence] = field(default_factory=list)  # generated but not about the question

    @property
    def unsupported(self) -> list[AnswerSentence]:
        return [s for s in self.sentences if not s.supported]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "reason": self.reason,
            "verdict": self.verdict,
            "sentences": [s.to_dict() for s in self.sentences],
            "citations": [c.to_dict() for c in self.citations],
            "removed_citations": [r.to_dict() for r in self.removed_citations],
            "verdict_basis": self.verdict_basis,
            "stance_summary": self.stance_summary,
            "stances": self.stances,
            "notes": list(self.notes),
            "focus": self.focus,
            "off_point": [s.to_dict() for s in self.off_point],
            "generator": self.generator,
            "trace": self.trace.to_dict(),
            "disclaimer": self.disclaimer,
        }

    # ----- renderings -----

    def _citation_line(self, c: Citation, markdown: bool) -> str:
        flag = "RETRACTED - " if c.retracted else ""
        year = str(c.year) if c.year else "year unknown"
        stance = {"supports": "for", "contradicts": "against", "unclear": "unclear"}.get(c.stance or "")
        where = "; ".join(p for p in (c.journal, year, c.evidence_level, c.size, stance) if p)
        shown = c.title or "(untitled)"  # the PMID follows
        title = f"[{shown}]({c.url})" if markdown else shown
        link = "" if markdown else f"  {c.url}"
        bold = "**" if markdown and c.retracted else ""
        number = f"{c.number}." if markdown else f"[{c.number}]"
        return f"{number} {bold}{flag}{bold}{title} ({where}) PMID {c.pmid}{link}"

    def _sentence_text(self, s: AnswerSentence) -> str:
        flag = (
            " (unsupported: " + (s.note or "no cited abstract supports it") + ")" if not s.supported else ""
        )
        return s.marked + flag

    def _verdict_lines(self) -> list[str]:
        lines = []
        if self.verdict:
            basis = f" (from {self.verdict_basis})" if self.verdict_basis else ""
            lines.append(f"Verdict: {self.verdict}{basis}")
        if self.stance_summary:
            lines.append(f"For and against: {self.stance_summary}")
        return lines

    def _body(self) -> str:
        opening = [n for n in self.notes if n.startswith(MISSING_CONCEPT)][:1]
        return " ".join(opening + [self._sentence_text(s) for s in self.sentences])

    def to_text(self) -> str:
        """Readable in a terminal: the verdict, the answer, notes, the numbered citations, the disclaimer."""
        lines = []
        if self.abstained:
            lines += [INSUFFICIENT, f"Reason: {self.reason}", ""]
            lines.append(f"Searched: {self.trace.query!r} ({self.trace.mode}, k={self.trace.k})")
        else:
            lines += self._verdict_lines()
            lines.append(self._body())
            notes = [n for n in self.notes if not n.startswith(MISSING_CONCEPT)]
            if notes:
                lines += [""] + [f"Note: {n}" for n in notes]
            if self.citations:
                lines += ["", "Citations:"]
                lines += [self._citation_line(c, markdown=False) for c in self.citations]
                lines += ["", "Supporting quotes:"]
                lines += [f'[{c.number}] "{c.quote}"' for c in self.citations]
            if any(c.retracted for c in self.citations):
                lines += ["", "WARNING: the answer cites RETRACTED articles (included on request)."]
            if self.removed_citations:
                lines += ["", f"Removed {len(self.removed_citations)} citation(s) that failed verification:"]
                lines += [f"  {r.marker}: {r.reason}" for r in self.removed_citations]
        lines += ["", self.disclaimer]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [f"**Question:** {self.question}", ""]
        if self.abstained:
            lines += [f"**{INSUFFICIENT}**", "", f"_Reason:_ {self.reason}"]
        else:
            if self.verdict:
                basis = f" _(from {self.verdict_basis})_" if self.verdict_basis else ""
                lines += [f"**Verdict:** {self.verdict}{basis}", ""]
            if self.stance_summary:
                lines += [f"**For and against:** {self.stance_summary}", ""]
            lines.append(self._body())
            notes = [n for n in self.notes if not n.startswith(MISSING_CONCEPT)]
            if notes:
                lines += [""] + [f"> **Note:** {n}" for n in notes]
            if self.citations:
                lines += ["", "**Citations**", ""]
                lines += [self._citation_line(c, markdown=True) for c in self.citations]
                lines += [""] + [f"> [{c.number}] {c.quote}" for c in self.citations]
            if self.removed_citations:
                lines += [
                    "",
                    f"_Removed {len(self.removed_citations)} citation(s) that failed verification._",
                ]
        lines += ["", f"_{self.disclaimer}_"]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        esc = html.escape
        if self.abstained:
            body = f"<p><b>{esc(INSUFFICIENT)}</b></p><p><i>{esc(self.reason or '')}</i></p>"
        else:
            head = "".join(f"<p><b>{esc(line)}</b></p>" for line in self._verdict_lines())
            notes = "".join(
                f"<p><i>Note: {esc(n)}</i></p>" for n in self.notes if not n.startswith(MISSING_CONCEPT)
            )
            body = head + "<p>" + esc(self._body()) + "</p>" + notes + "<ol>"
            for c in self.citations:
                badge = ' <b style="color:#b00">RETRACTED</b>' if c.retracted else ""
                body += (
                    f'<li value="{c.number}"><a href="{esc(c.url)}" target="_blank">'
                    f"{esc(c.title or f'PMID {c.pmid}')}</a> "
                    f"({esc(c.journal or '')} {c.year or 'year unknown'}; {esc(c.evidence_level)}"
                    f"{'; ' + esc(c.size) if c.size else ''}"
                    f"{'; ' + esc(c.stance) if c.stance else ''}){badge}"
                    f"<br><small>&ldquo;{esc(c.quote)}&rdquo;</small></li>"
                )
            body += "</ol>"
        return f"<div>{body}<p><small><i>{esc(self.disclaimer)}</i></small></p></div>"
