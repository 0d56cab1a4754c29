"""parse_medline against the real MEDLINE fixtures (Biopython's test files) and malformed input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from Bio import Medline
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.errors import InputError
from ingest.article import AbstractSection, Article, Author, CommentCorrection, MeshHeading, Rejected
from ingest.medline import parse_author, parse_medline, parse_mesh_heading


@pytest.fixture(scope="module")
def medline_dir(shared_data: Path) -> Path:
    return shared_data / "fixtures" / "medline"


def articles(path: Path) -> list[Article]:
    items = list(parse_medline(path))
    assert all(isinstance(item, Article) for item in items), items
    return [item for item in items if isinstance(item, Article)]


def mesh_by_name(article: Article) -> dict[str, MeshHeading]:
    return {heading.descriptor: heading for heading in article.mesh}


def test_single_record_every_field(medline_dir: Path) -> None:
    [article] = articles(medline_dir / "pubmed_result1.txt")
    assert article.pmid == 12230038
    assert article.title == "The Bio* toolkits--a brief overview."
    assert article.kind == "article"
    assert article.journal == "Briefings in bioinformatics"
    assert article.journal_iso == "Brief Bioinform"
    assert article.pub_date == "2002 Sep"
    assert article.year == 2002
    assert article.languages == ["eng"]
    assert article.publication_types == ["Journal Article"]
    assert article.date_revised == "2004-11-17"
    assert article.doi is None and article.pmcid is None
    assert article.comments_corrections == [] and not article.retracted
    assert article.authors == [
        Author(
            last_name="Mangalam",
            fore_name="Harry",
            initials="H",
            affiliations=["tacg Informatics, Irvine, CA 92612, USA. hjm@tacgi.com"],
        )
    ]
    assert article.authors[0].display == "Mangalam H"
    # Wrapped lines (six-space indent) become single spaces.
    assert len(article.abstract_sections) == 1
    assert article.abstract.startswith(
        "Bioinformatics research is often difficult to do with commercial software. The Open"
    )
    assert article.abstract.endswith(
        "particularly from the point of view of the beginning biologist programmer."
    )
    assert "  " not in article.abstract and "\n" not in article.abstract
    assert [(m.descriptor, m.major) for m in article.mesh] == [
        ("Computational Biology", True),
        ("Computer Systems", False),
        ("Humans", False),
        ("Internet", False),
        ("Programming Languages", True),
        ("Software", True),
        ("User-Computer Interface", False),
    ]


def test_four_records(medline_dir: Path) -> None:
    records = articles(medline_dir / "pubmed_result2.txt")
    assert [a.pmid for a in records] == [16403221, 16377612, 14871861, 14630660]
    assert [a.year for a in records] == [2006, 2006, 2004, 2003]
    scop, diagram, cluster, pdb = records

    assert scop.title == "A high level interface to SCOP and ASTRAL implemented in python."
    assert scop.pmcid == "PMC1373603"
    assert scop.doi == "10.1186/1471-2105-7-10"
    assert scop.pub_date == "2006" and scop.date_revised is None
    assert scop.publication_types == ["Evaluation Studies", "Journal Article"]
    assert [(a.last_name, a.fore_name, a.initials) for a in scop.authors] == [
        ("Casbon", "James A", "JA"),
        ("Crooks", "Gavin E", "GE"),
        ("Saqi", "Mansoor A S", "MA"),
    ]
    assert scop.authors[0].affiliations == [
        "Bioinformatics, Institute of Cell and Molecular Science, School of Medicine and Dentistry, "
        "Queen Mary, University of London, London EC1 6BQ, UK. j.a.casbon@qmul.ac.uk"
    ]
    # A structured abstract in MEDLINE text stays one section, labels kept inline.
    assert scop.abstract_sections[0].label is None
    assert scop.abstract.startswith("BACKGROUND: Benchmarking algorithms in structural bioinformatics")
    assert " RESULTS: We have designed a set of python modules" in scop.abstract
    mesh = mesh_by_name(scop)
    assert mesh["Information Storage and Retrieval"] == MeshHeading(
        descriptor="Information Storage and Retrieval", major=True, qualifiers=["methods"]
    )
    assert mesh["Databases, Protein"].major and mesh["Databases, Protein"].qualifiers == []
    assert not mesh["Programming Languages"].major

    # A title wrapped over two lines.
    assert (
        diagram.title == "GenomeDiagram: a python package for the visualization of large-scale genomic data."
    )
    assert diagram.doi == "10.1093/bioinformatics/btk021"
    assert diagram.pub_date == "2006 Mar 1"
    assert not mesh_by_name(diagram)["Information Storage and Retrieval"].major

    assert cluster.doi == "10.1093/bioinformatics/bth078"  # the [doi] AID comes before the [pii] one
    assert [a.display for a in cluster.authors] == ["de Hoon MJ", "Imoto S", "Nolan J", "Miyano S"]
    assert cluster.authors[0].last_name == "de Hoon" and cluster.authors[0].fore_name == "M J L"
    assert cluster.publication_types == [
        "Comparative Study",
        "Evaluation Studies",
        "Journal Article",
        "Validation Studies",
    ]

    assert pdb.doi is None
    assert mesh_by_name(pdb)["Information Storage and Retrieval"].qualifiers == ["methods", "standards"]
    assert mesh_by_name(pdb)["Database Management Systems"].major
    assert pdb.date_revised == "2006-11-15"


def test_lid_doi_wrapped_mesh_and_per_author_affiliation(medline_dir: Path) -> None:
    [article] = articles(medline_dir / "pubmed_result3.txt")
    assert article.pmid == 23039619
    assert article.doi == "10.1118/1.4748329"
    assert article.year == 2012 and article.pub_date == "2012 Oct"
    assert article.journal == "Medical physics" and article.journal_iso == "Med Phys"
    mesh = mesh_by_name(article)
    assert mesh["High-Intensity Focused Ultrasound Ablation"] == MeshHeading(
        descriptor="High-Intensity Focused Ultrasound Ablation",
        major=True,
        qualifiers=["adverse effects", "instrumentation", "methods"],
    )
    assert not mesh["Humans"].major
    assert [a.display for a in article.authors] == ["Qiao S", "Shen G", "Bai J", "Chen Y"]
    assert article.authors[0].affiliations == [
        "School of Biomedical Engineering, Shanghai Jiao Tong University, Shanghai, "
        "People's Republic of China."
    ]
    assert [a.affiliations for a in article.authors[1:]] == [[], [], []]
    assert article.abstract.startswith("PURPOSE: High-intensity focused ultrasound")
    assert " METHODS: Two transducers, six scanning paths" in article.abstract


def test_agrees_with_biopython(medline_dir: Path) -> None:
    for path in sorted(medline_dir.glob("*.txt")):
        with path.open(encoding="utf-8") as handle:
            expected = list(Medline.parse(handle))
        ours = articles(path)
        assert len(ours) == len(expected)
        for article, record in zip(ours, expected, strict=True):
            assert article.pmid == int(record["PMID"])
            assert article.title == " ".join(record["TI"].split())
            assert article.abstract == " ".join(record["AB"].split())
            assert [a.display for a in article.authors] == record["AU"]
            assert len(article.mesh) == len(record["MH"])


def write(tmp_path: Path, text: str, name: str = "records.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SYNTHETIC = """\
PMID- 31000001
DP  - 1998 Dec-1999 Jan
TI  - A retracted trial
      of something.
