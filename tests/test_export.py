"""Citation export read back by other people's parsers: RIS through rispy, BibTeX through bibtexparser, nbib
through Bio.Medline (and medlit's own MEDLINE reader), CSV through csv.DictReader. The articles are every
record of the real PubMed fixtures (unicode, MathML-derived text, collective authors, structured and missing
abstracts) plus constructed ones for what the fixtures lack (retractions, LaTeX specials, odd spaces)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import bibtexparser
import pytest
import rispy
from bibtexparser import middlewares
from Bio import Medline
from click.testing import CliRunner

from foundation.errors import InputError
from ingest.article import AbstractSection, Article, Author, CommentCorrection, MeshHeading
from ingest.medline import COMMENT_TAGS, parse_medline
from ingest.pubmed_xml import iter_records
from medlit.cli import cli
from medlit.export import CSV_COLUMNS, FORMATS, RETRACTED_NOTE, bibtex_key, export, latex_escape
from tests.conftest import SHARED_DATA

FIXTURES = SHARED_DATA / "fixtures"
ENTREZ = FIXTURES / "entrez"
PUBMED_XML = FIXTURES / "pubmed_xml"
XML_FILES = [
    *(ENTREZ / f"pubmed{n}.xml" for n in (1, 2, 4, 5, 6, 7)),  # 6 and 7 hold MathML
    PUBMED_XML / "pubmed-29768149.xml",
    PUBMED_XML / "medline16n0902.xml.gz",
    PUBMED_XML / "test_current_medline.xml.gz",
]
MEDLINE_FILES = sorted((FIXTURES / "medline").glob("*.txt"))  # PubMed's own nbib files

HOSTILE_TITLE = (
    "Dosing at 50% of {baseline} & C_2H_5OH costs $5 #1 ~ ^ \\ <b> | -- in α-β cells ≥ 2\u2009mg/kg:  "
    "a reanalysis of methylenedioxymethamphetamine-N-hydroxysuccinimide-polyethyleneglycol-conjugates"
    "-and-their-metabolites in 10\xa0trials"
)


def _fixture_articles() -> list[Article]:
    found: dict[int, Article] = {}
    for path in XML_FILES:
        for record in iter_records(path):
            if isinstance(record, Article):
                found.setdefault(record.pmid, record)
    return list(found.values())


def _constructed_articles() -> list[Article]:
    return [
        Article(
            pmid=90000001,
            title=HOSTILE_TITLE,
            abstract_sections=[
                AbstractSection(text="What 100% of {us} want.", label="BACKGROUND"),
                AbstractSection(text="It worked\nacross two lines.", label="RESULTS"),
            ],
            journal="Journal of Things & Stuff",
            journal_iso="J Things Stuff",
            year=2019,
            pub_date="2019 Mar 7",
            authors=[
                Author(last_name="van der Berg", fore_name="Jan-Willem", initials="JW"),
                Author(last_name="Ødegård", fore_name="Øystein", initials="Ø"),
                Author(last_name="Smith, Jr", fore_name="Anders and Co", initials="A"),
                Author(collective_name="Writing Group for the A and B Trial, Phase 2"),
            ],
            languages=["eng"],
            publication_types=["Journal Article", "Randomized Controlled Trial"],
            mesh=[MeshHeading(descriptor="Humans"), MeshHeading(descriptor="Neoplasms", major=True)],
            keywords=["dosing_rules", "50%"],
            doi="10.1000/a_b%c{1}",
            pmcid="PMC123",
            # Retracted through the link only (no "Retracted Publication" type): still marked everywhere.
            comments_corrections=[CommentCorrection("RetractionIn", pmid=90000002, source="J Things Stuff")],
        ),
        Article(
            pmid=90000003,
            title="Diagnosis of [acute] pain: a handbook",
            kind="book",
            year=2001,
            authors=[Author(last_name="Ng", initials="K")],
            publication_types=["Retracted Publication", "Book"],
        ),
        Article(pmid=90000004, title="Anonymous, undated, no journal."),
    ]


ARTICLES = _fixture_articles() + _constructed_articles()


def test_the_fixtures_cover_the_hard_cases() -> None:
    fixtures = ARTICLES[:-3]
    assert len(fixtures) > 600
    assert any(not a.title.isascii() for a in fixtures)
    assert any(a.collective_name for article in fixtures for a in article.authors)
    assert any(not a.has_abstract for a in fixtures)
    assert any(len(a.abstract_sections) > 1 for a in fixtures)
    assert any(c in a.title for a in fixtures for c in "%#")
    assert {30108519, 29963580} <= {a.pmid for a in fixtures}  # the MathML records


def _surname_first(author: Author) -> str:
    if author.collective_name:
        return author.collective_name
    return ", ".join(p for p in (author.last_name, author.fore_name or author.initials) if p)


def _one_paragraph(article: Article) -> str:
    return " ".join(f"{s.label}: {s.text}" if s.label else s.text for s in article.abstract_sections)


# ----- RIS ----------------------------------------------------------------------------------------


def test_ris_round_trip_through_rispy() -> None:
    text = export(ARTICLES, "ris")
    records = rispy.loads(text)
    assert len(records) == len(ARTICLES)
    assert not re.search(r"^\d+\.$", text, re.MULTILINE)  # no rispy counter lines
    for article, record in zip(ARTICLES, records, strict=True):
        assert record["accession_number"] == str(article.pmid)
        assert record["title"] == article.title.replace("\n", " ")
        assert record.get("authors", []) == [_surname_first(a) for a in article.authors]
        assert record.get("year") == (str(article.year) if article.year else None)
        assert record.get("secondary_title") == article.journal
        assert record.get("alternate_title1") == article.journal_iso
        assert record.get("doi") == article.doi
        assert record.get("custom2") == article.pmcid
        assert record["urls"] == [article.url]
        assert (RETRACTED_NOTE in record.get("notes", [])) == article.retracted
        assert record["type_of_reference"] == ("BOOK" if article.kind == "book" else "JOUR")


def test_ris_keeps_a_value_on_its_line() -> None:
    hostile = ARTICLES[-3]
    record = rispy.loads(export([hostile], "ris"))[0]
    assert record["abstract"] == "BACKGROUND: What 100% of {us} want. RESULTS: It worked across two lines."
    assert record["date"] == "2019/03/07/"
    assert record["notes"] == [RETRACTED_NOTE]


# ----- BibTeX -------------------------------------------------------------------------------------

# What LaTeX prints for each escape (written out here, not taken from the module under test).
_LATEX_PRINTS = {
    r"\textbackslash{}": "\\",
    r"\textasciitilde{}": "~",
    r"\textasciicircum{}": "^",
    r"\textless{}": "<",
    r"\textgreater{}": ">",
    r"\textbar{}": "|",
    **{f"\\{c}": c for c in "{}&%$#_"},
}
_LATEX_TOKEN = re.compile("|".join(map(re.escape, _LATEX_PRINTS)) + r"|[{}]")


def latex_text(value: str) -> str:
    """A BibTeX value as text: escapes printed, grouping braces dropped; a stray backslash is an error."""
    text = _LATEX_TOKEN.sub(lambda m: _LATEX_PRINTS.get(m.group(), ""), value)
    leftover = _LATEX_TOKEN.sub("", value)
    assert "\\" not in leftover, f"unescaped backslash in {value!r}"
    return text


def _bibtex_library(text: str) -> bibtexparser.Library:
    library = bibtexparser.parse_string(text, append_middleware=[middlewares.SeparateCoAuthors()])
    assert not library.failed_blocks, [b.error for b in library.failed_blocks]
    return library


def test_bibtex_round_trip_through_bibtexparser() -> None:
    library = _bibtex_library(export(ARTICLES, "bibtex"))
    assert len(library.entries) == len(ARTICLES)
    keys = [entry.key for entry in library.entries]
    assert len(set(keys)) == len(keys)
    for article, entry in zip(ARTICLES, library.entries, strict=True):
        fields = {name: field.value for name, field in entry.fields_dict.items()}
        assert entry.key == bibtex_key(article)
        assert re.fullmatch(r"[A-Za-z]+(\d{4})?-\d+", entry.key)
        assert fields["pmid"] == str(article.pmid)
        assert fields["title"].startswith("{") and fields["title"].endswith("}")  # capitals kept
        assert latex_text(fields["title"]) == article.title.replace("\n", " ")
        names = fields.get("author", [])
        assert [latex_text(name) for name in names] == [_surname_first(a) for a in article.authors]
        assert fields.get("year") == (str(article.year) if article.year else None)
        if article.kind == "book":
            assert entry.entry_type == "book" and "journal" not in fields
        else:
            assert latex_text(fields.get("journal", "")) == (article.journal or article.journal_iso or "")
        assert ("note" in fields and RETRACTED_NOTE in fields["note"]) == article.retracted
        if article.doi and article.pmid < 90000000:
            assert fields["doi"] == article.doi


def test_bibtex_escapes_every_latex_special_and_keeps_braces_balanced() -> None:
    hostile = ARTICLES[-3]
    text = export([hostile], "bibtex")
    title_line = next(line for line in text.splitlines() if line.startswith("  title = "))
    assert title_line.startswith(
        r"  title = {{Dosing at 50\% of \{baseline\} \& C\_2H\_5OH costs \$5 \#1 \textasciitilde{} "
        r"\textasciicircum{} \textbackslash{} \textless{}b\textgreater{} \textbar{} -- in α-β cells"
    )
    depth = 0
    for previous, char in zip(" " + text, text, strict=False):
        if previous != "\\":
            depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    entry = _bibtex_library(text).entries[0]
    # Names with "and" or a comma are braced so BibTeX does not split them.
    assert entry.fields_dict["author"].value == [
        "van der Berg, Jan-Willem",
        "Ødegård, Øystein",
        "{Smith, Jr}, {Anders and Co}",
        "{Writing Group for the A and B Trial, Phase 2}",
    ]
    assert entry.fields_dict["doi"].value == "10.1000/a_b%c%7B1%7D"  # verbatim field: no LaTeX escapes
    assert entry.key == "vanderBerg2019-90000001"


@pytest.mark.parametrize(
    ("authors", "year", "key"),
    [
        ([Author(last_name="Ødegård-Strauß")], 2020, "OdegardStrauss2020-1"),
        ([Author(last_name="O'Neil"), Author(last_name="Zed")], None, "ONeil-1"),
        ([Author(collective_name="The ÉCOLE Study Group")], 1999, "ECOLE1999-1"),
        ([Author(last_name="王")], 2001, "Anon2001-1"),
        ([], 2001, "Anon2001-1"),
    ],
)
def test_bibtex_keys_are_ascii_and_stable(authors: list[Author], year: int | None, key: str) -> None:
    article = Article(pmid=1, title="T", authors=authors, year=year)
    assert bibtex_key(article) == key
    assert bibtex_key(Article.from_json(article.to_json())) == key


def test_latex_escape_leaves_plain_text_alone() -> None:
    assert latex_escape("Ca2+/calmodulin: α-β, 1–2 (n = 3)") == "Ca2+/calmodulin: α-β, 1–2 (n = 3)"


# ----- MEDLINE / nbib -----------------------------------------------------------------------------


def test_nbib_round_trip_through_bio_medline() -> None:
    text = export(ARTICLES, "nbib")
    records = list(Medline.parse(io.StringIO(text)))
    assert len(records) == len(ARTICLES)
    for article, record in zip(ARTICLES, records, strict=True):
        assert record["PMID"] == str(article.pmid)
        title_tag = "BTI" if article.kind == "book" else "TI"
        title = record[title_tag] if title_tag == "TI" else " ".join(record["BTI"])
        assert title == article.title.replace("\n", " ")
        persons = [a for a in article.authors if not a.collective_name]
        assert record.get("FAU", []) == [", ".join(filter(None, (a.last_name, a.fore_name))) for a in persons]
        assert record.get("AU", []) == [" ".join(filter(None, (a.last_name, a.initials))) for a in persons]
        collective = [a.collective_name for a in article.authors if a.collective_name]
        if all(len(name) <= 81 for name in collective):  # Bio.Medline splits a wrapped CN line in two
            assert record.get("CN", []) == collective
        assert record.get("JT") == article.journal
        assert record.get("TA") == article.journal_iso
        assert record.get("DP") == (article.pub_date or (str(article.year) if article.year else None))
        if article.year:
            assert record["DP"].startswith(str(article.year))
        assert record.get("LID") == (f"{article.doi} [doi]" if article.doi else None)
        assert record.get("PMC") == article.pmcid
        assert record.get("AB", "") == _one_paragraph(article).replace("\n", " ")
        assert ("Retracted Publication" in record.get("PT", [])) == article.retracted
        assert len(record.get("MH", [])) == len(article.mesh)


def test_nbib_round_trip_through_medlits_reader(tmp_path: Path) -> None:
    path = tmp_path / "export.nbib"
    path.write_text(export(ARTICLES, "nbib"), encoding="utf-8")
    back = list(parse_medline(path))
    assert len(back) == len(ARTICLES)

    def words(text: str | None) -> str | None:  # the MEDLINE reader collapses runs of whitespace
        return " ".join(text.split()) if text is not None else None

    for article, again in zip(ARTICLES, back, strict=True):
        assert isinstance(again, Article)
        assert again.pmid == article.pmid
        assert again.title == words(article.title)
        names = [(words(a.last_name), words(a.fore_name), words(a.collective_name)) for a in article.authors]
        if article.pmid == 90000001:
            names[2] = ("Smith", "Jr", None)  # FAU "Last, Fore" cannot hold a comma inside the surname
        assert [(a.last_name, a.fore_name, a.collective_name) for a in again.authors] == names
        assert [a.affiliations for a in again.authors] == [
            [words(x) for x in a.affiliations] for a in article.authors
        ]
        assert (again.journal, again.journal_iso, again.year) == (
            article.journal,
            article.journal_iso,
            article.year,
        )
        assert (again.doi, again.pmcid, again.languages) == (article.doi, article.pmcid, article.languages)
        assert again.abstract == words(_one_paragraph(article))
        assert [(m.descriptor, m.major, m.qualifiers) for m in again.mesh] == [
            (m.descriptor, m.major, m.qualifiers) for m in article.mesh
        ]
        assert again.keywords == [words(k) for k in article.keywords]
        assert again.retracted == article.retracted
        assert [(c.ref_type, c.pmid) for c in again.comments_corrections] == [
            (c.ref_type, c.pmid) for c in article.comments_corrections if c.ref_type in COMMENT_TAGS.values()
        ]  # MEDLINE text has no tag for the other links ("Cites")


def _blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Records of (tag, its lines), trailing spaces dropped."""
    records: list[list[tuple[str, list[str]]]] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        fields: list[tuple[str, list[str]]] = []
        for line in chunk.splitlines():
            if line.startswith("      "):
                fields[-1][1].append(line.rstrip())
            else:
                fields.append((line[:4].rstrip(), [line.rstrip()]))
        records.append(fields)
    return records


