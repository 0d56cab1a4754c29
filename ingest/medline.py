"""MEDLINE/nbib text (``efetch rettype=medline``, PubMed's "Save citation" export) into Articles.

``parse_medline`` checks the file when called (raising ``InputError``) and then streams it record by
record: a record it cannot use becomes ``Rejected``, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from foundation.errors import InputError
from ingest.article import (
    MAX_PMID,
    AbstractSection,
    Article,
    Author,
    CommentCorrection,
    MeshHeading,
    Rejected,
    pmid_from,
)
from ingest.inputs import open_input

__all__ = ["COMMENT_TAGS", "parse_author", "parse_medline", "parse_mesh_heading"]

# MEDLINE tags of CommentsCorrections links and the PubMed XML RefType each stands for.
COMMENT_TAGS: dict[str, str] = {
    "CIN": "CommentIn",
    "CON": "CommentOn",
    "CRI": "CorrectedandRepublishedIn",
    "CRF": "CorrectedandRepublishedFrom",
    "ECI": "ExpressionOfConcernIn",
    "ECF": "ExpressionOfConcernFor",
    "EIN": "ErratumIn",
    "EFR": "ErratumFor",
    "RPI": "RepublishedIn",
    "RPF": "RepublishedFrom",
    "RRI": "RetractedandRepublishedIn",
    "RRF": "RetractedandRepublishedFrom",
    "RIN": "RetractionIn",
    "ROF": "RetractionOf",
    "UIN": "UpdateIn",
    "UOF": "UpdateOf",
    "SPIN": "SummaryForPatientsIn",
    "ORI": "OriginalReportIn",
}

_SNIFF_BYTES = 64 * 1024
# "PMID- 123", "TI  - text", "SPIN- text": a tag of 2-4 characters padded to 4, then "- ".
_TAG_LINE = re.compile(r"([A-Z][A-Z0-9]{1,3}) {0,2}-(?: (.*)|$)")
_WHITESPACE = re.compile(r"\s+")
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_TRAILING_PMID = re.compile(r"\s*PMID:\s*(\d+)\s*$")
_NAME_SUFFIXES = frozenset({"Jr", "Sr", "2nd", "3rd", "4th", "II", "III", "IV"})

Field = tuple[str, str]


def parse_medline(path: str | Path) -> Iterator[Article | Rejected]:
    """Stream the records of a MEDLINE text file as Articles (``Rejected`` for a record without a valid PMID).

    Raises ``InputError`` at once (before iterating) when the file is missing, unreadable, binary,
    compressed, empty, or not MEDLINE text (no ``PMID- `` line in its first 64 KiB).
    """
    path = Path(path)
    _sniff(path)
    return _parse_file(path)


def parse_mesh_heading(value: str) -> MeshHeading:
    """``"*Neoplasms/drug therapy"`` -> Neoplasms, major, ["drug therapy"]; ``"A/*b"`` is major too."""
    parts = [_clean(part) for part in value.split("/")]
    descriptor, qualifiers = parts[0], [q for q in parts[1:] if q.lstrip("*")]
    major = descriptor.startswith("*") or any(q.startswith("*") for q in qualifiers)
    return MeshHeading(
        descriptor=descriptor.lstrip("*").strip(),
        major=major,
        qualifiers=[q.lstrip("*").strip() for q in qualifiers],
    )


def parse_author(fau: str | None = None, au: str | None = None) -> Author:
    """An Author from a full name (FAU ``"Mangalam, Harry"``) and/or a short one (AU ``"Mangalam H"``)."""
    last_name = fore_name = initials = None
    if fau:
        last, _, rest = _clean(fau).partition(",")
        last_name = last.strip() or None
        # "Smith, John, Jr": the Article has no suffix field, the fore name is "John".
        fore_name = rest.split(",")[0].strip() or None
    if au:
        au = _clean(au)
        if last_name and au.startswith(last_name + " "):
            tokens = au[len(last_name) + 1 :].split()
            initials = tokens[0] if tokens and tokens[0].isalpha() else None
        else:
            tokens = au.split()
            if len(tokens) >= 3 and tokens[-1] in _NAME_SUFFIXES:
                tokens = tokens[:-1]
            if len(tokens) >= 2 and tokens[-1].isalpha() and tokens[-1].isupper():
                initials = tokens[-1]
                tokens = tokens[:-1]
            if last_name is None:
                last_name = " ".join(tokens) or None
    return Author(last_name=last_name, fore_name=fore_name, initials=initials)


def _sniff(path: Path) -> None:
    with open_input(path, "MEDLINE") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{path}: is gzip-compressed; decompress it first (gunzip)")
    if b"\x00" in head:
        raise InputError(f"{path}: is a binary file, not MEDLINE text")
    lines = head.decode("utf-8-sig", errors="replace").split("\n")
    first = next((line.strip() for line in lines if line.strip()), None)
    if first is None:
        raise InputError(f"{path}: is empty: no MEDLINE records")
    if not _TAG_LINE.match(first):
        raise InputError(
            f"{path}: is not MEDLINE text (it starts with {first[:40]!r}; expected lines like 'PMID- 12345')"
        )
    if not any(line.startswith("PMID-") for line in lines):
        raise InputError(f"{path}: no 'PMID- ' line in its first records: is it MEDLINE text?")


def _parse_file(path: Path) -> Iterator[Article | Rejected]:
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for number, fields in enumerate(_records(handle), start=1):
            yield _to_article(fields, number)


def _records(lines: Iterable[str]) -> Iterator[list[Field]]:
    """Group lines into records (blank-line separated) of (tag, value) pairs, continuations joined."""
    record: list[tuple[str, list[str]]] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            if record:
                yield _join(record)
                record = []
            continue
        match = _TAG_LINE.match(line)
        if match:
            tag = match.group(1)
            if tag == "PMID" and any(t == "PMID" for t, _ in record):  # records not separated by a blank line
                yield _join(record)
                record = []
            record.append((tag, [match.group(2) or ""]))
        elif record:  # a continuation line (normally indented by six spaces)
            record[-1][1].append(line)
    if record:
        yield _join(record)


def _join(record: list[tuple[str, list[str]]]) -> list[Field]:
    return [(tag, _clean(" ".join(parts))) for tag, parts in record]


def _clean(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _to_article(fields: list[Field], number: int) -> Article | Rejected:
    pmids = [value for tag, value in fields if tag == "PMID"]
    if not pmids:
        first = f"{fields[0][0]} - {fields[0][1][:40]}" if fields else ""
        return Rejected(reason=f"record {number}: no PMID (first field {first!r})")
    pmid = pmid_from(pmids[0])
    if pmid is None:
        return Rejected(
            reason=f"record {number}: PMID {pmids[0][:40]!r} is not a positive integer up to {MAX_PMID}"
        )

    first_value: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for tag, value in fields:
        first_value.setdefault(tag, value)
        values.setdefault(tag, []).append(value)

    pub_date = first_value.get("DP") or None
    year_match = _YEAR.search(pub_date) if pub_date else None
    abstract = first_value.get("AB")
    return Article(
        pmid=pmid,
        title=first_value.get("TI") or first_value.get("BTI") or "",
        abstract_sections=[AbstractSection(text=abstract)] if abstract else [],
        journal=first_value.get("JT") or None,
        journal_iso=first_value.get("TA") or None,
        year=int(year_match.group()) if year_match else None,
        pub_date=pub_date,
        authors=_authors(fields),
        languages=[v for v in values.get("LA", []) if v],
        publication_types=[v for v in values.get("PT", []) if v],
        mesh=[m for m in map(parse_mesh_heading, values.get("MH", [])) if m.descriptor],
        keywords=[v for v in values.get("OT", []) if v],
        doi=_doi(fields),
        pmcid=first_value.get("PMC") or None,
        comments_corrections=_comments(fields),
        kind="article",
        date_revised=_iso_date(first_value.get("LR")),
    )


def _authors(fields: list[Field]) -> list[Author]:
    """FAU/AU pairs and CN in file order; an AD belongs to the author before it (else to the first one)."""
    authors: list[Author] = []
    pending_fau: str | None = None  # the FAU of the last author while its AU has not been seen
    leading_affiliations: list[str] = []
    for tag, value in fields:
        if not value:
            continue
        if tag == "FAU":
            authors.append(parse_author(fau=value))
            pending_fau = value
        elif tag == "AU":
            if pending_fau is not None:
                authors[-1].initials = parse_author(fau=pending_fau, au=value).initials
            else:
                authors.append(parse_author(au=value))
            pending_fau = None
        elif tag == "CN":
            authors.append(Author(collective_name=value))
            pending_fau = None
        elif tag == "AD":
            (authors[-1].affiliations if authors else leading_affiliations).append(value)
    if authors and leading_affiliations:
        authors[0].affiliations[:0] = leading_affiliations
    return authors


def _doi(fields: list[Field]) -> str | None:
    for tag, value in fields:
        if tag in ("LID", "AID") and value.lower().endswith("[doi]"):
            doi = value[: -len("[doi]")].strip()
            if doi:
                return doi
    return None


def _comments(fields: list[Field]) -> list[CommentCorrection]:
    links = []
    for tag, value in fields:
        ref_type = COMMENT_TAGS.get(tag)
        if ref_type is None or not value:
            continue
        match = _TRAILING_PMID.search(value)
        source = value[: match.start()].strip() if match else value
        links.append(
            CommentCorrection(
                ref_type=ref_type, pmid=pmid_from(match.group(1)) if match else None, source=source or None
            )
        )
    return links


def _iso_date(value: str | None) -> str | None:
    """MEDLINE's ``20041117`` as ``2004-11-17``; anything else is kept as it is."""
    if not value:
        return None
    if len(value) == 8 and value.isascii() and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value
