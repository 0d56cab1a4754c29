"""Batch literature-review jobs: a file of questions answered into ``RESULTS.jsonl``, resumably.

    from medlit.batch import run_batch
    report = run_batch("questions.csv", "RESULTS.jsonl", workers=2, report="report.html")

- Input (``read_questions``): CSV with a ``question`` column (optional ``id``, and filter columns ``years``,
  ``study_types``, ``mesh``, ``languages`` — lists separated by ``;`` — and ``include_retracted``), or JSONL
  with one ``{"id", "question", ...}`` object per line. An id defaults to a stable hash of the question text.
- Output: one JSON line per question ``{"id", "question", "status": "ok"|"error", "answer", "error"}``;
  the answer is ``Answer.to_dict()`` (text, citations with evidence levels and years, abstained/reason).
  One question's failure (a GenerationError, a timeout) is recorded as ``status: "error"``; the job goes on.
  Beside it, ``RESULTS.manifest.json`` records the settings (secrets masked), generator, embedding model, the
  index manifest (model, count, checksum, kind), the medlit version, dates and counts.
- Resumable: every line is flushed and fsynced as it is written, so a killed job loses at most the
  questions in flight; running it again skips the ids already answered, asks the failed ones again, and
  drops a torn last line.
- Engines: ``local`` (``workers`` threads, each with its own ``Answerer`` and SQLite connection, sharing the
  embedder) or ``ray`` (Ray Data ``map_batches`` over actors that each open the library once; a local Ray
  or the cluster at ``ray_address``).
- ``report``: Markdown or HTML with a per-question table, counts, the evidence levels cited, the most cited
  articles, and a histogram of cited years (``medlit.batch_report``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from foundation.clock import now
from foundation.durable import write_atomically
from foundation.errors import InputError, LibraryError, MedlitError
from foundation.progress import progress_bar
from foundation.redaction import redact
from foundation.settings import Settings, get_settings
from indexes.hit import Filters
from indexes.ray_embedder import check_engine, ray_session, require_ray, unwrap_ray_error
from medlit.library import Library, make_filters
from medlit.results import _parse_results, manifest_path
from medlit.version import __version__

log = logging.getLogger("medlit.batch")

RAY_BATCH_SIZE = 4  # questions per Ray Data batch: a killed job loses at most this many per actor
LIST_SEPARATOR = ";"
_ALIASES = {
    "year": "years",
    "types": "study_types",
    "publication_types": "study_types",
    "language": "languages",
}
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}

Progress = bool | Callable[[int, int], None]


# ----- questions ---------------------------------------------------------------------------------------


def question_id(text: str) -> str:
    """A stable id for a question: ``q`` + 12 hex digits of the SHA-256 of its whitespace-normalised text."""
    return "q" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Question:
    """One question of a batch, with the filters its answer is restricted to."""

    id: str
    question: str
    years: str | None = None  # "2015:2024", "2015:", ":2024" or "2020"
    study_types: tuple[str, ...] = ()
    mesh: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    include_retracted: bool = False

    @property
    def has_filters(self) -> bool:
        return bool(self.years or self.study_types or self.mesh or self.languages or self.include_retracted)

    def filters(self) -> Filters:
        return make_filters(self.years, self.study_types, self.mesh, self.languages, self.include_retracted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "years": self.years,
            "study_types": list(self.study_types),
            "mesh": list(self.mesh),
            "languages": list(self.languages),
            "include_retracted": self.include_retracted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "question") -> Question:
        """From a JSONL object or a CSV row; InputError naming ``where`` when a field is unusable."""
        fields = {_ALIASES.get(key, key): value for key, value in data.items() if key is not None}
        text = fields.get("question")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: no question (a non-empty 'question' text is required)")
        raw_id = fields.get("id")
        if isinstance(raw_id, bool) or (raw_id is not None and not isinstance(raw_id, str | int)):
            raise InputError(f"{where}: id must be a string or an integer (got {raw_id!r})")
        ident = str(raw_id).strip() if raw_id is not None else ""
        years = fields.get("years")
        if isinstance(years, int) and not isinstance(years, bool):
            years = str(years)
        elif isinstance(years, list) and len(years) == 2:
            years = ":".join("" if y is None else str(y) for y in years)
        if years is not None and not isinstance(years, str):
            raise InputError(f"{where}: years must look like 2015:2024, 2015:, :2024 or 2020 (got {years!r})")
        question = cls(
            id=ident or question_id(text),
            question=text.strip(),
            years=years.strip() or None if isinstance(years, str) else None,
            study_types=_names(fields.get("study_types"), where, "study_types"),
            mesh=_names(fields.get("mesh"), where, "mesh"),
            languages=_names(fields.get("languages"), where, "languages"),
            include_retracted=_flag(fields.get("include_retracted"), where),
        )
        try:
            question.filters()  # a bad year range is reported now, naming its line, not per answer later
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        return question


def _names(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(LIST_SEPARATOR)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {name} must be a list of names or one text separated by ';'")
    return tuple(v.strip() for v in value if v.strip())


def _flag(value: Any, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InputError(f"{where}: include_retracted must be true or false (got {value!r})")


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a ``.csv`` (with a ``question`` column) or ``.jsonl`` file; InputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet is not part of the header
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix == ".csv":
        questions = _read_csv(path, text)
    elif suffix in (".jsonl", ".ndjson"):
        questions = _read_jsonl(path, text)
    else:
        raise InputError(f"{path}: expected a .csv or .jsonl file of questions")
    if not questions:
        raise InputError(f"{path}: no questions in the file")
    return _unique(questions, str(path))


def _read_csv(path: Path, text: str) -> list[Question]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = [c.strip().lower() for c in reader.fieldnames or []]
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if not columns:
        raise InputError(f"{path}: no questions in the file (it is empty)")
    if "question" not in columns:
        shown = ", ".join(c for c in columns if c) or "none"
        raise InputError(f"{path}: no 'question' column (columns: {shown})")
    reader.fieldnames = columns
    questions = []
    try:
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None and isinstance(v, str)):
                continue  # a blank line
            questions.append(Question.from_dict(row, f"{path}:{reader.line_num}"))
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not readable CSV ({exc})") from None
    return questions


def _read_jsonl(path: Path, text: str) -> list[Question]:
    questions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object with a 'question'")
        questions.append(Question.from_dict(data, where))
    return questions


def _unique(questions: list[Question], source: str) -> list[Question]:
    seen: dict[str, int] = {}
    for number, question in enumerate(questions, start=1):
        if question.id in seen:
            raise InputError(
                f"{source}: question {number} has the same id {question.id!r} as question "
                f"{seen[question.id]} (give each question its own id)"
            )
        seen[question.id] = number
    return questions


def as_questions(items: str | Path | Iterable[Question | dict[str, Any] | str]) -> list[Question]:
    """Questions from a file path, or from Question objects, dicts or question texts."""
    if isinstance(items, str | Path):
        return read_questions(items)
    questions = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, Question):
            questions.append(item)
        elif isinstance(item, str):
            questions.append(Question.from_dict({"question": item}, f"question {number}"))
        elif isinstance(item, dict):
            questions.append(Question.from_dict(item, f"question {number}"))
        else:
            raise InputError(f"question {number}: expected a text, a dict or a Question")
    if not questions:
        raise InputError("no questions to answer")
    return _unique(questions, "questions")


# ----- one answer ----------------------------------------------------------------------------------------


def answer_one(
    answerer: Any,
    question: Question,
    *,
    k: int | None = None,
    mode: str | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """The result line for one question; a failure becomes ``status: "error"`` (question text not logged).

    ``filters`` apply when the question names none of its own."""
    record: dict[str, Any] = {"id": question.id, "question": question.question}
    try:
        chosen = question.filters() if question.has_filters or filters is None else filters
        answer = answerer.ask(question.question, k=k, mode=mode, filters=chosen)
    except Exception as exc:  # one question's failure is recorded; the job goes on
        log.warning("question %s failed: %s", question.id, type(exc).__name__)
        message = str(exc) if isinstance(exc, MedlitError) else f"{type(exc).__name__}: {exc}"
        return {
            **record,
            "status": "error",
            "answer": None,
            "error": {"type": type(exc).__name__, "message": redact(message)},
        }
    return {**record, "status": "ok", "answer": answer.to_dict(), "error": None}


# ----- the results file ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(results: Path) -> Iterator[None]:
    """One job writes a results file at a time (an flock on ``RESULTS.jsonl.lock``)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        yield
        return
    lock = results.with_name(results.name + ".lock")
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"another batch job is writing {results}: wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Writer:
    """Appends result lines (flush + fsync each), counts them, reports progress."""

    def __init__(self, handle: TextIO, total: int, progress: Progress, report: BatchReport) -> None:
        self.handle = handle
        self.total = total
        self.report = report
        self.done = 0
        self.callback = progress if callable(progress) else None
        self.bar = progress_bar(total, "questions", "q", enabled=progress is True)

    def __call__(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.done += 1
        if record["status"] == "ok":
            self.report.answered += 1
            self.report.abstained += bool((record.get("answer") or {}).get("abstained"))
        else:
            self.report.errors += 1
        self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        self.bar.close()


# ----- the job -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchReport:
    """What a batch run did (this run's counts; ``skipped`` were answered by an earlier run)."""

    results: Path
    manifest: Path
    engine: str = "local"
    workers: int = 1
    questions: int = 0  # in the input
    skipped: int = 0  # already answered in the results file
    retried: int = 0  # had failed in an earlier run, asked again
    answered: int = 0  # status ok in this run (abstentions included)
    abstained: int = 0
    errors: int = 0
    status: str = "running"  # running, done, cancelled, interrupted, failed
    report: Path | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: str = ""
    finished_at: str | None = None
    seconds: float = 0.0
    repaired: bool = False  # a torn last line of an earlier run was dropped
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "questions": self.questions,
            "skipped": self.skipped,
            "retried": self.retried,
            "answered": self.answered,
            "abstained": self.abstained,
            "errors": self.errors,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": str(self.results),
            "manifest": str(self.manifest),
            "report": str(self.report) if self.report else None,
            "engine": self.engine,
            "workers": self.workers,
            "status": self.status,
            **self.counts(),
            "repaired": self.repaired,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 2),
        }


