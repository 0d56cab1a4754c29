"""Verification by code: what any generator wrote becomes what the user may read.

1. Every citation must name a retrieved article: ``[n]`` within 1..len(sources), or a retrieved PMID.
   Others (a hallucinated PMID, an out-of-range or malformed number) are removed and reported.
2. Each cited article must support the sentence (``support_score``): a sentence of its abstract (never one
   that looks like an instruction to a model) says the same, or two of its sentences together do (a
   sentence that sums up), while the sentence's own numbers appear in the article and a "no effect" claim
   is not drawn from a finding of an effect (or the reverse). With a trained support classifier
   (``support_model``) its P(supported) decides instead of the similarity threshold. A sentence about what
   the sources do not say ("the sources do not provide information about X") is no finding and keeps no
   citation. Citations that do not support the sentence are removed; a sentence left without any is
   marked unsupported.
3. The sentence must be about the question (when the evidence was appraised, ``rag.appraise``): it
   mentions one of the question's main concepts, and its primary concept unless every article it cites is
   about it. A sentence that is not is no answer sentence: it is set aside, whatever its citations.
4. An opening sentence without markers (a verdict or a summary: "Laparoscopic cholecystectomy is generally
   safe in older adults.") may rest on the evidence the rest of the answer cites: it is checked against the
   articles the other supported sentences cite, once the answer is complete.
5. Citations are renumbered in order of first use and carry the quote that supports them; a marker inside a
   sentence ("The trial by [2] found ...") keeps its place, renumbered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag.answer import AnswerSentence, Citation, RemovedCitation
from rag.evidence import study_design
from rag.focus import Focus, expand_abbreviations, stems
from rag.generators import Draft, DraftSentence, Evidence
from rag.sentences import Marker, fill_template, marked_sentence, split_sentences
from rag.stance import finding_polarity

_LEADING_MARKERS = re.compile(r"^((?:\s*(?:\[[^\]]{1,40}\]|\(\s*PMIDs?\b[^)]{0,40}\)))+)\s*", re.I)
_GLUED_MARKER = re.compile(r"([.!?])(?=\[[^\]]{1,40}\])")  # "effect.[1] Next": a boundary after the stop
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(%|percent)?")
REMOVED_INLINE = "[citation removed]"
# A sentence that opens by pointing back ("This drug ...", "These findings ...") is about what the one
# before it was about.
_ANAPHORA = re.compile(
    r"^\s*(?:this|these|that|those|it|its|they|their|such|both|the\s+(?:drug|treatment|therapy|intervention|"
    r"procedure|operation|agent|medication|vaccine|study|trial|review|analysis|findings?|results?|evidence|"
    r"authors?|same))\b",
    re.I,
)
# An uncited sentence that sums up the rest may rest on what the rest cites: the opening one, or one that
# says it sums up.
_SUMMARY_CUE = re.compile(
    r"^\s*(?:overall|in\s+summary|in\s+conclusion|to\s+summari[sz]e|taken\s+together|together|in\s+short|"
    r"thus|therefore|hence|in\s+sum|collectively|altogether|these\s+(?:studies|findings|results|data))\b",
    re.I,
)
# A sentence about what the evidence shown does not say ("The sources do not provide information about
# CYP expression", "No information on dosing is given in the abstracts") is no finding: it borrows the
# words of what it denies, so similarity would "support" it with the very abstract that reports it. Only
# wording that names the evidence as shown (sources, abstracts, the provided or retrieved texts) counts: a
# quoted abstract's "most trials did not report harms" is a finding of that review.
_EVIDENCE_SHOWN = (
    r"(?:sources?|abstracts?|excerpts?|passages?|snippets?|context|(?:provided|given|retrieved|available|"
    r"above|cited|listed)\s+(?:\w+\s+)?(?:articles?|studies|texts?|information|evidence|documents?|"
    r"literature|papers?|data|sources?|abstracts?))"
)
_ABSENCE_CLAIM = re.compile(
    rf"\b{_EVIDENCE_SHOWN}\b[^.;]{{0,40}}?\b(?:do(?:es)?|did|is|are|was|were|has|have)\s*(?:not|n't)\s+"
    r"(?:\w+\s+)?(?:provide|mention|report|contain|include|address|discuss|specify|describe|say|state|give|"
    r"offer|cover|present|detail|clarify|explain|answer|mentioned|"
    r"reported|provided|addressed|discussed|specified|described|stated|given|available|found|included)"
    rf"|\b(?:no|not\s+(?:enough|any|sufficient))\s+(?:specific\s+|direct\s+|relevant\s+|further\s+|"
    rf"clear\s+)?(?:information|data|details?|mention|evidence)\b[^.;]{{0,60}}?\b(?:in|from|by|within)\s+"
    rf"(?:the\s+|these\s+|those\s+)?{_EVIDENCE_SHOWN}\b"
    rf"|\b(?:not|never)\s+(?:mentioned|reported|provided|addressed|discussed|specified|described|stated|"
    rf"given|found|covered)\s+(?:in|by|within)\s+(?:the\s+|these\s+|those\s+|any\s+)?{_EVIDENCE_SHOWN}\b",
    re.I,
)
ABSENCE_NOTE = "says what the sources do not contain: no abstract can support that"


def absence_claim(text: str) -> bool:
    """The sentence is about what the evidence shown does not say, not a finding (``_ABSENCE_CLAIM``)."""
    return _ABSENCE_CLAIM.search(text) is not None


SUMMARY_NOTE = "sums up the evidence the answer cites"
ATTRIBUTED_NOTE = "cited by verification: the model gave no citation, this abstract supports it"


@dataclass(slots=True)
class Verified:
    sentences: list[AnswerSentence]  # the answer's sentences (about the question), in order
    citations: list[Citation]
    removed: list[RemovedCitation]
    off_point: list[AnswerSentence]  # sentences set aside as not about the question


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


# ----- support ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Support:
    """How well one article supports one answer sentence."""

    score: float  # the decisive similarity: best single sentence, or the best pair for a sum-up
    single: float  # best similarity to one of its sentences
    coverage: float  # share of the sentence's specific words found in the article
    quote: int  # index (in the article's usable sentences) of the best sentence
    numbers_ok: bool  # every number the sentence states appears in the article
    polarity_ok: bool  # the sentence does not turn the article's finding around
    model: float | None = None  # P(supported) from a trained support classifier, when one is configured


def support_score(
    vector: np.ndarray, sentence: str, vectors: np.ndarray, texts: list[str], article_text: str
) -> Support:
    """The support one article (its usable sentences ``texts`` with ``vectors``) gives ``sentence``."""
    sims = vectors @ vector
    best = int(np.argmax(sims))
    single = float(sims[best])
    pair = single
    if len(texts) > 1:
        top = np.argsort(-sims)[:3]
        for i in top:
            for j in top:
                if i < j:
                    mean = vectors[i] + vectors[j]
                    mean = mean / (np.linalg.norm(mean) or 1.0)
                    pair = max(pair, float(mean @ vector))
    words = _specific_stems(sentence)
    found = stems(article_text)
    coverage = sum(w in found for w in words) / len(words) if words else 1.0
    numbers_ok = all(n in _numbers(article_text) for n in _numbers(sentence))
    mine, _hedged = finding_polarity(sentence)
    # an effect read against no effect: the closest sentences of the abstract all say the opposite; one that
    # agrees or reports neither is enough
    turned = bool(mine) and all(finding_polarity(texts[i])[0] == -mine for i in closest(sims))
    polarity_ok = not turned and negation_agrees(sentence, texts, sims)
    return Support(
        score=max(single, pair if coverage >= 0.6 else single),
        single=single,
        coverage=coverage,
        quote=best,
        numbers_ok=numbers_ok,
        polarity_ok=polarity_ok,
    )


MODEL_SENTENCES = 3  # a support classifier reads the sentence against the article's closest three


def model_support(classifier: Any, sentence: str, texts: list[str], sims: np.ndarray) -> float:
    """P(supported) a trained support classifier (``rag.support_model.SupportClassifier``) gives the
    sentence against the best of the article's ``MODEL_SENTENCES`` sentences closest to it by cosine."""
    top = np.argsort(-sims)[:MODEL_SENTENCES]
    return float(np.max(classifier.score([(sentence, texts[int(i)]) for i in top])))


