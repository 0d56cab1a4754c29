"""How strong a study design is, from its PubMed publication types (and MeSH study-design terms).

The levels follow the usual evidence pyramid. PubMed tags trials and reviews as publication types; cohort and
case-control designs are indexed as MeSH descriptors instead, so both are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class EvidenceLevel(IntEnum):
    """Lower is stronger. ``label`` is what a citation shows."""

    SYSTEMATIC_REVIEW = 1
    GUIDELINE = 2
    RCT = 3
    CLINICAL_TRIAL = 4
    COHORT_CASE_CONTROL = 5
    CASE_REPORT = 6
    REVIEW = 7
    OTHER = 8

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    EvidenceLevel.SYSTEMATIC_REVIEW: "systematic review / meta-analysis",
    EvidenceLevel.GUIDELINE: "guideline",
    EvidenceLevel.RCT: "randomised controlled trial",
    EvidenceLevel.CLINICAL_TRIAL: "clinical trial (not randomised)",
    EvidenceLevel.COHORT_CASE_CONTROL: "cohort / case-control",
    EvidenceLevel.CASE_REPORT: "case report",
    EvidenceLevel.REVIEW: "narrative review",
    EvidenceLevel.OTHER: "other",
}

_PUBLICATION_TYPES = {
    "systematic review": EvidenceLevel.SYSTEMATIC_REVIEW,
    "meta-analysis": EvidenceLevel.SYSTEMATIC_REVIEW,
    "network meta-analysis": EvidenceLevel.SYSTEMATIC_REVIEW,
    "practice guideline": EvidenceLevel.GUIDELINE,
    "guideline": EvidenceLevel.GUIDELINE,
    "consensus development conference": EvidenceLevel.GUIDELINE,
    "consensus development conference, nih": EvidenceLevel.GUIDELINE,
    "randomized controlled trial": EvidenceLevel.RCT,
    "randomized controlled trial, veterinary": EvidenceLevel.RCT,
    "equivalence trial": EvidenceLevel.RCT,
    "clinical trial": EvidenceLevel.CLINICAL_TRIAL,
    "clinical trial, phase i": EvidenceLevel.CLINICAL_TRIAL,
    "clinical trial, phase ii": EvidenceLevel.CLINICAL_TRIAL,
    "clinical trial, phase iii": EvidenceLevel.CLINICAL_TRIAL,
    "clinical trial, phase iv": EvidenceLevel.CLINICAL_TRIAL,
    "controlled clinical trial": EvidenceLevel.CLINICAL_TRIAL,
    "pragmatic clinical trial": EvidenceLevel.CLINICAL_TRIAL,
    "adaptive clinical trial": EvidenceLevel.CLINICAL_TRIAL,
    "clinical trial, veterinary": EvidenceLevel.CLINICAL_TRIAL,
    "observational study": EvidenceLevel.COHORT_CASE_CONTROL,
    "observational study, veterinary": EvidenceLevel.COHORT_CASE_CONTROL,
    "multicenter study": EvidenceLevel.OTHER,
    "case reports": EvidenceLevel.CASE_REPORT,
    "review": EvidenceLevel.REVIEW,
    "scoping review": EvidenceLevel.REVIEW,
}

# MeSH descriptors that index an observational design (PubMed has no publication type for these).
_OBSERVATIONAL_MESH = frozenset(
    {
        "cohort studies",
        "prospective studies",
        "retrospective studies",
        "longitudinal studies",
        "follow-up studies",
        "case-control studies",
        "cross-sectional studies",
    }
)


def evidence_level(publication_types: Iterable[str], mesh: Iterable[str] = ()) -> EvidenceLevel:
    """The strongest design any of the article's publication types (or MeSH design terms) names."""
    best = EvidenceLevel.OTHER
    for name in publication_types:
        level = _PUBLICATION_TYPES.get(name.strip().lower())
        if level is not None and level < best:
            best = level
    if best > EvidenceLevel.COHORT_CASE_CONTROL and any(
        m.strip().lower() in _OBSERVATIONAL_MESH for m in mesh
    ):
        best = EvidenceLevel.COHORT_CASE_CONTROL
    return best


# ----- when the publication types are thin --------------------------------------------------------------
# In-process and JSONL records often carry only "Journal Article". What the title and abstract say about
# the study itself counts then: "a systematic review and meta-analysis of ...", "patients were randomly
# assigned ...". Mentions of *other* studies ("previous meta-analyses", "unlike randomised trials") must not
# count, so the cues describe this study's own method.

