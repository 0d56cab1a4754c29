"""The HTTP API through FastAPI's TestClient: every endpoint, server-sent events, the token, the limits
(413, 422, 429), errors without traces, batch jobs, and logs that never hold a question."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from foundation.settings import ServeSettings, Settings
from indexes.embedder import FakeEmbedder
from medlit.api import WEB_DIR, RateLimiter, create_app
from medlit.cli import cli
from medlit.library import Library
from rag.answer import DISCLAIMER, INSUFFICIENT
from rag.generators import GenerationError
from tests.test_answer import ARTICLES, QUESTION

OFF_TOPIC = "Which pizza restaurant in Naples has the best crust?"
# What a clinician might paste by mistake: none of it may reach a log line.
PRIVATE = ["Jonathan Quackenbush", "MRN 8841-2290", "1961-03-14", "+1 555 014 2297"]
PRIVATE_QUESTION = (
    f"{PRIVATE[0]} ({PRIVATE[1]}, born {PRIVATE[2]}, phone {PRIVATE[3]}): "
    "does metformin reduce cancer incidence in type 2 diabetes?"
)
CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore")  # the test client's own request log, not the server's


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("api")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    settings = Settings(
        home=root / "home",
        embedding={"backend": "fake"},  # type: ignore[arg-type]
        answer={"abstain_threshold": 0.45, "support_threshold": 0.6},  # type: ignore[arg-type]
    )
    with Library(settings=settings, embedder=FakeEmbedder(64)) as lib:
        lib.ingest_jsonl(corpus)
        lib.index_build()
        yield lib


def _client(library: Library, **serve: Any) -> TestClient:
    serve = {"rate_limit": 0, **serve}
    settings = library.settings.model_copy(update={"serve": ServeSettings(**serve)})
    return TestClient(create_app(library, settings=settings), raise_server_exceptions=False)


@pytest.fixture
def client(library: Library) -> Iterator[TestClient]:
    with _client(library) as c:
        yield c


def _events(text: str) -> list[tuple[str, Any]]:
    """Server-sent events as (event, data) pairs."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def _is_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] and body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# ----- endpoints -------------------------------------------------------------------------------------


def test_ask_returns_the_verified_answer(client: TestClient) -> None:
    response = client.post("/ask", json={"question": QUESTION})
    assert response.status_code == 200
    answer = response.json()
    assert not answer["abstained"] and answer["disclaimer"] == DISCLAIMER
    assert {c["pmid"] for c in answer["citations"]} <= {201, 202}
    assert all(c["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{c['pmid']}/" for c in answer["citations"])
    assert all(s["supported"] for s in answer["sentences"])
    assert response.headers["x-request-id"]


def test_ask_honours_filters_k_and_mode(client: TestClient) -> None:
    recent = client.post("/ask", json={"question": QUESTION, "filters": {"years": "2020:2024"}}).json()
    assert {c["pmid"] for c in recent["citations"]} == {202}
    same = client.post(
        "/ask", json={"question": QUESTION, "filters": {"year_min": 2020, "year_max": 2024}, "mode": "bm25"}
    ).json()
    assert {c["pmid"] for c in same["citations"]} == {202} and same["trace"]["mode"] == "bm25"
    meta = client.post(
        "/ask", json={"question": QUESTION, "k": 3, "filters": {"study_types": ["Meta-Analysis"]}}
    ).json()
    assert meta["trace"]["k"] == 3 and meta["trace"]["retrieved"] == [201]
    empty = client.post("/ask", json={"question": QUESTION, "filters": {"years": "1950:1951"}}).json()
    assert empty["abstained"] and empty["answer"] == INSUFFICIENT and "filters" in empty["reason"]
    off = client.post("/ask", json={"question": OFF_TOPIC}).json()
    assert off["abstained"] and "close enough" in off["reason"] and off["citations"] == []


def test_ask_streams_only_verified_events(client: TestClient) -> None:
    whole = client.post("/ask", json={"question": QUESTION}).json()
    for request in (
        {"json": {"question": QUESTION, "stream": True}},
        {"json": {"question": QUESTION}, "headers": {"Accept": "text/event-stream"}},
    ):
        response = client.post("/ask", **request)  # type: ignore[arg-type]
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.text)
        names = [name for name, _ in events]
        assert names[0] == "retrieved" and names[-1] == "answer"
        assert set(names[1:-1]) == {"sentence"} and len(names) == len(whole["sentences"]) + 2
        assert all(data["supported"] for name, data in events if name == "sentence")
        assert events[0][1]["retrieved"] == whole["trace"]["retrieved"]
        final = events[-1][1]
        assert final["answer"] == whole["answer"] and final["citations"] == whole["citations"]


