"""Citations out of the library: RIS, BibTeX, MEDLINE/nbib and CSV, for reference managers and spreadsheets.

``export(articles, fmt)`` returns the text of one format; ``load_articles`` and ``pmids_from_answer`` find the
articles to export (by PMID, or the citations of a saved answer). Every format keeps the title, authors,
journal, year, DOI and PMID character for character (RIS and nbib, being line-based, turn a line break into a
space; tests/test_export.py reads each format back), and marks a retracted article where a reader sees it:
RIS ``N1  - RETRACTED ARTICLE``, BibTeX ``note = {RETRACTED ARTICLE}``, nbib ``PT  - Retracted Publication``
(with the ``RIN`` retraction link), CSV ``retracted`` = ``true``.

BibTeX is written here rather than through bibtexparser: its writers copy values verbatim, so the escaping
of LaTeX's special characters (the part that matters) has to be done by the caller either way. Non-ASCII
characters are kept as UTF-8 (read as such by biber/biblatex, Zotero, JabRef and LaTeX since 2018).
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rispy

from foundation.errors import InputError
from ingest.article import RETRACTED_PUBLICATION_TYPE, Article, Author
from ingest.medline import COMMENT_TAGS

if TYPE_CHECKING:
    from ingest.store import Store

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "RETRACTED_NOTE",
    "bibtex_key",
    "export",
    "latex_escape",
    "load_articles",
    "pmids_from_answer",
]

FORMATS = ("ris", "bibtex", "nbib", "csv")
RETRACTED_NOTE = "RETRACTED ARTICLE"

# Line-based formats (RIS, nbib) cannot hold a line break inside a value: every character str.splitlines()
# breaks on becomes one space.
_LINE_BREAKS = re.compile(r"[ \t]*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+[ \t]*")


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()


def export(articles: Iterable[Article], fmt: str) -> str:
    """The articles as one text in ``fmt`` (one of ``FORMATS``), in the order given; a repeated PMID once."""
    writer = _WRITERS.get(fmt.lower())
    if writer is None:
        raise InputError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    unique: dict[int, Article] = {}
    for article in articles:
        unique.setdefault(article.pmid, article)
    return writer(list(unique.values()))


def load_articles(store: Store, pmids: Iterable[int]) -> list[Article]:
    """The library's articles for ``pmids``, in that order; ``InputError`` naming every PMID it lacks."""
    wanted = list(dict.fromkeys(int(pmid) for pmid in pmids))
    found = store.get_many(wanted)
    missing = [pmid for pmid in wanted if pmid not in found]
    if missing:
        shown = ", ".join(str(pmid) for pmid in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        noun = "PMID is" if len(missing) == 1 else "PMIDs are"
        raise InputError(f"{len(missing)} {noun} not in the library ({store.path}): {shown}{more}")
    return [found[pmid] for pmid in wanted]


def pmids_from_answer(path: str | Path) -> list[int]:
    """The cited PMIDs of an answer saved by ``medlit ask --json`` (``{"citations": [{"pmid": ...}]}``)."""
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    citations = data.get("citations") if isinstance(data, dict) else None
    if not isinstance(citations, list):
        raise InputError(f'{path}: no "citations" list: expected the output of `medlit ask --json`')
    pmids = []
    for number, citation in enumerate(citations, start=1):
        pmid = citation.get("pmid") if isinstance(citation, dict) else None
        if isinstance(pmid, str) and pmid.strip().isascii() and pmid.strip().isdigit():
            pmid = int(pmid)
        if isinstance(pmid, bool) or not isinstance(pmid, int) or pmid <= 0:
            raise InputError(f"{path}: citation {number} has no valid pmid ({pmid!r})")
        pmids.append(pmid)
    return pmids


# ----- RIS ----------------------------------------------------------------------------------------


class _RisWriter(rispy.RisWriter):
    """rispy's writer without the "1." counter line it puts before each record (not part of RIS)."""

    def set_header(self, count: int) -> str:
        return ""


_MONTHS = {
    name: f"{number:02d}"
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_PUB_DATE = re.compile(r"(\d{4})(?: ([A-Z][a-z]{2}))?(?: (\d{1,2}))?")


def _ris_date(pub_date: str | None) -> str | None:
    """PubMed's "2017 Nov 15" as RIS "2017/11/15/"; dates such as "1998 Dec-1999 Jan" are left to PY."""
    match = _PUB_DATE.fullmatch(pub_date or "")
    if not match or (match.group(2) and match.group(2) not in _MONTHS):
        return None
    year, month, day = match.groups()
    return f"{year}/{_MONTHS.get(month or '', '')}/{f'{int(day):02d}' if day else ''}/"


def _surname_first(author: Author) -> str:
    if author.collective_name:
        return author.collective_name
    return ", ".join(part for part in (author.last_name, author.fore_name or author.initials) if part)


def _ris_record(article: Article) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type_of_reference": "BOOK" if article.kind == "book" else "JOUR",
        "title": _one_line(article.title),
        "authors": [name for name in (_one_line(_surname_first(a)) for a in article.authors) if name],
        "secondary_title": _one_line(article.journal or ""),  # T2: the journal
        "alternate_title1": _one_line(article.journal_iso or ""),  # J2: its abbreviation
        "year": str(article.year) if article.year else "",
        "date": _ris_date(article.pub_date) or "",
        "abstract": _one_line(_abstract_one_paragraph(article)),
        "keywords": [
            _one_line(k) for k in dict.fromkeys([*article.keywords, *(m.descriptor for m in article.mesh)])
        ],
        "language": article.language or "",
        "doi": _one_line(article.doi or ""),
        "accession_number": str(article.pmid),  # AN: the PMID is the accession number in PubMed (DB)
        "custom2": _one_line(article.pmcid or ""),  # C2: the PMCID (EndNote's field for it)
        "name_of_database": "PubMed",
        "database_provider": "National Library of Medicine",
        "urls": [article.url],
        "notes": [RETRACTED_NOTE] if article.retracted else [],
    }
    return {key: value for key, value in record.items() if value}


def _ris(articles: list[Article]) -> str:
    if not articles:
        return ""
    return rispy.dumps([_ris_record(a) for a in articles], implementation=_RisWriter)


def _abstract_one_paragraph(article: Article) -> str:
    """The abstract as PubMed's own exports write it: sections joined by spaces, labels kept."""
    return " ".join(
        f"{s.label}: {s.text}" if s.label else s.text for s in article.abstract_sections if s.text
    )


# ----- BibTeX -------------------------------------------------------------------------------------

# The characters LaTeX treats specially, as text-mode commands that print them. Everything else (non-ASCII
# included) is written as it is.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_LATEX_TABLE = str.maketrans(_LATEX_SPECIALS)
# BibTeX splits an author list on "and" between spaces (any case) at brace depth 0, and a name on commas.
_NAME_SEPARATOR = re.compile(r"(^|\s)and(\s|$)|,", re.IGNORECASE)
_ASCII_FOLD = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L"}
    | {"đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i"}
)


