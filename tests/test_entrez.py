"""The E-utilities client against a fake NCBI: faults, retries, slicing past 9,999, reconciliation, rate."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from foundation.errors import EntrezError, InputError
from foundation.settings import NCBISettings
from ingest.article import Article
from ingest.entrez import (
    MAX_RETSTART,
    NOT_RETURNED,
    EntrezClient,
    QueryFetch,
    WebEnvExpiredError,
    redact,
    register_secret,
)
from ingest.pubmed_xml import iter_records
from ingest.ratelimit import RateLimiter
from tests.fake_eutils import RETSTART_ERROR, FakeEutils, Fault, synthetic_corpus

KEY = "f00dfeedc0ffee0123456789abcdefab1234"  # the shape of an NCBI API key (36 hex digits)


def make_settings(url: str, tmp_path: Path, **overrides: Any) -> NCBISettings:
    values: dict[str, Any] = {
        "email": "dev@example.org",
        "api_key": SecretStr(KEY),
        "base_url": url,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "max_retries": 3,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "requests_per_second": 500.0,
        "rate_limit_file": tmp_path / "eutils.rate",
        "fetch_batch_size": 25,
    }
    values.update(overrides)
    return NCBISettings(**values)


@pytest.fixture
def fake() -> Any:
    with FakeEutils(60) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the client asked for (recorded, not slept: the rate limiter still sleeps)."""
    return []


@pytest.fixture
def client(fake: FakeEutils, tmp_path: Path, sleeps: list[float]) -> Any:
    with EntrezClient(make_settings(fake.url, tmp_path), sleep=sleeps.append) as entrez:
        yield entrez


def drain(query: QueryFetch) -> tuple[list[int], list[tuple[int, str]]]:
    pmids: list[int] = []
    failed: list[tuple[int, str]] = []
    for batch in query:
        pmids.extend(r.pmid for r in batch.records if isinstance(r, Article))
        failed.extend(batch.failed)
    return pmids, failed


# ------------------------------------------------------------------------------------------ basics


def test_esearch_posts_identity_and_parses_the_answer(client: EntrezClient, fake: FakeEutils) -> None:
    result = client.esearch("asthma", retmax=5)
    assert result.count == len(fake.dates)
    assert result.ids == fake.matching()[:5]
    assert result.webenv and result.webenv.startswith("MCID_")
    assert result.query_key == "1"
    assert result.query_translation == "asthma[All Fields]"
    (request,) = fake.to("esearch")
    assert request.method == "POST"
    assert request.query_string == ""  # nothing, the key least of all, in the URL
    assert request.params["db"] == "pubmed"
    assert request.params["tool"] == "medlit"
    assert request.params["email"] == "dev@example.org"
    assert request.params["api_key"] == KEY


def test_no_api_key_is_sent_when_none_is_set(fake: FakeEutils, tmp_path: Path) -> None:
    settings = make_settings(fake.url, tmp_path, api_key=None, email=None)
    with EntrezClient(settings) as entrez:
        entrez.esearch("asthma", retmax=0)
    (request,) = fake.requests
    assert not request.api_key_sent
    assert "email" not in request.params
    assert make_settings(fake.url, tmp_path, api_key=None, requests_per_second=None).rate == 3.0


def test_esearch_dates_are_publication_dates(client: EntrezClient, fake: FakeEutils) -> None:
    result = client.esearch("asthma", mindate="2000", maxdate="2003/06", retmax=9999, usehistory=False)
    assert result.ids == fake.matching("2000/01/01", "2003/06/30")
    assert result.webenv is None
    params = fake.requests[0].params
    assert (params["datetype"], params["mindate"], params["maxdate"]) == ("pdat", "2000", "2003/06")
    with pytest.raises(InputError, match="YYYY"):
        client.esearch("asthma", mindate="last year")


def test_phrase_not_found_is_a_warning_not_a_failure(client: EntrezClient) -> None:
    result = client.esearch("abcXYZ")  # the fake answers with the real esearch8.xml
    assert (result.count, result.ids) == (0, [])
    assert "PhraseNotFound: abcXYZ" in result.warnings


def test_efetch_by_id_returns_the_real_records(client: EntrezClient) -> None:
    records = list(iter_records(client.efetch([12091962, 9997])))
    assert [r.pmid for r in records if isinstance(r, Article)] == [12091962, 9997]
    assert isinstance(records[0], Article)
    assert records[0].title.startswith("The treatment of AIDS")


