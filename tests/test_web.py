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

from foundation.errors import MedlitError
from foundation.settings import ServeSettings, Settings
from indexes.embedder import FakeEmbedder
from medlit.library import Library
from rag.answer import DISCLAIMER, INSUFFICIENT
from rag.generators import Evidence, GenerationError, generate_from_stream
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
        answer={  # type: ignore[arg-type]
            "abstain_threshold": 0.45,
            "support_threshold": 0.6,
            "verdict_model": "none",
            "quote_within": 0.2,  # the fake embedder's word overlaps spread wider than cosines
        },
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
    """Ask, and wait for the end: the whole answer (not a sentence streaming in), or an error."""
    page.fill("#question", question)
    page.click("#submit")  # the handler disables the button before its first await
    page.wait_for_selector("#submit:not([disabled])", timeout=60_000)
    page.wait_for_selector("#result:not([hidden]):not([aria-busy]), #error:not([hidden])", timeout=30_000)


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


# ----- the stream: sentences as they are verified, then the whole answer; a cut stream is an error ------


class GatedGenerator:
    """A model that streams its answer and stops after the first sentence until the test lets it go on, so
    the test sees what the page shows mid-stream without timing anything. A question with "server failure"
    in it fails as a model server would."""

    name = "gated-test-model"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = threading.Event()

    def generate(self, evidence: Evidence) -> Any:
        return generate_from_stream(self, evidence)

    def stream(self, evidence: Evidence) -> Iterator[str]:
        if "server failure" in evidence.question:
            raise GenerationError("the model server at 127.0.0.1:9 refused the connection")
        number = {source.pmid: source.number for source in evidence.sources}
        yield "Verdict: no\n"
        yield "Metformin use was associated with a lower cancer incidence in type 2 diabetes "
        yield f"[{number[201]}]. "
        yield "In"  # the next sentence has begun: the first is complete, verified and sent
        self.waiting.set()
        if not self.release.wait(60):
            raise MedlitError("the test never released the generator")
        yield (
            " this randomized trial of 3000 adults with type 2 diabetes, metformin did not reduce overall "
            f"cancer incidence over five years [{number[202]}]."
        )


@pytest.fixture
def gated(library: Library) -> Iterator[tuple[GatedGenerator, str]]:
    generator = GatedGenerator()
    with (
        Library(settings=library.settings, embedder=FakeEmbedder(64), generator=generator) as own,
        _serving(own, library.settings) as base,
    ):
        yield generator, base
        generator.release.set()


def test_sentences_appear_as_they_are_verified_then_the_answer(browser: Any, gated: Any) -> None:
    generator, base = gated
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/")
    page.fill("#question", QUESTION)
    page.click("#submit")
    page.wait_for_selector("#answer-text .sentence", timeout=60_000)
    assert generator.waiting.is_set() and not generator.release.is_set()  # the answer is not finished
    assert page.locator("#answer-text .sentence").count() == 1
    first = page.locator("#answer-text .sentence").first.inner_text()
    assert first.startswith("Metformin use was associated with a lower cancer incidence") and "[1]" in first
    assert page.locator("#result").get_attribute("aria-busy") == "true"
    assert page.locator("#status").is_visible() and "Found" in page.locator("#status").inner_text()
    assert page.locator("#citations-box").is_hidden() and page.locator("#verdict").is_hidden()
    assert page.locator("#disclaimer").is_visible()

    generator.release.set()
    page.wait_for_selector("#result:not([aria-busy]) #citations li", timeout=60_000)
    assert page.locator("#answer-text .sentence").count() == 2
    assert page.locator("#citations li").count() == 2
    assert page.locator("#verdict").is_visible() and page.locator("#verdict-value").inner_text() == "no"
    assert page.locator("#generator").inner_text() == "Written by: gated-test-model"
    assert page.locator("#answer-disclaimer").inner_text() == DISCLAIMER
    assert page.locator("#status").is_hidden() and page.locator("#error").is_hidden()
    context.close()


def test_an_error_in_the_stream_is_shown_with_its_request_id(browser: Any, gated: Any) -> None:
    _generator, base = gated
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + "/")
    _ask(page, "Does metformin reduce cancer incidence in type 2 diabetes despite a server failure?")
    assert page.locator("#error").is_visible() and page.locator("#result").is_hidden()
    assert "refused the connection" in page.locator("#error-message").inner_text()
    assert page.locator("#error-id").inner_text().startswith("Request id: ")
    context.close()