# A claim said not to hold, or a finding of no difference. Cues that deny what follows them ("not
# associated with", "no deaths", "failed to reduce") and cues that deny what precedes them ("mortality was
# similar"); the words denied (the cue's scope) are its next, or previous, three content words.
_DENY_NEXT = re.compile(
    r"\b(?:not|never|cannot|neither|nor|none\s+of|no|unable\s+to|lack(?:s|ed|ing)?\s+of|absence\s+of|"
    r"fail(?:s|ed|ure)?\s+to)\b|n't\b",
    re.I,
)
_DENY_PREVIOUS = re.compile(r"\b(?:unchanged|unaffected|similar|comparable|equivalent|unrelated)\b", re.I)
_SCOPE_SKIP = {
    "be",
    "been",
    "being",
    "is",
    "are",
    "was",
    "were",
    "a",
    "an",
    "the",
    "to",
    "of",
    "in",
    "with",
    "and",
    "or",
    "any",
    "all",
    "more",
    "less",
    "only",
    "that",
    "this",
    "these",
    "as",
    "by",
    "for",
}
NEGATION_MARGIN = 0.05  # abstract sentences this close to the best one may carry the sentence's denial


def denials(text: str) -> list[set[str]]:
    """The scopes (stems of the words denied) of each denial in ``text``; empty when it denies nothing."""
    from rag.focus import stem, words

    def content(tokens: list[str]) -> list[str]:  # "associated", "reduced" count: they are what is denied
        return [t for t in tokens if t.isalpha() and len(t) > 1 and t.lower() not in _SCOPE_SKIP]

    scopes = []
    for match in _DENY_NEXT.finditer(text):
        scopes.append({stem(w) for w in content(words(text[match.end() :]))[:3]})
    for match in _DENY_PREVIOUS.finditer(text):
        scopes.append({stem(w) for w in content(words(text[: match.start()]))[-3:]})
    return [scope for scope in scopes if scope]


