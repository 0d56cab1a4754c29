"""The HTTP API and the web page: ``create_app(library)`` gives a FastAPI app (OpenAPI docs at ``/docs``).

``POST /ask`` (JSON, or server-sent events), ``GET /search``, ``GET /articles/{pmid}``, ``GET /health``,
batch jobs (``POST /batch``, ``GET /batch/{id}``, ``GET /batch/{id}/results``) and the page at ``/``.

Library calls run on fixed pools of threads, ``serve.workers`` for searches and reads and
``serve.answer_workers`` for answers (which cost ~100 searches each, so searches never queue behind them):
``Library`` gives each thread its own SQLite connection and answerer (so at most that many copies of the
FAISS index), and all share one embedder (ONNX Runtime's ``run()`` and the fast tokenizer may be called from
several threads; it is warmed up once at start-up).

Errors are translated here, once: bad input 422, a library that cannot serve 503, a model server that failed
502, anything else 500 with a request id and no trace.

Logged, one line per request: request id, method, route (never the query string), status, duration and
size. Never a question, a query string, an answer, a header or the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import math
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from foundation.errors import EntrezError, InputError, LibraryError, MedlitError
from foundation.redaction import register_secret
from foundation.settings import ServeSettings, Settings, get_settings
from indexes.hit import Filters
from medlit import inputs
from medlit.inputs import FiltersIn, GeneratorName, Mode, Term, validation_message
from medlit.library import Library, make_filters
from medlit.version import __version__
from rag.generators import GenerationError

log = logging.getLogger("medlit.api")

WEB_DIR = Path(__file__).resolve().parent / "web"
T = TypeVar("T")

# what each error is called in a response body, and its status
_ERRORS: list[tuple[type[MedlitError], int, str]] = [
    (InputError, 422, "invalid_input"),
    (LibraryError, 503, "library_unavailable"),
    (GenerationError, 502, "generation_failed"),
    (EntrezError, 502, "pubmed_unavailable"),
    (MedlitError, 400, "bad_request"),
]
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "not_finished",
    413: "body_too_large",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
}
# the page and its files: a strict Content-Security-Policy (no inline script, nothing from elsewhere)
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# the API documentation pages: Swagger UI and ReDoc from packaged files, nothing from elsewhere either; ReDoc
# writes its styles as <style> elements (styled-components), hence 'unsafe-inline' for styles only
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; worker-src blob:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/redoc")


# ----- what requests carry ---------------------------------------------------------------------------


class AskIn(BaseModel):
    """One question for ``POST /ask``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., description="The clinical or research question. Never logged.")
    filters: FiltersIn = Field(default_factory=FiltersIn)  # type: ignore[arg-type]
    k: int | None = Field(None, ge=1, description="Articles retrieved as evidence (default 10).")
    mode: Mode | None = Field(None, description="Retrieval mode (default hybrid).")
    generator: GeneratorName | None = Field(
        None,
        description="Who writes the answer (default auto: the local model server when it runs, else "
        "extractive).",
    )
    stream: bool = Field(
        False, description="Answer as server-sent events (or send Accept: text/event-stream)."
    )


class BatchIn(BaseModel):
    """Many questions answered in the background with the same filters and options."""

    model_config = ConfigDict(extra="forbid")

    questions: list[str] = Field(..., min_length=1, description="The questions. Never logged.")
    filters: FiltersIn = Field(default_factory=FiltersIn)  # type: ignore[arg-type]
    k: int | None = Field(None, ge=1, description="Articles retrieved as evidence for each question.")
    generator: GeneratorName | None = Field(
        None,
        description="Who writes the answers (default auto: the local model server when it runs, else "
        "extractive).",
    )


# ----- the edge: request ids, logs, body limit, unexpected errors -------------------------------------


