"""Hostile and malformed input, through ``medlit`` as a user (or an attacker) hands it over.

Every case starts from a good library and checks, after the bad input, that nothing in it was lost or
changed (articles with their content hashes, tombstones), that the command exited non-zero with one line
``Error: ...`` and no traceback, and that nothing was fetched, expanded or held in memory that should not be:
external entities and DTDs (file:// and a 127.0.0.1 server that records every request), an entity bomb,
gzip bombs of 1 GB (peak memory and time of the whole command measured with ``getrusage`` in a
subprocess), empty files, HTML saved as .xml, files cut mid-record (the records before the cut are kept and
reported), out-of-range PMIDs, and malformed JSONL and MEDLINE.

The bombs' figures (peak RSS, seconds) print as JSON lines with ``pytest tests/test_hostile_input.py -s``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ingest.article import Article
from ingest.pubmed_xml import iter_records
from ingest.store import prepare
from medlit.cli import cli
from tests.conftest import SHARED_DATA
from tests.crash_harness import Library, environment, library_of, medlit
from tests.local_server import EntityServer

FIXTURES = SHARED_DATA / "fixtures"
CURRENT = FIXTURES / "pubmed_xml" / "test_current_medline.xml.gz"  # 4 citations
PUBMED4 = FIXTURES / "entrez" / "pubmed4.xml"
MEDLINE_2016 = FIXTURES / "pubmed_xml" / "medline16n0902.xml.gz"  # 604 citations
MEDLINE_TEXT = FIXTURES / "medline" / "pubmed_result2.txt"
GB = 1 << 30
MB = 1 << 20
MAX_RSS_MB = 512  # the command's peak memory on any bomb (it is ~170 MB on a normal small file)


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def one_error(result: Result | dict[str, Any], *words: str) -> str:
    """The single ``Error:`` line of a failed command (a CliRunner result or a measured subprocess)."""
    code = result["rc"] if isinstance(result, dict) else result.exit_code
    stderr = result["stderr"] if isinstance(result, dict) else result.stderr
    assert code == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert all(word in errors[0] for word in words), errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def good_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("good") / "home"
    assert run(home, "ingest", "files", str(CURRENT), str(PUBMED4), "-q").exit_code == 0
    return home


@pytest.fixture
def library(good_library: Path, tmp_path: Path) -> tuple[Path, Library]:
    """A copy of a good library (5 articles) and what it holds."""
    home = tmp_path / "home"
    shutil.copytree(good_library, home)
    before = library_of(home)
    assert len(before.articles) == 5
    return home, before


def citation(pmid: str, title: str = "A title.", version: str = "1") -> str:
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="{version}">{pmid}</PMID>'
        f"<Article><Journal><Title>J</Title><JournalIssue><PubDate><Year>2020</Year></PubDate></JournalIssue>"
        f"</Journal><ArticleTitle>{title}</ArticleTitle><Abstract><AbstractText>Text.</AbstractText>"
        f"</Abstract></Article></MedlineCitation></PubmedArticle>"
    )


def document(*records: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}\n<PubmedArticleSet>' + "".join(records) + "</PubmedArticleSet>\n"
    ).encode()


def library_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("library.db"))


# ----- entities, DTDs and the network -------------------------------------------------------------------


def test_external_entities_and_dtds_are_never_fetched_or_expanded(
    library: tuple[Path, Library], tmp_path: Path, entity_server: EntityServer
) -> None:
    home, before = library
    base, hits = entity_server.url.rstrip("/"), entity_server.hits
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9c")
    evil_dtd = tmp_path / "evil.dtd"
    evil_dtd.write_text(f'<!ENTITY leak SYSTEM "{secret.as_uri()}">')
    cases = {
        "file-entity": (f'<!DOCTYPE PubmedArticleSet [ <!ENTITY xxe SYSTEM "{secret.as_uri()}"> ]>', "&xxe;"),
        "http-entity": (f'<!DOCTYPE PubmedArticleSet [ <!ENTITY xxe SYSTEM "{base}/entity"> ]>', "&xxe;"),
        "http-dtd": (f'<!DOCTYPE PubmedArticleSet SYSTEM "{base}/pubmed.dtd">', "&remote;"),
        "public-dtd": (f'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD x//EN" "{base}/p.dtd">', "plain"),
        "file-parameter": (
            f'<!DOCTYPE PubmedArticleSet [ <!ENTITY % ext SYSTEM "{evil_dtd.as_uri()}"> %ext; ]>',
            "&leak;",
        ),
        "http-parameter": (
            f'<!DOCTYPE PubmedArticleSet [ <!ENTITY % p SYSTEM "{base}/p.dtd"> %p; ]>',
            "&remote;",
        ),
    }
    stored = 0
    for number, (name, (doctype, reference)) in enumerate(cases.items()):
        path = tmp_path / f"{name}.xml"
        path.write_bytes(
            document(citation(str(39_000_000 + number), f"Leak: {reference} end."), doctype=doctype)
        )
        result = run(home, "ingest", "files", str(path))
        if result.exit_code == 0:  # ignoring the entity is safe; refusing the document is safe too
            stored += 1
        else:
            one_error(result)
        assert "TOP-SECRET" not in result.output and "FETCHED" not in result.output
    assert hits == []  # not one request reached the server
    data = library_bytes(home)
    assert b"TOP-SECRET" not in data and b"FETCHED" not in data
    after = library_of(home)
    assert {p: after.articles[p] for p in before.articles} == before.articles
    assert stored >= 3  # the documents themselves are fine: only the entities are not expanded


def test_an_entity_bomb_is_not_expanded(library: tuple[Path, Library], tmp_path: Path) -> None:
    home, before = library
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    doctype = "<!DOCTYPE PubmedArticleSet [\n" + "\n".join(entities) + "\n]>"
    path = tmp_path / "laughs.xml"
    path.write_bytes(document(citation("39100000", "Laugh: &lol9;"), doctype=doctype))
    result = measured("ingest", "files", str(path), home=home)
    if result["rc"] != 0:
        one_error(result)
    assert result["max_rss_mb"] < MAX_RSS_MB
    assert b"lollollol" not in library_bytes(home)
    after = library_of(home)
    assert {p: after.articles[p] for p in before.articles} == before.articles


# ----- bombs ----------------------------------------------------------------------------------------------

MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=600)
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "seconds": round(time.monotonic() - started, 2),
                  "max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
"""


