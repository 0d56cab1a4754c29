"""The ``Article``: one PubMed record, kept faithfully whatever source it came from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

# The largest PMID medlit accepts. PubMed's have 8 digits; the bound keeps a PMID and a passage number in
# one signed 64-bit id of the search index (``pmid << 8 | passage``), and every PMID in SQLite's INTEGER.
MAX_PMID = 2**55 - 1


def pmid_from(text: str | int | None) -> int | None:
    """A PMID from its text (ASCII digits) or number: 1 to MAX_PMID; None for anything else."""
    if isinstance(text, int):
        value = text
    else:
        text = (text or "").strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 17:
            return None
        value = int(text)
    return value if 0 < value <= MAX_PMID else None


# CommentsCorrections RefTypes that mean "this record itself is retracted".
RETRACTION_REF_TYPES = frozenset({"RetractionIn", "RetractedandRepublishedIn"})
RETRACTED_PUBLICATION_TYPE = "Retracted Publication"


@dataclass(slots=True)
class AbstractSection:
    """One AbstractText element: its label ("METHODS"), NLM category and plain text."""

    text: str
    label: str | None = None
    category: str | None = None


@dataclass(slots=True)
class Author:
    """A person (last name, fore name, initials) or a collective name (a group or consortium)."""

    last_name: str | None = None
    fore_name: str | None = None
    initials: str | None = None
    collective_name: str | None = None
    affiliations: list[str] = field(default_factory=list)

    @property
    def display(self) -> str:
        if self.collective_name:
            return self.collective_name
        return " ".join(p for p in (self.last_name, self.initials or self.fore_name) if p)


@dataclass(slots=True)
class MeshHeading:
    """A MeSH descriptor with its unique id, major-topic flag and qualifiers."""

    descriptor: str
    ui: str | None = None
    major: bool = False
    qualifiers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CommentCorrection:
    """A CommentsCorrections link: RetractionIn, ErratumIn, ExpressionOfConcernIn, UpdateIn, CommentIn..."""

    ref_type: str
    pmid: int | None = None
    source: str | None = None


@dataclass(slots=True)
class Article:
    """A PubMed citation. ``abstract`` is the plain text of every section, labels kept ("METHODS: ...")."""

    pmid: int
    title: str = ""
    abstract_sections: list[AbstractSection] = field(default_factory=list)
    version: int = 1
    journal: str | None = None
    journal_iso: str | None = None
    year: int | None = None
    pub_date: str | None = None
    authors: list[Author] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    publication_types: list[str] = field(default_factory=list)
    mesh: list[MeshHeading] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    doi: str | None = None
    pmcid: str | None = None
    comments_corrections: list[CommentCorrection] = field(default_factory=list)
    kind: str = "article"  # "article" or "book" (PubmedBookArticle)
    date_revised: str | None = None

    @property
    def abstract(self) -> str:
        parts = []
        for section in self.abstract_sections:
            if not section.text:
                continue
            parts.append(f"{section.label}: {section.text}" if section.label else section.text)
        return "\n".join(parts)

    @property
    def has_abstract(self) -> bool:
        return any(section.text for section in self.abstract_sections)

    @property
    def retracted(self) -> bool:
        return RETRACTED_PUBLICATION_TYPE in self.publication_types or any(
            link.ref_type in RETRACTION_REF_TYPES for link in self.comments_corrections
        )

    @property
    def language(self) -> str | None:
        return self.languages[0] if self.languages else None

    @property
    def url(self) -> str:
        return f"https://pubmed.ncbi.nlm.nih.gov/{self.pmid}/"

    def to_plain(self) -> dict[str, Any]:
        """The stored fields as plain JSON-ready data (hand-written: dataclasses.asdict is 10x slower)."""
        return {
            "pmid": self.pmid,
            "version": self.version,
            "kind": self.kind,
            "title": self.title,
            "abstract_sections": [
                {"text": s.text, "label": s.label, "category": s.category} for s in self.abstract_sections
            ],
            "journal": self.journal,
            "journal_iso": self.journal_iso,
            "year": self.year,
            "pub_date": self.pub_date,
            "authors": [
                {
                    "last_name": a.last_name,
                    "fore_name": a.fore_name,
                    "initials": a.initials,
                    "collective_name": a.collective_name,
                    "affiliations": list(a.affiliations),
                }
                for a in self.authors
            ],
            "languages": list(self.languages),
            "publication_types": list(self.publication_types),
            "mesh": [
                {"descriptor": m.descriptor, "ui": m.ui, "major": m.major, "qualifiers": list(m.qualifiers)}
                for m in self.mesh
            ],
            "keywords": list(self.keywords),
            "doi": self.doi,
            "pmcid": self.pmcid,
            "comments_corrections": [
                {"ref_type": c.ref_type, "pmid": c.pmid, "source": c.source}
                for c in self.comments_corrections
            ],
            "date_revised": self.date_revised,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every stored field plus the derived ones users want (abstract, retracted, has_abstract, url)."""
        data = self.to_plain()
        data["abstract"] = self.abstract
        data["has_abstract"] = self.has_abstract
        data["retracted"] = self.retracted
        data["url"] = self.url
        return data

    def to_json(self) -> str:
        """The canonical serialisation: fixed key order, so equal records hash equal."""
        return orjson.dumps(self.to_plain()).decode("utf-8")

    def content_hash(self, serialised: str | None = None) -> str:
        text = serialised if serialised is not None else self.to_json()
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        return cls(
            pmid=int(data["pmid"]),
            title=data.get("title") or "",
            abstract_sections=[AbstractSection(**s) for s in data.get("abstract_sections") or []],
            version=int(data.get("version") or 1),
            journal=data.get("journal"),
            journal_iso=data.get("journal_iso"),
            year=data.get("year"),
            pub_date=data.get("pub_date"),
            authors=[Author(**a) for a in data.get("authors") or []],
            languages=list(data.get("languages") or []),
            publication_types=list(data.get("publication_types") or []),
            mesh=[MeshHeading(**m) for m in data.get("mesh") or []],
            keywords=list(data.get("keywords") or []),
            doi=data.get("doi"),
            pmcid=data.get("pmcid"),
            comments_corrections=[CommentCorrection(**c) for c in data.get("comments_corrections") or []],
            kind=data.get("kind") or "article",
            date_revised=data.get("date_revised"),
        )

    @classmethod
    def from_json(cls, text: str) -> Article:
        return cls.from_dict(json.loads(text))


@dataclass(slots=True)
class Deletion:
    """A DeleteCitation entry from an update file: these PMIDs leave the library."""

    pmids: list[int]


@dataclass(slots=True)
class Rejected:
    """A record that could not be turned into an Article, with the reason (it ends in the failures table)."""

    reason: str
    pmid: int | None = None


Record = Article | Deletion | Rejected
"""What every parser yields: an article, a deletion of PMIDs, or a record refused with its reason."""
