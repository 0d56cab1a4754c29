"""The MCP server: the library as tools for assistants (desktop chat clients, IDE agents), on the official
``mcp`` Python SDK (``pip install 'medlit[mcp]'``).

``medlit mcp`` serves it over stdio (the assistant starts the process and talks on its stdin/stdout) or
streamable HTTP (``--transport http``, at ``/mcp``). Four tools, each one call into ``Library``:

- ``search``: the best articles for a query (k, mode, filters);
- ``ask``: a short answer whose every sentence cites retrieved articles, verified by code, or an honest
  abstention with its reason; the whole answer as structured output, and as readable text;
- ``show_article``: one article of the library, in full;
- ``export_citations``: PMIDs as RIS, BibTeX, MEDLINE/nbib or CSV.

Every result carries the clinician's-judgement disclaimer. Input is checked as the HTTP API checks it
(``medlit.inputs``: the question's length, k, the filters) and a mistake is a tool error with one clear
message. Logged: one line per call (tool, status, duration); never a question, a query, an answer or a
token, and the SDK's own loggers stay at WARNING, where they log no request content.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundation.errors import EntrezError, InputError, LibraryError, MedlitError
from foundation.redaction import RedactingFilter, register_secret
from indexes.hit import Filters
from medlit.inputs import FiltersIn, GeneratorName, Mode, check_k, question_text, validation_message
from medlit.library import Library
from medlit.version import __version__
from rag.answer import DISCLAIMER
from rag.generators import GenerationError

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
    from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("medlit mcp needs the MCP SDK: pip install 'medlit[mcp]'") from None

log = logging.getLogger("medlit.mcp")
T = TypeVar("T")

Transport = Literal["stdio", "http"]
ExportFormat = Literal["ris", "bibtex", "nbib", "csv"]
MAX_EXPORT_PMIDS = 1000
MAX_PMID = 2**40

INSTRUCTIONS = (
    "medlit searches a local library of PubMed articles and answers clinical and research questions with "
    "short answers whose every sentence cites retrieved articles, checked by code; when the evidence found "
    "is not enough it says so and why. Show the user the citations (PMID links), the verdict and the "
    "disclaimer with any answer. Answers support, and do not replace, a clinician's judgement."
)

# what each error is called in a tool error's structured content (the HTTP API's names)
_ERRORS: list[tuple[type[MedlitError], str]] = [
    (InputError, "invalid_input"),
    (LibraryError, "library_unavailable"),
    (GenerationError, "generation_failed"),
    (EntrezError, "pubmed_unavailable"),
    (MedlitError, "bad_request"),
]


# ----- what the tools return (their output schemas) ----------------------------------------------------


class SearchResult(BaseModel):
    """The hits of ``search``, best first."""

    k: int
    mode: str
    filters: dict[str, Any]
    hits: list[dict[str, Any]] = Field(
        description="pmid, rank, score, title, year, journal, abstract, url..."
    )
    disclaimer: str


class AskResult(BaseModel):
    """The whole verified answer, as ``medlit ask --json`` prints it (later fields pass through)."""

    model_config = ConfigDict(extra="allow")

    question: str
    answer: str = Field(description="The answer text with [n] citation marks, or the abstention.")
    abstained: bool = Field(description="True when the evidence found was insufficient to answer.")
    reason: str | None = Field(None, description="Why it abstained.")
    verdict: str | None = Field(None, description="yes / no / uncertain, for yes/no questions.")
    sentences: list[dict[str, Any]] = Field(default_factory=list)
    citations: list[dict[str, Any]] = Field(
        default_factory=list, description="number, pmid, title, journal, year, evidence_level, quote, url..."
    )
    generator: str = Field(description="Which generator wrote the answer.")
    disclaimer: str


class ArticleResult(BaseModel):
    """One article of the library: every stored field, the abstract, its evidence level and URL."""

    model_config = ConfigDict(extra="allow")

    pmid: int
    title: str
    abstract: str
    year: int | None = None
    journal: str | None = None
    publication_types: list[str] = Field(default_factory=list)
    evidence_level: str
    retracted: bool
    url: str
    disclaimer: str


class ExportResult(BaseModel):
    """The citations of the articles in one text, in the format asked."""

    format: str
    count: int
    pmids: list[int]
    citations: str = Field(description="The RIS / BibTeX / nbib / CSV text.")
    disclaimer: str


# ----- the server --------------------------------------------------------------------------------------


def _error_result(message: str, code: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content={"error": code, "message": message},
        is_error=True,
    )


def _tool_error(exc: Exception, tool: str) -> CallToolResult:
    """One clear message for a failed call: what the caller got wrong, or what failed, never a trace."""
    cause: BaseException | None = exc
    crashed = False  # the SDK wraps what a tool raises (and a result it cannot convert) as unexpected
    while isinstance(cause, ToolError) and cause.__cause__ is not None:
        crashed = crashed or isinstance(cause, UnexpectedToolError)
        cause = cause.__cause__
    if isinstance(cause, ValidationError) and not crashed:  # the arguments do not fit the input schema
        return _error_result(validation_message(cause.errors()), "invalid_input")
    if isinstance(cause, MedlitError):
        code = next(c for kind, c in _ERRORS if isinstance(cause, kind))
        return _error_result(str(cause), code)
    if isinstance(cause, ToolError):  # the SDK's own: an unknown tool
        return _error_result(str(cause), "bad_request")
    # The exception's message may quote a question: log its type and where it was raised only.
    assert cause is not None
    frames = "".join(traceback.format_tb(cause.__traceback__))
    log.error("tool=%s unexpected %s\n%s", tool, type(cause).__name__, frames)
    return _error_result(f"internal error ({type(cause).__name__})", "internal_error")


class _Server(MCPServer[Any]):
    """``MCPServer`` whose failed calls become one-message tool errors, with one log line per call."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        started = time.perf_counter()
        try:
            result = await super().call_tool(name, arguments, context)
        except ToolError as exc:
            result = _tool_error(exc, name)
        status = "ok"
        if getattr(result, "is_error", False):
            structured = getattr(result, "structured_content", None) or {}
            status = f"error error={structured.get('error', 'tool_error')}"
        log.info(
            "tool=%s status=%s duration_ms=%.1f",
            name if name in _TOOLS else "(unknown)",
            status,
            (time.perf_counter() - started) * 1000,
        )
        return result


