"""Ingest runs: one call per source, each recorded in the library with counts that add up.

- ``ingest_files``: PubMed baseline/update ``.xml.gz`` files and efetch XML, applied in name order,
  checkpointed so an interrupted run resumes, each file applied once (by content), MD5-checked when a
  ``.md5`` lies beside it.
- ``ingest_medline`` / ``ingest_jsonl``: MEDLINE/nbib text and JSONL, validated whole before anything is
  stored, so a malformed file leaves the library as it was.
- ``ingest_pubmed``: a PubMed query through the E-utilities client; every PMID esearch returned ends stored
  or recorded as failed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.progress import progress_bar
from foundation.settings import Settings
from ingest.article import Record
from ingest.inputs import require_regular_file
from ingest.parse_worker import batches, few_collections, parse_worker, prepared_batches
from ingest.prepared import Item
from ingest.pubmed_xml import GZIP_MAGIC, PUBMED_ROOTS, iter_records, root_tag
from ingest.store import RunCounts, RunReport, Store

XML_SUFFIXES = (".xml", ".xml.gz")
_MD5_HEX = re.compile(r"\b([0-9a-fA-F]{32})\b")


@dataclass(slots=True)
class _FileCheck:
    path: Path
    sha256: str
    size: int
    md5_checked: bool


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories expanded to their *.xml / *.xml.gz; sorted by name (PubMed's order)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in path.iterdir() if p.is_file() and p.name.endswith(XML_SUFFIXES))
        elif path.exists() or path.is_symlink():
            require_regular_file(path, "PubMed XML")  # a FIFO or a device would hang the read
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    unique = {p.resolve(): p for p in found}
    return sorted(unique.values(), key=lambda p: (p.name, str(p)))


def _check_file(path: Path) -> _FileCheck:
    """Hash the file, compare with a ``.md5`` beside it, and make sure it looks like (gzipped) XML."""
    sidecar = path.with_name(path.name + ".md5")
    has_sidecar = sidecar.exists()
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
            sha = hashlib.sha256(head)
            md5 = hashlib.md5(head, usedforsecurity=False) if has_sidecar else None
            size = len(head)
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if size == 0:
        raise InputError(f"{path}: empty file, not PubMed XML")
    if not head.startswith(GZIP_MAGIC) and not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise InputError(f"{path}: not an XML or gzipped XML file")
    root = root_tag(path)
    if root not in PUBMED_ROOTS:
        raise InputError(f"{path}: not a PubMed XML file (root element is {root})")
    md5_checked = False
    if md5 is not None:
        match = _MD5_HEX.search(sidecar.read_text(errors="replace"))
        if not match:
            raise InputError(f"{sidecar}: no MD5 digest found in it")
        if match.group(1).lower() != md5.hexdigest():
            raise InputError(f"{path}: MD5 mismatch with {sidecar.name} (file corrupt or incomplete)")
        md5_checked = True
    return _FileCheck(path=path, sha256=sha.hexdigest(), size=size, md5_checked=md5_checked)


class _ParseAhead:
    """Parsing in a child process while this one writes (and the next file's parse starts early).

    The queue holds at most ``QUEUE_BATCHES`` batches, so memory stays bounded whatever the file size.
    """

    QUEUE_BATCHES = 32

    def __init__(self, path: Path, skip: int, batch_size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue(maxsize=self.QUEUE_BATCHES)
        self.process = ctx.Process(
            target=parse_worker, args=(str(path), skip, batch_size, self.queue), daemon=True
        )
        self.process.start()

    def __iter__(self) -> Iterator[list[Item]]:
        while True:
            try:
                kind, payload = self.queue.get(timeout=5)
            except queue.Empty:
                if not self.process.is_alive():
                    raise InputError(
                        f"the parser process stopped unexpectedly (exit code {self.process.exitcode})"
                    ) from None
                continue
            if kind == "batch":
                yield payload
            elif kind == "end":
                return
            elif kind == "error":
                raise InputError(payload)
            else:
                raise RuntimeError(f"parser process failed: {payload}")

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=10)
        self.queue.close()


def ingest_files(
    store: Store,
    paths: Iterable[str | Path],
    *,
    batch_size: int = 500,
    progress: bool = True,
    parse: Callable[[Path], Iterator[Record]] | None = None,
    workers: bool = True,
) -> RunReport:
    """Apply PubMed XML files (baseline, update, efetch) to the library; see the module docstring.

    ``workers`` parses in a child process while this one writes; ``parse`` replaces the parser (and runs
    in this process), for other XML dialects and for tests.
    """
    files = _expand(paths)
    if not files:
        raise InputError("no PubMed XML files found in the paths given")
    checks = [_check_file(path) for path in files]  # every file is checked before any is applied
    run_id = store.start_run("files", {"paths": [str(c.path) for c in checks]})
    with few_collections():
        return _apply_files(store, checks, run_id, batch_size, progress, parse, workers)


def _apply_files(
    store: Store,
    checks: list[_FileCheck],
    run_id: int,
    batch_size: int,
    progress: bool,
    parse: Callable[[Path], Iterator[Record]] | None,
    workers: bool,
) -> RunReport:
    report = RunReport(run_id=run_id, source="files", status="running", counts=RunCounts())
    todo = []
    for check in checks:
        state = store.file_state(check.sha256)
        if state is not None and state["status"] == "done":
            report.files.append(
                {"file": check.path.name, "status": "already applied", "records": state["records_done"]}
            )
        else:
            todo.append((check, int(state["records_done"] or 0) if state else 0))
    parsers: dict[str, _ParseAhead] = {}
    try:
        return _apply_todo(store, todo, report, run_id, batch_size, progress, parse, workers, parsers)
    finally:
        for parser in parsers.values():
            parser.close()


def _apply_todo(
    store: Store,
    todo: list[tuple[_FileCheck, int]],
    report: RunReport,
    run_id: int,
    batch_size: int,
    progress: bool,
    parse: Callable[[Path], Iterator[Record]] | None,
    workers: bool,
    parsers: dict[str, _ParseAhead],
) -> RunReport:
    for index, (check, _skip) in enumerate(todo):
        name = check.path.name
        if workers and parse is None:
            # this file's parser (started early while the previous file was written) and the next one's
            for later, skip in todo[index : index + 2]:
                if later.sha256 not in parsers:
                    parsers[later.sha256] = _ParseAhead(later.path, skip, batch_size)
        with store.transaction():
            done = store.start_file(
                name=name,
                path=str(check.path),
                sha256=check.sha256,
                size=check.size,
                md5_checked=check.md5_checked,
                run_id=run_id,
            )
        if done:
            report.notes.append(f"{name}: resuming after {done} records")
        position = done
        bar = progress_bar(None, name, "rec", progress)
        try:
            source: Iterable[list[Item]] = (
                parsers[check.sha256]
                if check.sha256 in parsers
                else prepared_batches(check.path, done, batch_size, parse or iter_records)
            )
            for batch in source:
                with store.transaction():
                    store.apply_in_transaction(batch, run_id=run_id, origin=name, origin_rank=name)
                    position += len(batch)
                    store.checkpoint_file(check.sha256, position)
                bar.update(len(batch))
        except InputError as exc:
            with store.transaction():
                store.finish_file(check.sha256, "failed", str(exc))
                store.finish_run(run_id, "failed", str(exc))
            report.files.append({"file": name, "status": "failed", "records": position, "error": str(exc)})
            report.status = "failed"
            report.error = str(exc)
            report.counts = store.run_counts(run_id)
            return report
        except BaseException as exc:  # Ctrl-C, a crash: the file stays "running" and resumes next time
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            store.finish_run(run_id, status, f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise
        finally:
            bar.close()
            if check.sha256 in parsers:
                parsers.pop(check.sha256).close()
        with store.transaction():
            store.finish_file(check.sha256, "done")
        report.files.append(
            {"file": name, "status": "applied", "records": position, "md5_checked": check.md5_checked}
        )
    store.finish_run(run_id, "done")
    report.status = "done"
    report.counts = store.run_counts(run_id)
    return report


def _ingest_stream(
    store: Store,
    source: str,
    path: Path,
    records: Iterator[Record],
    *,
    batch_size: int,
    params: dict[str, Any],
) -> RunReport:
    run_id = store.start_run(source, params)
    try:
        for batch in batches(records, batch_size):
            store.apply(batch, run_id=run_id, origin=f"{source}:{path.name}")
    except BaseException as exc:
        store.finish_run(run_id, "failed", str(exc) or type(exc).__name__)
        raise
    store.finish_run(run_id, "done")
    return RunReport(run_id=run_id, source=source, status="done", counts=store.run_counts(run_id))


def ingest_medline(store: Store, path: str | Path, *, batch_size: int = 500) -> RunReport:
    """MEDLINE/nbib text (efetch rettype=medline, PubMed's "Save > PubMed format").

    A file that is not MEDLINE text is refused before anything is stored; a record without a valid PMID
    is recorded as a failure of the run.
    """
    from ingest.medline import parse_medline

    path = Path(path)
    records = parse_medline(path)  # checks the file is MEDLINE text before yielding anything
    return _ingest_stream(store, "medline", path, records, batch_size=batch_size, params={"path": str(path)})


def ingest_jsonl(
    store: Store, path: str | Path, *, batch_size: int = 500, skip_invalid: bool = False
) -> RunReport:
    """JSONL, one ``{"pmid", "title", "abstract", ...}`` per line.

    The file is validated whole first: a malformed line rejects it (nothing stored, the first errors
    named with their line numbers) unless ``skip_invalid``, which records such lines as failures.
    """
    from ingest.jsonl import read_jsonl, validate_jsonl

    path = Path(path)
    if not skip_invalid:
        errors = validate_jsonl(path, max_errors=5)
        if errors:
            more = " (and more)" if len(errors) == 5 else ""
            raise InputError(f"{path}: malformed JSONL, nothing stored: " + "; ".join(errors[:3]) + more)
    params = {"path": str(path), "skip_invalid": skip_invalid}
    records = read_jsonl(path, skip_invalid=skip_invalid)
    return _ingest_stream(store, "jsonl", path, records, batch_size=batch_size, params=params)


def ingest_pubmed(
    store: Store,
    settings: Settings,
    query: str,
    *,
    mindate: str | None = None,
    maxdate: str | None = None,
    max_records: int | None = None,
    progress: bool = True,
    transport: Any = None,
) -> RunReport:
    """Search PubMed through E-utilities and store every record found.

    Every PMID esearch listed ends stored, or recorded as a failure with its reason; what esearch could
    not list (a single day above 10,000 records) is reported as ``shortfall``. An E-utilities failure
    after retries ends the run as failed and raises; the batches stored before it stay.
    """
    from ingest.entrez import EntrezClient

    params = {"query": query, "mindate": mindate, "maxdate": maxdate, "max": max_records}
    bar = progress_bar(None, "PubMed", "rec", progress)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with EntrezClient(settings.ncbi, transport=transport) as client:
        fetch = client.fetch_query(
            query, mindate=mindate, maxdate=maxdate, max_records=max_records, progress=advance
        )
        run_id = store.start_run("pubmed", params)
        try:
            for batch in fetch:
                store.apply(batch.records, run_id=run_id, origin="entrez", failures=batch.failed)
        except BaseException as exc:
            store.finish_run(run_id, "failed", str(exc) or type(exc).__name__)
            raise
        finally:
            bar.close()
    found = fetch.report
    store.finish_run(run_id, "done")
    report = RunReport(run_id=run_id, source="pubmed", status="done", counts=store.run_counts(run_id))
    report.details = {
        "count": found.count,
        "expected": found.expected,
        "shortfall": found.shortfall,
        "slices": len(found.slices),
        "query_translation": found.query_translation,
    }
    report.notes.extend(found.warnings)
    if found.shortfall:
        report.notes.append(
            f"{found.shortfall} of {found.count} PubMed records could not be listed "
            "(more than 9,999 in one day)"
        )
    return report
