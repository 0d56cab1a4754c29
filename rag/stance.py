"""For and against: what each cited study says about a yes/no question, and the verdict they add up to.

A study's stance is read from its findings (conclusions first, then results, then its last sentences),
weighted by how close each finding sentence is to the question:

- a *negative finding* ("no significant difference", "was not associated with", "did not reduce", "failed
  to") speaks against a question that asks whether something works or is associated;
- a *positive finding* ("significantly reduced", "was associated with", "is safe and feasible") speaks for
  it; when the question asks about a direction ("does X reduce Y?") a finding in the other direction ("X
  increased Y") speaks against it;
- hedges ("remains unclear", "further studies are needed", "controversial") make a finding unclear.

The verdict weighs the stances by design (a meta-analysis or an RCT counts more than a case report) and by
whether the study is about the question's main concept at all. "uncertain" is an honest answer: it is given
when the weights do not clearly point one way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.evidence import EvidenceLevel

SUPPORTS, CONTRADICTS, UNCLEAR = "supports", "contradicts", "unclear"

_NEGATIVE = re.compile(
    r"""\b(?:
        no\s+(?:statistically\s+)?(?:significant|significance|relevant|major|clear|meaningful|notable|
            appreciable|measurable|apparent|consistent|independent)?\s*(?:\w+\s+){0,2}?
            (?:difference|differences|effect|effects|association|associations|benefit|improvement|change|
            changes|correlation|relationship|reduction|increase|impact|influence|advantage|role|evidence|
            predictive\s+value|link)
      | not\s+(?:statistically\s+)?(?:significantly\s+)?(?:\w+\s+)?(?:associated|different|differ|
            effective|efficacious|superior|beneficial|improve[sd]?|reduce[sd]?|increase[sd]?|related|
            correlated|predictive|predict|affect(?:ed)?|influence[sd]?|change[sd]?|useful|reliable|
            accurate|safe|feasible|justified|recommended|necessary|sufficient|significant|alter(?:ed)?|
            lower|higher|shorten(?:ed)?|prolong(?:ed)?)
      | (?:did|does|do|could|was|were|is|are|has|have)\s+not\s+(?:\w+\s+){0,2}?(?:significantly\s+)?
            (?:differ|improve|reduce|increase|change|affect|influence|show|find|demonstrate|predict|
            correlate|prevent|alter|lower|shorten|prolong|support|confer|provide|lead|result|appear|seem)
      | failed\s+to | neither\b | nor\s+did | was\s+unchanged | were\s+unchanged | remained\s+unchanged
      | (?:were|was)\s+(?:similar|comparable)\b | similar\s+(?:between|in\s+both|among)
      | no\s+longer | not\s+supported | lack\s+of\s+(?:effect|efficacy|benefit|association)
      | does\s+not\s+(?:seem|appear)\s+to | unlikely\s+to | no\s+added\s+value | not\s+a\s+(?:reliable|
            useful|good|valid)\b | cannot\s+be\s+recommended | should\s+not\s+be
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_POSITIVE = re.compile(
    r"""\b(?:
        significantly\s+(?:\w+\s+)?(?:reduced|decreased|lowered|improved|increased|higher|lower|better|
            greater|associated|correlated|shortened|prolonged|enhanced|predicted|more|less|fewer)
      | (?:was|were|is|are)\s+(?:independently\s+|significantly\s+|strongly\s+|positively\s+|inversely\s+)?
            (?:associated|correlated|linked)\s+with
      | (?:is|was|are|were|appears?\s+to\s+be|seems?\s+to\s+be)\s+(?:a\s+)?(?:(?!not\b|no\b)\w+\s+)?
            (?:safe|effective|
            feasible|useful|beneficial|reliable|accurate|valid|superior|efficacious|valuable|predictive|
            independent\s+predictor|risk\s+factor|important|associated)
      | (?:reduced|decreased|lowered|improved|increased|shortened|prevented|enhanced)\s+(?:the\s+)?
            (?:\w+\s+){0,3}?
            (?:risk|rate|rates|incidence|mortality|morbidity|survival|outcome|outcomes|symptoms|levels?|time|
            duration|length)
      | can\s+be\s+(?:safely\s+)?(?:used|performed|recommended|considered|achieved)
      | (?:provides?|offers?|confers?)\s+(?:a\s+)?(?:significant\s+)?(?:benefit|protection|advantage)
      | should\s+be\s+(?:considered|offered|recommended|performed|used)
      | (?:is|are|was|were)\s+(?:an?\s+)?(?:\w+\s+)?(?:predictor|marker|indicator)s?\s+of
      | (?:p\s*[<≤]\s*0?\.0[0-5]\d*)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_HEDGE = re.compile(
    r"""\b(?:remains?\s+(?:unclear|unknown|controversial|uncertain|to\s+be\s+(?:determined|established|
        elucidated))|further\s+(?:studies|research|trials|investigation)\s+(?:are|is)\s+(?:needed|required|
        warranted)|controversial|conflicting|inconclusive|insufficient\s+(?:evidence|data)|limited\s+evidence|
        uncertain\b|not\s+(?:yet\s+)?(?:clear|known|established))""",
    re.IGNORECASE | re.VERBOSE,
)
_UP = re.compile(
    r"\b(?:increas\w*|higher|elevat\w*|rais\w*|more\s+frequent|greater|worse\w*|prolong\w*)\b", re.I
)
_DOWN = re.compile(
    r"\b(?:reduc\w*|decreas\w*|lower\w*|fewer|less|shorten\w*|prevent\w*|inhibit\w*|attenuat\w*|declin\w*)\b",
    re.I,
)


# What a safety question is answered by: harms (a safety finding of "no difference" in them is for safety)
_HARM = re.compile(
    r"\b(?:complications?|morbidity|mortality|deaths?|died|adverse|side[\s-]effects?|toxicit\w*|"
    r"bleeding|injur\w*|conversions?|readmissions?|reoperations?|infections?|harms?)\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class FindingScore:
    positive: float
    negative: float
    hedged: float


def finding_polarity(sentence: str, direction: int = 0, safety: bool = False) -> tuple[int, bool]:
    """(+1 for a positive finding, -1 a negative one, 0 neither; hedged). ``direction`` is the question's
    (+1: asks about an increase, -1: a reduction). For a safety question ("Is X safe in older adults?")
    harms decide: no difference in complications speaks for safety, more of them against it."""
    negative = bool(_NEGATIVE.search(sentence))
    positive = bool(_POSITIVE.search(sentence))
    hedged = bool(_HEDGE.search(sentence))
    if safety and _HARM.search(sentence):
        up, down = bool(_UP.search(sentence)), bool(_DOWN.search(sentence))
        if positive and up and not down:
            return -1, hedged  # "significantly higher morbidity"
        if negative or (positive and down and not up):
            return 1, hedged  # "no significant difference in complications": no worse; "fewer complications"
    polarity = 0
    if negative and not positive:
        polarity = -1
    elif positive and not negative:
        polarity = 1
        if direction:
            up, down = bool(_UP.search(sentence)), bool(_DOWN.search(sentence))
            if (direction > 0 and down and not up) or (direction < 0 and up and not down):
                polarity = -1  # "does X reduce Y?" answered by "X increased Y"
    elif positive and negative:
        polarity = 0  # "no difference in A, but significantly lower B": mixed
    return polarity, hedged


def study_stance(
    sentences: Sequence[str],
    similarities: Sequence[float],
    *,
    conclusion: Sequence[bool] = (),
    direction: int = 0,
    safety: bool = False,
) -> tuple[str, float]:
    """A study's stance from its finding sentences and their similarity to the question, and a confidence
    in [0, 1]. Conclusion sentences count double."""
    score = hedge = total = 0.0
    for i, (text, similarity) in enumerate(zip(sentences, similarities, strict=True)):
        weight = max(0.05, float(similarity)) * (2.0 if i < len(conclusion) and conclusion[i] else 1.0)
        polarity, hedged = finding_polarity(text, direction, safety)
        total += weight
        if hedged:
            hedge += weight
        score += polarity * weight * (0.5 if hedged else 1.0)
    if total == 0:
        return UNCLEAR, 0.0
    strength = score / total
    if hedge / total > 0.5 or abs(strength) < 0.15:
        return UNCLEAR, float(min(1.0, abs(strength)))
    return (SUPPORTS if strength > 0 else CONTRADICTS), float(min(1.0, abs(strength)))


# How much a study's design counts in the verdict.
DESIGN_WEIGHT = {
    EvidenceLevel.SYSTEMATIC_REVIEW: 3.0,
    EvidenceLevel.GUIDELINE: 3.0,
    EvidenceLevel.RCT: 2.5,
    EvidenceLevel.CLINICAL_TRIAL: 1.8,
    EvidenceLevel.COHORT_CASE_CONTROL: 1.5,
    EvidenceLevel.CASE_REPORT: 0.5,
    EvidenceLevel.REVIEW: 1.0,
    EvidenceLevel.OTHER: 1.0,
}


@dataclass(frozen=True, slots=True)
class StanceVote:
    stance: str
    confidence: float
    level: EvidenceLevel
    on_point: bool  # the study is about the question's main concept


def verdict_from_stances(votes: Sequence[StanceVote], margin: float = 1 / 3) -> tuple[str, float, float]:
    """("yes" | "no" | "uncertain", weight for, weight against). A side must carry more than ``margin``
    of the decided weight beyond the other (by default twice the other's weight), and at least one study
    about the main concept must take it."""
    weight_for = weight_against = 0.0
    on_point_sides: set[str] = set()
    for vote in votes:
        if vote.stance == UNCLEAR:
            continue
        weight = DESIGN_WEIGHT[vote.level] * (0.5 + vote.confidence) * (1.0 if vote.on_point else 0.3)
        if vote.stance == SUPPORTS:
            weight_for += weight
        else:
            weight_against += weight
        if vote.on_point:
            on_point_sides.add(vote.stance)
    decided = weight_for + weight_against
    if decided == 0:
        return "uncertain", 0.0, 0.0
    balance = (weight_for - weight_against) / decided
    if balance > margin and SUPPORTS in on_point_sides:
        return "yes", weight_for, weight_against
    if balance < -margin and CONTRADICTS in on_point_sides:
        return "no", weight_for, weight_against
    return "uncertain", weight_for, weight_against


def summarise(counted: Sequence[tuple[str, str]]) -> str:
    """ "2 RCTs for, 1 cohort against, 1 unclear" from (stance, design label) pairs."""
    parts = []
    for stance, word in ((SUPPORTS, "for"), (CONTRADICTS, "against"), (UNCLEAR, "unclear")):
        labels = [label for s, label in counted if s == stance]
        if not labels:
            continue
        if stance == UNCLEAR:
            parts.append(f"{len(labels)} unclear")
            continue
        by_label: dict[str, int] = {}
        for label in labels:
            by_label[label] = by_label.get(label, 0) + 1
        pieces = [f"{n} {_plural(label, n)}" for label, n in sorted(by_label.items(), key=lambda kv: -kv[1])]
        parts.append(" and ".join(pieces) + f" {word}")
    return ", ".join(parts)


def _plural(label: str, n: int) -> str:
    if n == 1:
        return label
    if label in ("RCT", "clinical trial", "cohort", "case report", "guideline", "review", "study"):
        return "studies" if label == "study" else label + "s"
    if label.endswith("analysis"):
        return label[: -len("analysis")] + "analyses"
    if label.endswith("review"):
        return label + "s"
    return label + " studies" if label in ("observational", "case-control", "cross-sectional") else label


def similarity_weights(vectors: np.ndarray, question: np.ndarray) -> list[float]:
    return [float(v) for v in (vectors @ question)] if len(vectors) else []
