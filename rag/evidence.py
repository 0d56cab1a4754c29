"""How strong a study design is, from its PubMed publication types (and MeSH study-design terms).

The levels follow the usual evidence pyramid. PubMed tags trials and reviews as publication types; cohort and
case-control designs are indexed as MeSH descriptors instead, so both are read.
"""

from __future__ import annotations

from collections.abc import Iterable
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
