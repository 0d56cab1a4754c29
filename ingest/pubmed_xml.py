"""Streaming parser for PubMed XML: baseline/update files (``.xml.gz``), efetch output, old MEDLINE sets.

Memory stays bounded whatever the file size: each record is parsed on its closing tag and then freed.
No DTD is loaded and no external entity is fetched or expanded (``load_dtd=False``, ``no_network=True``,
``resolve_entities=False``).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from foundation.errors import InputError
from ingest.article import (
    AbstractSection,
    Article,
    Author,
    CommentCorrection,
    Deletion,
    MeshHeading,
    Record,
    Rejected,
    pmid_from,
)
from ingest.inputs import open_input

PUBMED_ROOTS = _ROOTS = frozenset({"PubmedArticleSet", "MedlineCitationSet", "PubmedBookArticleSet"})
_RECORD_TAGS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation", "MedlineCitation")
_MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
_YEAR = re.compile(r"(1[5-9]\d\d|20\d\d|21\d\d)")
_LINEBREAK_RUN = re.compile(r"[ \t\r]*\n[ \t\r\n]*")
GZIP_MAGIC = b"\x1f\x8b"
try:
    from isal.isal_zlib import IsalError as _IsalError

    _DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, _IsalError)  # type: ignore[assignment]
except ImportError:  # pragma: no cover - isal is a dependency, but the standard gzip works too
    _DECOMPRESS_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _clean(text: str) -> str:
    """Undo pretty-printing (line breaks and their indentation) without touching any other character."""
    if "\n" in text:
        text = _LINEBREAK_RUN.sub(" ", text)
    return text.strip()


_XML_SPACE = " \t\r\n"


def _math_text(el: etree._Element) -> str:
    """MathML: the text of its tokens, whitespace-only layout nodes dropped.

    Only XML whitespace is layout: a token such as ``<mml:mtext>&#x2009;</mml:mtext>`` (a thin space, or a
    no-break space) is content and is kept, else "Xe129 MRI" would become "Xe129MRI".
    """
    parts = [str(t).strip(_XML_SPACE) for t in el.itertext() if t and str(t).strip(_XML_SPACE)]
    return "".join(parts)


def _collect(el: etree._Element, parts: list[str]) -> None:
    if el.text:
        parts.append(el.text)
    for child in el:
        tag = child.tag
        if isinstance(tag, str) and tag.startswith(_MATHML_NS):
            parts.append(_math_text(child))
        elif isinstance(tag, str):
            _collect(child, parts)
        if child.tail:
            parts.append(child.tail)


def text_of(el: etree._Element | None) -> str:
    """Plain text of an element: inline markup (<i>, <sup>, MathML...) flattened, every character kept."""
    if el is None:
        return ""
    if len(el) == 0:
        return _clean(el.text or "")
    parts: list[str] = []
    _collect(el, parts)
    return _clean("".join(parts))


def _opt(el: etree._Element | None) -> str | None:
    value = text_of(el)
    return value or None


def _first_texts(el: etree._Element, tags: frozenset[str]) -> dict[str, str]:
    """The text of the first child with each of ``tags``, as ``findtext`` gives it ("" for an empty one)."""
    first, _ = _children(el, tags, _NONE)
    return {tag: child.text or "" for tag, child in first.items()}


_DATE_PARTS = frozenset({"Year", "MedlineDate", "Season", "Month", "Day"})


def _year_from(date_el: etree._Element | None) -> tuple[int | None, str | None]:
    """Year and the raw date string from a PubDate: Year, MedlineDate ("1998 Dec-1999 Jan") or Season."""
    if date_el is None:
        return None, None
    texts = _first_texts(date_el, _DATE_PARTS)
    year_text = texts.get("Year")
    medline = texts.get("MedlineDate")
    parts = [p for p in (year_text, texts.get("Season"), texts.get("Month")) if p]
    if texts.get("Day"):
        parts.append(texts["Day"] or "")
    raw = medline.strip() if medline else " ".join(p.strip() for p in parts) or None
    for candidate in (year_text, medline):
        if candidate:
            match = _YEAR.search(candidate)
            if match:
                return int(match.group(1)), raw
    return None, raw


def _date_text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    texts = _first_texts(el, _DATE_PARTS)
    parts = [texts.get(tag) for tag in ("Year", "Month", "Day")]
    return "-".join(p.strip() for p in parts if p) or None


def _abstract(parent: etree._Element | None) -> list[AbstractSection]:
    if parent is None:
        return []
    return _abstract_sections(parent.find("Abstract"))


def _abstract_sections(abstract: etree._Element | None) -> list[AbstractSection]:
    if abstract is None:
        return []
    sections = []
    for node in abstract:
        if node.tag != "AbstractText":
            continue
        text = text_of(node)
        if text:
            sections.append(
                AbstractSection(text=text, label=node.get("Label") or None, category=node.get("NlmCategory"))
            )
    return sections


def _author(node: etree._Element) -> Author:
    """An Author from its element (a repeated name part: the last one counts, as it always has)."""
    last = fore = initials = collective = None
    affiliations: list[str] = []
    for part in node:
        tag = part.tag
        if tag == "LastName":
            last = text_of(part) or None
        elif tag == "ForeName":
            fore = text_of(part) or None
        elif tag == "Initials":
            initials = text_of(part) or None
        elif tag == "AffiliationInfo":
            for affiliation in part.iter("Affiliation"):
                value = text_of(affiliation)
                if value:
                    affiliations.append(value)
        elif tag == "CollectiveName":
            collective = text_of(part) or None
    return Author(
        last_name=last,
        fore_name=fore,
        initials=initials,
        collective_name=collective,
        affiliations=affiliations,
    )


def _authors(parent: etree._Element | None) -> list[Author]:
    if parent is None:
        return []
    return _authors_of(parent.iterchildren("AuthorList"))


def _authors_of(author_lists: Iterable[etree._Element]) -> list[Author]:
    authors: list[Author] = []
    for author_list in author_lists:
        if author_list.get("Type") == "editors":
            continue
        authors.extend(_author(node) for node in author_list if node.tag == "Author")
    return authors


def _mesh(heading_list: etree._Element | None) -> list[MeshHeading]:
    if heading_list is None:
        return []
    headings = []
    for node in heading_list:
        descriptor = None
        qualifiers: list[str] = []
        major = False
        for part in node:
            if part.tag == "DescriptorName":
                descriptor = part
                major = major or part.get("MajorTopicYN") == "Y"
            elif part.tag == "QualifierName":
                qualifiers.append(text_of(part))
                major = major or part.get("MajorTopicYN") == "Y"
        if descriptor is None:
            continue
        headings.append(
            MeshHeading(
                descriptor=text_of(descriptor), ui=descriptor.get("UI"), major=major, qualifiers=qualifiers
            )
        )
    return headings


def _comments_corrections(lists: Iterable[etree._Element]) -> list[CommentCorrection]:
    links = []
    for cc_list in lists:
        for node in cc_list:
            if node.tag != "CommentsCorrections":
                continue
            pmid_text = source = None
            for part in node:
                if part.tag == "PMID" and pmid_text is None:
                    pmid_text = (part.text or "").strip()
                elif part.tag == "RefSource" and source is None:
                    source = text_of(part) or None
            links.append(
                CommentCorrection(
                    ref_type=node.get("RefType") or "", pmid=pmid_from(pmid_text or ""), source=source
                )
            )
    return links


def _article_ids(container: etree._Element | None) -> tuple[str | None, str | None]:
    """DOI and PMCID from an ArticleIdList (only the record's own list, never a reference's)."""
    doi = pmcid = None
    if container is None:
        return None, None
    for id_list in container:
        if id_list.tag != "ArticleIdList":
            continue
        for node in id_list:
            if node.tag != "ArticleId":
                continue
            id_type = node.get("IdType")
            value = (node.text or "").strip()
            if id_type == "doi" and value and doi is None:
                doi = value
            elif id_type == "pmc" and value and pmcid is None:
                pmcid = value
    return doi, pmcid


def _pmid(node: etree._Element | None) -> tuple[int | None, int]:
    if node is None:
        return None, 1
    text = (node.text or "").strip()
    version_text = (node.get("Version") or "1").strip()
    digits = version_text.isascii() and version_text.isdigit() and len(version_text) <= 6
    return pmid_from(text), int(version_text) if digits else 1


_NONE: frozenset[str] = frozenset()
_CITATION_SINGLE = frozenset(
    {"PMID", "Article", "MeshHeadingList", "DateRevised", "DateCompleted", "DateCreated"}
)
_CITATION_REPEATED = frozenset({"KeywordList", "CommentsCorrectionsList", "OtherID"})
_ARTICLE_SINGLE = frozenset({"Journal", "ArticleTitle", "VernacularTitle", "Abstract", "ArticleDate"})
_ARTICLE_REPEATED = frozenset({"ELocationID", "AuthorList", "Language", "PublicationTypeList"})


def _children(
    el: etree._Element, single: frozenset[str], repeated: frozenset[str]
) -> tuple[dict[str, etree._Element], dict[str, list[etree._Element]]]:
    """One pass over ``el``'s children: the first of each ``single`` tag (as ``find`` would give) and every
    one of the ``repeated`` tags, in document order (as ``iterfind``).

    ElementPath calls cost ~1 us each and a citation needed ~30 of them: a third of the parse.
    """
    first: dict[str, etree._Element] = {}
    many: dict[str, list[etree._Element]] = {tag: [] for tag in repeated}
    for child in el:
        tag = child.tag
        if tag in single:
            if tag not in first:
                first[tag] = child
        elif tag in repeated:
            many[tag].append(child)
    return first, many


def parse_citation(citation: etree._Element, pubmed_data: etree._Element | None = None) -> Article | Rejected:
    """An Article from a MedlineCitation element (plus its PubmedData sibling when there is one)."""
    first, many = _children(citation, _CITATION_SINGLE, _CITATION_REPEATED)
    pmid, version = _pmid(first.get("PMID"))
    if pmid is None:
        return Rejected(reason="record without a valid MedlineCitation/PMID")
    article = first.get("Article")
    if article is None:
        return Rejected(reason="MedlineCitation without an Article element", pmid=pmid)
    parts, lists = _children(article, _ARTICLE_SINGLE, _ARTICLE_REPEATED)
    journal = parts.get("Journal")
    pub_date = journal_title = journal_iso = None
    if journal is not None:
        for child in journal:
            tag = child.tag
            if tag == "JournalIssue" and pub_date is None:
                pub_date = child.find("PubDate")
            elif tag == "Title" and journal_title is None:
                journal_title = child
            elif tag == "ISOAbbreviation" and journal_iso is None:
                journal_iso = child
    year, pub_date_text = _year_from(pub_date)
    if year is None:
        for fallback in (parts.get("ArticleDate"), first.get("DateCompleted"), first.get("DateCreated")):
            y, _ = _year_from(fallback)
            if y is not None:
                year = y
                break
    title = text_of(parts.get("ArticleTitle")) or text_of(parts.get("VernacularTitle"))
    doi = None
    for loc in lists["ELocationID"]:
        if loc.get("EIdType") == "doi" and (loc.text or "").strip():
            doi = (loc.text or "").strip()
            break
    id_doi, pmcid = _article_ids(pubmed_data)
    if pmcid is None:
        for other in many["OtherID"]:
            value = (other.text or "").strip()
            if value.startswith("PMC"):
                pmcid = value.split()[0]
                break
    keywords = [
        text
        for keyword_list in many["KeywordList"]
        for k in keyword_list
        if k.tag == "Keyword" and (text := text_of(k))
    ]
    publication_types = [
        t
        for type_list in lists["PublicationTypeList"]
        for x in type_list
        if x.tag == "PublicationType" and (t := text_of(x))
    ]
    return Article(
        pmid=pmid,
        version=version,
        title=title,
        abstract_sections=_abstract_sections(parts.get("Abstract")),
        journal=_opt(journal_title),
        journal_iso=_opt(journal_iso),
        year=year,
        pub_date=pub_date_text,
        authors=_authors_of(lists["AuthorList"]),
        languages=[t for t in (text_of(x) for x in lists["Language"]) if t],
        publication_types=publication_types,
        mesh=_mesh(first.get("MeshHeadingList")),
        keywords=keywords,
        doi=doi or id_doi,
        pmcid=pmcid,
        comments_corrections=_comments_corrections(many["CommentsCorrectionsList"]),
        date_revised=_date_text(first.get("DateRevised")),
    )


def parse_book(element: etree._Element) -> Article | Rejected:
    """An Article (kind="book") from a PubmedBookArticle: NCBI Bookshelf chapters such as GeneReviews."""
    document = element.find("BookDocument")
    if document is None:
        return Rejected(reason="PubmedBookArticle without a BookDocument")
    pmid, version = _pmid(document.find("PMID"))
    if pmid is None:
        return Rejected(reason="PubmedBookArticle without a valid PMID")
    book = document.find("Book")
    year, pub_date = _year_from(book.find("PubDate") if book is not None else None)
    book_title = text_of(book.find("BookTitle")) if book is not None else ""
    doi, pmcid = _article_ids(document)
    if doi is None:
        doi, _ = _article_ids(element.find("PubmedBookData"))
    return Article(
        pmid=pmid,
        version=version,
        title=text_of(document.find("ArticleTitle")) or book_title,
        abstract_sections=_abstract(document),
        journal=book_title or None,
        year=year,
        pub_date=pub_date,
        authors=_authors(document) or _authors(book),
        languages=[t for t in (text_of(x) for x in document.iterfind("Language")) if t],
        publication_types=[t for t in (text_of(x) for x in document.iterfind("PublicationType")) if t],
        keywords=[text_of(k) for k in document.iterfind("KeywordList/Keyword") if text_of(k)],
        doi=doi,
        pmcid=pmcid,
        kind="book",
        date_revised=_date_text(document.find("DateRevised")),
    )


def _deletion(element: etree._Element) -> Deletion:
    pmids = []
    for node in element.iterfind("PMID"):
        text = (node.text or "").strip()
        if (pmid := pmid_from(text)) is not None:
            pmids.append(pmid)
    return Deletion(pmids=pmids)


def _gunzip(stream: BinaryIO) -> BinaryIO:
    """A decompressing stream: ISA-L's igzip when installed (about 3x faster), else the standard gzip."""
    try:
        from isal import igzip
    except ImportError:
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]