def measured(*args: str, home: Path) -> dict[str, Any]:
    """``medlit ARGS`` run in a fresh process: exit status, output, seconds, peak RSS (children too)."""
    home.mkdir(parents=True, exist_ok=True)
    wrapper = subprocess.run(
        [sys.executable, "-c", MEASURE, *medlit(*args)],
        env=environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(wrapper.stdout)


def gzip_bomb(path: Path, head: bytes, filler: bytes, size: int, tail: bytes = b"") -> Path:
    """``head``, then ``filler`` repeated to ``size`` bytes, then ``tail``, gzipped: concatenated gzip
    members (one member of 1 MB repeated), so a 1 GB bomb is ~1 MB on disk and made in milliseconds."""
    block = filler * (MB // len(filler))
    member = gzip.compress(block, compresslevel=9)
    with path.open("wb") as handle:
        handle.write(gzip.compress(head))
        for _ in range(size // len(block)):
            handle.write(member)
        handle.write(gzip.compress(tail))
    return path


RECORD = citation("39200000", "The record before the bomb.").encode()
BOMBS = {
    # name: (head, filler, tail, expected in the error, records kept)
    "zeros": (b"", b"\0", b"", "not XML", 0),
    "whitespace between records": (
        b"<PubmedArticleSet>" + RECORD,
        b" ",
        b"</PubmedArticleSet>",
        "Text node too long",
        1,
    ),
    "one huge title": (
        b"<PubmedArticleSet>" + RECORD + b"<PubmedArticle><MedlineCitation><PMID>39200001</PMID><Article>"
        b"<ArticleTitle>",
        b"A",
        b"</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>",
        "Text node too long",
        1,
    ),
    "elements between records": (b"<PubmedArticleSet>" + RECORD, b"<a/>", b"</PubmedArticleSet>", "tags", 1),
    "elements inside a record": (
        b"<PubmedArticleSet>" + RECORD + b"<PubmedArticle>",
        b"<a/>",
        b"</PubmedArticle></PubmedArticleSet>",
        "tags",
        1,
    ),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_gzip_bomb_is_refused_in_bounded_memory(
    name: str, library: tuple[Path, Library], tmp_path: Path
) -> None:
    home, before = library
    head, filler, tail, expected, kept = BOMBS[name]
    bomb = gzip_bomb(tmp_path / "bomb.xml.gz", head, filler, GB, tail)
    assert bomb.stat().st_size < 4 * MB
    result = measured("ingest", "files", str(bomb), "-q", home=home)
    error = one_error(result, expected)
    figures = {k: result[k] for k in ("rc", "seconds", "max_rss_mb")}
    print(
        json.dumps(
            {"bomb": name, "expands_to": GB, "gz_bytes": bomb.stat().st_size, **figures, "error": error}
        )
    )
    assert result["max_rss_mb"] < MAX_RSS_MB
    after = library_of(home)
    assert {p: after.articles[p] for p in before.articles} == before.articles
    assert len(after.articles) == len(before.articles) + kept  # the record before the bomb is kept


# ----- empty, wrong and cut files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.xml", b"", "empty file"),
        ("empty.xml.gz", b"", "empty file"),
        ("empty-gzip.xml.gz", gzip.compress(b""), "not XML"),
        ("page.xml", (FIXTURES / "entrez" / "pubmed3.html").read_bytes(), "not a PubMed XML file"),
        ("page.xml.gz", gzip.compress(b"<!DOCTYPE html><html><body>503</body></html>"), "not a PubMed XML"),
        ("binary.xml", bytes(range(256)) * 64, "not an XML"),
        (
            "other.xml",
            b"<?xml version='1.0'?><eSearchResult><Count>1</Count></eSearchResult>",
            "root element",
        ),
        ("utf16.xml", document(citation("39300000")).decode().encode("utf-16"), "not an XML"),
    ],
)
def test_a_file_that_is_not_pubmed_xml_stores_nothing(
    library: tuple[Path, Library], tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    home, before = library
    bad = tmp_path / name
    bad.write_bytes(content)
    result = run(home, "ingest", "files", str(bad), str(MEDLINE_2016))  # checked before anything applies
    one_error(result, expected)
    assert library_of(home) == before


def cut_in_a_record(tmp_path: Path, *, gz: bool) -> tuple[Path, int]:
    """The 604-citation file cut in the middle of a record (plain XML), or its gzip cut in half."""
    if gz:
        data = MEDLINE_2016.read_bytes()
        path = tmp_path / "cut.xml.gz"
        path.write_bytes(data[: len(data) // 2])
        return path, 0
    xml = gzip.decompress(MEDLINE_2016.read_bytes())
    middle = xml.index(b"<AbstractText", len(xml) // 2) + 20  # inside a record, inside its abstract
    path = tmp_path / "cut.xml"
    path.write_bytes(xml[:middle])
    return path, xml[:middle].count(b"</MedlineCitation>")


@pytest.mark.parametrize("gz", [False, True], ids=["xml", "gzip"])
def test_a_file_cut_mid_record_keeps_every_record_before_the_cut(
    library: tuple[Path, Library], tmp_path: Path, gz: bool
) -> None:
    home, before = library
    path, complete = cut_in_a_record(tmp_path, gz=gz)
    result = run(home, "ingest", "files", str(path), "--json")
    error = one_error(result, "after", "records")
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and report["files"][0]["status"] == "failed"
    kept = report["files"][0]["records"]
    assert f"after {kept} records" in error
    if not gz:
        assert kept == complete  # every complete record, nothing of the cut one
    full = [r for r in iter_records(MEDLINE_2016)][:kept]
    expected = {r.pmid: prepare(r).content_hash for r in full if isinstance(r, Article)}
    after = library_of(home)
    assert {p: after.articles[p] for p in before.articles} == before.articles
    assert {p: after.articles.get(p) for p in expected} == expected
    assert len(after.articles) == len(before.articles) + len(expected)


def test_out_of_range_pmids_are_recorded_failures(library: tuple[Path, Library], tmp_path: Path) -> None:
    home, before = library
    path = tmp_path / "pmids.xml"
    records = [
        citation("9" * 30),
        citation("36028797018963968"),
        citation("0"),
        citation("39400000", version="9" * 40),
    ]
    path.write_bytes(document(*records, "<DeleteCitation><PMID>" + "9" * 5000 + "</PMID></DeleteCitation>"))
    result = run(home, "ingest", "files", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == 3 and report["inserted"] == 1  # the huge Version reads as 1
    assert run(home, "show", "9" * 30).exit_code == 1  # a clear "not in the library", no overflow
    after = library_of(home)
    assert {p: after.articles[p] for p in before.articles} == before.articles


# ----- JSONL and MEDLINE ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", None),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (b'{"pmid": ' + b"9" * 5000 + b', "title": "x"}\n', "invalid JSON"),
        (b'{"pmid": "' + b"9" * 5000 + b'", "title": "x"}\n', "out of range"),
        (b'{"pmid": 36028797018963968, "title": "x"}\n', "out of range"),
        (b'{"pmid": 1, "title": "x", "year": "' + b"9" * 5000 + b'"}\n', "'year'"),
        (b'{"pmid": 1, "title": "\xff\xfe"}\n', "not UTF-8"),
        (b"\x1f\x8b\x08\x00" + bytes(100), "not UTF-8"),
        (b'{"pmid": 1, "title": "x", "year": NaN}\n', "'year'"),
    ],
)
def test_malformed_jsonl_stores_nothing(
    library: tuple[Path, Library], tmp_path: Path, content: bytes, expected: str | None
) -> None:
    home, before = library
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    result = run(home, "ingest", "jsonl", str(path))
    if expected is None:  # an empty file is an empty run
        assert result.exit_code == 0, result.output
    else:
        one_error(result, expected)
    assert library_of(home) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (gzip.compress(MEDLINE_TEXT.read_bytes()), "compressed"),
        (bytes(range(256)) * 64, "binary"),
        (b"<html><body>PMID- 1</body></html>", "not MEDLINE"),
    ],
)
def test_malformed_medline_stores_nothing(
    library: tuple[Path, Library], tmp_path: Path, content: bytes, expected: str
) -> None:
    home, before = library
    path = tmp_path / "bad.nbib"
    path.write_bytes(content)
    one_error(run(home, "ingest", "medline", str(path)), expected)
    assert library_of(home) == before


def test_zlib_bomb_helper_expands_as_claimed(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "b.gz", b"<", b"x", 4 * MB, b">")
    out = zlib.decompressobj(31)
    total = 0
    data = bomb.read_bytes()
    while data:
        total += len(out.decompress(data))
        data = out.unused_data
        out = zlib.decompressobj(31) if data else out
    assert total == 4 * MB + 2


# ----- things that are not files ------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a FIFO and /dev/zero")
@pytest.mark.parametrize("command", ["files", "medline", "jsonl"])
def test_a_fifo_or_a_device_is_refused_at_once(
    library: tuple[Path, Library], tmp_path: Path, command: str
) -> None:
    home, before = library
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    for path, what in ((fifo, "FIFO"), (Path("/dev/zero"), "device")):
        # in a subprocess with a timeout: opening a FIFO or reading /dev/zero would hang, not fail
        done = subprocess.run(
            medlit("ingest", command, str(path)),
            env=environment(home),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        one_error({"rc": done.returncode, "stderr": done.stderr}, str(path), what, "regular file")
    assert library_of(home) == before
