"""Searches in threads and in other processes while other processes write into the same library.

The writer is the real ``medlit`` in a subprocess: it ingests a 604-citation file in batches of 25 (25
commits), then updates the index in 7 checkpoints (each a new file, the old one removed). Meanwhile
two threads (each with its own connection and a long-lived ``Searcher``, as a server holds one) and two
processes (a new ``Store`` and ``Searcher`` per question, as the CLI does) search in every mode. No reader
may see an error (no "database is locked": WAL readers never wait, and the writer waits at most the busy
timeout), the article count a reader sees never goes down, and every hit is an article of the library.
Two writers at once both finish, and the library equals applying their files one after the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from indexes.embedder import FakeEmbedder
from indexes.index_set import IndexSet
from indexes.lexical_index import LexicalIndex
from indexes.search import Searcher
from ingest.run import ingest_files
from ingest.store import Store
from tests.conftest import SHARED_DATA
from tests.crash_harness import ROOT, environment, lexical_content, library_of, medlit

XML = SHARED_DATA / "fixtures" / "pubmed_xml"
CURRENT = XML / "test_current_medline.xml.gz"
MEDLINE_2016 = XML / "medline16n0902.xml.gz"
PUBMED4 = SHARED_DATA / "fixtures" / "entrez" / "pubmed4.xml"
QUESTIONS = ("cancer treatment", "blood pressure in children", "protein expression", "patients surgery")
MODES = ("bm25", "dense", "hybrid")
ARTICLES_BEFORE = 5  # in the library fixture


def read_until(home: str, stop: str, *, fresh: bool, name: str) -> dict[str, Any]:
    """Search until the file ``stop`` exists; what this reader saw. ``fresh``: a new Store and Searcher
    for every question (a CLI user), else one of each for the whole run (a server)."""
    settings = Settings(home=Path(home))
    seen: dict[str, Any] = {"reader": name, "queries": 0, "hits": 0, "errors": [], "counts": []}
    store = None if fresh else Store.open(settings)
    searcher = None if store is None else Searcher(store, settings, embedder=FakeEmbedder(64))
    last = 0
    i = 0
    while not Path(stop).exists() or i < len(MODES):  # at least one question of each mode
        mode, question = MODES[i % len(MODES)], QUESTIONS[i % len(QUESTIONS)]
        i += 1
        current = store or Store.open(settings)
        try:
            ask = searcher or Searcher(current, settings, embedder=FakeEmbedder(64))
            count = current.count()
            hits = ask.search(question, 10, None, mode)
            missing = [h.pmid for h in hits if current.get(h.pmid) is None]
            if missing:
                seen["errors"].append(f"{mode}: hits not in the library: {missing}")
            if count < last:
                seen["errors"].append(f"the article count went down from {last} to {count}")
            last = count
            seen["counts"].append(count)
            seen["queries"] += 1
            seen["hits"] += len(hits)
        except Exception as exc:
            seen["errors"].append(f"{mode}: {type(exc).__name__}: {exc}")
        finally:
            if store is None:
                current.close()
        time.sleep(0.01)  # leave the writer some of the machine's cores
    if store is not None:
        store.close()
    seen["counts"] = [min(seen["counts"], default=0), max(seen["counts"], default=0)]
    return seen


READER = """
import json, sys
from tests.test_concurrency import read_until
print(json.dumps(read_until(sys.argv[1], sys.argv[2], fresh=True, name=sys.argv[3])))
"""

WRITER = """
set -e
{medlit} ingest files {medline} -q
{medlit} index update -q
"""


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A small library with a complete index: readers have something to find from the start."""
    home = tmp_path / "home"
    settings = Settings(home=home)
    with Store.open(settings) as store:
        ingest_files(store, [CURRENT, PUBMED4], progress=False, workers=False)
        IndexSet(store, settings, embedder=FakeEmbedder(64)).build(progress=False)
    return home


def test_readers_in_threads_and_processes_while_a_writer_commits(library: Path, tmp_path: Path) -> None:
    home = library
    stop = tmp_path / "stop"
    env = environment(home, MEDLIT_INGEST_BATCH_SIZE=25, MEDLIT_INDEX__CHECKPOINT_EVERY=100)
    command = " ".join(medlit())
    script = WRITER.format(medlit=command, medline=MEDLINE_2016)

    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda n=n: results.append(
                read_until(str(home), str(stop), fresh=False, name=f"thread {n}")
            )
        )
        for n in range(2)
    ]
    reader_env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDLIT_EMBEDDING__BACKEND": "fake"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(home), str(stop), f"process {n}"],
            cwd=ROOT,
            env=reader_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    writer = subprocess.run(
        ["bash", "-c", script], env=env, cwd=home, capture_output=True, text=True, timeout=600
    )
    writing = time.monotonic() - started
    stop.touch()
    for thread in threads:
        thread.join(timeout=120)
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))

    assert writer.returncode == 0, writer.stderr
    print(json.dumps({"writer_seconds": round(writing, 1), "readers": results}))
    assert len(results) == 4
    for seen in results:
        assert seen["errors"] == [], seen
        assert seen["queries"] >= len(MODES) and seen["hits"] > 0
    assert max(seen["counts"][1] for seen in results) > 5  # readers saw the writer's commits
    verify = subprocess.run(medlit("index", "verify"), env=env, cwd=home, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_two_writers_at_once_both_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = environment(home, MEDLIT_INGEST_BATCH_SIZE=20)
    # into an empty library: both create and migrate it, then take turns to write batches
    writers = [
        subprocess.Popen(
            medlit("ingest", "files", str(path), "-q"), env=env, cwd=home, stderr=subprocess.PIPE
        )
        for path in (MEDLINE_2016, PUBMED4)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err.decode()
    reference = tmp_path / "reference"
    with Store(reference / "library.db") as store:
        ingest_files(store, [MEDLINE_2016, PUBMED4], progress=False, workers=False)
    assert library_of(home) == library_of(reference)
    for folder in (home, reference):
        with Store(folder / "library.db") as store:
            LexicalIndex(store, Settings(home=folder)).update(progress=False)
    assert lexical_content(home) == lexical_content(reference)


def test_a_reader_that_read_the_manifest_just_before_a_commit_loads_the_new_index(
    library: Path, tmp_path: Path
) -> None:
    """The race the first test found, made certain: a reader reads the manifest, another process commits
    a newer index and removes the file it named, then the reader opens that file."""
    settings = Settings(home=library)
    with Store.open(settings) as reader, Store.open(settings) as writer:
        stale = DenseIndex(reader, settings).manifest()
        ingest_files(writer, [MEDLINE_2016], progress=False, workers=False)
        DenseIndex(writer, settings, embedder=FakeEmbedder(64)).update(progress=False)
        assert not (settings.index_dir / stale.file).exists()

        class ReadJustBeforeTheCommit(DenseIndex):
            reads = 0

            def manifest(self) -> Any:
                self.reads += 1
                return stale if self.reads == 1 else super().manifest()

        dense = ReadJustBeforeTheCommit(reader, settings, embedder=FakeEmbedder(64))
        assert len(dense.load()) == len(DenseIndex(reader, settings).load()) > ARTICLES_BEFORE
        hits = Searcher(reader, settings, embedder=FakeEmbedder(64)).search("cancer", 5, mode="dense")
        assert hits
