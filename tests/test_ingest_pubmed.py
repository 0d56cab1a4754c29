"""`medlit ingest pubmed` end to end against the fake E-utilities server: stored, reconciled, key-safe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medlit.cli import cli
from tests.fake_eutils import FakeEutils, Fault

KEY = "0123456789abcdef0123456789abcdef0123"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeEutils(80).start()
    monkeypatch.setenv("MEDLIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDLIT_NCBI__BASE_URL", fake.url)
    monkeypatch.setenv("MEDLIT_NCBI__EMAIL", "dev@example.org")
    monkeypatch.setenv("MEDLIT_NCBI__API_KEY", KEY)
    monkeypatch.setenv("MEDLIT_NCBI__REQUESTS_PER_SECOND", "200")
    monkeypatch.setenv("MEDLIT_NCBI__RATE_LIMIT_FILE", str(tmp_path / "rate"))
    monkeypatch.setenv("MEDLIT_NCBI__BACKOFF_BASE", "0.01")
    monkeypatch.setenv("MEDLIT_NCBI__BACKOFF_MAX", "0.02")
    monkeypatch.setenv("MEDLIT_NCBI__FETCH_BATCH_SIZE", "20")
    monkeypatch.setenv("MEDLIT_NCBI__READ_TIMEOUT", "2")
    yield fake, tmp_path / "home"
    fake.stop()


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_every_listed_pmid_is_stored_or_failed(env) -> None:
    fake, home = env
    total = len(fake.dates)
    withheld = fake.sorted_pmids[3]
    fake.withheld.add(withheld)
    fake.fail("efetch", Fault.rate_limited("0"), Fault.server_error(502), Fault.truncated())
    result = invoke("-vv", "ingest", "pubmed", "cancer", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == total
    assert report["inserted"] == total - 1
    assert report["failed"] == 1
    assert report["seen"] == report["inserted"] + report["failed"]
    failures = json.loads(invoke("runs", "--failures", str(report["run_id"]), "--json").stdout)
    assert failures == [
        {**failures[0], "pmid": withheld, "reason": "not returned by efetch", "origin": "entrez"}
    ]
    stats = json.loads(invoke("stats", "--json").stdout)
    assert stats["articles"] == total - 1
    # The key travelled to NCBI but is nowhere in what the user or the disk sees.
    assert any(request.params.get("api_key") == KEY for request in fake.requests)
    assert KEY not in result.output
    for path in home.iterdir():
        assert KEY.encode() not in path.read_bytes()


def test_max_and_a_second_run_change_nothing(env) -> None:
    result = invoke("ingest", "pubmed", "cancer", "--max", "30", "--json")
    report = json.loads(result.stdout)
    assert report["inserted"] == 30
    again = json.loads(invoke("ingest", "pubmed", "cancer", "--max", "30", "--json").stdout)
    assert (again["inserted"], again["unchanged"]) == (0, 30)


def test_a_bad_query_is_one_clear_error(env) -> None:
    fake, _home = env
    fake.fail("esearch", Fault.server_error(400))
    result = invoke("ingest", "pubmed", "cancer[[[")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output and KEY not in result.output


def test_bad_dates_are_refused_before_any_request(env) -> None:
    fake, _home = env
    result = invoke("ingest", "pubmed", "cancer", "--mindate", "2020", "--maxdate", "2019")
    assert result.exit_code == 1
    assert "after maxdate" in result.stderr
    assert fake.requests == []
