"""What a parse process runs: records of one PubMed XML file, prepared for the library, in batches.

``ingest.run`` starts it in a spawned child so parsing (one core) overlaps writing (another). The child
imports only this module, the parser, ``ingest.article`` and ``ingest.prepared``: no SQLite layer,
sqlite-utils or settings, which would cost each child ~0.3 s of imports before its first record.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from ingest.article import Article, Record
from ingest.prepared import Item, prepare
from ingest.pubmed_xml import iter_records


def batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items; when the source fails midway, the items read before it still come out."""
    batch: list[Any] = []
    try:
        for item in items:
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
    except InputError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def prepared_batches(
    path: str | Path,
    skip: int,
    batch_size: int,
    parse: Callable[[Path], Iterator[Record]] = iter_records,
) -> Iterator[list[Item]]:
    """The file's records after the first ``skip``, prepared for the library, in batches."""
    records = parse(Path(path))
    for _ in islice(records, skip):
        pass
    for batch in batches(records, batch_size):
        yield [prepare(r) if isinstance(r, Article) else r for r in batch]


@contextmanager
def few_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely while records stream through.

    A batch of parsed records is ~100,000 small acyclic objects held for a moment; with CPython's default
    thresholds (a collection every 700 allocations) the collector rescans them over and over, ~10% of the
    parse's CPU. Objects alive before (modules, the library's own) are frozen out of its scans.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _exit_with_parent() -> None:
    """End this child process as soon as its parent is gone (killed: SIGKILL, the OOM killer).

    Otherwise it would wait forever on a full queue, or on flushing it at exit, that nobody reads.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the spawn pipe closes, i.e. when it exits
        os._exit(0)

    threading.Thread(target=watch, name="medlit-parent-watch", daemon=True).start()


def parse_worker(path: str, skip: int, batch_size: int, out: Any) -> None:
    """Runs in a child process: parse and prepare batches, hand them to the writer through a queue."""
    _exit_with_parent()
    try:
        with few_collections():
            for batch in prepared_batches(path, skip, batch_size):
                out.put(("batch", batch))
    except InputError as exc:
        out.put(("error", str(exc)))
    except BaseException as exc:
        out.put(("crash", f"{type(exc).__name__}: {exc}"))
    else:
        out.put(("end", None))