def test_efetch_from_the_history_server(client: EntrezClient, fake: FakeEutils) -> None:
    search = client.esearch("asthma", retmax=10)
    body = client.efetch(webenv=search.webenv, query_key=search.query_key, retstart=2, retmax=3)
    assert [r.pmid for r in iter_records(body) if isinstance(r, Article)] == search.ids[2:5]
    params = fake.to("efetch")[0].params
    assert (params["retmode"], params["rettype"], params["retstart"]) == ("xml", "abstract", "2")


def test_retstart_beyond_9998_is_never_sent(client: EntrezClient, fake: FakeEutils) -> None:
    with pytest.raises(InputError, match="9998"):
        client.esearch("asthma", retstart=MAX_RETSTART + 1)
    with pytest.raises(InputError, match="9998"):
        client.efetch(webenv="MCID_0", query_key=1, retstart=MAX_RETSTART + 1)
    assert fake.requests == []
    # ...and the fake refuses it the way NCBI does
    answer = httpx.post(fake.url + "esearch.fcgi", data={"db": "pubmed", "term": "x", "retstart": "9999"})
    assert RETSTART_ERROR.splitlines()[1][:40] in answer.text


# ------------------------------------------------------------------------------------------ faults


def test_429_waits_retry_after_then_recovers(
    client: EntrezClient, fake: FakeEutils, sleeps: list[float]
) -> None:
    fake.fail("esearch", Fault.rate_limited(retry_after="2"))
    assert client.esearch("asthma").count == len(fake.dates)
    assert [r.status for r in fake.requests] == [429, 200]
    assert sleeps and sleeps[0] >= 2.0  # Retry-After honoured even though backoff_max is 0.05


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(client: EntrezClient, fake: FakeEutils, status: int) -> None:
    fake.fail("efetch", Fault.server_error(status), Fault.server_error(status))
    assert [r.pmid for r in iter_records(client.efetch([9997])) if isinstance(r, Article)] == [9997]
    assert [r.status for r in fake.requests] == [status, status, 200]


def test_html_page_with_status_200_is_retried(client: EntrezClient, fake: FakeEutils) -> None:
    fake.fail("efetch", Fault.html())
    assert b"<PubmedArticleSet>" in client.efetch([9997])
    assert [r.fault for r in fake.requests] == ["html", None]


@pytest.mark.parametrize("endpoint", ["esearch", "efetch"])
def test_error_element_in_a_200_is_retried(client: EntrezClient, fake: FakeEutils, endpoint: str) -> None:
    fake.fail(endpoint, Fault.error("Search Backend failed: temporarily unavailable"))
    if endpoint == "esearch":
        assert client.esearch("asthma").count == len(fake.dates)
    else:
        assert b"9997" in client.efetch([9997])
    assert len(fake.requests) == 2


def test_stalled_response_times_out_and_is_retried(fake: FakeEutils, tmp_path: Path) -> None:
    settings = make_settings(fake.url, tmp_path, read_timeout=0.2)
    fake.fail("esearch", Fault.stall(1.0))
    with EntrezClient(settings, sleep=lambda s: None) as entrez:
        assert entrez.esearch("asthma").count == len(fake.dates)
    assert [r.fault for r in fake.to("esearch")] == ["stall", None]


@pytest.mark.parametrize("fault", [Fault.truncated, Fault.disconnect])
def test_body_cut_mid_xml_is_retried(client: EntrezClient, fake: FakeEutils, fault: Any) -> None:
    fake.fail("efetch", fault())
    body = client.efetch(fake.matching()[:20])
    assert len([r for r in iter_records(body) if isinstance(r, Article)]) == 20
    assert len(fake.to("efetch")) == 2


def test_bad_query_400_fails_at_once_with_ncbi_message(
    client: EntrezClient, fake: FakeEutils, sleeps: list[float]
) -> None:
    fake.fail("esearch", Fault.bad_request("Invalid query: unbalanced parentheses"))
    with pytest.raises(EntrezError, match=r"esearch: HTTP 400: Invalid query: unbalanced parentheses"):
        client.esearch("asthma AND (")
    assert len(fake.requests) == 1 and sleeps == []


def test_exhausted_retries_name_the_endpoint_and_last_reason(client: EntrezClient, fake: FakeEutils) -> None:
    fake.fail("efetch", *[Fault.server_error(503)] * 4)
    with pytest.raises(EntrezError, match=r"^efetch failed after 4 attempts: HTTP 503"):
        client.efetch([9997])
    assert len(fake.requests) == 4


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with FakeEutils(1, real_records=False) as gone:
        url = gone.url  # a port nobody listens on once the fake stops
    with (
        EntrezClient(make_settings(url, tmp_path, max_retries=1), sleep=lambda s: None) as entrez,
        pytest.raises(EntrezError, match="esearch failed after 2 attempts: connection error"),
    ):
        entrez.esearch("asthma")