def test_generation_failure_is_502_or_an_error_event(library: Library) -> None:
    class Broken:
        name = "broken"

        def generate(self, evidence: Any) -> Any:
            raise GenerationError("the model server at 127.0.0.1:9 refused the connection")

    broken = Library(settings=library.settings, embedder=library.embedder, generator=Broken())
    with _client(broken) as client:
        body = _is_error(client.post("/ask", json={"question": QUESTION}), 502)
        assert body["error"] == "generation_failed" and "refused" in body["message"]
        streamed = _events(client.post("/ask", json={"question": QUESTION, "stream": True}).text)
        assert [name for name, _ in streamed] in (["error"], ["retrieved", "error"])  # never a sentence
        assert "refused" in streamed[-1][1]["message"] and streamed[-1][1]["request_id"]
    broken.close()


def test_search(client: TestClient) -> None:
    hits = client.get("/search", params={"q": QUESTION, "k": 3}).json()["hits"]
    assert 1 <= len(hits) <= 3 and hits[0]["pmid"] in {201, 202}
    assert all(h["url"].startswith("https://pubmed.ncbi.nlm.nih.gov/") for h in hits)
    typed = client.get("/search", params={"q": "metformin", "type": ["Randomized Controlled Trial"]}).json()
    assert [h["pmid"] for h in typed["hits"]] == [202]
    dated = client.get("/search", params={"q": "metformin", "years": "2019", "mode": "dense"}).json()
    assert [h["pmid"] for h in dated["hits"]] == [201] and dated["mode"] == "dense"
    hidden = client.get("/search", params={"q": "metformin cures"}).json()["hits"]
    assert 203 not in {h["pmid"] for h in hidden}
    loud = client.get("/search", params={"q": "metformin cures", "include_retracted": True}).json()["hits"]
    assert any(h["pmid"] == 203 and h["retracted"] for h in loud)


def test_article_and_404(client: TestClient) -> None:
    article = client.get("/articles/202").json()
    assert article["pmid"] == 202 and article["title"].startswith("Metformin for cancer prevention")
    assert article["url"] == "https://pubmed.ncbi.nlm.nih.gov/202/"
    body = _is_error(client.get("/articles/999999"), 404)
    assert body == {**body, "error": "not_found", "message": "PMID 999999 is not in the library"}
    _is_error(client.get("/articles/not-a-pmid"), 422)
    _is_error(client.get("/no/such/page"), 404)