class _BodyTooLarge(HTTPException):
    """Raised while the body is read: FastAPI lets an HTTPException from the ASGI receive through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


def _json_bytes(status: int, message: str, request_id: str, code: str | None = None) -> bytes:
    body = {"error": code or _STATUS_CODES.get(status, "error"), "message": message, "request_id": request_id}
    return json.dumps(body).encode()


class _Edge:
    """Outermost middleware (pure ASGI, so streaming is untouched): gives each request an id (also in the
    ``X-Request-ID`` header), refuses bodies over the limit with 413, turns an unexpected exception into a
    500 that names the request id, and logs one line per request."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        started = time.perf_counter()
        sent = {"status": 0, "bytes": 0}

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if path == "/" or path.startswith("/static/"):
                    headers += [(b"content-security-policy", _PAGE_POLICY.encode())]
                elif path in _DOCS_PATHS or path.startswith("/docs-assets/"):
                    headers += [(b"content-security-policy", _DOCS_POLICY.encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        async def reply(status: int, message: str) -> None:
            body = _json_bytes(status, message, request_id)
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body)),
                    ],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": body})

        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        too_large = _BodyTooLarge(self.max_body_bytes).detail
        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await reply(413, too_large)
            else:
                await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not sent["status"]:
                await reply(413, too_large)
        except Exception as exc:
            # The exception's message may quote a question: log its type and where it was raised only.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("request_id=%s unexpected %s\n%s", request_id, type(exc).__name__, frames)
            if not sent["status"]:
                await reply(500, f"internal error (request id {request_id})")
        finally:
            route = getattr(scope.get("route"), "path", None)
            where = route or ("/static/*" if path.startswith("/static/") else "(no route)")
            error = scope["state"].get("error")
            log.info(
                "request_id=%s method=%s path=%s status=%s duration_ms=%.1f bytes=%d%s",
                request_id,
                scope.get("method", "-"),
                where,
                sent["status"] or "-",
                (time.perf_counter() - started) * 1000,
                sent["bytes"],
                f" error={error}" if error else "",
            )


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _error_response(
    request: Request,
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    code = code or _STATUS_CODES.get(status, "error")
    request.scope.setdefault("state", {})["error"] = code
    body = {"error": code, "message": message, "request_id": _request_id(request)}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _install_error_handlers(app: FastAPI) -> None:
    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _error_response(request, 422, validation_message(exc.errors(), whole="body"))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_response(request, exc.status_code, str(exc.detail), headers=exc.headers)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    for kind, status, code in _ERRORS:

        async def on_medlit(
            request: Request, exc: Exception, status: int = status, code: str = code
        ) -> Response:
            return _error_response(request, status, str(exc), code)

        app.add_exception_handler(kind, on_medlit)


# ----- access: bearer token and rate limit --------------------------------------------------------------


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > 10_000:  # forget the least recently seen clients
                self._buckets.popitem(last=False)
        return wait


def _access(serve: ServeSettings, limiter: RateLimiter) -> list[Any]:
    """The dependencies of every API route: the rate limit first, then the token when one is set."""
    token = (
        serve.token.get_secret_value().encode() if serve.token and serve.token.get_secret_value() else None
    )
    bearer = HTTPBearer(
        auto_error=False,
        description="MEDLIT_SERVE__TOKEN, when the server sets one" if token else "no token is configured",
    )

    async def rate_limited(request: Request) -> None:
        client = request.client.host if request.client else "-"
        wait = limiter.take(client)
        if wait:
            raise HTTPException(
                429,
                "too many requests: slow down and retry after the time in Retry-After",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token):
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    return [Depends(rate_limited), Depends(authorized)]


# ----- batch jobs -------------------------------------------------------------------------------------


@dataclass
class Job:
    """A batch job of the server: where it is, and the file ``run_batch`` writes its answers to."""

    id: str
    total: int
    results: Path
    status: str = "queued"  # queued, running, done, cancelled, failed
    done: int = 0
    errors: int = 0
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "done": self.done,
            "total": self.total,
            "errors": self.errors,
            "error": self.error,
        }


class Jobs:
    """The batch jobs of one app, run one after another on their own thread (so a big batch never takes the
    threads interactive requests need) by ``medlit.batch.run_batch``, which writes each answer, fsynced, to
    ``$MEDLIT_HOME/jobs/<id>.jsonl``. A job's results outlive the server; past ``limit`` jobs the oldest
    finished one is forgotten and its files deleted (they hold the questions)."""

    def __init__(self, library: Library, directory: Path, limit: int) -> None:
        self.library = library
        self.directory = directory
        self.limit = limit
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medlit-batch")

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.jsonl"

    def submit(self, questions: list[str], options: dict[str, Any]) -> Job:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        job_id = uuid.uuid4().hex
        job = Job(id=job_id, total=len(questions), results=self._path(job_id))
        with self._lock:
            finished = [j for j in self._jobs.values() if j.status not in ("queued", "running")]
            while len(self._jobs) >= self.limit and finished:
                self._forget(finished.pop(0))
            if len(self._jobs) >= self.limit:
                raise HTTPException(
                    429, f"{self.limit} batch jobs are unfinished: retry later", headers={"Retry-After": "10"}
                )
            self._jobs[job.id] = job
        items = [{"id": str(number), "question": text} for number, text in enumerate(questions, start=1)]
        self._executor.submit(self._run, job, items, options)
        return job

    def _forget(self, job: Job) -> None:
        from medlit.results import manifest_path

        self._jobs.pop(job.id, None)
        for path in (
            job.results,
            manifest_path(job.results),
            job.results.with_name(job.results.name + ".lock"),
        ):
            path.unlink(missing_ok=True)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id):
            job = self._from_disk(job_id)
        if job is None:
            raise HTTPException(404, "no such batch job")
        return job

    def _from_disk(self, job_id: str) -> Job | None:
        """A job of an earlier server run, from the manifest beside its results."""
        from medlit.results import manifest_path

        path = self._path(job_id)
        try:
            manifest = json.loads(manifest_path(path).read_text())
        except (OSError, ValueError):
            return None
        counts = manifest.get("counts") or {}
        job = Job(id=job_id, total=int(counts.get("questions") or 0), results=path)
        job.status = str(manifest.get("status") or "failed")
        job.status = "cancelled" if job.status in ("running", "interrupted") else job.status
        job.errors = int(counts.get("errors") or 0)
        job.done = len(self.results(job))
        return job

    def results(self, job: Job) -> list[dict[str, Any]]:
        """The result lines written so far, in question order."""
        from medlit.results import read_results

        lines = read_results(job.results)
        return sorted(lines, key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else 0)

    def _run(self, job: Job, items: list[dict[str, Any]], options: dict[str, Any]) -> None:
        from medlit.batch import run_batch

        def progress(done: int, _total: int) -> None:
            job.done = done

        job.status = "running"
        try:
            report = run_batch(
                items, job.results, library=self.library, progress=progress, cancel=job.cancel, **options
            )
            job.status, job.done, job.errors = report.status, report.answered + report.errors, report.errors
        except MedlitError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:
            job.status, job.error = "failed", f"internal error ({type(exc).__name__})"
            log.error("batch job %s failed: %s", job.id, type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


# ----- the app ------------------------------------------------------------------------------------------


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['event']}\ndata: {json.dumps(event['data'], ensure_ascii=False)}\n\n"