def closest(sims: np.ndarray) -> list[int]:
    """The abstract sentences a check may read a cited sentence against: the top three by similarity, those
    within ``NEGATION_MARGIN`` of the best."""
    order = np.argsort(-sims)[:3]
    return [int(i) for i in order if float(sims[i]) >= float(sims[order[0]]) - NEGATION_MARGIN]


def negation_agrees(sentence: str, texts: list[str], sims: np.ndarray) -> bool:
    """The sentence does not deny what its closest abstract sentence affirms, nor affirm what it denies: a
    model that adds a "not" to a finding, or drops one, does not pass on the similarity of the words that
    remain. A denial counts when the other text has at least two of the three words it denies (all, when
    fewer) and no denial of its own; any of the article's top three sentences within ``NEGATION_MARGIN`` of
    the best may agree."""
    mine = denials(sentence)
    own = stems(sentence)
    for i in closest(sims):
        theirs = denials(texts[i])
        if (mine and theirs) or (not mine and not theirs):
            return True
        if mine and not any(_covered(scope, stems(texts[i])) for scope in mine):
            return True  # what the sentence denies is not what this abstract sentence says
        if theirs and not any(_covered(scope, own) for scope in theirs):
            return True  # the sentence leaves out what the abstract sentence denies ("... and no deaths")
    return False


def _covered(scope: set[str], other: set[str]) -> bool:
    return sum(w in other for w in scope) >= min(2, len(scope))


def _consistent(support: Support) -> bool:
    return support.numbers_ok and support.polarity_ok


def _specific_stems(text: str) -> set[str]:
    from rag.focus import is_generic, stem, words

    return {stem(w) for w in words(text) if not is_generic(w) and not w.isdigit()}


def _numbers(text: str) -> set[str]:
    """The numbers a text states, as written ("1,204" and "1204" alike; "0.5" and ".5" not merged)."""
    out = set()
    for match in _NUMBER.finditer(text):
        value = match.group(1).replace(",", "")
        if re.fullmatch(r"(?:19|20)\d\d", value) or len(value) == 1:
            continue  # years and single digits ("2 trials", "type 2") are no claim to check
        out.add(value)
    return out


# ----- the verifier -----------------------------------------------------------------------------------------