@pytest.mark.parametrize("path", MEDLINE_FILES, ids=lambda p: p.name)
def test_nbib_lines_are_pubmeds_own(path: Path) -> None:
    """Re-exporting PubMed's own nbib files gives back PubMed's lines, wrapping included, for every tag medlit
    writes except LID (PubMed writes the DOI as AID there) and MH (the Article keeps one major-topic flag,
    so the star goes on the descriptor, not on the qualifier PubMed stars)."""
    original = _blocks(path.read_text())
    ours = _blocks(export(list(parse_medline(path)), "nbib"))
    assert len(ours) == len(original)
    compared = 0
    for mine, theirs in zip(ours, original, strict=True):
        for tag in {tag for tag, _ in mine} - {"LID", "MH"}:
            assert [lines for t, lines in mine if t == tag] == [lines for t, lines in theirs if t == tag], tag
            compared += 1
    assert compared > 10


def test_nbib_layout() -> None:
    text = export(ARTICLES, "nbib")
    for line in text.splitlines():
        if not line:
            continue
        assert re.match(r"[A-Z]{2,4} {0,2}- \S|      \S", line), line
        if len(line) > 87:  # only an unbreakable word may overflow
            assert " " not in line[6:].strip(), line
    assert "PT  - Retracted Publication" in export([ARTICLES[-3]], "nbib")
    assert "RIN - J Things Stuff PMID: 90000002" in export([ARTICLES[-3]], "nbib")