def create_app(library: Library | None = None, settings: Settings | None = None) -> FastAPI:
    """The API and web page over ``library`` (default: the library of ``settings``, or the environment's).

    A library passed in stays open when the app stops; one made here is closed with it."""
    owned = library is None
    if library is None:
        library = Library(settings=settings or get_settings())
    settings = settings or library.settings
    serve = settings.serve
    if serve.token is not None:
        register_secret(serve.token.get_secret_value())
    lib = library
    # Answers take ~100 times a search's CPU: on their own threads, searches never queue behind them.
    workers = ThreadPoolExecutor(max_workers=serve.workers, thread_name_prefix="medlit-api")
    answering = ThreadPoolExecutor(max_workers=serve.answer_workers, thread_name_prefix="medlit-answer")
    jobs = Jobs(lib, settings.home / "jobs", serve.max_jobs)

    async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` on the worker threads (each with its own SQLite connection and answerer)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(workers, functools.partial(fn, *args, **kwargs))

    async def answer_on_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(answering, functools.partial(fn, *args, **kwargs))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:  # load the model and settle the tokenizer before requests arrive on several threads
            await run(lambda: lib.embedder.embed_query("warm up"))
        except MedlitError as exc:
            log.warning("the embedding model did not load (%s): searches will fail until it does", exc)
        yield
        jobs.close()
        workers.shutdown(wait=True, cancel_futures=True)
        answering.shutdown(wait=True, cancel_futures=True)
        if owned:
            lib.close()

    app = FastAPI(
        title="medlit",
        version=__version__,
        description="Search a local PubMed library and get short answers whose every sentence cites the "
        "retrieved articles, verified by code. Answers support, and do not replace, a clinician's "
        "judgement.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load Swagger UI and ReDoc from a CDN: ours are served below
        redoc_url=None,
    )
    app.add_middleware(_Edge, max_body_bytes=serve.max_body_bytes)
    _install_error_handlers(app)
    app.state.library = lib
    app.state.jobs = jobs

    def question_text(text: str) -> str:
        return inputs.question_text(text, serve)

    def check_k(k: int | None) -> int | None:
        return inputs.check_k(k, serve)

    api = APIRouter(dependencies=_access(serve, RateLimiter(serve.rate_limit, serve.burst)))

    @api.post("/ask", summary="Answer a question with verified citations (JSON or server-sent events)")
    async def ask(body: AskIn, request: Request) -> Response:
        question = question_text(body.question)
        k = check_k(body.k)
        filters = body.filters.to_filters()
        if body.stream or "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                stream_answer(question, k, filters, body.mode, body.generator, _request_id(request)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        answer = await answer_on_thread(
            lib.ask, question, k=k, mode=body.mode, generator=body.generator, filters=filters
        )
        return JSONResponse(answer.to_dict())

    async def stream_answer(
        question: str,
        k: int | None,
        filters: Filters,
        mode: str | None,
        generator: str | None,
        request_id: str,
    ) -> AsyncIterator[str]:
        """The events of ``Answerer.stream`` as they are made: retrieved, sentence..., answer — or error."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def put(event: dict[str, Any] | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, event)

        def produce() -> None:
            try:
                events: Iterator[dict[str, Any]] = lib.answerer(generator).stream(
                    question, k=k, filters=filters, mode=mode
                )
                for event in events:
                    if event.get("event") == "error":
                        event = {"event": "error", "data": {**event["data"], "request_id": request_id}}
                    put(event)
            except MedlitError as exc:
                code = next(c for kind, _s, c in _ERRORS if isinstance(exc, kind))
                put(
                    {"event": "error", "data": {"error": code, "message": str(exc), "request_id": request_id}}
                )
            except Exception as exc:
                log.error("request_id=%s unexpected %s while streaming", request_id, type(exc).__name__)
                message = f"internal error (request id {request_id})"
                put({"event": "error", "data": {"error": "internal_error", "message": message}})
            finally:
                put(None)

        answering.submit(produce)
        while (event := await queue.get()) is not None:
            yield _sse(event)

    @api.get("/search", summary="The best articles for a query, with where their rank came from")
    async def search(
        q: Annotated[str, Query(description="The query. Never logged.")],
        k: Annotated[int, Query(ge=1, description="How many articles.")] = 10,
        mode: Annotated[Mode, Query(description="Dense, BM25 or both fused.")] = "hybrid",
        years: Annotated[
            str | None, Query(max_length=20, description="2015:2024, 2015:, :2024, 2020")
        ] = None,
        type: Annotated[list[Term] | None, Query(max_length=50, description="Publication type.")] = None,
        mesh: Annotated[list[Term] | None, Query(max_length=50, description="MeSH descriptor.")] = None,
        language: Annotated[list[Term] | None, Query(max_length=20, description="Language code.")] = None,
        include_retracted: Annotated[bool, Query(description="Also retracted articles (flagged).")] = False,
    ) -> dict[str, Any]:
        query = question_text(q)
        check_k(k)
        filters = make_filters(years, type or [], mesh or [], language or [], include_retracted)
        hits = await run(lib.search, query, k, mode=mode, filters=filters)
        return {"k": k, "mode": mode, "filters": filters.to_dict(), "hits": [h.to_dict() for h in hits]}

    @api.get("/articles/{pmid}", summary="One article of the library, in full")
    async def article(pmid: Annotated[int, PathParam(ge=1, le=2**40, description="PubMed id.")]) -> Any:
        found = await run(lib.get, pmid)
        if found is None:
            raise HTTPException(404, f"PMID {pmid} is not in the library")
        return {**found.to_dict(), "url": found.url}

    @api.post("/batch", status_code=202, summary="Answer many questions in the background")
    async def batch(body: BatchIn) -> dict[str, Any]:
        if len(body.questions) > serve.max_batch_questions:
            raise InputError(
                f"at most {serve.max_batch_questions} questions in one batch (got {len(body.questions)})"
            )
        questions = [question_text(q) for q in body.questions]
        options = {"k": check_k(body.k), "generator": body.generator, "filters": body.filters.to_filters()}
        return jobs.submit(questions, options).to_dict()

    @api.get("/batch/{job_id}", summary="Where a batch job is: status, done/total")
    async def batch_status(job_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        return jobs.get(job_id).to_dict()

    @api.get("/batch/{job_id}/results", summary="The answers of a batch job, in question order")
    async def batch_results(job_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        job = jobs.get(job_id)
        return {**job.to_dict(), "results": await run(jobs.results, job)}

    @app.get("/health", summary="Library counts, index manifest and version")
    async def health() -> dict[str, Any]:
        def read() -> dict[str, Any]:
            stats = lib.stats()
            stats.pop("library", None)  # a path on the server
            from indexes.dense_index import DenseIndex

            index = DenseIndex(lib.store, lib.settings).info()
            index.pop("path", None)
            return {"status": "ok", "version": __version__, "library": stats, "index": index}

        return await run(read)

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _add_docs(app)
    return app


def _docs_assets() -> Path | None:
    """The Swagger UI and ReDoc files that the ``fastapi-offline`` package ships (the serve extra)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) on ``/openapi.json``, from packaged files: they work
    with no network, under their own Content-Security-Policy (scripts only from this server)."""
    assets = _docs_assets()
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    def docs_page(name: str) -> Callable[[Request], Any]:
        async def page(request: Request) -> Response:
            if assets is None:
                return _error_response(
                    request,
                    503,
                    "the API documentation pages need fastapi-offline: pip install 'medlit[serve]' "
                    "(the OpenAPI description is at /openapi.json)",
                    "docs_unavailable",
                )
            return FileResponse(WEB_DIR / name, media_type="text/html")

        return page

    app.add_api_route("/docs", docs_page("docs.html"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", docs_page("redoc.html"), methods=["GET"], include_in_schema=False)