class Verifier:
    """Checks answer sentences against one question's evidence, a few at a time (streaming) or all at once;
    citation numbers, quotes and removals accumulate across calls. ``finish()`` settles the sentences that
    rest on the rest of the answer."""

    def __init__(
        self,
        evidence: Evidence,
        embedder: object,
        support_threshold: float,
        *,
        summary_threshold: float | None = None,
        support_model: Any = None,
    ) -> None:
        self.evidence = evidence
        self.support_model = support_model  # a trained classifier instead of the similarity threshold
        self.embedder = embedder
        self.threshold = support_threshold
        self.summary_threshold = support_threshold - 0.1 if summary_threshold is None else summary_threshold
        self.by_pmid = evidence.by_pmid()
        self.usable = evidence.usable
        self.owner = np.array([s.pmid for s in evidence.sentences], dtype=np.int64)
        self.numbers: dict[int, int] = {}
        self.quotes: dict[int, tuple[float, str]] = {}
        self.removed: list[RemovedCitation] = []
        self.sentences: list[AnswerSentence] = []
        self._pending: dict[int, tuple[DraftSentence, np.ndarray]] = {}  # uncited, to settle at the end
        self._article_text = {s.pmid: f"{s.title} {s.text}" for s in evidence.sources}

    @property
    def focus(self) -> Focus | None:
        return self.evidence.focus

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
        vectors = _embed(self.embedder, [self._expanded(d) for d in drafts])
        out = []
        for d, v in zip(drafts, vectors, strict=True):
            index = len(self.sentences)
            absence = self._absence(d)
            checked = self._one(index, d, v, absence)
            if not d.pmids and not d.cited and checked.on_point and not absence:
                self._pending[index] = (d, v)  # checked once the rest of the answer is known
                checked.note = "no citation (checked against the evidence at the end of the answer)"
            self.sentences.append(checked)
            out.append(checked)
        return out

    def _expanded(self, draft: DraftSentence) -> str:
        """What is embedded of an answer sentence: its text with the abbreviations of the articles it cites
        written out (of every retrieved article when it cites none), as their own sentences are embedded."""
        cited = [*draft.pmids, *(p for group in draft.inline for p in group)]
        return expand_abbreviations(draft.text, self.evidence.abbreviations(cited))

    def _supports(self, pmid: int, text: str, vector: np.ndarray) -> Support | None:
        mask = self.usable & (self.owner == pmid)
        if not mask.any():
            return None
        texts = [s.text for s, m in zip(self.evidence.sentences, mask, strict=True) if m]
        vectors = self.evidence.vectors[mask]
        support = support_score(vector, text, vectors, texts, self._article_text[pmid])
        if self.support_model is None:
            return support
        return replace(support, model=model_support(self.support_model, text, texts, vectors @ vector))

    def _on_point(self, text: str, pmids: list[int]) -> tuple[bool, str | None]:
        focus = self.focus
        if focus is None or not focus.main:
            return True, None
        if _ANAPHORA.match(text):
            previous = self.sentences[-1] if self.sentences else None
            return (True, None) if previous is None or previous.on_point else (False, previous.note)
        mentioned = focus.mentioned(text, loose=True)
        primary = focus.primary
        if not mentioned:
            names = ", ".join(c.text for c in focus.main[:4])
            return False, f"not about the question: it mentions none of {names}"
        if (
            primary is not None
            and not self.evidence.missing_primary
            and not any(c is primary for c in mentioned)
            and not (pmids and all(self.by_pmid[p].on_primary for p in pmids if p in self.by_pmid))
        ):
            return False, f"not about {primary.text}: neither it nor the articles it cites are"
        return True, None

    def _one(self, index: int, sentence: DraftSentence, vector: np.ndarray, absence: bool) -> AnswerSentence:
        on_point, why = self._on_point(sentence.text, [p for p in sentence.pmids if p in self.by_pmid])
        if absence and why is None:
            why = ABSENCE_NOTE
        kept: list[int] = []
        best_support: float | None = None
        quotes: dict[int, tuple[float, str]] = {}
        for pmid in dict.fromkeys(sentence.pmids):
            if pmid not in self.by_pmid:  # only a structured draft gets here: model text is parsed first
                self.removed.append(
                    RemovedCitation(f"PMID {pmid}", "not among the retrieved articles", index)
                )
                continue
            support = self._supports(pmid, sentence.text, vector)
            if support is None:
                self.removed.append(RemovedCitation(f"PMID {pmid}", "the article has no usable text", index))
                continue
            best_support = support.score if best_support is None else max(best_support, support.score)
            marker = f"[{self.by_pmid[pmid].number}] PMID {pmid}"
            if not on_point:
                continue  # set aside as a whole below: its citations are neither kept nor counted
            reason = self._refusal(support) or (ABSENCE_NOTE if absence else None)
            if reason is not None:
                self.removed.append(RemovedCitation(marker, reason, index))
                continue
            kept.append(pmid)
            quotes[pmid] = (support.score, self._quote(pmid, support))
        return self._settle(index, sentence, kept, quotes, best_support, on_point, why)

    def _absence(self, sentence: DraftSentence) -> bool:
        """A claim about what the sources do not say; not one quoted word for word from a cited abstract
        (there it is that article's own finding)."""
        if not absence_claim(sentence.text):
            return False
        quoted = sentence.text.strip().rstrip(".")
        return not any(quoted in self._article_text.get(p, "") for p in sentence.pmids)

    def _refusal(self, support: Support) -> str | None:
        if support.model is not None:
            threshold = self.support_model.threshold
            if support.model < threshold:
                return (
                    f"the support classifier finds no sentence of its abstract that supports it "
                    f"(p={support.model:.2f} < {threshold:.2f})"
                )
        elif support.score < self.threshold:
            return (
                f"its abstract does not support the sentence (similarity {support.score:.2f} < "
                f"{self.threshold:.2f})"
            )
        if not support.numbers_ok:
            return "the sentence states numbers its abstract does not"
        if not support.polarity_ok:
            return "the sentence turns the abstract's finding around (effect / no effect)"
        return None

    def _settle(
        self,
        index: int,
        sentence: DraftSentence,
        kept: list[int],
        quotes: dict[int, tuple[float, str]],
        best_support: float | None,
        on_point: bool,
        why: str | None,
    ) -> AnswerSentence:
        for pmid, (score, quote) in quotes.items():
            if pmid not in self.quotes or score > self.quotes[pmid][0]:
                self.quotes[pmid] = (score, quote)
        for pmid in kept:
            self.numbers.setdefault(pmid, len(self.numbers) + 1)
        text, inline_numbers, broken = sentence.text, [], False
        if sentence.inline:
            groups = []
            for group in sentence.inline:
                numbers = [self.numbers[p] for p in dict.fromkeys(group) if p in kept]
                inline_numbers += numbers
                broken = broken or not numbers
                groups.append("".join(f"[{n}]" for n in numbers) or REMOVED_INLINE)
            text = fill_template(sentence.template or sentence.text, groups)
        note = why
        if note is None and (not kept or broken):
            if broken and kept:
                note = "an article it names inline does not support it"
            else:
                note = "no citation" if not sentence.pmids else "no cited abstract supports it"
        return AnswerSentence(
            text=text,
            citations=[self.numbers[p] for p in kept],
            supported=bool(kept) and on_point and not broken,
            support=best_support,
            note=note,
            on_point=on_point,
            inline=inline_numbers,
        )

    def pending(self, sentence: AnswerSentence) -> bool:
        """The sentence has no citation and waits for ``finish()`` to be checked against the rest."""
        return any(self.sentences[i] is sentence for i in self._pending)

    def finish(self) -> list[AnswerSentence]:
        """Settle the sentences the model left uncited, once the answer is complete, and return them:

        - an opening or summing-up sentence may rest on the articles the rest of the answer cites (at
          ``summary_threshold``): it is cited to those that support it;
        - any other (or one those do not support) is cited to the one shown article that supports it at the
          full ``support_threshold`` — a citation found by verification, said so in its note;
        - otherwise it stays unsupported."""
        cited = list(self.numbers)
        shown = list((self.evidence.shown or {}).values()) or [s.pmid for s in self.evidence.on_point()]
        settled = []
        for index, (draft, vector) in sorted(self._pending.items()):
            kept: list[int] = []
            quotes: dict[int, tuple[float, str]] = {}
            best: float | None = None
            note = None
            if index == 0 or _SUMMARY_CUE.match(draft.text):
                for pmid in cited:
                    support = self._supports(pmid, draft.text, vector)
                    if support is None:
                        continue
                    best = support.score if best is None else max(best, support.score)
                    if max(support.score, support.single) >= self.summary_threshold and _consistent(support):
                        kept.append(pmid)
                note = SUMMARY_NOTE if kept else None
            if not kept:
                found = []
                for pmid in shown:
                    support = self._supports(pmid, draft.text, vector)
                    if support is not None:
                        best = support.score if best is None else max(best, support.score)
                        if self._refusal(support) is None:
                            found.append((support.score, pmid, support))
                if found:
                    score, pmid, support = max(found, key=lambda f: f[0])
                    kept = [pmid]
                    quotes[pmid] = (score, self._quote(pmid, support))
                    note = ATTRIBUTED_NOTE
            if kept:
                sentence = self._settle(index, draft, kept, quotes, best, True, None)
                sentence.note = note
            else:
                sentence = self.sentences[index]
                sentence.note = (
                    "no citation, and no retrieved abstract supports it" if best else "no citation"
                )
            self.sentences[index] = sentence
            settled.append(sentence)
        self._pending.clear()
        return settled

    def _quote(self, pmid: int, support: Support) -> str:
        mask = self.usable & (self.owner == pmid)
        return [s for s, m in zip(self.evidence.sentences, mask, strict=True) if m][support.quote].text

    def citation(self, pmid: int) -> Citation:
        source = self.by_pmid[pmid]
        design = source.design or study_design(
            source.publication_types, source.mesh, source.title, source.text
        )
        level = design.level
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
            quote=self.quotes[pmid][1] if pmid in self.quotes else "",
            doi=source.doi,
            design=design.label,
            sample_size=source.sample_size,
            size=source.size_text,
            stance=source.stance,
        )

    def cited(self, sentence: AnswerSentence) -> list[Citation]:
        """The citations of one verified sentence, in its order."""
        by_number = {number: pmid for pmid, number in self.numbers.items()}
        return [self.citation(by_number[n]) for n in sentence.citations]

    def result(self) -> Verified:
        self.finish()
        used = {n for s in self.sentences if s.on_point for n in s.citations}
        citations = [self.citation(pmid) for pmid, number in self.numbers.items() if number in used]
        return Verified(
            sentences=[s for s in self.sentences if s.on_point],
            citations=citations,
            removed=list(self.removed),
            off_point=[s for s in self.sentences if not s.on_point],
        )