_TOOLS = ("search", "ask", "show_article", "export_citations")


def _filters(filters: FiltersIn | None) -> Filters:
    return filters.to_filters() if filters is not None else Filters()


def _text(*blocks: str) -> list[ContentBlock]:
    return [TextContent(type="text", text=block) for block in blocks]


def _hit_line(hit: dict[str, Any]) -> str:
    flag = "RETRACTED - " if hit.get("retracted") else ""
    year = str(hit["year"]) if hit.get("year") else "year unknown"
    types = [t for t in hit.get("publication_types") or [] if t != "Journal Article"]
    where = "; ".join(p for p in (hit.get("journal"), year, ", ".join(types)) if p)
    title = hit.get("title") or "(untitled)"
    return f"{hit['rank']}. {flag}{title} ({where}) PMID {hit['pmid']} {hit['url']}"


def _article_text(article: dict[str, Any]) -> str:
    authors = [
        a.get("collective_name") or " ".join(p for p in (a.get("last_name"), a.get("initials")) if p)
        for a in article.get("authors") or []
    ]
    year = str(article["year"]) if article.get("year") else None
    doi = f"  doi:{article['doi']}" if article.get("doi") else ""
    head = [
        ("RETRACTED - " if article.get("retracted") else "") + (article.get("title") or "(untitled)"),
        ", ".join(authors[:6]) + (", et al." if len(authors) > 6 else ""),
        "; ".join(p for p in (article.get("journal"), year, article.get("evidence_level")) if p),
        f"PMID {article['pmid']}  {article['url']}{doi}",
    ]
    return "\n".join(line for line in head if line) + "\n\n" + (article.get("abstract") or "(no abstract)")