def open_source(source: bytes | str | Path | BinaryIO) -> tuple[BinaryIO, str]:
    """A binary stream over the (possibly gzipped) XML, and a name for messages."""
    if isinstance(source, bytes):
        stream: BinaryIO = io.BytesIO(source)
        name = "<bytes>"
    elif isinstance(source, str | Path):
        path = Path(source)
        name = str(path)
        stream = open_input(path, "PubMed XML")
    else:
        stream = source
        name = getattr(source, "name", "<stream>")
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if not head and stream.seekable():
        head = stream.read(2)
        stream.seek(0)
    if head == GZIP_MAGIC:
        stream = _gunzip(stream)
    return stream, name


# Between two record ends a PubMed file holds one record: the largest known are a few MB (thousands of
# authors with affiliations, ~100,000 tags). More than this without a record closing is not PubMed XML, and
# would otherwise all be held in memory (an element costs ~130 bytes: 1 MB of "<a/>" holds 35 MB).
MAX_RECORD_BYTES = 64 << 20
MAX_RECORD_TAGS = 1_000_000


class _Unbounded(Exception):
    """The input grew past a record's limits (see ``_BoundedFeed``)."""


class _BoundedFeed:
    """The stream as the parser reads it, keeping the tree it builds bounded whatever the input.

    lxml reads a chunk only once every event of the previous one was handled, so here (between chunks)
    completed children of the root that are not records, which no event would ever free, are dropped
    (never the last: it may still be open), and a record that grows past the limits is refused.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.root: etree._Element | None = None
        self.bytes = 0
        self.tags = 0

    def record_closed(self) -> None:
        self.bytes = self.tags = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bytes += len(data)
        self.tags += data.count(b"<")
        if self.bytes > MAX_RECORD_BYTES or self.tags > MAX_RECORD_TAGS:
            raise _Unbounded(
                f"more than {MAX_RECORD_BYTES >> 20} MB or {MAX_RECORD_TAGS:,} tags without a record closing"
            )
        root = self.root
        if root is not None and len(root) > 1:
            del root[:-1]
        return data


def iter_records(source: bytes | str | Path | BinaryIO) -> Iterator[Record]:
    """Every record of a PubMed XML document, in file order, as Article, Deletion or Rejected.

    Raises InputError (one clear line) for a file that is not PubMed XML, is malformed or truncated:
    the records yielded before the error are complete and correct.
    """
    stream, name = open_source(source)
    feed = _BoundedFeed(stream)
    parser = etree.iterparse(
        feed,
        events=("start", "end"),
        tag=(*_RECORD_TAGS, *_ROOTS),
        load_dtd=False,
        no_network=True,
        resolve_entities=False,
        remove_comments=True,
        remove_pis=True,
        huge_tree=False,
    )
    count = 0
    try:
        for event, element in parser:
            parent = element.getparent()
            tag = element.tag
            if event == "start" or tag in _ROOTS:
                if event == "start" and parent is None:
                    feed.root = element
                continue
            feed.record_closed()
            if tag == "MedlineCitation":
                if parent is None or parent.tag not in _ROOTS:
                    continue  # part of a PubmedArticle: handled when that closes
                record: Record = parse_citation(element)
            elif tag == "PubmedArticle":
                citation = pubmed_data = None
                for child in element:
                    if child.tag == "MedlineCitation" and citation is None:
                        citation = child
                    elif child.tag == "PubmedData" and pubmed_data is None:
                        pubmed_data = child
                record = (
                    parse_citation(citation, pubmed_data)
                    if citation is not None
                    else Rejected(reason="PubmedArticle without a MedlineCitation")
                )
            elif tag == "PubmedBookArticle":
                record = parse_book(element)
            else:
                if parent is None or (parent.tag not in _ROOTS and parent.tag != "DeleteDocument"):
                    continue
                record = _deletion(element)
            if count == 0:
                _check_root(element, name)
            count += 1
            element.clear(keep_tail=True)
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
            yield record
    except etree.XMLSyntaxError as exc:
        raise InputError(
            f"{name}: not well-formed PubMed XML after {count} records ({_reason(exc)})"
        ) from None
    except _DECOMPRESS_ERRORS as exc:
        raise InputError(
            f"{name}: compressed file is truncated or corrupt after {count} records ({exc})"
        ) from None
    except _Unbounded as exc:
        raise InputError(f"{name}: not PubMed XML after {count} records ({exc})") from None
    finally:
        _close(source, stream)
    if count == 0:
        root = parser.root
        if root is None or root.tag not in _ROOTS:
            found = root.tag if root is not None else "nothing"
            raise InputError(f"{name}: not a PubMed XML file (root element is {found})")


def _check_root(element: etree._Element, name: str) -> None:
    root = element.getroottree().getroot()
    if root.tag not in _ROOTS:
        raise InputError(f"{name}: not a PubMed XML file (root element is {root.tag})")


def _reason(exc: etree.XMLSyntaxError) -> str:
    message = str(exc.msg if hasattr(exc, "msg") and exc.msg else exc)
    return message.splitlines()[0][:200]


def root_tag(source: bytes | str | Path | BinaryIO) -> str:
    """The name of the document's root element, read from its first bytes (InputError if not XML)."""
    stream, name = open_source(source)
    try:
        for _event, element in etree.iterparse(
            stream, events=("start",), load_dtd=False, no_network=True, resolve_entities=False
        ):
            return str(element.tag)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{name}: not XML ({_reason(exc)})") from None
    except _DECOMPRESS_ERRORS as exc:
        raise InputError(f"{name}: compressed file is corrupt ({exc})") from None
    finally:
        _close(source, stream)
    raise InputError(f"{name}: no XML element found")


def _close(source: object, stream: BinaryIO) -> None:
    """Close what open_source opened (a gzip wrapper does not close the file beneath: close both)."""
    if isinstance(source, str | Path):
        inner = getattr(stream, "fileobj", None)
        stream.close()
        if inner is not None:
            inner.close()