def test_redirect_is_reported_not_followed(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def moved(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            301, headers={"Location": "https://eutils.example.org/entrez/eutils/esearch.fcgi"}
        )

    settings = make_settings("http://eutils.example.org/entrez/eutils/", tmp_path)
    with (
        EntrezClient(settings, transport=httpx.MockTransport(moved)) as entrez,
        pytest.raises(EntrezError, match=r"HTTP 301, moved to https://eutils\.example\.org/.*check base_url"),
    ):
        entrez.esearch("asthma")
    assert len(calls) == 1  # not retried, not followed (a redirected POST would lose its form data)


# ---------------------------------------------------------------------------------------- the api key


def test_api_key_never_reaches_logs_errors_or_reprs(
    client: EntrezClient, fake: FakeEutils, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    fake.fail("esearch", *[Fault.rate_limited(retry_after=None)] * 4)  # NCBI's 429 body echoes the key
    with pytest.raises(EntrezError) as failure:
        client.esearch("asthma")
    fake.fail("efetch", Fault.bad_request("Invalid api_key " + KEY, as_json=True))
    with pytest.raises(EntrezError) as refused:
        client.efetch([9997])
    assert all(r.api_key_sent for r in fake.requests)  # it was sent, and echoed...
    seen = "\n".join(
        [
            caplog.text,
            str(failure.value),
            repr(failure.value),
            "".join(traceback.format_exception(failure.value)),
            str(refused.value),
            repr(client),
            *(r.query_string for r in fake.requests),
        ]
    )
    assert "API rate limit exceeded" in seen and "Invalid api_key" in seen
    assert KEY not in seen  # ...but never repeated


def test_redact_removes_registered_keys_and_key_fields() -> None:
    register_secret("s3cr3tKEY")
    assert (
        redact("GET /esearch.fcgi?db=pubmed&api_key=abc123&term=x")
        == "GET /esearch.fcgi?db=pubmed&api_key=***&term=x"
    )
    assert "zz9" not in redact('{"error":"API rate limit exceeded","api-key":"zz9","count":"11"}')
    assert redact("key s3cr3tKEY in prose") == "key *** in prose"


# --------------------------------------------------------------------------------------- fetch_query


def test_fetch_query_fetches_everything_through_the_history_server(
    client: EntrezClient, fake: FakeEutils
) -> None:
    progress: list[tuple[int, int]] = []
    query = client.fetch_query("asthma", progress=lambda done, total: progress.append((done, total)))
    pmids, failed = drain(query)
    report = query.report
    assert sorted(pmids) == sorted(fake.dates) and failed == []
    assert (report.count, report.expected, report.fetched, report.failed) == (64, 64, 64, 0)
    assert report.complete and report.shortfall == 0 and report.query_translation == "asthma[All Fields]"
    fetches = fake.to("efetch")
    assert len(fetches) == 3 and all(r.params.get("WebEnv") for r in fetches)
    assert progress[-1] == (64, 64)


def test_max_records_takes_the_newest(client: EntrezClient, fake: FakeEutils) -> None:
    query = client.fetch_query("asthma", max_records=10)
    pmids, _ = drain(query)
    assert pmids == fake.matching()[:10]
    assert (query.report.count, query.report.expected, query.report.fetched) == (64, 10, 10)


def test_missing_pmids_are_asked_for_by_id_then_reported_failed(
    client: EntrezClient, fake: FakeEutils
) -> None:
    order = fake.matching()
    fake.fail("efetch", Fault.fewer(3))  # the first batch comes back 3 short
    fake.withheld = {order[30]}  # and this one never comes back at all
    query = client.fetch_query("asthma")
    pmids, failed = drain(query)
    by_id = [r.ids for r in fake.to("efetch") if r.ids]
    assert by_id == [order[22:25], [order[30]]]
    assert failed == [(order[30], NOT_RETURNED)]
    report = query.report
    assert (report.expected, report.fetched, report.failed) == (64, 63, 1)
    assert report.failures == [(order[30], NOT_RETURNED)]
    assert sorted(pmids) == sorted(set(order) - {order[30]})


@pytest.mark.parametrize(
    "expiry",
    [Fault.expire(), Fault.bad_request("Cannot retrieve history data: WebEnv or query_key expired")],
    ids=["error-in-200", "400"],
)
def test_expired_webenv_falls_back_to_fetching_by_id(
    client: EntrezClient, fake: FakeEutils, expiry: Fault
) -> None:
    fake.fail("efetch", Fault.ok(), expiry)
    query = client.fetch_query("asthma")
    pmids, failed = drain(query)
    assert sorted(pmids) == sorted(fake.dates) and failed == []
    kinds = ["webenv" if r.params.get("WebEnv") else "ids" for r in fake.to("efetch")]
    assert kinds == ["webenv", "webenv", "ids", "ids"]
    assert any("WebEnv expired" in w for w in query.report.warnings)


def test_efetch_with_an_expired_webenv_raises_at_once(client: EntrezClient, fake: FakeEutils) -> None:
    search = client.esearch("asthma")
    fake.expire_history()
    with pytest.raises(WebEnvExpiredError, match="Unable to obtain query #1"):
        client.efetch(webenv=search.webenv, query_key=search.query_key)
    assert len(fake.to("efetch")) == 1


def test_count_over_9999_is_sliced_by_publication_date(tmp_path: Path) -> None:
    with FakeEutils(25_000, real_records=False) as fake:
        settings = make_settings(fake.url, tmp_path, fetch_batch_size=2500, requests_per_second=1000.0)
        with EntrezClient(settings) as entrez:
            query = entrez.fetch_query("asthma")
            pmids, failed = drain(query)
        report = query.report
        assert len(pmids) == len(set(pmids)) == 25_000 and set(pmids) == set(fake.dates) and failed == []
        assert (report.count, report.expected, report.fetched, report.shortfall) == (
            25_000,
            25_000,
            25_000,
            0,
        )
        assert len(report.slices) > 1 and all(s.count <= 9_999 for s in report.slices)
        assert sum(s.count for s in report.slices) == 25_000
        assert all(r.retstart <= MAX_RETSTART for r in fake.requests)
        assert all(int(r.params.get("retmax") or 0) <= 9_999 for r in fake.requests)
        starts = [s.mindate or "" for s in report.slices]
        assert starts == sorted(starts, reverse=True)  # newest slice first


def test_a_single_day_over_9999_is_a_reported_shortfall(tmp_path: Path) -> None:
    busy_day = [(40_000_000 + i, date(2020, 3, 1)) for i in range(10_020)]
    with FakeEutils(busy_day + synthetic_corpus(30), real_records=False) as fake:
        settings = make_settings(fake.url, tmp_path, fetch_batch_size=5000, requests_per_second=1000.0)
        with EntrezClient(settings) as entrez:
            query = entrez.fetch_query("asthma")
            pmids, _ = drain(query)
    report = query.report
    assert report.count == 10_050
    assert len(set(pmids)) == report.fetched == report.expected == 9_999 + 30
    assert report.shortfall == 21 and report.fetched + report.shortfall == report.count
    (busy,) = [s for s in report.slices if s.count > 9_999]
    assert (busy.mindate, busy.maxdate, busy.shortfall) == ("2020/03/01", "2020/03/01", 21)
    assert any("2020/03/01" in w and "21 not fetched" in w for w in report.warnings)


# ---------------------------------------------------------------------------------------- rate limit


def _hammer(settings: NCBISettings, requests: int, barrier: Any) -> None:
    """A separate process sending ``requests`` esearches once every party is ready."""
    with EntrezClient(settings) as entrez:
        barrier.wait(timeout=60)
        for _ in range(requests):
            entrez.esearch("rate", retmax=0, usehistory=False)


def test_threads_and_processes_sharing_a_lock_file_stay_under_the_rate(
    fake: FakeEutils, tmp_path: Path
) -> None:
    rate = 20
    settings = make_settings(fake.url, tmp_path, requests_per_second=float(rate))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    processes = [context.Process(target=_hammer, args=(settings, 8, barrier)) for _ in range(2)]
    for process in processes:
        process.start()
    with EntrezClient(settings) as shared, EntrezClient(settings) as own:
        workers = [
            threading.Thread(
                target=lambda c=c: [c.esearch("rate", retmax=0, usehistory=False) for _ in range(6)]
            )
            for c in (shared, shared, shared, own)
        ]
        barrier.wait(timeout=60)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    stamps = sorted(r.time for r in fake.requests)
    assert len(stamps) == 2 * 8 + 4 * 6 and all(r.status == 200 for r in fake.requests)
    busiest = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert busiest <= rate


def test_rate_limiter_survives_an_empty_or_corrupt_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "eutils.rate"
    for content in (None, b"", b"garbage\x00\xff", b"nan", b"1e308", str(time.time() + 3600).encode()):
        if content is not None:
            path.write_bytes(content)
        limiter = RateLimiter(1000, path)
        assert limiter.wait() <= limiter.interval  # never stuck behind a nonsense timestamp
        assert float(path.read_text()) > time.time() - 60
    directory = RateLimiter(1000, tmp_path)  # not a file: falls back to limiting this process only
    directory.wait()
    directory.wait()
