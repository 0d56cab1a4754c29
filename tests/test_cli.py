"""The ``medlit`` command as a user runs it: results on stdout, one-line errors, non-zero exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medlit.cli import cli
from tests.conftest import SHARED_DATA

FIXTURES = SHARED_DATA / "fixtures"
MEDLINE_2016 = FIXTURES / "pubmed_xml" / "medline16n0902.xml.gz"
CURRENT = FIXTURES / "pubmed_xml" / "test_current_medline.xml.gz"


@pytest.fixture
def run(tmp_path: Path):
    home = tmp_path / "home"

    def invoke(*args: str):
        runner = CliRunner()
        return runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False)

    return invoke


def stats(run) -> dict:
    result = run("stats", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_files_json_counts_add_up(run) -> None:
    result = run("ingest", "files", str(MEDLINE_2016), str(CURRENT), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "done"
    assert report["seen"] == 609  # 604 + 4 citations, 1 DeleteCitation PMID
    assert report["seen"] == sum(report[k] for k in ("inserted", "updated", "unchanged", "deleted", "failed"))
    assert report["deleted"] == 1
    data = stats(run)
    assert data["articles"] == 608
    assert {"articles", "with_abstract", "retracted"} <= data.keys()
    assert 0 < data["with_abstract"] < data["articles"]


def test_reingest_is_a_noop(run) -> None:
    assert run("ingest", "files", str(CURRENT), "--json").exit_code == 0
    before = stats(run)
    result = run("ingest", "files", str(CURRENT), "--json")
    report = json.loads(result.stdout)
    assert report["seen"] == 0
    assert report["files"][0]["status"] == "already applied"
    assert stats(run)["articles"] == before["articles"]


def test_show_json_and_text(run) -> None:
    run("ingest", "files", str(FIXTURES / "entrez" / "pubmed4.xml"))
    result = run("show", "27797938", "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["pmid"] == 27797938
    assert record["journal"] == "Gut"
    assert record["year"] == 2017
    assert "r2<0.25" in record["abstract"]
    assert record["url"] == "https://pubmed.ncbi.nlm.nih.gov/27797938/"
    text = run("show", "27797938").stdout
    assert "Leucocyte telomere length" in text
    assert "OBJECTIVE:" in text


def test_show_missing_pmid_is_one_clear_error(run) -> None:
    result = run("show", "12345")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: PMID 12345 is not in the library")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file or directory"),
        (b"", "empty file"),
        (b"PMID- 1\nTI  - not xml\n", "not an XML"),
        (b"<html><body>Service unavailable</body></html>", "not a PubMed XML file"),
    ],
)
def test_bad_files_leave_the_library_as_it_was(
    run, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    assert run("ingest", "files", str(CURRENT)).exit_code == 0
    before = stats(run)
    bad = tmp_path / "bad.xml"
    if content is not None:
        bad.write_bytes(content)
    result = run("ingest", "files", str(bad), str(MEDLINE_2016))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in result.output
    after = stats(run)
    assert after["articles"] == before["articles"]


def test_ingest_jsonl_and_malformed_line(run, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"pmid": 1, "title": "Aspirin and stroke", "abstract": "We studied aspirin."})
        + "\n"
        + json.dumps({"pmid": "2", "title": "", "abstract": "Metformin and cancer."})
        + "\n"
    )
    result = run("ingest", "jsonl", str(good), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"pmid": 3, "title": "ok"}) + "\n{not json\n")
    result = run("ingest", "jsonl", str(bad))
    assert result.exit_code == 1
    assert "bad.jsonl:2:" in result.stderr
    assert stats(run)["articles"] == 2  # nothing of the bad file stored
    result = run("ingest", "jsonl", str(bad), "--skip-invalid", "--json")
    report = json.loads(result.stdout)
    assert (report["inserted"], report["failed"]) == (1, 1)


def test_ingest_medline(run) -> None:
    result = run("ingest", "medline", str(FIXTURES / "medline" / "pubmed_result2.txt"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 4


def test_runs_lists_counts_and_failures(run, tmp_path: Path) -> None:
    bad = tmp_path / "mixed.jsonl"
    bad.write_text(json.dumps({"pmid": 5, "title": "fine"}) + "\n" + json.dumps({"pmid": "x"}) + "\n")
    run("ingest", "jsonl", str(bad), "--skip-invalid")
    runs = json.loads(run("runs", "--json").stdout)
    assert runs[0]["source"] == "jsonl" and runs[0]["failed"] == 1
    failures = json.loads(run("runs", "--failures", str(runs[0]["id"]), "--json").stdout)
    assert len(failures) == 1 and "line 2" in failures[0]["reason"]
