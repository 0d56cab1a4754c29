"""Reading the retrieved studies against the question, before and after an answer is written.

For each retrieved article: which of the question's main concepts it is about (title, abstract, MeSH
headings, keywords, with the synonyms its abstract defines), whether it studies the *primary* concept, its
design (publication types, MeSH, or its own words when those are thin) and size, the age groups it describes
(and whether they clash with the question's), and, for a yes/no question, its stance.

For the answer: the notes a clinician must see ("No retrieved article studies dexamethasone; the closest
evidence concerns glucocorticoids [2]."; "Population: the question asks about older adults; [3] studies
children (mean age 10.4 years)."), the for/against counts, and a verdict from the stances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.answer import MISSING_CONCEPT
from rag.evidence import EvidenceLevel, sample_size, studies_pooled, study_design
from rag.focus import (
    Concept,
    Focus,
    _ages,
    age_groups_of_study,
    population_mismatch,
    read_question,
    stems,
)
from rag.generators import FINDING, METHOD, Evidence, Source
from rag.stance import UNCLEAR, StanceVote, study_stance, summarise, verdict_from_stances


def appraise(
    evidence: Evidence,
    embedder: Any = None,
    focus: Focus | None = None,
    known: Callable[[list[str]], set[str]] | None = None,
) -> Evidence:
    """Read every retrieved source against the question (see the module docstring), in place: the sources'
    concepts, design, size, population and stance, the evidence's focus and whether the primary concept is
    missing. ``known`` looks names up among the library's MeSH descriptors (``Store.known_mesh``).

    A strong primary concept (a drug, a gene, a MeSH-indexed procedure: ``Focus.strong_primary``) must be
    named by an article for it to be about the question. A weak one ("discrepancy", "pretreatment") need
    not be: an article naming at least half of the question's other main concepts is about it too, and no
    "no retrieved article studies ..." is claimed for such a word. Returns ``evidence``."""
    focus = focus or read_question(evidence.question)
    focus.learn_synonyms(
        (f"{s.title} {s.text}" for s in evidence.sources),
        [h for s in evidence.sources for h in (*s.mesh, *s.keywords)],
    )
    primary = focus.primary
    strong = focus.strong_primary(known)
    others = [c for c in focus.main if c is not primary]
    sims = evidence.vectors @ evidence.question_vector if len(evidence.sentences) else np.zeros(0)
    by_source: dict[int, list[int]] = {}
    for i, sentence in enumerate(evidence.sentences):
        by_source.setdefault(sentence.pmid, []).append(i)
    for source in evidence.sources:
        abstract = source.text
        mentioned = focus.mentioned(f"{source.title} {abstract}", (*source.mesh, *source.keywords))
        source.mentions = [c.text for c in mentioned]
        source.on_primary = primary is not None and any(c is primary for c in mentioned)
        if primary is not None and not strong and not source.on_primary and others:
            named = sum(any(c is m for m in mentioned) for c in others)
            source.on_primary = named >= max(1, -(-len(others) // 2))
        source.in_context = not others or any(c is m for c in others for m in mentioned)
        source.design = study_design(source.publication_types, source.mesh, source.title, abstract)
        source.sample_size = sample_size(abstract)
        if source.design.level == EvidenceLevel.SYSTEMATIC_REVIEW:
            source.studies = studies_pooled(abstract)
        source.age_groups = age_groups_of_study(f"{source.title} {abstract}", source.mesh)
        if population_mismatch(focus.age_groups, source.age_groups):
            source.population_clash = _population_phrase(f"{source.title} {abstract}", source.age_groups)
        if focus.yes_no:
            source.stance, source.stance_confidence = _stance(
                evidence, source, by_source.get(source.pmid, []), sims, focus, strong
            )
    evidence.focus = focus
    evidence.missing_primary = (
        primary is not None and strong and not any(s.on_primary for s in evidence.sources)
    )
    if evidence.missing_primary and primary is not None:
        evidence.closest = _closest(evidence, primary.text, embedder)
    return evidence


def _stance(
    evidence: Evidence,
    source: Source,
    indices: list[int],
    sims: np.ndarray,
    focus: Focus,
    strong: bool = False,
) -> tuple[str, float]:
    """The stance of one source from its finding sentences: conclusions, else results, else its last
    three sentences; the title is never a finding. A finding speaks to the question only when it is about
    the question's subject: for a strong primary concept that the title does not name, only the findings
    that name it count ("the colchicine combination reduced mortality" says nothing about dexamethasone)."""
    usable = [
        i
        for i in indices
        if evidence.sentences[i].position > 0 and not evidence.sentences[i].instruction_like
    ]
    if not usable:
        return UNCLEAR, 0.0
    sentences = evidence.sentences
    conclusions = [i for i in usable if sentences[i].is_conclusion]
    results = [
        i
        for i in usable
        if "RESULT" in f"{evidence.sentences[i].label or ''} {evidence.sentences[i].category or ''}".upper()
    ]
    if not conclusions and not results:  # no section labels: the sentences that read as findings
        results = [
            i for i in usable if FINDING.search(sentences[i].text) and not METHOD.search(sentences[i].text)
        ]
    chosen = conclusions + results if conclusions or results else usable[-3:]
    primary = focus.primary
    if strong and primary is not None and not any(c is primary for c in focus.mentioned(source.title)):
        chosen = [i for i in chosen if any(c is primary for c in focus.mentioned(sentences[i].text))]
        if not chosen:
            return UNCLEAR, 0.0
    return study_stance(
        [evidence.sentences[i].text for i in chosen],
        [float(sims[i]) for i in chosen],
        conclusion=[evidence.sentences[i].is_conclusion for i in chosen],
        direction=focus.direction,
        safety=focus.safety,
    )


def _population_phrase(text: str, groups: frozenset[str]) -> str:
    """ "children (mean age 10.4 years)": the groups a study describes, with the age it states."""
    import re

    match = re.search(
        r"\b(?:mean|median|average)\s+(?:age\s+)?(?:\w+\s+){0,3}?\d{1,3}(?:\.\d+)?\s*(?:years?|months?)?|"
        r"\baged\s+\d{1,3}\s*(?:-|–|to)\s*\d{1,3}\s*(?:years?|months?)",
        text,
        re.I,
    )
    names = " and ".join(sorted(groups))
    if match and _ages(match.group(0)):
        return f"{names} ({match.group(0).strip()})"
    return names


def _closest(evidence: Evidence, missing: str, embedder: Any) -> tuple[int, str] | None:
    """Where the closest evidence to a concept no retrieved article studies comes from, and what it
    concerns: among the articles about another main concept of the question (else all), the one whose MeSH
    heading, keyword or title phrase is most similar to the missing concept (by the embedder; the best
    ranked first among equals)."""
    ranked = sorted(evidence.sources, key=lambda s: s.rank)
    pool = [s for s in ranked if s.mentions] or ranked
    missing_stems = stems(missing)
    candidates: list[tuple[int, str]] = []  # (position in pool, term)
    for position, source in enumerate(pool):
        terms: list[str] = []
        for heading in (*source.mesh, *source.keywords):
            if heading.strip().lower() in _CHECK_TAGS:
                continue
            parts = [p.strip() for p in heading.split(",") if p.strip()]
            terms.append(" ".join(reversed(parts)) if len(parts) == 2 else heading)
        if source.title:
            terms += [c.text for c in read_question(source.title).concepts]
        for term in dict.fromkeys(terms):
            if term and not (stems(term) & missing_stems):
                candidates.append((position, term))
    if not pool:
        return None
    if not candidates or embedder is None:
        return pool[0].pmid, (pool[0].title or "a related topic")
    vectors = np.asarray(embedder.embed_documents([missing, *(t for _p, t in candidates)]), dtype=np.float32)
    sims = vectors[1:] @ vectors[0]
    best = max(range(len(candidates)), key=lambda i: (round(float(sims[i]), 2), -candidates[i][0]))
    position, term = candidates[best]
    return pool[position].pmid, term if any(c.isupper() for c in term[1:]) else term.lower()


# MeSH check tags: on nearly every record, about nobody's topic
_CHECK_TAGS = frozenset(
    [
        *"humans animals male female adult aged child adolescent infant pregnancy".split(),  # noqa: SIM905
        *("middle aged", "young adult", "aged, 80 and over", "child, preschool", "infant, newborn"),
    ]
)


def answer_notes(evidence: Evidence, cited: dict[int, int]) -> list[str]:
    """The notes for an answer citing ``cited`` (pmid → citation number)."""
    notes: list[str] = []
    focus = evidence.focus
    if focus is None:
        return notes
    primary = focus.primary
    sources = evidence.by_pmid()
    if evidence.missing_primary and primary is not None:
        line = f"{MISSING_CONCEPT} {primary.text}"
        if evidence.closest is not None:
            pmid, term = evidence.closest
            marker = f" [{cited[pmid]}]" if pmid in cited else ""
            line += f"; the closest evidence concerns {term}{marker}"
        notes.append(line + ".")
    wanted = " and ".join(sorted(focus.age_groups))
    for pmid, number in sorted(cited.items(), key=lambda kv: kv[1]):
        source = sources.get(pmid)
        if source is not None and source.population_clash:
            notes.append(
                f"Population: the question asks about {wanted}; [{number}] studies {source.population_clash}."
            )
    if age_group_unstudied(evidence, cited):  # not a clash, but no answer about them either
        notes.append(
            f"Population: the question asks about {wanted}; none of the cited studies says it studied them."
        )
    unreported = outcomes_unreported(evidence, cited)
    if unreported:
        named = " and ".join(unreported)
        notes.append(f"Outcome: the question asks about {named}; none of the cited studies reports it.")
    return notes


def outcomes_unreported(evidence: Evidence, cited: Iterable[int]) -> list[str]:
    """The outcomes of a yes/no question (with an intervention) that none of the cited articles (PMIDs)
    mentions: "Does metformin reduce cancer incidence ...?" answered from studies of glycaemic control."""
    focus = evidence.focus
    pmids = list(cited)
    if focus is None or not focus.yes_no or not pmids or not focus.by_role("intervention"):
        return []
    sources = evidence.by_pmid()
    found: set[str] = set()
    for pmid in pmids:
        if pmid in sources:
            source = sources[pmid]
            found |= stems(" ".join([source.title, source.text, *source.mesh, *source.keywords]))
    return [c.text for c in focus.concepts if c.role == "outcome" and not reported(c, found)]


REPORTED_PREFIX = 8  # "cytokinetic" reports "cytokinesis": long words sharing their first eight letters


def reported(concept: Concept, found: set[str]) -> bool:
    """Whether a text with these folded words reports the concept, read loosely: a rule that takes a
    verdict away must be sure the concept is not there, so the head word is enough ("wounding" reports
    "wound healing"), and a long word reports another with the same first eight letters."""
    if concept.in_stems(found, loose=True):
        return True
    prefixes = {w[:REPORTED_PREFIX] for w in found if len(w) >= REPORTED_PREFIX}
    return any(k[:REPORTED_PREFIX] in prefixes for k in concept.anchors if len(k) >= REPORTED_PREFIX)


def age_group_unstudied(evidence: Evidence, cited: Iterable[int]) -> bool:
    """The question names an age group and none of the cited articles (PMIDs) says it studied it."""
    focus = evidence.focus
    pmids = list(cited)
    if focus is None or not focus.age_groups or not pmids:
        return False
    sources = evidence.by_pmid()
    return not any(sources[p].age_groups & focus.age_groups for p in pmids if p in sources)


@dataclass(slots=True)
class StanceTally:
    verdict: str
    summary: str
    counts: dict[str, int]


def tally(evidence: Evidence, cited: Sequence[int]) -> StanceTally | None:
    """For and against among the cited studies, and the verdict they add up to (yes/no questions only)."""
    if evidence.focus is None or not evidence.focus.yes_no:
        return None
    sources = evidence.by_pmid()
    votes, counted = [], []
    counts = {"supports": 0, "contradicts": 0, "unclear": 0}
    for pmid in cited:
        source = sources.get(pmid)
        if source is None or source.stance is None:
            continue
        counts[source.stance] += 1
        counted.append((source.stance, source.design.label if source.design is not None else "study"))
        level = source.design.level if source.design is not None else EvidenceLevel.OTHER
        votes.append(
            StanceVote(
                source.stance, source.stance_confidence, level, source.on_primary and source.in_context
            )
        )
    if not votes:
        return None
    verdict, _for, _against = verdict_from_stances(votes)
    if evidence.missing_primary:
        verdict = "uncertain"  # no study of the thing asked about: the others cannot settle it
    return StanceTally(verdict=verdict, summary=summarise(counted), counts=counts)