def run_batch(
    questions: str | Path | Iterable[Question | dict[str, Any] | str],
    out_path: str | Path,
    *,
    library: Library | None = None,
    settings: Settings | None = None,
    generator: Any = None,
    k: int | None = None,
    mode: str | None = None,
    filters: Filters | None = None,
    workers: int = 1,
    engine: str = "local",
    report: str | Path | None = None,
    ray_address: str | None = None,
    progress: Progress = False,
    cancel: threading.Event | None = None,
) -> BatchReport:
    """Answer every question into ``out_path`` (JSONL), resuming what an earlier run left there.

    ``questions``: a .csv/.jsonl path or a list of texts, dicts or ``Question``s. ``library`` (or
    ``settings``, default the environment's) names the library; ``generator`` a name (extractive, openai,
    local) or object; ``filters`` apply to questions that name none of their own. ``progress``: True for a
    bar on stderr, or a callable ``(done, total)``. Setting ``cancel`` stops after the questions in flight.
    """
    from indexes.search import MODES
    from rag.generators import GENERATORS

    if check_engine(engine) == "ray":
        require_ray()  # before anything is written
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be at least 1 (got {workers})")
    if k is not None and not 1 <= k <= 100:
        raise InputError(f"k must be between 1 and 100 (got {k})")
    if mode is not None and mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if isinstance(generator, str) and generator.lower() not in GENERATORS:
        raise InputError(f"unknown generator {generator!r}: choose one of {', '.join(GENERATORS)}")
    items = as_questions(questions)
    out = Path(out_path)
    if out.suffix.lower() in (".csv", ".json") or out.is_dir():
        raise InputError(f"{out}: the results file is JSON lines: name it RESULTS.jsonl")
    report_path = Path(report) if report is not None else None
    if report_path is not None:
        from medlit.batch_report import report_format

        report_format(report_path)
    options = {"k": k, "mode": mode, "filters": filters}
    own_library = library is None
    if library is None:
        library = Library(settings=settings or get_settings())
    settings = library.settings
    out.parent.mkdir(parents=True, exist_ok=True)
    stop = _Stop(cancel)
    result = BatchReport(results=out, manifest=manifest_path(out), engine=engine, workers=workers)
    result.started_at = now()
    started = time.perf_counter()
    try:
        with _exclusive(out):
            todo = _resume(out, items, result)
            info = _describe(library, generator, engine, mode or settings.answer.mode, todo)
            info["options"] = {"k": k, "mode": mode, "filters": filters.to_dict() if filters else None}
            _write_manifest(result, settings, info, ray_address, questions)
            handle = out.open("a", encoding="utf-8")
            writer = _Writer(handle, len(todo), progress, result)
            try:
                if engine == "ray":
                    _run_on_ray(settings, todo, generator, options, workers, ray_address, writer, stop)
                else:
                    _run_locally(library, todo, generator, options, workers, writer, stop)
                result.status = "cancelled" if stop.is_set() and writer.done < len(todo) else "done"
            except KeyboardInterrupt:
                result.status = "interrupted"
                raise
            except BaseException as exc:
                result.status = "failed"
                result.extra["error"] = redact(str(exc))
                raise
            finally:
                stop.set()
                writer.close()
                handle.close()
                result.finished_at = now()
                result.seconds = time.perf_counter() - started
                _write_manifest(result, settings, info, ray_address, questions)
        if report_path is not None:
            from medlit.batch_report import write_report

            result.report = write_report(out, report_path)
    finally:
        if own_library:
            library.close()
    return result