def test_health(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["version"]
    assert health["library"]["articles"] == 5 and health["library"]["retracted"] == 1
    assert health["index"]["exists"] and health["index"]["model"] == "fake-hash-64"
    assert health["index"]["count"] == 5 and "path" not in health["index"]


def test_openapi_docs_list_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {"/ask", "/search", "/articles/{pmid}", "/health", "/batch", "/batch/{job_id}"}
    assert expected | {"/batch/{job_id}/results"} <= set(paths)


def test_docs_pages_use_packaged_files_only(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """/docs and /redoc load Swagger UI and ReDoc from this server (the fastapi-offline package), never a CDN,
    under a policy that allows scripts from this server only (the browser test renders them offline)."""
    for path, asset in (
        ("/docs", "/docs-assets/swagger-ui-bundle.js"),
        ("/redoc", "/docs-assets/redoc.standalone.js"),
    ):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert asset in page.text and "http" not in page.text.replace("/openapi.json", "")
        policy = dict(p.strip().split(" ", 1) for p in page.headers["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
        assert policy["connect-src"] == "'self'" and "<script>" not in page.text  # no inline script
        script = client.get(asset)
        assert script.status_code == 200 and len(script.content) > 500_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert "SwaggerUIBundle" in client.get("/static/docs.js").text

    import medlit.api

    monkeypatch.setattr(medlit.api, "_docs_assets", lambda: None)  # as without fastapi-offline
    library = client.app.state.library  # type: ignore[attr-defined]
    with TestClient(create_app(library, settings=library.settings), raise_server_exceptions=False) as bare:
        missing = _is_error(bare.get("/docs"), 503)
        assert "pip install 'medlit[serve]'" in missing["message"]
        assert bare.get("/openapi.json").status_code == 200


def test_page_and_its_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert DISCLAIMER in page.text  # the disclaimer is on the page before any answer
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert client.get("/static/style.css").status_code == 200
    assert {p.name for p in WEB_DIR.iterdir()} >= {"index.html", "app.js", "style.css"}


# ----- limits and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"question": QUESTION, "k": 0}, "k"),
        ({"question": QUESTION, "k": 10**9}, "k must be between 1 and 100"),
        ({"question": "   "}, "the question is empty"),
        ({"question": ""}, "the question is empty"),
        ({"question": "x" * 2001}, "too long"),
        ({"question": 42}, "question"),
        ({}, "question"),
        ({"question": QUESTION, "filters": {"years": "2024:2015"}}, "empty (start after end)"),
        ({"question": QUESTION, "filters": {"year_min": 2024, "year_max": 2015}}, "empty"),
        ({"question": QUESTION, "filters": {"years": "2015:", "year_min": 2015}}, "not both"),
        ({"question": QUESTION, "filters": {"years": "recent"}}, "expected YEAR"),
        ({"question": QUESTION, "mode": "magic"}, "mode"),
        ({"question": QUESTION, "generator": "oracle"}, "generator"),
        ({"question": QUESTION, "surprise": 1}, "surprise"),
    ],
)
def test_invalid_ask_is_422_with_a_clear_message(client: TestClient, body: dict, says: str) -> None:
    error = _is_error(client.post("/ask", json=body), 422)
    assert error["error"] == "invalid_input" and says in error["message"]


def test_invalid_search_and_json_are_422(client: TestClient) -> None:
    bad: list[dict[str, Any]] = [{"q": QUESTION, "k": 0}, {"q": QUESTION, "k": 10**9}, {"q": " "}, {}]
    for params in [*bad, {"q": "a", "mode": "x"}]:
        _is_error(client.get("/search", params=params), 422)
    bad_json = client.post("/ask", content=b'{"question": ', headers={"Content-Type": "application/json"})
    assert "JSON" in _is_error(bad_json, 422)["message"]


def test_body_over_the_limit_is_413(library: Library) -> None:
    with _client(library, max_body_bytes=4096) as client:
        big = {"question": QUESTION, "filters": {"mesh": ["x" * 100] * 50}}
        _is_error(client.post("/ask", json=big), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"question": "' + b"y" * 3000
            yield b"z" * 3000 + b'"}'

        _is_error(client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"}), 413)
        assert client.post("/ask", json={"question": QUESTION}).status_code == 200


def test_token_required_when_configured_and_never_logged(
    library: Library, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="medlit")
    token = "s3cret-Token-value-42"
    with _client(library, token=token) as client:
        missing = client.post("/ask", json={"question": QUESTION})
        assert _is_error(missing, 401)["error"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer nope"}
        _is_error(client.get("/search", params={"q": "metformin"}, headers=wrong), 401)
        _is_error(client.get("/articles/201", headers={"Authorization": f"Basic {token}"}), 401)
        good = {"Authorization": f"Bearer {token}"}
        assert client.post("/ask", json={"question": QUESTION}, headers=good).status_code == 200
        assert client.get("/articles/201", headers=good).status_code == 200
        assert client.get("/health").status_code == 200  # counts only: open for health checks
        assert client.get("/").status_code == 200  # the page asks for the token itself
    assert caplog.records
    assert not [r for r in caplog.records if token in r.getMessage()]


def test_rate_limit_is_429_with_retry_after(library: Library) -> None:
    with _client(library, rate_limit=0.01, burst=2) as client:
        assert client.get("/articles/201").status_code == 200
        assert client.get("/articles/201").status_code == 200
        limited = client.get("/articles/201")
        assert _is_error(limited, 429)["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200  # health checks are not limited


def test_rate_limiter_keeps_a_bucket_per_client() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert RateLimiter(rate=0, burst=1).take("a") == 0.0  # 0 turns the limit off


def test_library_errors_are_503_and_surprises_500_without_a_trace(
    library: Library, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="medlit")
    elsewhere = library.settings.model_copy(update={"home": tmp_path})
    empty = Library(settings=elsewhere, embedder=FakeEmbedder(64))
    with _client(empty) as client:
        body = _is_error(client.get("/search", params={"q": "metformin", "mode": "dense"}), 503)
        assert body["error"] == "library_unavailable" and "index" in body["message"]
    empty.close()

    class Surprising(Library):
        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"unexpected while searching {args[0]}")

    surprising = Surprising(settings=library.settings, embedder=library.embedder)
    with _client(surprising) as client:
        response = client.get("/search", params={"q": PRIVATE_QUESTION})
        body = _is_error(response, 500)
        assert body["error"] == "internal_error" and body["request_id"] in body["message"]
        assert PRIVATE[0] not in response.text
    surprising.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"request_id={body['request_id']} unexpected RuntimeError" in logged
    assert PRIVATE[0] not in logged


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(3000):  # poll until done (no time is asserted)
        status = client.get(f"/batch/{job_id}").json()
        if status["status"] not in {"queued", "running"}:
            break
        threading.Event().wait(0.01)
    return status


def test_batch_jobs(library: Library) -> None:
    with _client(library) as client:
        submitted = client.post("/batch", json={"questions": [QUESTION, OFF_TOPIC, QUESTION], "k": 5})
        assert submitted.status_code == 202
        job = submitted.json()
        assert job["total"] == 3 and job["status"] in {"queued", "running", "done"}
        status = _finished(client, job["id"])
        assert status == {**status, "status": "done", "done": 3, "total": 3, "errors": 0}
        results = client.get(f"/batch/{job['id']}/results").json()["results"]
        assert [r["question"] for r in results] == [QUESTION, OFF_TOPIC, QUESTION]
        assert [r["status"] for r in results] == ["ok"] * 3
        first, off, again = (r["answer"] for r in results)
        assert not first["abstained"] and first["trace"]["k"] == 5 and off["abstained"]
        assert again["citations"] == first["citations"]
        filtered = client.post("/batch", json={"questions": [QUESTION], "filters": {"years": "2020:"}}).json()
        assert _finished(client, filtered["id"])["status"] == "done"
        answer = client.get(f"/batch/{filtered['id']}/results").json()["results"][0]["answer"]
        assert {c["pmid"] for c in answer["citations"]} == {202}
        _is_error(client.get("/batch/0123456789abcdef0123456789abcdef"), 404)
        _is_error(client.get("/batch/../../library.db/results"), 404)
        _is_error(client.post("/batch", json={"questions": []}), 422)
        _is_error(client.post("/batch", json={"questions": [QUESTION, " "]}), 422)
        _is_error(client.post("/batch", json={"questions": [QUESTION] * 201}), 422)
        _is_error(client.post("/batch", json={"questions": [QUESTION], "k": 10**9}), 422)
    with _client(library) as restarted:  # the results outlive the server that ran the job
        again_status = restarted.get(f"/batch/{job['id']}").json()
        assert again_status == {**again_status, "status": "done", "done": 3, "total": 3}
        assert len(restarted.get(f"/batch/{job['id']}/results").json()["results"]) == 3


def test_concurrent_requests_share_the_library_safely(client: TestClient) -> None:
    expected_hits = client.get("/search", params={"q": QUESTION}).json()["hits"]
    expected_answer = client.post("/ask", json={"question": QUESTION}).json()["answer"]
    failures: list[str] = []

    def worker() -> None:
        for i in range(6):
            if i % 2:
                r = client.post("/ask", json={"question": QUESTION})
                ok = r.status_code == 200 and r.json()["answer"] == expected_answer
            else:
                r = client.get("/search", params={"q": QUESTION})
                ok = r.status_code == 200 and r.json()["hits"] == expected_hits
            if not ok:
                failures.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# ----- privacy -----------------------------------------------------------------------------------------


def test_no_question_query_or_answer_reaches_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="medlit")
    private = client.post("/ask", json={"question": PRIVATE_QUESTION}).json()
    assert private["trace"]["hits"] > 0  # the question went through retrieval
    answer = client.post("/ask", json={"question": QUESTION}).json()
    assert not answer["abstained"]
    client.post("/ask", json={"question": PRIVATE_QUESTION, "stream": True})
    client.get("/search", params={"q": PRIVATE_QUESTION, "years": "2015:"})
    client.post("/ask", json={"question": PRIVATE_QUESTION, "k": 0})  # rejected: 422
    client.post("/ask", json={"question": PRIVATE_QUESTION * 30})  # too long: 422
    client.post("/batch", json={"questions": [PRIVATE_QUESTION]})
    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    request_lines = [r.getMessage() for r in server_records if r.name == "medlit.api"]
    assert any("method=POST path=/ask status=200" in line for line in request_lines)
    assert any("method=GET path=/search status=200" in line for line in request_lines)
    assert any("status=422" in line and "error=invalid_input" in line for line in request_lines)
    sentence = answer["sentences"][0]["text"]
    for record in server_records:
        text = record.getMessage() + (record.exc_text or "")
        for secret in [*PRIVATE, "metformin", sentence, "years=", "q="]:
            assert secret not in text, f"{secret!r} logged by {record.name}: {text!r}"


# ----- the command -----------------------------------------------------------------------------------


def test_cli_does_not_import_the_api_until_serve_runs() -> None:
    code = (
        "import sys, medlit.cli; print([m for m in ('medlit.api', 'fastapi', 'uvicorn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_runs_uvicorn_without_its_access_log(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
    result = CliRunner().invoke(cli, ["--home", str(library.settings.home), "serve", "--port", "8765"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8765 and seen["access_log"] is False
    assert {"/ask", "/search"} <= set(seen["app"].openapi()["paths"])