# ----- CSV ----------------------------------------------------------------------------------------


def test_csv_round_trip_through_dictreader() -> None:
    rows = list(csv.DictReader(io.StringIO(export(ARTICLES, "csv"), newline="")))
    assert len(rows) == len(ARTICLES)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert list(CSV_COLUMNS) == [
        "pmid",
        "title",
        "journal",
        "year",
        "authors",
        "doi",
        "pmcid",
        "publication_types",
        "retracted",
        "url",
    ]
    for article, row in zip(ARTICLES, rows, strict=True):
        assert row["pmid"] == str(article.pmid)
        assert row["title"] == article.title  # CSV keeps even line breaks
        assert row["authors"] == "; ".join(a.display for a in article.authors)
        assert row["journal"] == (article.journal or article.journal_iso or "")
        assert row["year"] == (str(article.year) if article.year else "")
        assert row["doi"] == (article.doi or "")
        assert row["pmcid"] == (article.pmcid or "")
        assert row["publication_types"] == "; ".join(article.publication_types)
        assert row["retracted"] == ("true" if article.retracted else "false")
        assert row["url"] == article.url


# ----- the function -------------------------------------------------------------------------------


def test_unknown_format_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown export format 'endnote': choose one of ris, bibtex"):
        export(ARTICLES[:1], "endnote")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_drops_repeats_and_handles_nothing(fmt: str) -> None:
    once = export(ARTICLES[:2], fmt)
    assert export([ARTICLES[0], ARTICLES[1], ARTICLES[0]], fmt.upper()) == once
    assert export([], fmt) in (
        "",
        "pmid,title,journal,year,authors,doi,pmcid,publication_types,retracted,url\r\n",
    )