def _sse(*events: tuple[str, Any]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def _stream_of(answer: dict[str, Any]) -> list[tuple[str, Any]]:
    """The events the server sends for ``answer``: retrieved, a sentence each, then the answer."""
    events: list[tuple[str, Any]] = [("retrieved", answer["trace"])]
    for sentence in answer["sentences"]:
        cited = [c for c in answer["citations"] if c["number"] in sentence["citations"]]
        events.append(("sentence", {**sentence, "cited": cited}))
    return [*events, ("answer", answer)]


@pytest.mark.parametrize("cut", ["ends-without-answer", "torn-event", "connection-reset"])
def test_a_cut_stream_shows_an_error_never_a_shorter_answer(page: Any, library: Library, cut: str) -> None:
    """The server's stream stops after a sentence (the connection dropped, the server stopped): the page
    says so and shows none of the partial answer."""
    events = _stream_of(library.ask(QUESTION).to_dict())[:-1]  # everything but the answer
    body = _sse(*events)
    if cut == "torn-event":
        body += 'event: answer\ndata: {"question": "Does metf'

    def reply(route: Any) -> None:
        if cut == "connection-reset":
            route.abort("connectionreset")
        else:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route("**/ask", reply)
    _ask(page, QUESTION)
    assert page.locator("#error").is_visible() and page.locator("#result").is_hidden()
    message = page.locator("#error-message").inner_text()
    if cut == "connection-reset":
        assert "could not be reached" in message
    else:
        assert "stopped before it was complete" in message
    assert page.locator("#answer-text .sentence").count() == 0  # nothing partial is left on the page
    assert page.locator("#disclaimer").is_visible()


def test_verdict_stances_notes_and_study_details_are_shown(page: Any, library: Library) -> None:
    """An answer with the fields of the answers issue (verdict and its basis, the stances of the cited
    studies, notes, focus; per citation stance, design and sample size), shown as text."""
    answer = library.ask(QUESTION).to_dict()
    answer.update(
        verdict="uncertain",
        verdict_basis="the stances of the cited studies",
        stance_summary="1 meta-analysis for, 1 RCT against",
        stances={"supports": 1, "contradicts": 1, "unclear": 0},
        notes=['Population: <img id="injected-note" src="x"> [2] studies adults only.'],
        focus={
            "intervention": ["metformin"],
            "population": ["children"],
            "outcome": [],
            "missing": ["children"],
        },
    )
    for citation in answer["citations"]:
        rct = citation["pmid"] == 202
        citation.update(
            stance="contradicts" if rct else "supports",
            design="RCT" if rct else "meta-analysis",
            sample_size=3000 if rct else None,
        )
    page.route(
        "**/ask",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=_sse(*_stream_of(answer))
        ),
    )
    _ask(page, QUESTION)
    assert page.locator("#verdict").inner_text() == "Verdict: uncertain (the stances of the cited studies)"
    assert page.locator("#verdict").get_attribute("data-verdict") == "uncertain"
    assert page.locator("#stances").is_visible()
    assert (
        page.locator("#stance-for").inner_text() == "1"
        and page.locator("#stance-against").inner_text() == "1"
    )
    assert page.locator("#stance-unclear").inner_text() == "0"
    assert page.locator("#stance-summary").inner_text() == "1 meta-analysis for, 1 RCT against"
    notes = page.locator("#notes li").all_inner_texts()
    assert notes[0].startswith('Population: <img id="injected-note" src="x"> [2]')
    assert notes[1] == "No retrieved article studies: children."
    assert page.locator("#injected-note").count() == 0
    rct = page.locator("#citations li", has_text="randomized controlled trial")
    assert rct.locator(".badge-design").inner_text() == "RCT"
    assert rct.locator(".sample-size").inner_text() == "n = 3,000"
    assert rct.locator(".badge-stance").inner_text() == "contradicts"
    meta = page.locator("#citations li", has_text="meta-analysis").first
    assert (
        meta.locator(".badge-stance").inner_text() == "supports" and meta.locator(".sample-size").count() == 0
    )
    assert page.locator("#generator").inner_text() == "Written by: extractive"
    assert page.locator("#answer-disclaimer").inner_text() == DISCLAIMER


def test_an_older_answer_without_those_fields_shows_none_of_them(page: Any, library: Library) -> None:
    """An answer from a server older than the answers issue (no verdict, stances, notes, focus; citations
    without stance, design or size) shows none of those parts, and still its citations."""
    answer = library.ask(QUESTION).to_dict()
    for key in ("verdict", "verdict_basis", "stance_summary", "stances", "notes", "focus", "off_point"):
        answer.pop(key, None)
    for citation in answer["citations"]:
        for key in ("stance", "design", "sample_size", "size"):
            citation.pop(key, None)
    page.route(
        "**/ask",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=_sse(*_stream_of(answer))
        ),
    )
    _ask(page, QUESTION)
    assert page.locator("#citations li").count() >= 1
    for hidden in ("#stances", "#notes-box", "#verdict"):
        assert page.locator(hidden).is_hidden()
    assert page.locator("#citations .badge-stance").count() == 0
