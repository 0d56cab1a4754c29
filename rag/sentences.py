"""Sentences: splitting abstracts and answers, and spotting text that tries to instruct a model.

The splitter is rule-based and tuned for biomedical prose: it does not split after "e.g.", "vs.",
"et al.", "Fig.", initials or inside numbers ("p < 0.05", "1.5 mg"), and keeps the abstract section a
sentence came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.article import Article

_ABBREVIATIONS = frozenset(
    """e.g i.e vs etc al fig figs eq ref refs approx ca cf dr mr mrs ms prof no nos vol pp st sp spp resp
    incl jan feb mar apr jun jul aug sep sept oct nov dec min max mo yr yrs wk wks hr hrs inc ltd co corp
    u.s u.k""".split()  # noqa: SIM905
)
# A boundary: end punctuation (maybe closing quotes/brackets), whitespace, then a sentence start.
_BOUNDARY = re.compile(r"""([.!?])(["'”’)\]]*)\s+(?=["'“‘(\[]?[A-Z0-9])""")
_LAST_WORD = re.compile(r"(\S+)$")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order; whitespace normalised, nothing else changed."""
    text = " ".join(text.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(2)
        candidate = text[start:end]
        word = _LAST_WORD.search(candidate[: match.start(1) - start])
        last = word.group(1).lower().lstrip("([{\"'“‘").rstrip(".") if word else ""  # "(ref. 12)"
        if match.group(1) == "." and (
            last in _ABBREVIATIONS
            or (len(last) == 1 and last.isalpha() and _initial(candidate[: word.start()] if word else ""))
        ):
            continue  # "et al. Smith", "J. Smith": not a boundary
        sentences.append(candidate.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _initial(preceding: str) -> bool:
    """Whether the one letter before a full stop is an initial ("J. Smith", "Arthur C. Alport", "M. D.
    Anderson") rather than a name's last part ending a sentence ("vitamin D.", "hepatitis C.", "RNase R.",
    "arm A."): after a lower-case word (but "by", "to", "from"), a number or a word with capitals inside, it
    ends the sentence. ``preceding``: the sentence's text before the letter."""
    before = preceding.split()
    if not before:
        return True  # "J. Smith ..." opening the text
    previous = before[-1].lstrip("([{\"'“‘")
    if previous in ("and", "&") and len(before) > 1:  # "Smith and B. Jones", not "arms A and B. There"
        return len(before[-2]) > 1 and before[-2].istitle()
    return previous.endswith((".", ",")) or previous.istitle() or previous.lower() in ("by", "to", "from")


@dataclass(slots=True)
class SourceSentence:
    """One sentence of a retrieved abstract (or its title), with where it came from."""

    pmid: int
    position: int  # 0 = title, then abstract sentences in order
    text: str
    label: str | None = None  # the abstract section's label ("CONCLUSIONS"), when structured
    category: str | None = None  # NLM category (BACKGROUND, OBJECTIVE, METHODS, RESULTS, CONCLUSIONS)
    instruction_like: bool = False  # looks like text addressed to a model: never used as evidence

    @property
    def is_conclusion(self) -> bool:
        names = f"{self.label or ''} {self.category or ''}".upper()
        return "CONCLUS" in names or "INTERPRETATION" in names or "IMPLICATION" in names


def article_sentences(article: Article) -> list[SourceSentence]:
    """The title and every abstract sentence; sentences in the last section of an unstructured abstract
    are not marked as conclusions (there is no label to trust)."""
    out: list[SourceSentence] = []
    if article.title.strip():
        out.append(_source(article.pmid, 0, article.title, None, None))
    position = 0
    for section in article.abstract_sections:
        for sentence in split_sentences(section.text):
            position += 1
            out.append(_source(article.pmid, position, sentence, section.label, section.category))
    return out


def _source(pmid: int, position: int, text: str, label: str | None, category: str | None) -> SourceSentence:
    text = " ".join(text.split())
    return SourceSentence(
        pmid, position, text, label, category, instruction_like=looks_like_instruction(text)
    )


# Phrases that address a language model rather than report research. A sentence that matches is kept out of
# the evidence (never quoted, never counted as support) whatever generator runs.
_INSTRUCTION = re.compile(
    r"""\b(?:
        (?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|preceding|other)\s+
            (?:instructions?|prompts?|messages?|context|rules|directions)
      | (?:system|developer)\s+prompt
      | you\s+are\s+now\b
      | (?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+|your\s+)?
            (?:instructions?|prompts?|rules)\s+(?:above|before|given)
      | (?:as\s+an?\s+)?(?:ai|language\s+model|assistant|chatbot)\s*[,:]?\s+(?:you\s+)?(?:must|should|will)\b
      | (?:if\s+you\s+are|note\s+to)\s+(?:an?\s+)?(?:ai|llm|large\s+language\s+model|language\s+model|
            assistant|chatbot)s?\b
      | (?:new|updated)\s+instructions?\s*:
      | do\s+not\s+(?:cite|mention)\s+(?:any\s+)?other
      | (?:always|only)\s+(?:answer|respond|reply|say)\b
      | respond\s+(?:only\s+)?with\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def looks_like_instruction(text: str) -> bool:
    return bool(_INSTRUCTION.search(text))


_CITATION_GROUP = re.compile(r"\[(?:\s*(?:PMID\s*:?\s*)?\d+\s*(?:[,;–-]\s*(?:PMID\s*:?\s*)?\d+\s*)*)\]", re.I)
_PMID_MENTION = re.compile(r"\bPMID\s*:?\s*(\d{1,9})\b", re.I)
# "(PMID: 123, 456)": every number in the parentheses is a PMID
_PMID_PARENS = re.compile(r"\(\s*PMIDs?\s*:?\s*(\d{1,9}(?:\s*[,;]\s*(?:PMID\s*:?\s*)?\d{1,9})*)\s*\)", re.I)


@dataclass(slots=True)
class Marker:
    """One citation as written: a source number ``[2]`` or a PMID ``[PMID: 123]``."""

    raw: str
    number: int | None = None
    pmid: int | None = None


def citation_markers(sentence: str) -> tuple[str, list[Marker]]:
    """The sentence without its citation markers, and the markers in order. Ranges "[1-3]" expand.

    Removing one marker can join the text around it into another ("[0()]" becomes "[0]" once the
    empty parentheses go), so markers are taken until none is left: no marker survives in the text.
    """
    text, markers = _take_markers(sentence)
    while text and (_CITATION_GROUP.search(text) or _PMID_MENTION.search(text)):
        text, more = _take_markers(text)
        markers.extend(more)
    return text, markers


def _take_markers(sentence: str) -> tuple[str, list[Marker]]:
    markers: list[Marker] = []
    for group in _CITATION_GROUP.finditer(sentence):
        inner = group.group(0)[1:-1]
        pmids = _PMID_MENTION.match(inner.strip()) is not None  # "[PMID: 123, 456]": all PMIDs
        for part in re.split(r"[,;]", inner):
            part = part.strip()
            if not part:
                continue
            pmid = _PMID_MENTION.match(part)
            if pmid or (pmids and part.isdigit()):
                markers.append(Marker(raw=part, pmid=int(pmid.group(1) if pmid else part)))
                continue
            bounds = re.split(r"\s*[–-]\s*", part)
            if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
                lo, hi = int(bounds[0]), int(bounds[1])
                if 0 < hi - lo < 20:
                    markers.extend(Marker(raw=part, number=n) for n in range(lo, hi + 1))
                    continue
            markers.append(Marker(raw=part, number=int(bounds[0]) if bounds[0].isdigit() else None))
    # "(PMID: 123)", "(PMID: 123, 456)" or "PMID 123" outside brackets counts too
    stripped = _CITATION_GROUP.sub("", sentence)
    for group in _PMID_PARENS.finditer(stripped):
        for part in re.split(r"[,;]", group.group(1)):
            number = re.search(r"\d+", part)
            if number:
                markers.append(Marker(raw=part.strip(), pmid=int(number.group(0))))
    stripped = _PMID_PARENS.sub("", stripped)
    for mention in _PMID_MENTION.finditer(stripped):
        markers.append(Marker(raw=mention.group(0), pmid=int(mention.group(1))))
    stripped = _PMID_MENTION.sub("", stripped)
    stripped = re.sub(r"\(\s*[,;]?\s*\)", "", stripped)
    stripped = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(stripped.split()))
    return stripped.strip(), markers


def join_texts(parts: Iterable[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


INLINE = "\x00"  # wraps the number of an inline marker group in a sentence's template: "\x000\x00"
_ANY_MARKER = re.compile(
    "|".join(f"(?:{p.pattern})" for p in (_CITATION_GROUP, _PMID_PARENS, _PMID_MENTION)), re.I
)


@dataclass(slots=True)
class MarkedSentence:
    """A sentence with its citation markers read: ``template`` is the text without the markers written at
    its end and with each marker group written inside it replaced by ``INLINE + str(k) + INLINE``;
    ``trailing`` are the end markers; ``inline[k]`` the markers of the k-th group inside the sentence."""

    template: str
    trailing: list[Marker]
    inline: list[list[Marker]]

    @property
    def markers(self) -> list[Marker]:
        return [m for group in self.inline for m in group] + self.trailing

    def text(self, groups: list[str] | None = None) -> str:
        """The sentence with the inline groups written as ``groups[k]`` (default: left out)."""
        return fill_template(self.template, groups)


def fill_template(template: str, groups: list[str] | None = None) -> str:
    """A ``MarkedSentence.template`` with its k-th inline group written as ``groups[k]`` (none: left out)."""
    parts = re.split(f"{INLINE}(\\d+){INLINE}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif groups is not None and int(part) < len(groups) and groups[int(part)]:
            out.append(groups[int(part)])
    text = " ".join("".join(out).split())
    return re.sub(r"\s+([.,;:!?])", r"\1", text).strip()


def marked_sentence(sentence: str) -> MarkedSentence:
    """Markers at the end of a sentence ("... effect [1][2].") are its citations; a marker group inside it
    ("The trial by [1] found ...", "Metformin [2] and statins [3] ...") keeps its place in the template."""
    spans = [m.span() for m in _ANY_MARKER.finditer(sentence)]
    tail_start = len(sentence)
    for start, end in reversed(spans):
        between = sentence[end:tail_start]
        if re.fullmatch(r"[\s.,;:!?)\]]*", between):
            tail_start = start
        else:
            break
    template_parts: list[str] = []
    inline: list[list[Marker]] = []
    cursor = 0
    for start, end in spans:
        if start >= tail_start:
            break
        template_parts.append(sentence[cursor:start])
        _text, markers = citation_markers(sentence[start:end])
        template_parts.append(f" {INLINE}{len(inline)}{INLINE} ")
        inline.append(markers)
        cursor = end
    template_parts.append(sentence[cursor:tail_start])
    rest, trailing = citation_markers(sentence[tail_start:])
    stop = re.sub(r"[^.!?]", "", rest)[-1:]  # "[1], [2]." leaves ",." : only the full stop belongs
    template = " ".join(("".join(template_parts).rstrip(" ,;:") + stop).split())
    return MarkedSentence(
        template=re.sub(r"\s+([.,;:!?])", r"\1", template), trailing=trailing, inline=inline
    )
