"""Property-based fuzzing of the three readers users hand files to: PubMed XML, MEDLINE text and JSONL.

- Any text XML 1.0 can carry, escaped as a writer must, comes back from the PubMed XML parser character for
  character (line breaks with their indentation become one space and whitespace at either end goes: the
  parser's documented pretty-printing rule), through the canonical JSON record and the library too.
- Random byte mutations of real fixtures (flips, cuts, insertions of XML/MEDLINE/JSON tokens, repeats, gzip
  damage) give only what each reader documents: records (``Article``, ``Deletion``, ``Rejected``) that the
  library can store, or a one-line ``MedlitError``; never another exception.

``make test`` runs 150 examples per property; ``MEDLIT_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`` runs
more. The number of inputs each property fuzzed prints at the end of the run (and goes to the JSON file
``MEDLIT_FUZZ_REPORT`` names, when set).
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import MedlitError
from ingest.article import Article, Deletion, Rejected
from ingest.jsonl import read_jsonl, validate_jsonl
from ingest.medline import parse_medline
from ingest.pubmed_xml import iter_records
from ingest.run import ingest_files
from ingest.store import Store, prepare
from tests.conftest import SHARED_DATA

EXAMPLES = int(os.environ.get("MEDLIT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FIXTURES = SHARED_DATA / "fixtures"
XML_FIXTURE = (FIXTURES / "entrez" / "pubmed4.xml").read_bytes()  # 5 efetch records, structured abstracts
GZ_FIXTURE = (FIXTURES / "pubmed_xml" / "test_current_medline.xml.gz").read_bytes()
MEDLINE_FIXTURE = (FIXTURES / "medline" / "pubmed_result2.txt").read_bytes()
JSONL_FIXTURE = "".join(
    json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
    for r in iter_records(FIXTURES / "entrez" / "pubmed4.xml")
    if isinstance(r, Article)
).encode()

FUZZED: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_fuzzed(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    line = "inputs fuzzed: " + ", ".join(f"{name} {n}" for name, n in sorted(FUZZED.items()))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line} (total {sum(FUZZED.values())})")
    if os.environ.get("MEDLIT_FUZZ_REPORT"):
        Path(os.environ["MEDLIT_FUZZ_REPORT"]).write_text(json.dumps(dict(FUZZED), indent=2))


# ----- every character survives ----------------------------------------------------------------------------

XML_CHAR = st.one_of(
    st.sampled_from([*"<>&\"' \t\n\r]]>;#x", "\u00a0", "\u2009", "\u200b", "\ufeff", "\u0085"]),
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
)
XML_TEXT = st.text(XML_CHAR, max_size=300)
_LINE_BREAK = re.compile(r"[ \t\r]*\n[ \t\r\n]*")


def xml_escape(text: str) -> str:
    """What a correct writer puts in element content: &, <, > escaped, CR as a reference (else the
    parser's end-of-line handling turns it into LF)."""
    return escape(text).replace("\r", "&#13;")


def as_parsed(text: str) -> str:
    """The parser's documented rule: a line break and the indentation around it become one space (the
    pretty-printing of XML files), whitespace at either end goes; every other character stays."""
    return _LINE_BREAK.sub(" ", text).strip()


def pubmed_document(pmid: int, title: str, abstract: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet><PubmedArticle><MedlineCitation>'
        f"<PMID Version='1'>{pmid}</PMID><Article><ArticleTitle>{xml_escape(title)}</ArticleTitle>"
        f"<Abstract><AbstractText>{xml_escape(abstract)}</AbstractText></Abstract></Article>"
        "</MedlineCitation></PubmedArticle></PubmedArticleSet>"
    ).encode()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store(tmp_path_factory.mktemp("fuzz") / "library.db") as library:
        yield library


@FUZZ
@given(pmid=st.integers(1, 99_999_999), title=XML_TEXT, abstract=XML_TEXT)
def test_every_character_xml_can_carry_survives_parse_record_and_library(
    store: Store, pmid: int, title: str, abstract: str
) -> None:
    FUZZED["xml text round trip"] += 1
    [article] = list(iter_records(pubmed_document(pmid, title, abstract)))
    assert isinstance(article, Article)
    assert article.title == as_parsed(title)
    parsed_abstract = article.abstract_sections[0].text if article.abstract_sections else ""
    assert parsed_abstract == as_parsed(abstract)
    assert Article.from_json(article.to_json()) == article  # the canonical record
    run_id = store.start_run("fuzz", {})
    store.apply([article], run_id=run_id, origin="fuzz")
    assert store.get(pmid) == article  # the library


def test_the_text_strategy_reaches_the_hard_characters() -> None:
    for hard in ("<", "&", "]]>", "\r", "\U0001f600", "\ufffd"):
        assert xml_escape(hard) in pubmed_document(1, hard, "").decode()


# ----- mutations -------------------------------------------------------------------------------------------

XML_TOKENS = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x1F600;",
    b"&unknown;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?xml version='1.0'?>",
    b"<!DOCTYPE PubmedArticleSet [<!ENTITY e 'x'>]>",
    b"<PMID>",
    b"</PMID>",
    b"<PMID Version='99999999999999999999'>",
    b"99999999999999999999999",
    b"0",
    b"-1",
    b"\xc3\xa9",
    b"<PubmedArticle>",
    b"</PubmedArticle>",
    b"<MedlineCitation>",
    b"</MedlineCitation>",
    b"<Article>",
    b"</Article>",
    b"<DeleteCitation><PMID>1</PMID></DeleteCitation>",
    b"<AbstractText Label='x'>",
    b"<Year>",
    b"</Year>",
    b"<MedlineDate>1998 Dec-1999 Jan</MedlineDate>",
    b"<sup>",
    b"</sup>",
    b"<mml:math xmlns:mml='http://www.w3.org/1998/Math/MathML'>",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\x1f\x8b",
    b"</PubmedArticleSet>",
    b"<PubmedBookArticle>",
    b"<CommentsCorrections RefType='RetractionIn'>",
]
MEDLINE_TOKENS = [
    b"PMID- ",
    b"PMID- 0",
    b"PMID- 99999999999999999999",
    b"TI  - ",
    b"AB  - ",
    b"FAU - ",
    b"AU  - ",
    b"MH  - *",
    b"RIN - x PMID: 99999999999999999999",
    b"DP  - 99999",
    b"\n      ",
    b"\n\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"LID - 10.1/x [doi]",
    b"PT  - Retracted Publication",
    b"PMC - PMC",
    b"LA  - ",
]
JSON_TOKENS = [
    b'"pmid"',
    b": ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"null",
    b"true",
    b"1e400",
    b"NaN",
    b"-0",
    b'"\\ud800"',
    b'"\\u0000"',
    b"99999999999999999999999",
    b'"title"',
    b'"mesh"',
    b'"authors"',
    b'"year"',
    b"\n",
    b"\xff",
    b'"abstract_sections"',
    b'{"text": 1}',
    b'"version"',
    b'"retracted"',
    b'"comments_corrections"',
]