AB  - BACKGROUND: Why.   METHODS: How.
      RESULTS: What.
CN  - The Trial Consortium
FAU - Smith, John, Jr
AU  - Smith J Jr
AD  - Dept A, Univ X.
AD  - Dept B, Univ Y.
FAU - Madonna
AU  - Madonna
AU  - Doe JA
LA  - eng
LA  - fre
PT  - Journal Article
PT  - Retracted Publication
MH  - Neoplasms/*drug therapy
MH  - *Humans
OT  - cancer
OT  - trial
LID - S0001 [pii]
AID - 10.1000/XYZ.1 [doi]
RIN - Nature. 2020 Jan;1(2):3. PMID: 12345
CIN - Lancet. 2019;2:4.
EIN - Science. 2021 Feb;5:6. PMID: 777
ECI - J Foo. 2022. PMID: 888
UOF - J Bar. 2010. PMID: 999

PMID- abc
TI  - Bad PMID

TI  - No PMID at all

PMID- 31000002
TI  - Still read after the bad ones
"""


def test_synthetic_record_maps_every_tag(tmp_path: Path) -> None:
    items = list(parse_medline(write(tmp_path, SYNTHETIC)))
    assert len(items) == 4
    first, bad, missing, last = items
    assert isinstance(first, Article)
    assert first.pmid == 31000001
    assert first.title == "A retracted trial of something."
    assert first.year == 1998 and first.pub_date == "1998 Dec-1999 Jan"
    assert first.abstract_sections == [AbstractSection(text="BACKGROUND: Why. METHODS: How. RESULTS: What.")]
    assert first.authors == [
        Author(collective_name="The Trial Consortium"),
        Author(
            last_name="Smith",
            fore_name="John",
            initials="J",
            affiliations=["Dept A, Univ X.", "Dept B, Univ Y."],
        ),
        Author(last_name="Madonna"),
        Author(last_name="Doe", initials="JA"),
    ]
    assert first.languages == ["eng", "fre"]
    assert first.keywords == ["cancer", "trial"]
    assert first.doi == "10.1000/XYZ.1"
    assert first.mesh == [
        MeshHeading(descriptor="Neoplasms", major=True, qualifiers=["drug therapy"]),
        MeshHeading(descriptor="Humans", major=True),
    ]
    assert first.comments_corrections == [
        CommentCorrection(ref_type="RetractionIn", pmid=12345, source="Nature. 2020 Jan;1(2):3."),
        CommentCorrection(ref_type="CommentIn", pmid=None, source="Lancet. 2019;2:4."),
        CommentCorrection(ref_type="ErratumIn", pmid=777, source="Science. 2021 Feb;5:6."),
        CommentCorrection(ref_type="ExpressionOfConcernIn", pmid=888, source="J Foo. 2022."),
        CommentCorrection(ref_type="UpdateOf", pmid=999, source="J Bar. 2010."),
    ]
    assert first.retracted

    assert isinstance(bad, Rejected) and bad.pmid is None
    assert "'abc'" in bad.reason and "record 2" in bad.reason
    assert isinstance(missing, Rejected) and "no PMID" in missing.reason
    assert isinstance(last, Article) and last.pmid == 31000002
    assert last.title == "Still read after the bad ones"
    assert last.abstract_sections == [] and last.year is None and last.authors == []


def test_crlf_bom_and_bad_bytes(tmp_path: Path) -> None:
    first_record = "PMID- 42\r\nTI  - Caf\xe9 \u03b2-blockers\r\n      wrapped\r\nLR  - 20200102\r\n\r\n"
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbf" + first_record.encode("utf-8") + b"PMID- 43\r\nTI  - \xff\r\n")
    first, second = articles(path)
    assert first.pmid == 42 and first.title == "Caf\xe9 \u03b2-blockers wrapped"
    assert first.date_revised == "2020-01-02"
    assert second.pmid == 43 and second.title == "\ufffd"  # an invalid byte is replaced, not fatal


def test_records_without_blank_line_between(tmp_path: Path) -> None:
    path = write(tmp_path, "PMID- 1\nTI  - One\nPMID- 2\nTI  - Two\n")
    assert [(a.pmid, a.title) for a in articles(path)] == [(1, "One"), (2, "Two")]


def test_zero_pmid_is_rejected(tmp_path: Path) -> None:
    [item] = parse_medline(write(tmp_path, "PMID- 0\nTI  - Zero\n"))
    assert isinstance(item, Rejected) and "positive" in item.reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'<?xml version="1.0"?>\n<PubmedArticleSet><PubmedArticle/></PubmedArticleSet>\n',
            "not MEDLINE text",
        ),
        (bytes(range(256)) * 4, "binary"),
        (gzip.compress(b"PMID- 1\nTI  - x\n"), "gzip"),
        (b"", "empty"),
        (b"\n\n   \n", "empty"),
        (b"TY  - JOUR\nTI  - A RIS file\nER  - \n", "no 'PMID- ' line"),
        (b"Just some prose.\nPMID- 1\n", "not MEDLINE text"),
    ],
    ids=["xml", "binary", "gzip", "empty", "blank", "ris", "prose"],
)
def test_not_medline_raises_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.dat"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        parse_medline(path)  # raises at the call, before any iteration
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_real_xml_fixture_raises(shared_data: Path) -> None:
    path = shared_data / "fixtures" / "entrez" / "pubmed1.xml"
    with pytest.raises(InputError, match="not MEDLINE text"):
        parse_medline(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as info:
        parse_medline(tmp_path / "nope.txt")
    assert "nope.txt" in str(info.value)
    with pytest.raises(InputError, match="directory"):
        parse_medline(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Neoplasms", MeshHeading(descriptor="Neoplasms")),
        (
            "*Neoplasms/drug therapy",
            MeshHeading(descriptor="Neoplasms", major=True, qualifiers=["drug therapy"]),
        ),
        (
            "Neoplasms/*drug therapy",
            MeshHeading(descriptor="Neoplasms", major=True, qualifiers=["drug therapy"]),
        ),
        (
            "Neoplasms/drug therapy/genetics",
            MeshHeading(descriptor="Neoplasms", qualifiers=["drug therapy", "genetics"]),
        ),
        ("Ablation/adverse  effects", MeshHeading(descriptor="Ablation", qualifiers=["adverse effects"])),
    ],
)
def test_parse_mesh_heading(value: str, expected: MeshHeading) -> None:
    assert parse_mesh_heading(value) == expected


@pytest.mark.parametrize(
    ("fau", "au", "expected"),
    [
        ("Mangalam, Harry", "Mangalam H", Author(last_name="Mangalam", fore_name="Harry", initials="H")),
        ("de Hoon, M J L", "de Hoon MJ", Author(last_name="de Hoon", fore_name="M J L", initials="MJ")),
        (None, "Saqi MA", Author(last_name="Saqi", initials="MA")),
        (None, "van der Berg JP 3rd", Author(last_name="van der Berg", initials="JP")),
        ("Smith, John", None, Author(last_name="Smith", fore_name="John")),
        (None, "Madonna", Author(last_name="Madonna")),
    ],
)
def test_parse_author(fau: str | None, au: str | None, expected: Author) -> None:
    assert parse_author(fau=fau, au=au) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["PMID- 1", "PMID- x", "TI  - t", "AU  - A B", "FAU - ,", "AD  - a", "MH  - */", ""]
            ),
            st.sampled_from(
                ["MH  - ", "CIN - ", "RIN - ", "DP  - ", "LID - ", "AU  - ", "CN  - ", "      "]
            ).flatmap(lambda tag: st.text(max_size=30).map(lambda text: tag + text)),
            st.text(max_size=30),
        ),
        max_size=30,
    )
)
def test_any_text_raises_input_error_or_yields(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        items = list(parse_medline(path))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    for item in items:
        assert isinstance(item, Article | Rejected)
        if isinstance(item, Article):
            assert item.pmid > 0
            assert all(m.descriptor for m in item.mesh)
