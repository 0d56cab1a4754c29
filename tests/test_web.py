"""The web page in a real browser: Debian's chromium driven by Playwright against the real app served by
uvicorn on 127.0.0.1 (no browser download: `make install` installs chromium with apt when it is missing)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from foundation.settings import ServeSettings, Settings
from indexes.embedder import FakeEmbedder
from medlit.library import Library
from rag.answer import DISCLAIMER, INSUFFICIENT
from tests.test_answer import ARTICLES, QUESTION

uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")

CHROMIUM = os.environ.get("MEDLIT_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine: `make install` runs apt-get install chromium"
)

# A retracted article whose title carries markup: it must show as text, under a RETRACTED badge.
RETRACTED = {
    "pmid": 301,
    "title": 'Zinc lozenges shorten the common cold <img id="injected" src="x">',
    "abstract": "Zinc lozenges shortened the duration of the common cold in adults by two days.",
    "year": 2014,
    "journal": "J Fabricated Res",
    "publication_types": ["Journal Article", "Randomized Controlled Trial", "Retracted Publication"],
    "language": "eng",
}


TOKEN = "web-test-token-5f2c"


@contextlib.contextmanager
def _serving(library: Library, settings: Settings) -> Iterator[str]:
    """The app on uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    from medlit.api import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(library, settings=settings),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if http.started or not thread.is_alive():
            break
        threading.Event().wait(0.02)
    assert http.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        http.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("web")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in [*ARTICLES, RETRACTED]))
    settings = Settings(
        home=root / "home",
        embedding={"backend": "fake"},  # type: ignore[arg-type]
        answer={"abstain_threshold": 0.45, "support_threshold": 0.6},  # type: ignore[arg-type]
        serve=ServeSettings(rate_limit=0),
    )
    with Library(settings=settings, embedder=FakeEmbedder(64)) as library:
        library.ingest_jsonl(corpus)
        library.index_build()
        yield library


@pytest.fixture(scope="module")
def server(library: Library) -> Iterator[str]:
    with _serving(library, library.settings) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=30_000)


def test_a_question_gets_a_cited_answer(page: Any) -> None:
    assert page.locator("#disclaimer").is_visible()
    assert page.locator("#disclaimer").inner_text() == DISCLAIMER
    _ask(page, QUESTION)
    assert page.locator("#error").is_hidden() and page.locator("#insufficient").is_hidden()
    assert page.locator("#answer-text").inner_text().strip()
    items = page.locator("#citations li")
    assert items.count() >= 1
    links = page.locator("#citations a.citation-title")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs and all(h.startswith("https://pubmed.ncbi.nlm.nih.gov/") for h in hrefs)
    assert {int(h.rstrip("/").rsplit("/", 1)[1]) for h in hrefs} <= {201, 202}
    first = items.first.inner_text()
    assert any(str(year) in first for year in (2019, 2022))  # year and journal shown
    assert items.first.locator(".badge-level").inner_text()  # evidence level badge
    assert items.first.locator(".quote").inner_text()  # the supporting quote
    marks = page.locator("#answer-text a.mark")
    assert marks.count() >= 1 and marks.first.get_attribute("href", timeout=1000).startswith("#cite-")
    assert page.locator("#disclaimer").is_visible()


def test_off_topic_question_shows_insufficient_evidence_with_its_reason(page: Any) -> None:
    _ask(page, "Which pizza restaurant in Naples has the best crust?")
    assert page.locator("#insufficient").is_visible()
    assert page.locator("#insufficient-title").inner_text() == INSUFFICIENT
    assert "close enough" in page.locator("#insufficient-reason").inner_text()
    assert page.locator("#citations li").count() == 0
    assert page.locator("#disclaimer").is_visible()


def test_filters_years_and_study_types(page: Any) -> None:
    page.fill("#year-from", "2020")
    page.check('input[name="study-type"][value="Randomized Controlled Trial"]')
    _ask(page, QUESTION)
    hrefs = page.locator("#citations a.citation-title").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://pubmed.ncbi.nlm.nih.gov/202/"]


def test_retracted_citation_is_loud_and_markup_stays_text(page: Any) -> None:
    page.check("#include-retracted")
    _ask(page, "Do zinc lozenges shorten the common cold in adults?")
    item = page.locator("#citations li").first
    assert item.locator(".badge-retracted").inner_text() == "RETRACTED"
    assert page.locator("#retracted-warning").is_visible()
    assert '<img id="injected" src="x">' in item.locator(".citation-title").inner_text()
    assert page.locator("#injected").count() == 0  # shown as text, never parsed as HTML


def test_invalid_input_shows_the_error_state(page: Any) -> None:
    page.fill("#year-from", "2024")
    page.fill("#year-to", "2015")
    _ask(page, QUESTION)
    assert page.locator("#error").is_visible() and page.locator("#result").is_hidden()
    assert "first year" in page.locator("#error-message").inner_text()
    page.fill("#year-from", "")
    page.fill("#year-to", "")
    page.eval_on_selector("#question", "box => box.removeAttribute('maxlength')")
    _ask(page, "metformin " * 201)  # longer than the server takes: its message is shown
    assert page.locator("#error").is_visible()
    assert "too long" in page.locator("#error-message").inner_text()
    assert page.locator("#error-id").inner_text().startswith("Request id: ")


def test_a_server_with_a_token_asks_for_it(browser: Any, library: Library) -> None:
    settings = library.settings.model_copy(update={"serve": ServeSettings(rate_limit=0, token=TOKEN)})
    with _serving(library, settings) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/")
        assert not page.locator("#token-box").evaluate("box => box.open")
        _ask(page, QUESTION)
        assert (
            page.locator("#error").is_visible()
            and "access token" in page.locator("#error-message").inner_text()
        )
        assert page.locator("#token-box").evaluate("box => box.open")  # opened for the user
        page.fill("#token", TOKEN)
        _ask(page, QUESTION)
        assert page.locator("#citations li").count() >= 1 and page.locator("#error").is_hidden()
        context.close()


def test_api_documentation_renders_offline(browser: Any, server: str) -> None:
    """The page's "API documentation" link: Swagger UI lists the operations and ReDoc renders, with every
    request to anywhere but this server refused (as offline), and nothing fetched from elsewhere."""
    context = browser.new_context()
    outside: list[str] = []

    def refuse(route: Any) -> None:
        outside.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(server), refuse)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    page.click("text=API documentation")
    page.wait_for_url(server + "/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/ask", "/search", "/articles/{pmid}", "/health"} <= set(paths)
    assert "Answer a question with verified citations" in page.locator("#swagger-ui").inner_text()

    page.click("text=the same documentation in ReDoc")
    page.wait_for_url(server + "/redoc")
    page.wait_for_selector("h1", timeout=60_000)
    assert page.locator("h1").first.inner_text().startswith("medlit")
    page.wait_for_selector("text=Answer a question with verified citations", timeout=60_000)
    assert page.locator("[data-section-id]").count() >= 4  # a section per operation
    context.close()
    assert errors == [], f"JavaScript errors on the documentation pages: {errors}"
    assert outside == [], f"the documentation fetched from elsewhere: {outside}"
