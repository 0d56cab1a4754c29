"""read_jsonl / validate_jsonl against the real BioASQ and PubMedQA corpora and malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.errors import InputError
from ingest.article import (
    MAX_PMID,
    AbstractSection,
    Article,
    Author,
    CommentCorrection,
    MeshHeading,
    Rejected,
)
from ingest.jsonl import read_jsonl, validate_jsonl


def line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def write_lines(tmp_path: Path, *lines: str | dict[str, Any] | list[Any], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def test_bioasq_corpus(shared_data: Path) -> None:
    path = shared_data / "bioasq" / "corpus.jsonl"
    items = list(read_jsonl(path))
    assert len(items) == line_count(path) == 10_848
    assert all(isinstance(item, Article) for item in items)
    assert validate_jsonl(path) == []
    by_pmid = {item.pmid: item for item in items if isinstance(item, Article)}
    assert len(by_pmid) == 10_848

    first = by_pmid[16083]
    assert first.title == ""
    assert first.abstract == (
        "In Aplysia nervous tissue, curare appears not to be a specific antagonist for the nicotinic ACh "
        "receptor, but rather to be a specific blocking agent for a class of receptor-activated Na+ and Cl- "
        "responses."
    )
    assert first.abstract_sections == [AbstractSection(text=first.abstract)]
    assert first.year is None and first.mesh == [] and first.kind == "article"

    # A title-only record: the text is kept exactly, trailing space included.
    titled = by_pmid[179993]
    assert titled.title.startswith("Restoration of a regulatory response to low density lipoprotein")
    assert titled.title.endswith("plasma low density lipoprotein (LDL). ")
    assert titled.abstract_sections == [] and not titled.has_abstract


def test_pubmedqa_corpus(shared_data: Path) -> None:
    path = shared_data / "pubmedqa" / "corpus.jsonl"
    items = list(read_jsonl(path))
    assert len(items) == line_count(path) == 500
    articles = [item for item in items if isinstance(item, Article)]
    assert len(articles) == 500

    first = articles[0]
    assert first.pmid == 10340286
    assert first.year == 1999
    assert first.title == ""
    assert first.abstract.startswith("The diagnosis of acute appendicitis is still difficult")
    assert first.abstract.endswith("contained no patients with both values unelevated.")
    assert [m.descriptor for m in first.mesh] == [
        "Acute Disease",
        "Aged",
        "Appendectomy",
        "Appendicitis",
        "C-Reactive Protein",
        "Case-Control Studies",
        "Female",
        "Humans",
        "Leukocyte Count",
        "Male",
    ]
    assert not any(m.major for m in first.mesh)
    # "year": null in 36 records.
    assert sum(1 for a in articles if a.year is None) == 36


def test_every_field(tmp_path: Path) -> None:
    record = {
        "pmid": 123,
        "title": "  Title  with   spaces ",
        "abstract": "ignored: abstract_sections win",
        "abstract_sections": [{"label": "METHODS", "text": "We did.", "category": "METHODS"}, "Plain."],
        "year": 2001,
        "pub_date": "2001 Jan",
        "journal": "The Journal",
        "journal_iso": "J",
        "mesh": ["*Neoplasms/drug therapy", {"descriptor": "Humans", "ui": "D006801", "major": False}],
        "publication_types": ["Journal Article"],
        "authors": ["Smith J", "Doe, Jane", {"collective_name": "CONSORT group"}],
        "keywords": ["k1"],
        "doi": "10.1/x",
        "pmcid": "12345",
        "language": "eng",
        "retracted": True,
        "comments_corrections": [{"ref_type": "CommentIn", "pmid": "77", "source": "J. 2001."}],
        "date_revised": "2020-01-02",
        "unknown_key": {"anything": [1, 2]},
    }
    [article] = read_jsonl(write_lines(tmp_path, record))
    assert isinstance(article, Article)
    assert article.pmid == 123
    assert article.title == "  Title  with   spaces "
    assert article.abstract == "METHODS: We did.\nPlain."
    assert article.abstract_sections[0] == AbstractSection(
        text="We did.", label="METHODS", category="METHODS"
    )
    assert (article.year, article.pub_date, article.journal, article.journal_iso) == (
        2001,
        "2001 Jan",
        "The Journal",
        "J",
    )
    assert article.mesh == [
        MeshHeading(descriptor="Neoplasms", major=True, qualifiers=["drug therapy"]),
        MeshHeading(descriptor="Humans", ui="D006801"),
    ]
    assert article.authors == [
        Author(last_name="Smith", initials="J"),
        Author(last_name="Doe", fore_name="Jane"),
        Author(collective_name="CONSORT group"),
    ]
    assert article.publication_types == ["Journal Article", "Retracted Publication"]
    assert article.retracted
    assert article.keywords == ["k1"] and article.doi == "10.1/x" and article.pmcid == "PMC12345"
    assert article.languages == ["eng"]
    assert article.comments_corrections == [
        CommentCorrection(ref_type="CommentIn", pmid=77, source="J. 2001.")
    ]
    assert article.date_revised == "2020-01-02"


def test_article_to_dict_round_trips(tmp_path: Path) -> None:
    original = Article(
        pmid=99,
        title="T",
        abstract_sections=[AbstractSection(text="a", label="BACKGROUND")],
        authors=[Author(last_name="X", fore_name="Y", initials="Y", affiliations=["Z"])],
        mesh=[MeshHeading(descriptor="D", ui="D1", major=True, qualifiers=["q"])],
        comments_corrections=[CommentCorrection(ref_type="RetractionIn", pmid=5, source="s")],
        languages=["eng", "ger"],
        year=1990,
        version=2,
        kind="book",
    )
    [article] = read_jsonl(write_lines(tmp_path, original.to_dict()))
    assert article == original
    assert isinstance(article, Article) and article.content_hash() == original.content_hash()


def test_blank_lines_skipped_and_digit_strings(tmp_path: Path) -> None:
    path = write_lines(tmp_path, "", '{"pmid": "007", "title": "x", "year": "1999"}', "   ", "")
    [article] = read_jsonl(path)
    assert isinstance(article, Article) and article.pmid == 7 and article.year == 1999
    assert validate_jsonl(path) == []


MALFORMED = [
    ('{"pmid": 1, "title": "x"', "invalid JSON"),
    ('["pmid", 1]', "expected a JSON object, got a list"),
    ('"just a string"', "expected a JSON object, got a string"),
    ('{"title": "x"}', "missing 'pmid'"),
    ('{"pmid": "abc", "title": "x"}', "'abc' is not a number"),
    ('{"pmid": 0, "title": "x"}', "out of range"),
    ('{"pmid": -5, "title": "x"}', "out of range"),
    ('{"pmid": 1.5, "title": "x"}', "must be an integer"),
    ('{"pmid": true, "title": "x"}', "must be an integer"),
    ('{"pmid": 1}', "needs a 'title' or an 'abstract'"),
    ('{"pmid": 1, "title": 5}', "'title' must be a string"),
    ('{"pmid": 1, "title": "x", "mesh": "Humans"}', "'mesh' must be a list"),
    ('{"pmid": 1, "title": "x", "mesh": [3]}', "'mesh[0]' must be an object"),
    ('{"pmid": 1, "title": "x", "year": "1999a"}', "'year' must be an integer"),
    ('{"pmid": 1, "title": "x", "year": 99999}', "'year' 99999 is out of range"),
    ('{"pmid": 1, "title": "x", "authors": [{"fore_name": "A"}]}', "needs a 'last_name'"),
    ('{"pmid": 1, "title": "x", "retracted": "yes"}', "'retracted' must be true or false"),
    ('{"pmid": 1, "title": "\\ud800"}', "unpaired surrogate"),
]


@pytest.mark.parametrize(("line", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_line_raises_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path, {"pmid": 1000, "title": "good"}, "", line)
    items = read_jsonl(path)
    first = next(items)  # the good line before it is yielded first
    assert isinstance(first, Article) and first.pmid == 1000
    with pytest.raises(InputError) as info:
        next(items)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_skip_invalid_yields_rejected(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        {"pmid": 1, "title": "one"},
        "{not json",
        {"pmid": "abc", "title": "x"},
        ["a", "list"],
        {"pmid": 4, "title": 4},
        {"pmid": 5, "abstract": "five"},
    )
    items = list(read_jsonl(path, skip_invalid=True))
    assert [type(item).__name__ for item in items] == [
        "Article",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Article",
    ]
    rejected = [item for item in items if isinstance(item, Rejected)]
    assert [r.reason.split(":")[0] for r in rejected] == ["line 2", "line 3", "line 4", "line 5"]
    assert [r.pmid for r in rejected] == [None, None, None, 4]  # the pmid is kept when it was valid
    assert "invalid JSON" in rejected[0].reason


def test_validate_jsonl_lists_every_error(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path, {"pmid": 1, "title": "ok"}, "{bad", {"title": "no pmid"}, {"pmid": 2, "title": "ok"}
    )
    assert validate_jsonl(path) == [
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:3: missing 'pmid'",
    ]
    assert len(validate_jsonl(path, max_errors=1)) == 1


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=rf"^{binary}:1: "):
        list(read_jsonl(binary))
    assert validate_jsonl(binary)  # reported, not raised

    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"pmid": 1, "title": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not UTF-8"):
        list(read_jsonl(latin1))

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"pmid": 1, "title": "caf\xc3\xa9"}\r\n')
    [article] = read_jsonl(bom)
    assert isinstance(article, Article) and article.title == "café"


def test_missing_path_raises_at_call(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as info:
        read_jsonl(tmp_path / "missing.jsonl")
    assert "missing.jsonl" in str(info.value)
    with pytest.raises(InputError, match="no such file"):
        validate_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="directory"):
        read_jsonl(tmp_path)


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    title=TEXT,
    abstract=TEXT,
    pmid=st.integers(min_value=1, max_value=MAX_PMID),
    as_string=st.booleans(),
    ensure_ascii=st.booleans(),
)
def test_text_round_trips_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    title: str,
    abstract: str,
    pmid: int,
    as_string: bool,
    ensure_ascii: bool,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "one.jsonl"
    record = {"pmid": str(pmid) if as_string else pmid, "title": title, "abstract": abstract}
    path.write_text(json.dumps(record, ensure_ascii=ensure_ascii) + "\n", encoding="utf-8")
    [article] = read_jsonl(path)
    assert isinstance(article, Article)
    assert article.pmid == pmid
    assert article.title == title
    assert article.abstract == abstract
