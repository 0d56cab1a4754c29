"""`medlit mcp` driven by the MCP SDK's own client: `python -m medlit.cli mcp` spawned over stdio against a
small library (the deterministic fake embedder), every tool called, errors the same as the HTTP API's, the
disclaimer on every result, no question in the server's logs; and the streamable-HTTP transport with a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from foundation.settings import ServeSettings, Settings
from medlit.library import Library
from rag.answer import DISCLAIMER, INSUFFICIENT
from tests.test_answer import ARTICLES, QUESTION

pytest.importorskip("mcp", reason="pip install 'medlit[mcp]' (in the test extra)")

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
TOOLS = {"search", "ask", "show_article", "export_citations"}
# What a clinician might paste by mistake: none of it may reach a log line.
PRIVATE = "Jonathan Quackenbush MRN 8841-2290"
PRIVATE_QUESTION = f"{PRIVATE}: does metformin reduce cancer incidence in type 2 diabetes?"
OFF_TOPIC = "Which pizza restaurant in Naples has the best crust?"
RETRACTED = {
    "pmid": 301,
    "title": "Zinc lozenges shorten the common cold",
    "abstract": "Zinc lozenges shortened the duration of the common cold in adults by two days.",
    "year": 2014,
    "journal": "J Fabricated Res",
    "publication_types": ["Journal Article", "Randomized Controlled Trial", "Retracted Publication"],
    "language": "eng",
}
ENV = {
    "MEDLIT_EMBEDDING__BACKEND": "fake",
    "MEDLIT_ANSWER__ABSTAIN_THRESHOLD": "0.45",
    "MEDLIT_ANSWER__SUPPORT_THRESHOLD": "0.6",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small library built here, as `medlit mcp` will read it (fake embedder, its thresholds)."""
    root = tmp_path_factory.mktemp("mcp")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in [*ARTICLES, RETRACTED]))
    settings = Settings(
        home=root / "home",
        embedding={"backend": "fake"},  # type: ignore[arg-type]
        answer={"abstain_threshold": 0.45, "support_threshold": 0.6},  # type: ignore[arg-type]
    )
    with Library(settings=settings) as library:
        library.ingest_jsonl(corpus)
        library.index_build()
    return settings.home


def _environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDLIT_")}
    env.update(ENV, MEDLIT_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


class Client:
    """One MCP client session to a spawned `medlit mcp`, on an event loop of its own thread, so that every
    test of the module can make calls on the same server process (one start, ~a second)."""

    def __init__(self, params: StdioServerParameters, errlog: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session: ClientSession | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._main = asyncio.run_coroutine_threadsafe(self._run(params, errlog), self.loop)
        asyncio.run_coroutine_threadsafe(self._wait_ready(), self.loop).result(timeout=120)

    async def _wait_ready(self) -> None:
        while self._ready is None:
            await asyncio.sleep(0.01)
        await self._ready

    async def _run(self, params: StdioServerParameters, errlog: Any) -> None:
        self._ready = self.loop.create_future()
        self._stop = asyncio.Event()
        try:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                self.init = await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def run(self, make: Callable[[ClientSession], Awaitable[T]], timeout: float = 120) -> T:
        assert self.session is not None
        session = self.session

        async def call() -> T:
            return await make(session)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=timeout)

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        return self.run(lambda s: s.call_tool(tool, arguments))

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._main.result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def stderr_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-logs") / "stderr.log"


@pytest.fixture(scope="module")
def client(home: Path, stderr_path: Path) -> Iterator[Client]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "medlit.cli", "mcp"], env=_environment(home), cwd=str(ROOT)
    )
    with stderr_path.open("w") as errlog:
        session = Client(params, errlog)
        yield session
        session.close()


def _text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def _error(result: Any) -> str:
    """The one message of a tool error (and its code in the structured content)."""
    assert result.is_error, _text(result)
    assert len(result.content) == 1
    message = _text(result)
    assert "\n" not in message and "Traceback" not in message and message
    assert result.structured_content["message"] == message
    return message


def _has_disclaimer(result: Any) -> None:
    assert not result.is_error, _text(result)
    assert result.structured_content["disclaimer"] == DISCLAIMER
    assert DISCLAIMER in _text(result)


# ----- the tools ----------------------------------------------------------------------------------------