def _resume(out: Path, items: list[Question], result: BatchReport) -> list[Question]:
    """The questions still to answer; rewrites the results file without a torn line or retried failures."""
    records, clean = _parse_results(out)
    wanted = {q.id for q in items}
    kept: list[dict[str, Any]] = []
    answered: set[str] = set()
    failed: set[str] = set()
    for record in records:
        ident = record["id"]
        if record.get("status") == "ok":
            if ident not in answered:  # a repeated line: the first answer stands
                answered.add(ident)
                kept.append(record)
        elif ident in wanted:
            failed.add(ident)  # asked again: its error line goes
        else:
            kept.append(record)  # a failure of a question not in this input stays as it is
    if not clean or len(kept) != len(records):
        result.repaired = not clean
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        write_atomically(out, data.encode())
    todo = [q for q in items if q.id not in answered]
    result.questions = len(items)
    result.skipped = len(items) - len(todo)
    result.retried = len({q.id for q in todo} & failed)
    return todo


def _describe(
    library: Library, generator: Any, engine: str, mode: str, todo: list[Question]
) -> dict[str, Any]:
    """Generator, embedding model and index manifest for the manifest; checks the index can serve first."""
    from indexes.dense_index import DenseIndex

    index = DenseIndex(library.store, library.settings).manifest()
    if index is None and mode != "bm25":
        raise LibraryError("the library has no dense index yet: run `medlit index build`")
    if engine == "local" and todo:
        answerer = library.answerer(generator)
        if mode != "bm25":
            answerer.searcher.dense.load()  # the index file matches its manifest and the embedder, or stop
        generator_name, embedding_model = answerer.generator.name, answerer.embedder.name
    else:
        generator_name = getattr(generator, "name", None) or generator or library.settings.answer.generator
        embedding_model = index.model if index is not None else None
    return {
        "generator": generator_name,
        "embedding_model": embedding_model,
        "index": index.to_dict() if index is not None else None,
    }