def verify(draft: Draft, evidence: Evidence, embedder: object, support_threshold: float) -> Verified:
    """Every sentence of a draft checked at once."""
    verifier = Verifier(evidence, embedder, support_threshold)
    verifier.check_draft(draft)
    return verifier.result()


def _parse(
    text: str, evidence: Evidence, removed: list[RemovedCitation], first: int = 0
) -> list[DraftSentence]:
    """Model text into sentences with the PMIDs their markers resolve to; bad markers are reported."""
    by_number = evidence.shown or {s.number: s.pmid for s in evidence.sources}
    retrieved = {s.pmid for s in evidence.sources}

    def resolve(markers: list[Marker], index: int) -> list[int]:
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
        return pmids

    drafts = []
    for index, raw in enumerate(split_answer(text), start=first):
        marked = marked_sentence(raw)
        inline = [resolve(group, index) for group in marked.inline]
        trailing = resolve(marked.trailing, index)
        pmids = [p for group in inline for p in group] + trailing
        drafts.append(
            DraftSentence(
                text=marked.text(),
                pmids=pmids,
                inline=inline,
                template=marked.template,
                cited=bool(marked.markers),
            )
        )
    return drafts


def _embed(embedder: object, texts: list[str]) -> np.ndarray:
    """One forward pass per answer sentence. The int8 ONNX embedder quantises a batch with one scale, so a
    sentence embedded beside others gets a slightly different vector (cosine ~0.99 to its own): its check
    would depend on the sentences around it, and on whether the answer was streamed."""
    return np.vstack([embedder.embed_documents([text]) for text in texts])  # type: ignore[attr-defined]