@st.composite
def mutated(draw: st.DrawFn, original: bytes, tokens: list[bytes]) -> bytes:
    """``original`` after 1-8 random edits: a flipped byte, a cut, a deletion, a repeated slice, or a
    token of the format inserted or overwriting."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            data.extend(draw(st.sampled_from(tokens)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "delete", "repeat", "insert", "overwrite", "bytes"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 4))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(tokens))
        elif kind == "overwrite":
            token = draw(st.sampled_from(tokens))
            data[at : at + len(token)] = token
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def storable(records: list[Any]) -> None:
    """Every record is one the library documents, and every Article can be stored (canonical JSON, hash)."""
    for record in records:
        assert isinstance(record, Article | Deletion | Rejected), type(record)
        if isinstance(record, Article):
            prepare(record)
            assert 0 < record.pmid < 2**55


def clean_error(exc: MedlitError) -> None:
    assert str(exc) and "\n" not in str(exc)


def parsed_or_clean_error(parse: Callable[[], Iterable[Any]]) -> list[Any]:
    """The records ``parse()`` yields before it stops, each storable; it stops (or refuses the input before
    the first record) only with one clean error."""
    parsed: list[Any] = []
    try:
        for record in parse():
            parsed.append(record)
    except MedlitError as exc:
        clean_error(exc)
    storable(parsed)
    return parsed


@FUZZ
@given(data=mutated(XML_FIXTURE, XML_TOKENS))
def test_mutated_pubmed_xml_gives_records_or_one_clean_error(data: bytes) -> None:
    FUZZED["xml mutations"] += 1
    parsed_or_clean_error(lambda: iter_records(data))


@FUZZ
@given(data=mutated(GZ_FIXTURE, [b"\x00", b"\xff", b"\x1f\x8b\x08\x00", b"\x00\x00\x00\x00"]))
def test_mutated_gzip_gives_records_or_one_clean_error(data: bytes) -> None:
    FUZZED["gzip mutations"] += 1
    parsed_or_clean_error(lambda: iter_records(data))


@FUZZ
@given(data=mutated(gzip.decompress(GZ_FIXTURE), XML_TOKENS))
def test_a_mutated_file_through_ingest_files_leaves_a_sound_library(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """The whole path a user takes: file checks, parse, batches, store (parser in this process)."""
    FUZZED["ingest files mutations"] += 1
    folder = tmp_path_factory.mktemp("ingest")
    path = folder / "mutated.xml"
    path.write_bytes(data)
    with Store(folder / "library.db") as store:
        try:
            report = ingest_files(store, [path], batch_size=2, progress=False, workers=False)
        except MedlitError as exc:
            clean_error(exc)
        else:
            assert report.status in ("done", "failed") and report.counts.consistent
        assert store.integrity_check() == "ok"
        for run in store.runs():
            assert run["seen"] == sum(
                run[k] for k in ("inserted", "updated", "unchanged", "deleted", "failed")
            )


@FUZZ
@given(data=mutated(MEDLINE_FIXTURE, MEDLINE_TOKENS))
def test_mutated_medline_gives_records_or_one_clean_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    FUZZED["medline mutations"] += 1
    path = tmp_path_factory.mktemp("medline") / "mutated.nbib"
    path.write_bytes(data)
    records = parsed_or_clean_error(lambda: parse_medline(path))
    assert not any(isinstance(r, Deletion) for r in records)


@FUZZ
@given(data=mutated(JSONL_FIXTURE, JSON_TOKENS))
def test_mutated_jsonl_gives_records_or_one_clean_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    FUZZED["jsonl mutations"] += 1
    path = tmp_path_factory.mktemp("jsonl") / "mutated.jsonl"
    path.write_bytes(data)
    problems = validate_jsonl(path)
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    records = list(read_jsonl(path, skip_invalid=True))
    storable(records)
    assert sum(isinstance(r, Rejected) for r in records) == len(problems)  # the same lines, both ways
    try:
        strict = list(read_jsonl(path))
    except MedlitError as exc:
        clean_error(exc)
        assert problems
    else:
        assert not problems and strict == records


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "pmid",
    "title",
    "abstract",
    "abstract_sections",
    "year",
    "journal",
    "mesh",
    "publication_types",
    "authors",
    "doi",
    "pmcid",
    "language",
    "languages",
    "retracted",
    "version",
    "keywords",
    "comments_corrections",
    "kind",
    "pub_date",
    "date_revised",
    "journal_iso",
]


@FUZZ
@given(
    lines=st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUE, max_size=8), min_size=1, max_size=5)
)
def test_any_json_object_is_an_article_or_a_rejected_line(
    tmp_path_factory: pytest.TempPathFactory, lines: list[dict[str, Any]]
) -> None:
    FUZZED["jsonl objects"] += 1
    path = tmp_path_factory.mktemp("objects") / "objects.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = list(read_jsonl(path, skip_invalid=True))
    assert len(records) == len(lines)
    storable(records)