# ----- the command --------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path):
    home = tmp_path / "home"
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False)

    result = invoke("ingest", "files", str(ENTREZ / "pubmed4.xml"), str(PUBMED_XML / "pubmed-29768149.xml"))
    assert result.exit_code == 0, result.output
    return invoke


def test_export_command_prints_to_stdout(run) -> None:
    result = run("export", "--format", "ris", "29768149", "27797938")
    assert result.exit_code == 0, result.output
    records = rispy.loads(result.stdout)
    assert [r["accession_number"] for r in records] == ["29768149", "27797938"]
    assert records[0]["title"] == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."


def test_export_command_writes_a_file(run, tmp_path: Path) -> None:
    out = tmp_path / "refs.bib"
    result = run("export", "--format", "bibtex", "--out", str(out), "27797938")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert str(out) in result.stderr
    entries = _bibtex_library(out.read_text(encoding="utf-8")).entries
    assert [e.fields_dict["pmid"].value for e in entries] == ["27797938"]


def test_export_command_names_every_missing_pmid(run) -> None:
    result = run("export", "--format", "csv", "27797938", "12345", "67890")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: 2 PMIDs are not in the library (")
    assert result.stderr.rstrip().endswith(": 12345, 67890")
    assert "Traceback" not in result.output


def test_export_command_from_an_answer(run, tmp_path: Path) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(
        json.dumps({"answer": "...", "citations": [{"number": 1, "pmid": 27797938}, {"pmid": "29768149"}]})
    )
    result = run("export", "--format", "csv", "--from-answer", str(answer))
    assert result.exit_code == 0, result.output
    assert [row["pmid"] for row in csv.DictReader(io.StringIO(result.stdout))] == ["27797938", "29768149"]

    answer.write_text(json.dumps({"citations": []}))
    result = run("export", "--format", "csv", "--from-answer", str(answer))
    assert result.exit_code == 1
    assert "cites no articles" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"answer": "x"}', 'no "citations" list'),
        ('{"citations": [{"pmid": "abc"}]}', "citation 1 has no valid pmid"),
    ],
)
def test_export_command_rejects_a_bad_answer_file(run, tmp_path: Path, content: str, message: str) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(content)
    result = run("export", "--format", "nbib", "--from-answer", str(answer))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {answer}: ")
    assert message in result.stderr


def test_export_command_needs_pmids(run) -> None:
    result = run("export", "--format", "ris")
    assert result.exit_code == 2
    assert "PMID" in result.output
