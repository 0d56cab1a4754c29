"""iter_records against real PubMed XML (efetch answers, a whole 2016 MEDLINE file, current records) and
against small constructed documents for the cases the fixtures lack (books, retractions, deletions,
hostile XML). Expected values were read by hand from the fixture files."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from foundation.errors import InputError
from ingest import pubmed_xml
from ingest.article import (
    AbstractSection,
    Article,
    Author,
    CommentCorrection,
    Deletion,
    MeshHeading,
    Rejected,
)
from ingest.pubmed_xml import iter_records
from tests.conftest import SHARED_DATA
from tests.local_server import EntityServer

ENTREZ = SHARED_DATA / "fixtures" / "entrez"
PUBMED_XML = SHARED_DATA / "fixtures" / "pubmed_xml"
MEDLINE16 = PUBMED_XML / "medline16n0902.xml.gz"
CURRENT = PUBMED_XML / "test_current_medline.xml.gz"
NEJM = PUBMED_XML / "pubmed-29768149.xml"

# Files without MathML: their text must survive character for character (up to pretty-printing).
PLAIN_TEXT_FILES = [
    MEDLINE16,
    CURRENT,
    NEJM,
    ENTREZ / "pubmed1.xml",
    ENTREZ / "pubmed2.xml",
    ENTREZ / "pubmed4.xml",
    ENTREZ / "pubmed5.xml",
]
MATHML_FILES = [ENTREZ / "pubmed6.xml", ENTREZ / "pubmed7.xml"]


# ----- helpers ----------------------------------------------------------------------------------------


def records(source: Any) -> list[Article | Deletion | Rejected]:
    return list(iter_records(source))


def articles(source: Any) -> list[Article]:
    items = records(source)
    assert all(isinstance(item, Article) for item in items), items
    return [item for item in items if isinstance(item, Article)]


def one(source: Any) -> Article:
    [article] = articles(source)
    return article


def by_pmid(source: Any) -> dict[int, Article]:
    return {a.pmid: a for a in iter_records(source) if isinstance(a, Article)}


def citation(
    pmid: str | None = "31000001",
    *,
    version: str = "1",
    title: str = "A constructed title.",
    pub_date: str = "<Year>2019</Year><Month>Mar</Month>",
    publication_types: tuple[str, ...] = ("Journal Article",),
    comments: str = "",
    extra_pubmed_data: str = "",
    article_ids: str = "",
) -> str:
    """One PubmedArticle in the current (2025 DTD) layout."""
    pmid_xml = f'<PMID Version="{version}">{pmid}</PMID>' if pmid is not None else ""
    types = "".join(f"<PublicationType>{t}</PublicationType>" for t in publication_types)
    return f"""
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    {pmid_xml}
    <Article PubModel="Print">
      <Journal>
        <ISSN IssnType="Print">0000-0000</ISSN>
        <JournalIssue CitedMedium="Print"><Volume>1</Volume><PubDate>{pub_date}</PubDate></JournalIssue>
        <Title>Journal of constructed examples</Title>
        <ISOAbbreviation>J Constr Ex</ISOAbbreviation>
      </Journal>
      <ArticleTitle>{title}</ArticleTitle>
      <Language>eng</Language>
      <PublicationTypeList>{types}</PublicationTypeList>
    </Article>
    <MedlineJournalInfo>
      <Country>United States</Country><MedlineTA>J Constr Ex</MedlineTA>
    </MedlineJournalInfo>
    {comments}
  </MedlineCitation>
  <PubmedData>
    <PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId>{article_ids}</ArticleIdList>
    {extra_pubmed_data}
  </PubmedData>
</PubmedArticle>"""


def document(*parts: str, doctype: str = "", root: str = "PubmedArticleSet") -> bytes:
    return (f'<?xml version="1.0" ?>\n{doctype}\n<{root}>' + "".join(parts) + f"</{root}>\n").encode()


def squash(text: str) -> str:
    """Pretty-printing undone: every run of XML whitespace becomes one space."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def visible(text: str) -> str:
    """Every character except XML whitespace (MathML layout is free to move those)."""
    return re.sub(r"[ \t\r\n]+", "", text)


def source_tree(path: Path) -> etree._Element:
    """The whole file, parsed independently (no DTD, no network, no entities) as the oracle."""
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return etree.parse(handle, parser).getroot()


def source_citations(path: Path) -> list[etree._Element]:
    root = source_tree(path)
    return [c for c in root.iter("MedlineCitation")]


# ----- faithful fields ----------------------------------------------------------------------------------