def _write_manifest(
    result: BatchReport, settings: Settings, info: dict[str, Any], ray_address: str | None, source: Any
) -> None:
    path = result.manifest
    previous: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict) and old.get("run_id") != result.run_id:
            previous = [*old.get("previous_runs", []), _run_summary(old)]
        elif isinstance(old, dict):
            previous = old.get("previous_runs", [])
    data = {
        "medlit_version": __version__,
        "results": result.results.name,
        "questions": str(source) if isinstance(source, str | Path) else None,
        "status": result.status,
        "engine": result.engine,
        "workers": result.workers,
        "ray_address": ray_address,
        "run_id": result.run_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "seconds": round(result.seconds, 2),
        "counts": result.counts(),
        "repaired": result.repaired,
        **info,
        "error": result.extra.get("error"),
        "settings": settings.model_dump(mode="json"),  # SecretStr fields come out as "**********"
        "previous_runs": previous,
    }
    write_atomically(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def _run_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    index = manifest.get("index") or {}
    keys = (
        "run_id",
        "started_at",
        "finished_at",
        "status",
        "engine",
        "workers",
        "generator",
        "embedding_model",
        "counts",
    )
    return {**{key: manifest.get(key) for key in keys}, "index_checksum": index.get("checksum")}


# ----- engines -------------------------------------------------------------------------------------------

_DONE = object()


class _Stop:
    """Set when the job must stop taking questions: interrupted, failed, or the caller's ``cancel`` set."""

    def __init__(self, cancel: threading.Event | None) -> None:
        self.cancel = cancel
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or (self.cancel is not None and self.cancel.is_set())


def _run_locally(
    library: Library,
    todo: list[Question],
    generator: Any,
    options: dict[str, Any],
    workers: int,
    write: _Writer,
    stop: _Stop,
) -> None:
    if workers == 1 or len(todo) <= 1:
        answerer = library.answerer(generator)
        for question in todo:
            if stop.is_set():
                return
            write(answer_one(answerer, question, **options))
        return
    pending = iter(todo)
    lock = threading.Lock()
    results: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            answerer = library.answerer(generator)  # this thread's connection and Answerer
            while not stop.is_set():
                with lock:
                    question = next(pending, None)
                if question is None:
                    break
                results.put(answer_one(answerer, question, **options))
        except BaseException as exc:  # reaches the caller through the queue
            results.put(exc)
        finally:
            library.close_thread()
            results.put(_DONE)

    threads = [
        threading.Thread(target=work, name=f"medlit-batch-{i}", daemon=True)
        for i in range(min(workers, len(todo)))
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                write(item)
    finally:
        stop.set()  # interrupted or failed: the other workers stop after the question in hand
    for thread in threads:
        thread.join()


class AnswerActor:
    """A Ray Data callable class: opens the library once per actor, then answers batches of questions."""

    def __init__(self, settings: Settings, generator: Any, options: dict[str, Any]) -> None:
        named = generator is None or isinstance(generator, str)
        self.library = Library(settings=settings, generator=None if named else generator)
        self.generator = generator if named else None
        self.options = options
        self.library.embedder  # noqa: B018  (loaded once, now: shared by the threads Ray calls us on)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Ray may call an actor on another thread than the one that built it: the Library gives each
        # thread its own SQLite connection and Answerer
        answerer = self.library.answerer(self.generator)
        records = []
        for item in batch["question"]:
            question = Question.from_dict(json.loads(str(item)))
            records.append(json.dumps(answer_one(answerer, question, **self.options)))
        return {"record": np.asarray(records, dtype=object)}


def _run_on_ray(
    settings: Settings,
    todo: list[Question],
    generator: Any,
    options: dict[str, Any],
    workers: int,
    address: str | None,
    write: _Writer,
    stop: _Stop,
) -> None:
    if not todo:
        return
    with ray_session(address) as ray:
        context = ray.data.DataContext.get_current()
        bars = context.enable_progress_bars
        context.enable_progress_bars = False  # medlit's own bar counts written results
        try:
            dataset = ray.data.from_items([{"question": json.dumps(q.to_dict())} for q in todo])
            dataset = dataset.map_batches(
                AnswerActor,
                fn_constructor_kwargs={"settings": settings, "generator": generator, "options": options},
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))),
                batch_size=RAY_BATCH_SIZE,
                num_cpus=1,
            )
            for row in dataset.iter_rows():
                write(json.loads(row["record"]))
                if stop.is_set():
                    break
        except ray.exceptions.RayError as exc:
            raise unwrap_ray_error(exc) from None
        finally:
            context.enable_progress_bars = bars