def latex_escape(text: str) -> str:
    """Text as a BibTeX field value prints it: LaTeX specials escaped, braces therefore always balanced."""
    return _one_line(text).translate(_LATEX_TABLE)


def _ascii_letters(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(c for c in folded if c.isascii() and c.isalnum())


def bibtex_key(article: Article) -> str:
    """``Surname2017-27797938``: the first author's surname folded to ASCII, the year and the PMID.

    Stable (only the record decides it) and unique (the PMID is); "Anon" when there is no usable name.
    """
    name = ""
    if article.authors:
        first = article.authors[0]
        if first.last_name:
            name = _ascii_letters(first.last_name)
        elif first.collective_name:
            words = [_ascii_letters(w) for w in first.collective_name.split()]
            name = next((w for w in words if w and w.lower() != "the"), "")
    return f"{name or 'Anon'}{article.year or ''}-{article.pmid}"


def _bibtex_name_part(text: str) -> str:
    escaped = latex_escape(text)
    return f"{{{escaped}}}" if _NAME_SEPARATOR.search(text) else escaped


def _bibtex_author(author: Author) -> str:
    if author.collective_name:
        return f"{{{latex_escape(author.collective_name)}}}"  # one name, never split into first/last
    last = author.last_name or ""
    first = author.fore_name or author.initials or ""
    if last and first:
        return f"{_bibtex_name_part(last)}, {_bibtex_name_part(first)}"
    return f"{{{latex_escape(last or first)}}}" if last or first else ""


def _verbatim(value: str) -> str:
    """DOIs and URLs are verbatim in biblatex: no LaTeX escapes, only what would unbalance the braces."""
    return _one_line(value).replace("\\", "%5C").replace("{", "%7B").replace("}", "%7D")


def _bibtex_entry(article: Article) -> str:
    book = article.kind == "book"
    fields: list[tuple[str, str]] = [
        ("author", " and ".join(name for name in map(_bibtex_author, article.authors) if name)),
        # Double braces keep the title's capitals (gene names, acronyms) from the style's lower-casing.
        ("title", f"{{{latex_escape(article.title)}}}" if article.title else ""),
        ("journal", "" if book else latex_escape(article.journal or article.journal_iso or "")),
        ("year", str(article.year) if article.year else ""),
        ("doi", _verbatim(article.doi or "")),
        ("pmid", str(article.pmid)),
        ("pmcid", _verbatim(article.pmcid or "")),
        ("url", article.url),
        ("keywords", latex_escape(", ".join(article.keywords))),
        ("abstract", latex_escape(_abstract_one_paragraph(article))),
        ("note", RETRACTED_NOTE if article.retracted else ""),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@{'book' if book else 'article'}{{{bibtex_key(article)},\n{body}\n}}\n"


def _bibtex(articles: list[Article]) -> str:
    return "\n".join(_bibtex_entry(a) for a in articles)


# ----- MEDLINE / nbib -----------------------------------------------------------------------------

# PubMed's own MEDLINE files (efetch rettype=medline; fixtures/medline) wrap the text after the 6-character
# tag column at 81 characters.
_NBIB_TEXT_WIDTH = 81
_NBIB_INDENT = " " * 6
_COMMENT_TAG_OF = {ref_type: tag for tag, ref_type in COMMENT_TAGS.items()}
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _nbib_field(tag: str, value: str) -> list[str]:
    """``TAG - value`` wrapped as PubMed does: 81 characters of text a line, continuations indented by 6.

    Lines break only at a space after a non-space, so readers that join continuation lines with one space and
    strip line ends (Bio.Medline, medlit's own reader) get back every character. A longer word is not broken.
    """
    width = _NBIB_TEXT_WIDTH
    lines: list[str] = []
    current: str | None = None
    for word in _one_line(value).split(" "):
        if current is None:
            current = word
        elif len(current) + 1 + len(word) <= width or not current or current[-1].isspace():
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = word
    if not current:
        return []
    lines.append(current)
    return [f"{tag:<4}- {lines[0]}", *(_NBIB_INDENT + line for line in lines[1:])]


def _initials(author: Author) -> str:
    if author.initials:
        return author.initials
    words = (author.fore_name or "").replace("-", " ").split()
    return "".join(w[0] for w in words if w[0].isalpha())


def _nbib_record(article: Article) -> str:
    fields: list[tuple[str, str]] = [("PMID", str(article.pmid))]
    revised = _ISO_DATE.fullmatch(article.date_revised or "")
    if revised:
        fields.append(("LR", "".join(revised.groups())))
    fields.append(("DP", article.pub_date or (str(article.year) if article.year else "")))
    fields.append(("BTI" if article.kind == "book" else "TI", article.title))
    if article.doi:
        fields.append(("LID", f"{article.doi} [doi]"))
    fields.append(("AB", _abstract_one_paragraph(article)))
    for author in article.authors:
        if author.collective_name:
            fields.append(("CN", author.collective_name))
        elif author.last_name or author.fore_name:
            full = ", ".join(p for p in (author.last_name, author.fore_name) if p)
            fields.append(("FAU", full))
            fields.append(("AU", " ".join(p for p in (author.last_name, _initials(author)) if p)))
        fields.extend(("AD", affiliation) for affiliation in author.affiliations)
    fields.extend(("LA", language) for language in article.languages)
    types = list(article.publication_types)
    if article.retracted and RETRACTED_PUBLICATION_TYPE not in types:
        types.append(RETRACTED_PUBLICATION_TYPE)
    fields.extend(("PT", kind) for kind in types)
    fields.append(("TA", article.journal_iso or ""))
    fields.append(("JT", article.journal or ""))
    for link in article.comments_corrections:
        tag = _COMMENT_TAG_OF.get(link.ref_type)
        if tag:
            target = " ".join(p for p in (link.source, f"PMID: {link.pmid}" if link.pmid else None) if p)
            fields.append((tag, target))
    for heading in article.mesh:
        star = "*" if heading.major else ""
        fields.append(("MH", "/".join([f"{star}{heading.descriptor}", *heading.qualifiers])))
    if article.pmcid:
        fields.append(("PMC", article.pmcid))
    if article.keywords:
        fields.append(("OTO", "NOTNLM"))
        fields.extend(("OT", keyword) for keyword in article.keywords)
    lines = [line for tag, value in fields for line in _nbib_field(tag, value)]
    return "\n".join(lines) + "\n"


def _nbib(articles: list[Article]) -> str:
    return "\n".join(_nbib_record(a) for a in articles)


# ----- CSV ----------------------------------------------------------------------------------------

# Column name -> its cell. One place to add a column (the order here is the order in the file).
CSV_COLUMNS: dict[str, Callable[[Article], str]] = {
    "pmid": lambda a: str(a.pmid),
    "title": lambda a: a.title,
    "journal": lambda a: a.journal or a.journal_iso or "",
    "year": lambda a: str(a.year) if a.year else "",
    "authors": lambda a: "; ".join(author.display for author in a.authors),
    "doi": lambda a: a.doi or "",
    "pmcid": lambda a: a.pmcid or "",
    "publication_types": lambda a: "; ".join(a.publication_types),
    "retracted": lambda a: "true" if a.retracted else "false",
    "url": lambda a: a.url,
}


def _csv(articles: list[Article]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quoted as needed, CRLF line ends
    writer.writerow(CSV_COLUMNS)
    for article in articles:
        writer.writerow(cell(article) for cell in CSV_COLUMNS.values())
    return buffer.getvalue()


_WRITERS: dict[str, Callable[[list[Article]], str]] = {
    "ris": _ris,
    "bibtex": _bibtex,
    "nbib": _nbib,
    "csv": _csv,
}