def test_pmid_is_the_citations_own_never_a_referenced_one() -> None:
    # pubmed4: 49 CommentsCorrections, each with its own <PMID>; pubmed7 and 2930949: a ReferenceList.
    article = one(ENTREZ / "pubmed4.xml")
    assert article.pmid == 27797938
    assert article.version == 1
    linked = [c.pmid for c in article.comments_corrections]
    assert len(linked) == 49 and 27797938 not in linked
    assert one(ENTREZ / "pubmed7.xml").pmid == 29963580
    assert [a.pmid for a in articles(CURRENT)] == [36400559, 2930949, 11446611, 28786991]


def test_pmids_match_the_file_in_order_for_a_whole_medline_file() -> None:
    expected = [int(c.findtext("PMID")) for c in source_citations(MEDLINE16)]
    items = records(MEDLINE16)
    assert len(expected) == 604
    assert [a.pmid for a in items if isinstance(a, Article)] == expected
    assert items[-1] == Deletion(pmids=[26432306])
    assert 26432306 not in expected


def test_version_attribute_is_kept() -> None:
    article = one(document(citation("31000002", version="3")))
    assert (article.pmid, article.version) == (31000002, 3)


def test_every_field_of_an_efetch_record() -> None:
    article = one(ENTREZ / "pubmed4.xml")
    assert article.kind == "article"
    assert article.title == (
        "Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer."
    )
    assert article.journal == "Gut"
    assert article.journal_iso == "Gut"
    assert article.year == 2017
    assert article.pub_date == "2017 06"
    assert article.date_revised == "2018-04-17"
    assert article.doi == "10.1136/gutjnl-2016-312510"
    assert article.pmcid == "PMC5442267"
    assert article.languages == ["eng"]
    assert article.language == "eng"
    assert article.publication_types == [
        "Journal Article",
        "Observational Study",
        "Research Support, N.I.H., Extramural",
        "Research Support, U.S. Gov't, Non-P.H.S.",
        "Research Support, Non-U.S. Gov't",
    ]
    assert article.keywords == ["PANCREATIC CANCER"]
    assert [s.label for s in article.abstract_sections] == ["OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]
    assert [s.category for s in article.abstract_sections] == [None, None, None, None]
    assert article.abstract.startswith("OBJECTIVE: Telomere shortening occurs as an early event")
    assert article.abstract.count("\n") == 3
    assert "\nCONCLUSIONS: Prediagnostic leucocyte telomere length and genetic variants" in article.abstract
    # Authors: 22 people, affiliations kept in order.
    assert len(article.authors) == 22
    assert article.authors[0] == Author(
        last_name="Bao",
        fore_name="Ying",
        initials="Y",
        affiliations=[
            "Channing Division of Network Medicine, Department of Medicine, Brigham and Women's Hospital, "
            "and Harvard Medical School, Boston, Massachusetts, USA."
        ],
    )
    assert article.authors[2].affiliations == [
        "Department of Epidemiology, Harvard T.H. Chan School of Public Health, Boston, Massachusetts, USA.",
        "Department of Medical Oncology, Dana-Farber Cancer Institute, Boston, Massachusetts, USA.",
    ]
    assert article.authors[0].display == "Bao Y"
    # MeSH: major when the descriptor or any qualifier is MajorTopicYN="Y".
    assert len(article.mesh) == 21
    mesh = {m.descriptor: m for m in article.mesh}
    assert mesh["Adenocarcinoma"] == MeshHeading(
        descriptor="Adenocarcinoma", ui="D000230", major=True, qualifiers=["epidemiology", "genetics"]
    )
    assert mesh["Telomere Shortening"] == MeshHeading(
        descriptor="Telomere Shortening", ui="D059506", major=True, qualifiers=[]
    )
    assert mesh["United States"] == MeshHeading(
        descriptor="United States", ui="D014481", major=False, qualifiers=["epidemiology"]
    )
    assert mesh["Adult"].major is False
    assert [m.descriptor for m in article.mesh if m.major] == [
        "Adenocarcinoma",
        "Pancreatic Neoplasms",
        "Telomerase",
        "Telomere Shortening",
    ]
    assert article.comments_corrections[0] == CommentCorrection(
        ref_type="CommentIn", pmid=27920200, source="Gut. 2017 Jun;66(6):1"
    )
    assert article.comments_corrections[-1] == CommentCorrection(
        ref_type="Cites", pmid=12000852, source="Nucleic Acids Res. 2002 May 15;30(10):e47"
    )
    assert article.retracted is False
    assert article.has_abstract is True


def test_structured_abstract_keeps_labels_and_nlm_categories() -> None:
    article = one(ENTREZ / "pubmed5.xml")
    assert article.pmid == 28775130
    assert [(s.label, s.category) for s in article.abstract_sections] == [
        ("OBJECTIVES", "OBJECTIVE"),
        ("METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    assert article.abstract_sections[3] == AbstractSection(
        text="Our results suggest that long-term exposure to aldrin, pendimethalin and methyl bromide may "
        "alter thyroid function among male pesticide applicators.",
        label="CONCLUSIONS",
        category="CONCLUSIONS",
    )
    # The old MedlineCitationSet format: Label differs from its NlmCategory.
    first = records(MEDLINE16)[0]
    assert isinstance(first, Article)
    assert first.pmid == 17942999
    assert [(s.label, s.category) for s in first.abstract_sections] == [
        ("PURPOSE", "OBJECTIVE"),
        ("METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    assert first.journal == "Restorative neurology and neuroscience"
    assert first.journal_iso == "Restor. Neurol. Neurosci."
    assert first.year == 2007
    assert first.pmcid == "PMC4380289"


def test_nejm_record() -> None:
    article = one(NEJM)
    assert article.pmid == 29768149
    assert article.title == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."
    assert article.journal == "The New England journal of medicine"
    assert article.journal_iso == "N Engl J Med"
    assert (article.year, article.pub_date) == (2018, "2018 05 17")
    assert article.doi == "10.1056/NEJMoa1715274"
    assert article.pmcid is None
    assert article.publication_types[0] == "Clinical Trial, Phase III"
    assert "Randomized Controlled Trial" in article.publication_types
    assert article.comments_corrections == [
        CommentCorrection("CommentIn", 29768146, "N Engl J Med. 2018 May 17;378(20):1940-1942"),
        CommentCorrection("CommentIn", 30242404, "Ann Intern Med. 2018 Sep 18;169(6):JC31"),
    ]
    mesh = {m.descriptor: m for m in article.mesh}
    # Major only through a qualifier: "drug therapy" is MajorTopicYN="Y", the descriptor "N".
    assert mesh["Asthma"] == MeshHeading("Asthma", "D001249", True, ["drug therapy"])
    assert mesh["Adult"] == MeshHeading("Adult", "D000328", False, [])
    assert mesh["Budesonide"].qualifiers == ["administration & dosage", "adverse effects"]
    assert [s.label for s in article.abstract_sections] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert article.abstract_sections[0].text == (
        "In patients with mild asthma, as-needed use of an inhaled glucocorticoid plus a fast-acting "
        "\N{GREEK SMALL LETTER BETA} 2-agonist may be an alternative to conventional treatment strategies."
    )
    assert article.authors[0].last_name == "O'Byrne"


def test_year_from_year_season_and_medline_date() -> None:
    season = by_pmid(ENTREZ / "pubmed1.xml")[12091962]
    assert (season.year, season.pub_date) == (1990, "1990 Spring")
    span = by_pmid(CURRENT)[11446611]  # <Year>2001</Year><Season>May-Jun</Season>
    assert (span.year, span.pub_date) == (2001, "2001 May-Jun")
    medline_date = by_pmid(MEDLINE16)[18621939]  # <MedlineDate>2008 Jul-Aug</MedlineDate>
    assert (medline_date.year, medline_date.pub_date) == (2008, "2008 Jul-Aug")
    crossing = one(document(citation(pub_date="<MedlineDate>1998 Dec-1999 Jan</MedlineDate>")))
    assert (crossing.year, crossing.pub_date) == (1998, "1998 Dec-1999 Jan")
    full = by_pmid(ENTREZ / "pubmed1.xml")[9997]
    assert (full.year, full.pub_date) == (1976, "1976 Sep 28")


def test_collective_name_author() -> None:
    article = one(ENTREZ / "pubmed7.xml")
    assert len(article.authors) == 9
    assert article.authors[-1] == Author(collective_name="Canadian Respiratory Research Network")
    assert article.authors[-1].display == "Canadian Respiratory Research Network"
    assert article.authors[-2].last_name == "Parraga"
    assert len(article.authors[-2].affiliations) == 3
    groups = {
        a.pmid: [x.collective_name for x in a.authors if x.collective_name] for a in articles_of(MEDLINE16)
    }
    assert groups[25345997] == ["Movement Disorder Group"]
    assert groups[26702424] == ["Brain Development Cooperative Group"]


def articles_of(path: Path) -> list[Article]:
    return [r for r in iter_records(path) if isinstance(r, Article)]


def test_doi_and_pmcid_sources() -> None:
    # DOI only in PubmedData/ArticleIdList (no ELocationID).
    assert by_pmid(ENTREZ / "pubmed1.xml")[9997].doi == "10.1016/0005-2795(76)90109-4"
    current = by_pmid(CURRENT)
    assert (current[2930949].doi, current[2930949].pmcid) == (None, "PMC1306303")
    assert (current[28786991].doi, current[28786991].pmcid) == ("10.1371/journal.pone.0180707", "PMC5546677")
    # Old MEDLINE format: the PMCID is an OtherID ("PMC4688250 [Available on 12/22/16]").
    assert by_pmid(MEDLINE16)[26109528].pmcid == "PMC4688250"
    # The identifiers of references never become the record's own.
    references = """<ReferenceList><Reference><Citation>Other paper.</Citation><ArticleIdList>
        <ArticleId IdType="doi">10.9999/not-this-one</ArticleId><ArticleId IdType="pmc">PMC0000001</ArticleId>
        <ArticleId IdType="pubmed">1111</ArticleId></ArticleIdList></Reference></ReferenceList>"""
    article = one(document(citation("31000003", extra_pubmed_data=references)))
    assert (article.pmid, article.doi, article.pmcid) == (31000003, None, None)
    own = one(document(citation("31000004", article_ids='<ArticleId IdType="doi">10.1/own</ArticleId>')))
    assert own.doi == "10.1/own"


def test_comments_corrections_in_old_format() -> None:
    article = by_pmid(MEDLINE16)[26702309]
    assert article.comments_corrections == [
        CommentCorrection("ErratumIn", 26705261, "Syst Synth Biol. 2015 Dec;9(Suppl 1):55")
    ]
    assert article.retracted is False  # an erratum is not a retraction


def test_retraction_flags() -> None:
    retraction_in = """<CommentsCorrectionsList><CommentsCorrections RefType="RetractionIn">
        <RefSource>J Constr Ex. 2020;2:1</RefSource><PMID Version="1">32000000</PMID>
        </CommentsCorrections></CommentsCorrectionsList>"""
    retracted_by_link = one(document(citation("31000010", comments=retraction_in)))
    assert retracted_by_link.retracted is True
    assert retracted_by_link.comments_corrections == [
        CommentCorrection("RetractionIn", 32000000, "J Constr Ex. 2020;2:1")
    ]
    retracted_by_type = one(
        document(citation("31000011", publication_types=("Journal Article", "Retracted Publication")))
    )
    assert retracted_by_type.retracted is True
    # The retraction notice itself is not retracted.
    retraction_of = retraction_in.replace("RetractionIn", "RetractionOf")
    notice = one(
        document(
            citation("32000000", publication_types=("Retraction of Publication",), comments=retraction_of)
        )
    )
    assert notice.retracted is False
    assert notice.to_dict()["retracted"] is False
    assert retracted_by_type.to_dict()["retracted"] is True


def test_languages_and_keywords() -> None:
    italian = [a for a in articles_of(MEDLINE16) if a.languages == ["ita"]]
    assert len(italian) == 18
    multi = one(
        document(
            citation("31000020").replace(
                "<Language>eng</Language>", "<Language>eng</Language><Language>fre</Language>"
            )
        )
    )
    assert multi.languages == ["eng", "fre"]
    assert multi.language == "eng"
    assert by_pmid(ENTREZ / "pubmed1.xml")[12091962].keywords == [
        "Health Care and Public Health",
        "Legal Approach",
    ]
    assert one(ENTREZ / "pubmed7.xml").keywords == [
        "asthma",
        "chronic obstructive lung disease",
        "image processing, biomarkers",
        "magnetic resonance imaging",
        "thoracic computed tomography",
    ]


# ----- inline markup and MathML ---------------------------------------------------------------------------


def test_inline_markup_becomes_plain_text() -> None:
    article = one(ENTREZ / "pubmed4.xml")
    results = article.abstract_sections[2].text
    assert "linkage disequilibrium r2<0.25) were associated" in results
    assert "95% CI 1.07 to 2.78; ptrend=0.048)" in results
    assert "<" not in article.title and "TERT gene" in article.title
    escaped = one(ENTREZ / "pubmed6.xml")
    assert escaped.title == (
        'A "Blood Relationship" Between the Overlooked Minimum Lactate Equivalent and Maximal Lactate '
        "Steady State in Trained Runners. Back to the Old Days?"
    )
    assert '"Minimum Lactate Equivalent" (LEmin), first described' in escaped.abstract
    assert "(P < 0.001; ES: 3.54)" in escaped.abstract


def test_mathml_becomes_its_text() -> None:
    article = one(ENTREZ / "pubmed6.xml")
    assert "maximal oxygen uptake ( V.O2max ) 67.6 ± 4.1 ml·kg-1·min-1]" in article.abstract
    assert "mml" not in article.abstract and "<" not in article.abstract.replace("P < 0.001", "")
    imaging = one(ENTREZ / "pubmed7.xml")
    # <mml:mtext>&#x2009;</mml:mtext> (a thin space) separates "Xe" from "MRI": it is content, not layout.
    assert "(1)\N{NO-BREAK SPACE}inhaled He3/Xe129\N{THIN SPACE}MRI ventilation" in imaging.abstract
    assert "(3)\N{NO-BREAK SPACE}ultrashort echo-time H1\N{THIN SPACE}MRI proton density" in imaging.abstract


@pytest.mark.parametrize("path", PLAIN_TEXT_FILES, ids=lambda p: p.name)
def test_no_character_lost_in_titles_and_abstracts(path: Path) -> None:
    parsed = {a.pmid: a for a in articles_of(path)}
    checked = 0
    for node in source_citations(path):
        article = parsed[int(node.findtext("PMID"))]
        assert article.title == squash("".join(node.find("Article/ArticleTitle").itertext()))
        texts = [squash("".join(t.itertext())) for t in node.iterfind("Article/Abstract/AbstractText")]
        assert [s.text for s in article.abstract_sections] == [t for t in texts if t]
        checked += 1
    assert checked == len(parsed)


@pytest.mark.parametrize("path", MATHML_FILES, ids=lambda p: p.name)
def test_no_character_lost_around_mathml(path: Path) -> None:
    article = one(path)
    [node] = source_citations(path)
    [abstract] = node.iterfind("Article/Abstract/AbstractText")
    assert abstract.find(".//{http://www.w3.org/1998/Math/MathML}math") is not None
    assert visible(article.abstract) == visible("".join(abstract.itertext()))
    assert visible(article.title) == visible("".join(node.find("Article/ArticleTitle").itertext()))


# ----- records without abstracts, books, deletions, rejects ----------------------------------------------


def test_records_without_abstract_are_kept() -> None:
    no_abstract = by_pmid(ENTREZ / "pubmed1.xml")[12091962]
    assert no_abstract.has_abstract is False
    assert (no_abstract.abstract, no_abstract.abstract_sections) == ("", [])
    assert no_abstract.title == "The treatment of AIDS behind the walls of correctional facilities."
    assert by_pmid(CURRENT)[11446611].has_abstract is False
    medline = articles_of(MEDLINE16)
    with_text = [
        c
        for c in source_citations(MEDLINE16)
        if any(squash("".join(t.itertext())) for t in c.iterfind("Article/Abstract/AbstractText"))
    ]
    assert len(medline) == 604
    assert sum(a.has_abstract for a in medline) == len(with_text) == 526


GENEREVIEWS = """
<PubmedBookArticle>
  <BookDocument>
    <PMID Version="1">20301428</PMID>
    <ArticleIdList><ArticleId IdType="bookaccession">NBK1250</ArticleId></ArticleIdList>
    <Book>
      <Publisher>
        <PublisherName>University of Washington, Seattle</PublisherName>
        <PublisherLocation>Seattle (WA)</PublisherLocation>
      </Publisher>
      <BookTitle book="gene">GeneReviews<sup>®</sup></BookTitle>
      <PubDate><Year>1993</Year></PubDate>
      <BeginningDate><Year>1993</Year></BeginningDate>
      <AuthorList Type="editors">
        <Author><LastName>Adam</LastName><ForeName>Margaret P</ForeName><Initials>MP</Initials></Author>
        <Author><LastName>Feldman</LastName><ForeName>Jerry</ForeName><Initials>J</Initials></Author>
      </AuthorList>
      <Medium>Internet</Medium>
    </Book>
    <LocationLabel Type="chapter">CF</LocationLabel>
    <ArticleTitle book="gene" part="cf">CFTR-Related Disorders</ArticleTitle>
    <Language>eng</Language>
    <AuthorList Type="authors">
      <Author><LastName>Ong</LastName><ForeName>Thida</ForeName><Initials>T</Initials>
        <AffiliationInfo><Affiliation>Seattle Children's Hospital</Affiliation></AffiliationInfo></Author>
      <Author><LastName>Ramsey</LastName><ForeName>Bonnie W</ForeName><Initials>BW</Initials></Author>
    </AuthorList>
    <PublicationType UI="D016454">Review</PublicationType>
    <Abstract>
      <AbstractText Label="CLINICAL CHARACTERISTICS" NlmCategory="UNASSIGNED">Cystic fibrosis (CF) is a
        multisystem disease affecting epithelia of the respiratory tract, exocrine pancreas,
        intestine.</AbstractText>
      <AbstractText Label="DIAGNOSIS/TESTING" NlmCategory="UNASSIGNED">The diagnosis of CF is established in
        a proband with biallelic <i>CFTR</i> pathogenic variants.</AbstractText>
      <CopyrightInformation>Copyright © 1993-2024, University of Washington, Seattle.</CopyrightInformation>
    </Abstract>
    <Sections><Section><SectionTitle book="gene" part="cf" sec="cf.Summary">Summary</SectionTitle></Section>
    </Sections>
    <ContributionDate><Year>2001</Year><Month>03</Month><Day>26</Day></ContributionDate>
    <DateRevised><Year>2024</Year><Month>01</Month><Day>04</Day></DateRevised>
  </BookDocument>
  <PubmedBookData>
    <History><PubMedPubDate PubStatus="pubmed"><Year>2010</Year><Month>3</Month><Day>20</Day></PubMedPubDate>
    </History>
    <PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList><ArticleId IdType="pubmed">20301428</ArticleId></ArticleIdList>
  </PubmedBookData>
</PubmedBookArticle>"""


def test_book_article() -> None:
    items = records(document(citation("31000030"), GENEREVIEWS))
    assert [type(i).__name__ for i in items] == ["Article", "Article"]
    journal_article, book = items
    assert isinstance(journal_article, Article) and isinstance(book, Article)
    assert journal_article.kind == "article"
    assert book.kind == "book"
    assert (book.pmid, book.version) == (20301428, 1)
    assert book.title == "CFTR-Related Disorders"
    assert book.journal == "GeneReviews®"
    assert book.year == 1993
    assert book.languages == ["eng"]
    assert book.publication_types == ["Review"]
    assert book.date_revised == "2024-01-04"
    # The chapter's authors, never the book's editors.
    assert [a.last_name for a in book.authors] == ["Ong", "Ramsey"]
    assert book.authors[0].affiliations == ["Seattle Children's Hospital"]
    assert [(s.label, s.category) for s in book.abstract_sections] == [
        ("CLINICAL CHARACTERISTICS", "UNASSIGNED"),
        ("DIAGNOSIS/TESTING", "UNASSIGNED"),
    ]
    assert book.abstract_sections[1].text == (
        "The diagnosis of CF is established in a proband with biallelic CFTR pathogenic variants."
    )
    assert book.has_abstract
    # The same record as a PubmedBookArticleSet (what efetch db=books-style answers use).
    assert records(document(GENEREVIEWS, root="PubmedBookArticleSet")) == [book]


WHOLE_BOOK = """
<PubmedBookArticle>
  <BookDocument>
    <PMID Version="1">21250000</PMID>
    <ArticleIdList><ArticleId IdType="bookaccession">NBK50000</ArticleId></ArticleIdList>
    <Book>
      <Publisher><PublisherName>National Academies Press (US)</PublisherName></Publisher>
      <BookTitle book="nap50000">Dietary Reference Intakes for Calcium and Vitamin D</BookTitle>
      <PubDate><Year>2011</Year></PubDate>
      {book_authors}
      <AuthorList Type="editors">
        <Author><LastName>Ross</LastName><ForeName>A Catharine</ForeName><Initials>AC</Initials></Author>
      </AuthorList>
    </Book>
    <Language>eng</Language>
    <PublicationType UI="D016454">Review</PublicationType>
  </BookDocument>
</PubmedBookArticle>"""
BOOK_AUTHORS = """<AuthorList Type="authors">
        <Author><CollectiveName>Institute of Medicine (US) Committee</CollectiveName></Author>
      </AuthorList>"""


def test_whole_book_takes_the_books_authors_never_its_editors() -> None:
    [book] = records(document(WHOLE_BOOK.format(book_authors=BOOK_AUTHORS)))
    assert isinstance(book, Article)
    assert (book.pmid, book.kind, book.year) == (21250000, "book", 2011)
    assert book.title == "Dietary Reference Intakes for Calcium and Vitamin D"  # no chapter: the book's
    assert book.authors == [Author(collective_name="Institute of Medicine (US) Committee")]
    [editors_only] = records(document(WHOLE_BOOK.format(book_authors="")))
    assert isinstance(editors_only, Article)
    assert editors_only.authors == []


def test_delete_citation_in_current_format() -> None:
    deletion = (
        "<DeleteCitation><PMID Version='1'>111</PMID><PMID Version='1'>222</PMID>"
        "<PMID Version='1'>333</PMID></DeleteCitation>"
    )
    items = records(document(citation("31000040"), citation("31000041"), deletion))
    assert [a.pmid for a in items[:2] if isinstance(a, Article)] == [31000040, 31000041]
    assert items[2:] == [Deletion(pmids=[111, 222, 333])]


def test_record_without_pmid_is_rejected_and_the_rest_kept() -> None:
    items = records(
        document(
            citation("31000050"),
            citation(None),
            citation("not-a-number"),
            citation("0"),
            citation("31000051"),
        )
    )
    assert isinstance(items[0], Article) and items[0].pmid == 31000050
    assert isinstance(items[4], Article) and items[4].pmid == 31000051
    for rejected in items[1:4]:
        assert isinstance(rejected, Rejected)
        assert "PMID" in rejected.reason
        assert rejected.pmid is None


def test_every_kind_of_source_gives_the_same_records(tmp_path: Path) -> None:
    expected = records(CURRENT)
    raw = CURRENT.read_bytes()
    assert records(str(CURRENT)) == expected
    assert records(raw) == expected
    assert records(gzip.decompress(raw)) == expected
    assert records(io.BytesIO(raw)) == expected
    with CURRENT.open("rb") as handle:
        assert records(handle) == expected
    plain = tmp_path / "current.xml"
    plain.write_bytes(gzip.decompress(raw))
    assert records(plain) == expected


def test_files_are_closed(recwarn: pytest.WarningsRecorder) -> None:
    import gc

    for path in (CURRENT, NEJM):
        records(path)
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# ----- safety ---------------------------------------------------------------------------------------------


def test_external_file_entity_is_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-HOSTNAME-7f3a")
    doctype = f'<!DOCTYPE PubmedArticleSet [ <!ENTITY xxe SYSTEM "{secret.as_uri()}"> ]>'
    source = document(citation("31000060", title="Leak: &xxe; end."), doctype=doctype)
    path = tmp_path / "xxe.xml"
    path.write_bytes(source)
    for given in (source, path):
        items = records(given)
        assert "TOP-SECRET" not in repr(items)
        [article] = items
        assert isinstance(article, Article) and article.pmid == 31000060
    # /etc/hostname too, as an attacker would write it.
    doctype = '<!DOCTYPE PubmedArticleSet [ <!ENTITY xxe SYSTEM "file:///etc/hostname"> ]>'
    [article] = records(document(citation("31000061", title="Host: &xxe;."), doctype=doctype))
    hostname = Path("/etc/hostname")
    if hostname.exists() and hostname.read_text().strip():
        assert hostname.read_text().strip() not in repr(article)


def test_external_parameter_entity_is_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("PARAM-SECRET-91b2")
    evil = tmp_path / "evil.dtd"
    evil.write_text(f'<!ENTITY leak SYSTEM "{secret.as_uri()}">')
    doctype = f'<!DOCTYPE PubmedArticleSet [ <!ENTITY % ext SYSTEM "{evil.as_uri()}"> %ext; ]>'
    source = document(citation("31000062", title="Leak: &leak; end."), doctype=doctype)
    try:
        items = records(source)
    except InputError:
        return  # refusing the document is as safe as ignoring the entity
    assert "PARAM-SECRET" not in repr(items)


def test_billion_laughs_is_not_expanded() -> None:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    doctype = "<!DOCTYPE PubmedArticleSet [\n" + "\n".join(entities) + "\n]>"
    source = document(citation("31000063", title="Laugh: &lol9;"), doctype=doctype)
    started = time.monotonic()
    try:
        items = records(source)
    except InputError as exc:
        assert "not well-formed" in str(exc) or "entity" in str(exc).lower()
    else:
        assert "lol" * 100 not in repr(items)
    assert time.monotonic() - started < 5


def test_no_network_access(entity_server: EntityServer) -> None:
    base, hits = entity_server.url.rstrip("/"), entity_server.hits
    # The DTD URL of a real efetch answer, pointed at a local server that records every request.
    doctype = (
        f'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
        f'"{base}/pubmed_250101.dtd">'
    )
    [article] = records(document(citation("31000064"), doctype=doctype))
    assert isinstance(article, Article) and article.pmid == 31000064
    doctype = f'<!DOCTYPE PubmedArticleSet [ <!ENTITY remote SYSTEM "{base}/entity"> ]>'
    [article] = records(document(citation("31000065", title="Remote: &remote;."), doctype=doctype))
    assert "FETCHED" not in repr(article)
    doctype = f'<!DOCTYPE PubmedArticleSet [ <!ENTITY % p SYSTEM "{base}/param.dtd"> %p; ]>'
    with contextlib.suppress(InputError):  # refusing it is fine; fetching it is not
        records(document(citation("31000066"), doctype=doctype))
    assert hits == []


def test_real_files_parse_offline_with_their_dtd_urls() -> None:
    # Every real fixture names an https:// DTD; parsing must neither need nor try the network.
    text = (ENTREZ / "pubmed6.xml").read_text()
    assert "https://dtd.nlm.nih.gov/" in text
    assert one(ENTREZ / "pubmed6.xml").pmid == 30108519


# ----- errors ---------------------------------------------------------------------------------------------


def test_html_instead_of_xml() -> None:
    with pytest.raises(InputError, match="not a PubMed XML") as info:
        records(ENTREZ / "pubmed3.html")
    assert "pubmed3.html" in str(info.value)


def test_other_xml_is_not_pubmed() -> None:
    with pytest.raises(InputError, match=r"not a PubMed XML file \(root element is eInfoResult\)"):
        records(ENTREZ / "einfo1.xml")


def test_corrupt_xml() -> None:
    with pytest.raises(InputError, match="not well-formed") as info:
        records(ENTREZ / "einfo4.xml")
    assert "einfo4.xml" in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_gzip_yields_complete_records_then_fails(tmp_path: Path) -> None:
    full = records(MEDLINE16)
    data = MEDLINE16.read_bytes()
    cut = tmp_path / "medline16n0902.xml.gz"
    cut.write_bytes(data[: len(data) // 2])
    got: list[Any] = []
    with pytest.raises(InputError, match="truncated") as info:
        for item in iter_records(cut):
            got.append(item)
    assert 100 < len(got) < 604
    assert got == full[: len(got)]
    assert f"after {len(got)} records" in str(info.value)


def test_truncated_plain_xml(tmp_path: Path) -> None:
    data = (ENTREZ / "pubmed2.xml").read_bytes()
    first_end = data.index(b"</PubmedArticle>") + len(b"</PubmedArticle>")
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: first_end + 300])
    got: list[Any] = []
    with pytest.raises(InputError, match="after 1 records"):
        for item in iter_records(cut):
            got.append(item)
    assert got == records(ENTREZ / "pubmed2.xml")[:1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not well-formed"),
        (b"   \n", "not well-formed"),
        (bytes(range(256)) * 8, "not well-formed"),
        (b"\x1f\x8b" + b"\x00garbage" * 50, "compressed file"),
        (b"just some text, not xml\n", "not well-formed"),
    ],
    ids=["empty", "blank", "binary", "bad-gzip", "text"],
)
def test_bad_content(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        records(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError):
        records(content)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        records(tmp_path / "absent.xml.gz")
    with pytest.raises(InputError, match="directory"):
        records(tmp_path)


def test_empty_pubmed_set_is_not_an_error() -> None:
    assert records(document()) == []


# ----- bounded memory -------------------------------------------------------------------------------------


def test_bounded_memory_on_a_whole_medline_file(monkeypatch: pytest.MonkeyPatch) -> None:
    decompressed = len(gzip.decompress(MEDLINE16.read_bytes()))
    total_elements = sum(1 for _ in source_tree(MEDLINE16).iter())
    # libxml2 allocates the tree outside Python (tracemalloc does not see it): watch the live tree itself.
    real_iterparse = etree.iterparse
    live: dict[str, Any] = {}

    class Watched:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._parser = real_iterparse(*args, **kwargs)

        def __iter__(self) -> Watched:
            return self

        def __next__(self) -> tuple[str, Any]:
            event, element = next(self._parser)
            live["root"] = element.getroottree().getroot()
            return event, element

        def __getattr__(self, name: str) -> Any:
            return getattr(self._parser, name)

    monkeypatch.setattr(pubmed_xml.etree, "iterparse", Watched)
    largest_tree = most_records = 0
    count = 0
    tracemalloc.start()
    try:
        for _record in iter_records(MEDLINE16):
            count += 1
            root = live["root"]
            most_records = max(most_records, len(root))
            if count % 25 == 0:
                largest_tree = max(largest_tree, sum(1 for _ in root.iter()))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 605
    assert total_elements > 60000
    # Only the record being handed out and the parser's read-ahead are alive: done records are removed
    # (not just emptied) and their content freed.
    assert most_records < 100, most_records
    assert largest_tree < total_elements / 20, (largest_tree, total_elements)
    # And nothing on the Python side keeps records or text around.
    assert peak < decompressed / 3, (peak, decompressed)