_TEXT_CUES: list[tuple[EvidenceLevel, str, re.Pattern[str]]] = [
    (
        EvidenceLevel.SYSTEMATIC_REVIEW,
        "meta-analysis",
        re.compile(
            r"\b(?:(?:a|this|our|we\s+(?:performed|conducted|undertook|did))\s+(?:an?\s+)?(?:updated\s+|"
            r"systematic\s+review\s+and\s+|network\s+|bayesian\s+|individual[- ]patient[- ]data\s+)?"
            r"meta-?analys[ie]s|meta-?analys[ie]s\s+(?:of|was|were)\s+(?:performed|conducted|done|"
            r"randomi[sz]ed|\d+|all|the|published|prospective|observational|studies|trials))\b",
            re.I,
        ),
    ),
    (
        EvidenceLevel.SYSTEMATIC_REVIEW,
        "systematic review",
        re.compile(
            r"\b(?:(?:a|this|our|we\s+(?:performed|conducted|undertook))\s+(?:updated\s+)?systematic\s+"
            r"(?:literature\s+)?review|systematic(?:ally)?\s+(?:searched|reviewed)|PRISMA|"
            r"(?:searched|search\s+of)\s+(?:the\s+)?(?:MEDLINE|PubMed|Embase|Cochrane|Web\s+of\s+Science))\b",
            re.I,
        ),
    ),
    (
        EvidenceLevel.RCT,
        "RCT",
        re.compile(
            r"\b(?:(?:were|was)\s+randomi[sz]ed|(?:were|was)\s+randomly\s+(?:assigned|allocated|divided)|"
            r"randomly\s+(?:assigned|allocated)|(?:a|this|our)\s+(?:\w+[- ]){0,4}randomi[sz]ed\s+"
            r"(?:\w+[- ]){0,3}(?:trial|study)|double-?blind(?:ed)?,?\s+(?:\w+[- ]){0,3}(?:trial|study)|"
            r"placebo-controlled\s+(?:\w+\s+){0,2}(?:trial|study)|randomi[sz]ed\s+controlled\s+trial)\b",
            re.I,
        ),
    ),
    (
        EvidenceLevel.CLINICAL_TRIAL,
        "clinical trial",
        re.compile(
            r"\b(?:phase\s+(?:i{1,3}|[123])\s+(?:\w+\s+){0,2}(?:trial|study)|single-arm\s+trial|"
            r"open-label\s+(?:\w+\s+){0,2}(?:trial|study)|non-?randomi[sz]ed\s+(?:\w+\s+){0,2}trial)\b",
            re.I,
        ),
    ),
    (
        EvidenceLevel.COHORT_CASE_CONTROL,
        "cohort",
        re.compile(
            r"\b(?:(?:prospective|retrospective|population-based|longitudinal|observational|"
            r"multicent(?:er|re)|nationwide|registry-based)\s+(?:\w+\s+){0,2}(?:cohort|study|analysis|"
            r"review\s+of)|cohort\s+study|case-control|case\s+control\s+study|cross-sectional)\b",
            re.I,
        ),
    ),
    (
        EvidenceLevel.CASE_REPORT,
        "case report",
        re.compile(
            r"\b(?:we\s+(?:report|describe|present)\s+(?:a|an|the|two|three)\s+(?:\w+\s+){0,3}"
            r"(?:case|patient|cases)|case\s+report|case\s+series)\b",
            re.I,
        ),
    ),
]
_DESIGN_LABELS = {
    EvidenceLevel.SYSTEMATIC_REVIEW: "systematic review",
    EvidenceLevel.GUIDELINE: "guideline",
    EvidenceLevel.RCT: "RCT",
    EvidenceLevel.CLINICAL_TRIAL: "clinical trial",
    EvidenceLevel.COHORT_CASE_CONTROL: "observational",
    EvidenceLevel.CASE_REPORT: "case report",
    EvidenceLevel.REVIEW: "review",
    EvidenceLevel.OTHER: "study",
}
_PUBLICATION_DESIGN = {
    "meta-analysis": "meta-analysis",
    "network meta-analysis": "meta-analysis",
    "systematic review": "systematic review",
    "randomized controlled trial": "RCT",
    "equivalence trial": "RCT",
    "observational study": "observational",
    "case reports": "case report",
}
_MESH_DESIGN = {
    "cohort studies": "cohort",
    "prospective studies": "cohort",
    "retrospective studies": "cohort",
    "longitudinal studies": "cohort",
    "follow-up studies": "cohort",
    "case-control studies": "case-control",
    "cross-sectional studies": "cross-sectional",
}


