"""What search takes and returns: ``Filters`` and ``Hit`` (plain data at the boundary)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import InputError


@dataclass(slots=True)
class Filters:
    """Restrictions that hold in every search mode. Empty lists mean "no restriction"."""

    year_min: int | None = None
    year_max: int | None = None
    publication_types: list[str] = field(default_factory=list)  # any of, e.g. "Randomized Controlled Trial"
    mesh: list[str] = field(default_factory=list)  # any of these MeSH descriptors
    languages: list[str] = field(default_factory=list)  # e.g. ["eng"]
    include_retracted: bool = False

    def __post_init__(self) -> None:
        for name in ("year_min", "year_max"):
            year = getattr(self, name)
            if year is not None and (
                isinstance(year, bool) or not isinstance(year, numbers.Integral) or abs(int(year)) > 9999
            ):
                raise InputError(f"{name} must be a year between -9999 and 9999 (got {str(year)[:40]!r})")
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise InputError(f"year range {self.year_min}:{self.year_max} is empty (start after end)")
        for name in ("publication_types", "mesh", "languages"):
            for value in getattr(self, name):
                if not isinstance(value, str) or _has_surrogate(value):
                    raise InputError(f"{name}: {str(value)[:40]!r} is not a name (text)")

    @property
    def active(self) -> bool:
        """True when anything beyond the default (retracted excluded) restricts the results."""
        return bool(
            self.year_min is not None
            or self.year_max is not None
            or self.publication_types
            or self.mesh
            or self.languages
        )

    @classmethod
    def parse_years(cls, text: str | None) -> tuple[int | None, int | None]:
        """ "2015:2024", "2015:", ":2024" or "2020" into (min, max)."""
        if not text:
            return None, None
        lo, sep, hi = text.partition(":")
        try:
            start = int(lo) if lo.strip() else None
            end = int(hi) if hi.strip() else None
        except ValueError:
            raise InputError(f"year range {text!r}: expected YEAR, YEAR:YEAR, YEAR: or :YEAR") from None
        if not sep:
            end = start
        return start, end

    def to_dict(self) -> dict[str, Any]:
        return {
            "year_min": self.year_min,
            "year_max": self.year_max,
            "publication_types": list(self.publication_types),
            "mesh": list(self.mesh),
            "languages": list(self.languages),
            "include_retracted": self.include_retracted,
        }


def _has_surrogate(text: str) -> bool:
    """A lone surrogate (possible in a str decoded from JSON) cannot be stored, encoded nor searched."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(slots=True)
class Hit:
    """One retrieved article with where its rank came from (dense, lexical, fused)."""

    pmid: int
    score: float
    rank: int
    title: str = ""
    abstract: str = ""
    journal: str | None = None
    year: int | None = None
    publication_types: list[str] = field(default_factory=list)
    retracted: bool = False
    doi: str | None = None
    dense_rank: int | None = None
    dense_score: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None
    passage: str | None = None  # the passage that matched, when the index holds passages
    rerank_score: float | None = None  # P(relevant) from the trained reranker, when one reranked the hits

    @property
    def url(self) -> str:
        return f"https://pubmed.ncbi.nlm.nih.gov/{self.pmid}/"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pmid": self.pmid,
            "rank": self.rank,
            "score": self.score,
            "title": self.title,
            "year": self.year,
            "journal": self.journal,
            "publication_types": list(self.publication_types),
            "retracted": self.retracted,
            "doi": self.doi,
            "url": self.url,
            "dense_rank": self.dense_rank,
            "dense_score": self.dense_score,
            "lexical_rank": self.lexical_rank,
            "lexical_score": self.lexical_score,
            "rerank_score": self.rerank_score,
            "abstract": self.abstract,
        }