def create_server(library: Library) -> MCPServer[Any]:
    """The MCP server over ``library`` (which stays open when the server stops)."""
    serve = library.settings.serve
    # Library calls run on fixed pools, as in the HTTP API: each thread keeps its SQLite connection (and
    # answerer), and an answer (~100 searches of CPU) never holds up a search.
    reading = ThreadPoolExecutor(max_workers=serve.workers, thread_name_prefix="medlit-mcp")
    answering = ThreadPoolExecutor(max_workers=serve.answer_workers, thread_name_prefix="medlit-mcp-answer")

    async def on(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[None]:
        try:  # load the model before the first call needs it
            await on(reading, lambda: library.embedder.embed_query("warm up"))
        except MedlitError as exc:
            log.warning("the embedding model did not load (%s): searches will fail until it does", exc)
        try:
            yield
        finally:
            reading.shutdown(wait=True, cancel_futures=True)
            answering.shutdown(wait=True, cancel_futures=True)

    server = _Server(
        "medlit",
        title="medlit: a local PubMed library",
        description="Search a local PubMed library and get answers whose every citation is verified.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level="WARNING",
    )
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(
        title="Search the library",
        annotations=read_only,
        description="The best articles of the local PubMed library for a query: title, journal, year, "
        "publication types, abstract and PubMed link, best first. Filters restrict publication years, "
        "study types (publication types such as Meta-Analysis or Randomized Controlled Trial), MeSH terms "
        "and languages; retracted articles are left out unless include_retracted.",
    )
    async def search(
        query: Annotated[str, Field(description="What to look for. Never logged.")],
        k: Annotated[int, Field(ge=1, description="How many articles (default 10).")] = 10,
        mode: Annotated[Mode, Field(description="Dense, BM25 or both fused (default).")] = "hybrid",
        filters: FiltersIn | None = None,
    ) -> Annotated[CallToolResult, SearchResult]:
        text = question_text(query, serve)
        check_k(k, serve)
        chosen = _filters(filters)
        hits = await on(reading, library.search, text, k, mode=mode, filters=chosen)
        found = [h.to_dict() for h in hits]
        result = SearchResult(k=k, mode=mode, filters=chosen.to_dict(), hits=found, disclaimer=DISCLAIMER)
        lines = [_hit_line(h) for h in found] or ["No article of the library matches the query."]
        return CallToolResult(
            content=_text("\n".join(lines) + "\n\n" + DISCLAIMER),
            structured_content=result.model_dump(mode="json"),
        )

    @server.tool(
        title="Answer a question with verified citations",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
        description="A short answer from the local PubMed library whose every sentence cites the retrieved "
        "articles it comes from, each citation checked by code against the cited abstract; a verdict for "
        "yes/no questions; or, when the evidence found is not enough, an abstention with its reason "
        "(abstained=true). Citations carry journal, year, evidence level, retraction flag and the "
        "supporting quote. Show the user the citations and the disclaimer.",
    )
    async def ask(
        question: Annotated[str, Field(description="The clinical or research question. Never logged.")],
        k: Annotated[
            int | None, Field(ge=1, description="Articles retrieved as evidence (default 10).")
        ] = None,
        mode: Annotated[Mode | None, Field(description="Retrieval mode (default hybrid).")] = None,
        filters: FiltersIn | None = None,
        generator: Annotated[
            GeneratorName | None, Field(description="Who writes the answer (default: the configured one).")
        ] = None,
    ) -> Annotated[CallToolResult, AskResult]:
        text = question_text(question, serve)
        check_k(k, serve)
        chosen = _filters(filters)
        answer = await on(answering, library.ask, text, k=k, mode=mode, generator=generator, filters=chosen)
        data = answer.to_dict()
        data.setdefault("disclaimer", DISCLAIMER)
        return CallToolResult(content=_text(answer.to_text()), structured_content=data)

    @server.tool(
        title="Show an article",
        annotations=read_only,
        description="One article of the local library by PMID, in full: title, abstract, authors, journal, "
        "year, publication types, MeSH terms, evidence level, retraction flag, DOI and PubMed link.",
    )
    async def show_article(
        pmid: Annotated[int, Field(ge=1, le=MAX_PMID, description="The PubMed id.")],
    ) -> Annotated[CallToolResult, ArticleResult]:
        found = await on(reading, library.get, pmid)
        if found is None:
            raise InputError(f"PMID {pmid} is not in the library")
        from rag.evidence import evidence_level

        data = {
            **found.to_dict(),
            "evidence_level": evidence_level(found.publication_types).label,
            "disclaimer": DISCLAIMER,
        }
        return CallToolResult(
            content=_text(_article_text(data) + "\n\n" + DISCLAIMER), structured_content=data
        )

    @server.tool(
        title="Export citations",
        annotations=read_only,
        description="Citations of library articles (by PMID, in the order given) as RIS, BibTeX, "
        "MEDLINE/nbib or CSV, for a reference manager; retracted articles are marked. A PMID missing from "
        "the library is an error naming it.",
    )
    async def export_citations(
        pmids: Annotated[
            list[Annotated[int, Field(ge=1, le=MAX_PMID)]],
            Field(min_length=1, max_length=MAX_EXPORT_PMIDS, description="The PubMed ids to export."),
        ],
        format: Annotated[ExportFormat, Field(description="The citation format (default RIS).")] = "ris",
    ) -> Annotated[CallToolResult, ExportResult]:
        text = await on(reading, library.export, pmids, format)
        unique = list(dict.fromkeys(pmids))
        result = ExportResult(
            format=format, count=len(unique), pmids=unique, citations=text, disclaimer=DISCLAIMER
        )
        # the export alone in the first block, so that it can be saved as it is; the disclaimer beside it
        return CallToolResult(
            content=_text(text, DISCLAIMER), structured_content=result.model_dump(mode="json")
        )

    return server


# ----- running it --------------------------------------------------------------------------------------


def _quiet_sdk_logs() -> None:
    """The SDK's loggers at WARNING (where they log no request content), through medlit's redaction.

    ``MCPServer`` calls ``logging.basicConfig``; a handler on the root logger makes that a no-op, so medlit's
    own log lines (on the ``medlit`` logger) are not printed twice."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    sdk = logging.getLogger("mcp")
    sdk.setLevel(logging.WARNING)
    if not sdk.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        sdk.addHandler(handler)
        sdk.propagate = False


class _BearerToken:
    """ASGI: every request to the HTTP transport carries ``Authorization: Bearer <token>``, or gets 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "unauthorized", "message": "a valid bearer token is required"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body)),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve(
    library: Library, transport: Transport = "stdio", host: str = "127.0.0.1", port: int = 8001
) -> None:
    """Serve the library's tools until the client goes (stdio) or Ctrl-C (http)."""
    _quiet_sdk_logs()
    server = create_server(library)
    if transport == "stdio":
        server.run("stdio")
        return
    import anyio
    import uvicorn

    settings = library.settings.serve
    app: Any = server.streamable_http_app(host=host, max_request_body_size=settings.max_body_bytes)
    if settings.token is not None and settings.token.get_secret_value():
        register_secret(settings.token.get_secret_value())
        app = _BearerToken(app, settings.token.get_secret_value())
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