@dataclass(frozen=True, slots=True)
class Design:
    """A study's design as a citation shows it: its level, a short label ("RCT", "meta-analysis",
    "cohort"), and where the reading came from."""

    level: EvidenceLevel
    label: str
    basis: str  # "publication type", "MeSH", "title/abstract", or "none"


def study_design(
    publication_types: Iterable[str], mesh: Iterable[str] = (), title: str = "", abstract: str = ""
) -> Design:
    """The strongest design the publication types, MeSH design terms or (when those say less) the title
    and abstract's own description of the study name."""
    types = [t.strip().lower() for t in publication_types]
    headings = [m.strip().lower() for m in mesh]
    level = evidence_level(types, headings)
    label, basis = _DESIGN_LABELS[level], "publication type"
    for name in types:
        if name in _PUBLICATION_DESIGN and _PUBLICATION_TYPES.get(name) == level:
            label = _PUBLICATION_DESIGN[name]
            break
    if level == EvidenceLevel.COHORT_CASE_CONTROL and "observational study" not in types:
        for heading in headings:
            if heading in _MESH_DESIGN:
                label, basis = _MESH_DESIGN[heading], "MeSH"
                break
    if level == EvidenceLevel.OTHER:
        basis = "none"
    if level > EvidenceLevel.RCT:
        text = f"{title}. {abstract}"
        for cue_level, cue_label, pattern in _TEXT_CUES:
            match = pattern.search(text) if cue_level < level else None
            if match is not None:
                label = cue_label
                if cue_label == "cohort":
                    found = match.group(0).lower()
                    label = (
                        "case-control"
                        if "case" in found and "control" in found
                        else ("cross-sectional" if "cross-sectional" in found else "cohort")
                    )
                return Design(cue_level, label, "title/abstract")
    return Design(level, label, basis)


_COUNTED = (
    r"patients|participants|subjects|individuals|people|persons|women|men|children|adults|infants|"
    r"neonates|newborns|adolescents|cases|controls|volunteers|residents|students|veterans|mothers|pregnancies|"
    r"eyes|respondents|survivors|smokers|recipients|donors|users|workers|athletes|births|admissions|episodes|"
    r"consecutive\s+\w+|randomi[sz]ed\s+\w+"
)
_SAMPLE = re.compile(
    rf"\b(?:(?:a\s+)?total\s+of\s+|overall,?\s+|n\s*=\s*|including\s+|included\s+|enrolled\s+|recruited\s+|"
    rf"of\s+|among\s+|in\s+)?(\d{{1,3}}(?:,\d{{3}})+|\d+)\s+(?:\w+[- ]){{0,3}}?(?:{_COUNTED})\b",
    re.I,
)
_N_EQUALS = re.compile(r"\(\s*n\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)\s*\)|\bn\s*=\s*(\d{1,3}(?:,\d{3})+|\d+)", re.I)
_STUDIES = re.compile(
    r"\b(\d{1,3}(?:,\d{3})*|\d+)\s+(?:\w+[- ]){0,2}?(?:studies|trials|RCTs|articles)\b", re.I
)


def sample_size(text: str, design: Design | None = None) -> int | None:
    """The number of people a study's abstract says it included (for a meta-analysis: its participants when
    stated, else None), read from "a total of 1,204 patients", "n = 56", "312 consecutive patients"; the
    largest such count, ignoring numbers that are years or percentages."""
    best = 0
    for match in _SAMPLE.finditer(text):
        value = int(match.group(1).replace(",", ""))
        after = text[match.end(1) : match.end(1) + 2]
        if "%" in after or (1900 <= value <= 2100 and "," not in match.group(1)):
            continue
        best = max(best, value)
    if not best:
        for match in _N_EQUALS.finditer(text):
            best = max(best, int((match.group(1) or match.group(2)).replace(",", "")))
    return best or None


def studies_pooled(text: str) -> int | None:
    """For a review: how many studies it pooled ("24 randomised trials", "12 studies")."""
    counts = [int(m.group(1).replace(",", "")) for m in _STUDIES.finditer(text)]
    counts = [c for c in counts if 1 < c < 5000]
    return max(counts) if counts else None