def test_the_server_lists_its_four_tools_with_schemas(client: Client) -> None:
    assert client.init.server_info.name == "medlit"
    assert "disclaimer" in (client.init.instructions or "")
    tools = {t.name: t for t in client.run(lambda s: s.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.output_schema is not None and "disclaimer" in tool.output_schema["properties"]
        assert tool.annotations is not None and tool.annotations.read_only_hint
    assert tools["ask"].input_schema["required"] == ["question"]
    ask_args = tools["ask"].input_schema["properties"]
    assert {"question", "k", "mode", "filters", "generator"} <= set(ask_args)
    filters = json.dumps(tools["search"].input_schema)
    for field in ("years", "study_types", "mesh", "languages", "include_retracted"):
        assert field in filters


def test_search_returns_hits_with_filters_and_the_disclaimer(client: Client) -> None:
    result = client.call("search", {"query": "metformin cancer incidence diabetes", "k": 3})
    _has_disclaimer(result)
    hits = result.structured_content["hits"]
    assert 1 <= len(hits) <= 3 and hits[0]["pmid"] in (201, 202)
    assert hits[0]["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{hits[0]['pmid']}/"
    assert f"PMID {hits[0]['pmid']}" in _text(result)
    assert 203 not in [h["pmid"] for h in hits]  # retracted: left out unless asked for

    filtered = client.call(
        "search",
        {
            "query": "metformin cancer incidence diabetes",
            "filters": {"years": "2020:", "study_types": ["Randomized Controlled Trial"]},
        },
    )
    assert [h["pmid"] for h in filtered.structured_content["hits"]] == [202]
    assert filtered.structured_content["filters"]["year_min"] == 2020

    retracted = client.call(
        "search", {"query": "zinc lozenges common cold", "k": 1, "filters": {"include_retracted": True}}
    )
    assert retracted.structured_content["hits"][0]["retracted"] is True
    assert "RETRACTED" in _text(retracted)


def test_ask_gives_the_whole_verified_answer(client: Client, home: Path) -> None:
    result = client.call("ask", {"question": QUESTION})
    _has_disclaimer(result)
    answer = result.structured_content
    assert answer["abstained"] is False and answer["answer"] and answer["generator"] == "extractive"
    cited = {c["pmid"] for c in answer["citations"]}
    assert cited and cited <= set(answer["trace"]["retrieved"])
    assert all(c["evidence_level"] and c["quote"] for c in answer["citations"])
    text = _text(result)
    assert "[1]" in text and "https://pubmed.ncbi.nlm.nih.gov/" in text and "Citations:" in text

    # the answer dict passes through whole: every field Answer.to_dict() has (verdict, stances, ...)
    settings = Settings(home=home, embedding={"backend": "fake"})  # type: ignore[arg-type]
    with Library(settings=settings) as library:
        expected = library.ask(QUESTION).to_dict()
    assert set(answer) == set(expected)
    assert answer["citations"] == expected["citations"] and answer["sentences"] == expected["sentences"]


def test_ask_abstains_with_its_reason(client: Client) -> None:
    result = client.call("ask", {"question": OFF_TOPIC})
    _has_disclaimer(result)
    assert result.structured_content["abstained"] is True
    assert "close enough" in result.structured_content["reason"]
    assert result.structured_content["citations"] == []
    assert INSUFFICIENT in _text(result) and "Reason: " in _text(result)

    filtered = client.call("ask", {"question": QUESTION, "filters": {"years": "1990:1995"}})
    assert filtered.structured_content["abstained"] is True
    assert "passes the filters" in filtered.structured_content["reason"]


def test_show_article_and_a_missing_one(client: Client) -> None:
    result = client.call("show_article", {"pmid": 201})
    _has_disclaimer(result)
    article = result.structured_content
    assert article["pmid"] == 201 and article["journal"] == "Diabetes Care" and article["year"] == 2019
    assert article["evidence_level"] == "systematic review / meta-analysis"
    assert article["abstract"].startswith("BACKGROUND: Diabetes is linked to cancer.")
    assert "Metformin and cancer incidence" in _text(result) and "PMID 201" in _text(result)

    retracted = client.call("show_article", {"pmid": 301})
    assert retracted.structured_content["retracted"] is True and _text(retracted).startswith("RETRACTED")

    missing = client.call("show_article", {"pmid": 999})
    assert _error(missing) == "PMID 999 is not in the library"
    assert missing.structured_content["error"] == "invalid_input"


def test_export_citations_in_each_format(client: Client) -> None:
    ris = client.call("export_citations", {"pmids": [202, 201, 202]})
    _has_disclaimer(ris)
    assert ris.structured_content["format"] == "ris" and ris.structured_content["pmids"] == [202, 201]
    first = ris.content[0].text
    assert first == ris.structured_content["citations"]  # the export alone, to be saved as it is
    assert first.startswith("TY  - JOUR") and first.count("ER  -") == 2 and DISCLAIMER not in first
    assert ris.content[-1].text == DISCLAIMER
    bibtex = client.call("export_citations", {"pmids": [201], "format": "bibtex"})
    assert bibtex.structured_content["citations"].startswith("@article{")
    nbib = client.call("export_citations", {"pmids": [201], "format": "nbib"})
    assert nbib.structured_content["citations"].startswith("PMID- 201")
    csv = client.call("export_citations", {"pmids": [201, 202], "format": "csv"})
    assert len(csv.structured_content["citations"].strip().splitlines()) == 3

    missing = client.call("export_citations", {"pmids": [201, 999, 998]})
    assert "2 PMIDs are not in the library" in _error(missing) and "999, 998" in _error(missing)
    assert "'ris', 'bibtex', 'nbib' or 'csv'" in _error(
        client.call("export_citations", {"pmids": [201], "format": "endnote"})
    )
    assert _error(client.call("export_citations", {"pmids": []})).startswith("pmids: ")


# ----- errors: the HTTP API's limits and messages -------------------------------------------------------


BAD_ASKS = [
    {"question": "metformin " * 201},  # longer than max_question_chars
    {"question": "   "},
    {"question": QUESTION, "k": 0},
    {"question": QUESTION, "k": 500},
    {"question": QUESTION, "mode": "psychic"},
    {"question": QUESTION, "filters": {"years": "2024:2015"}},
    {"question": QUESTION, "filters": {"years": "recent"}},
    {"question": QUESTION, "filters": {"years": "2015:", "year_min": 2015}},
    {"question": QUESTION, "filters": {"colour": "blue"}},
    {"question": QUESTION, "filters": {"study_types": [""]}},
    {"question": QUESTION, "generator": "oracle"},
    {"k": 3},
]


def test_bad_input_is_one_message_the_same_as_the_http_apis(client: Client, home: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from medlit.api import create_app

    settings = Settings(
        home=home,
        embedding={"backend": "fake"},  # type: ignore[arg-type]
        serve=ServeSettings(rate_limit=0),
    )
    with Library(settings=settings) as library, TestClient(create_app(library, settings=settings)) as api:
        for body in BAD_ASKS:
            response = api.post("/ask", json=body)
            assert response.status_code == 422, (body, response.text)
            result = client.call("ask", body)
            assert _error(result) == response.json()["message"], body
            assert result.structured_content["error"] == "invalid_input"


def test_an_unknown_tool_is_an_error(client: Client) -> None:
    assert _error(client.call("diagnose", {"question": QUESTION})) == "Unknown tool: diagnose"


def test_the_question_never_reaches_the_logs(client: Client, stderr_path: Path) -> None:
    for tool, arguments in [
        ("ask", {"question": PRIVATE_QUESTION}),
        ("ask", {"question": PRIVATE_QUESTION, "k": 0}),
        ("ask", {"question": PRIVATE_QUESTION, "filters": {"years": "2024:2015"}}),
        ("search", {"query": PRIVATE_QUESTION}),
        ("search", {"query": PRIVATE_QUESTION * 40}),
    ]:
        client.call(tool, arguments)
    deadline = time.monotonic() + 10
    while "tool=search status=error" not in stderr_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = stderr_path.read_text()
    # one line per call is logged (so this test can see a leak), never what was asked
    assert "tool=ask status=ok" in logs and "tool=ask status=error error=invalid_input" in logs
    assert "tool=search status=error error=invalid_input" in logs
    for secret in (PRIVATE, "Quackenbush", "8841-2290", "metformin", "Metformin"):
        assert secret not in logs


# ----- streamable HTTP ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_streamable_http_transport_with_a_token(home: Path) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port = _free_port()
    token = "mcp-test-token-81f3"
    command = [sys.executable, "-m", "medlit.cli", "mcp", "--transport", "http", "--port", str(port)]
    env = _environment(home, MEDLIT_SERVE__TOKEN=token)
    server = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the http transport did not start"
            time.sleep(0.1)

        refused = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=30)
        assert refused.status_code == 401 and token not in refused.text

        async def session() -> tuple[set[str], Any]:
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                streamable_http_client(url, http_client=http) as (read, write),
                ClientSession(read, write) as mcp_session,
            ):
                await mcp_session.initialize()
                tools = {t.name for t in (await mcp_session.list_tools()).tools}
                found = await mcp_session.call_tool("search", {"query": "metformin cancer", "k": 2})
                return tools, found

        tools, found = asyncio.run(session())
        assert tools == TOOLS
        _has_disclaimer(found)
        assert found.structured_content["hits"][0]["pmid"] in (201, 202)
    finally:
        server.terminate()
        try:
            _out, logs = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _out, logs = server.communicate()
    assert "tool=search status=ok" in logs and "metformin" not in logs and token not in logs


# ----- in-process: a crash inside a tool ----------------------------------------------------------------


class CrashingGenerator:
    """A generator with a bug whose message quotes the question (as a careless exception might)."""

    name = "crashing"

    def generate(self, evidence: Any) -> Any:
        raise RuntimeError(f"cannot handle {evidence.question!r}")


def test_a_crash_in_a_tool_is_an_internal_error_without_its_message(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import anyio

    from medlit.mcp_server import create_server

    settings = Settings(
        home=home,
        embedding={"backend": "fake"},  # type: ignore[arg-type]
        answer={"abstain_threshold": 0.45, "support_threshold": 0.6},  # type: ignore[arg-type]
    )
    with Library(settings=settings, generator=CrashingGenerator()) as library:
        server = create_server(library)
        with caplog.at_level(logging.DEBUG):
            result = anyio.run(server.call_tool, "ask", {"question": PRIVATE_QUESTION})
    assert _error(result) == "internal error (RuntimeError)"
    assert result.structured_content["error"] == "internal_error"
    assert "tool=ask unexpected RuntimeError" in caplog.text and "generate" in caplog.text  # where it was
    assert "Quackenbush" not in caplog.text and "metformin" not in caplog.text
