"""A disk that fills while the index is written or while the library commits.

Three ways, all real: a tmpfs of a few MB filled to the last byte (ENOSPC for every process; needs root to
mount, skipped otherwise), a file size limit (``RLIMIT_FSIZE``: the kernel refuses the write with EFBIG, in
the command's process only), and SQLite's own ``max_page_count`` (SQLITE_FULL). In each case the user reads
one line ``Error: ...``, the command exits 1, the library and the index served before are intact and still
answer searches, and the same command run again once there is room completes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.errors import LibraryError
from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from indexes.embedder import FakeEmbedder
from indexes.index_set import IndexSet
from indexes.lexical_index import LexicalIndex
from indexes.search import Searcher
from ingest.run import ingest_files, ingest_jsonl
from ingest.store import Store
from tests.conftest import SHARED_DATA
from tests.crash_harness import environment, library_of, medlit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file size limits")

XML = SHARED_DATA / "fixtures" / "pubmed_xml"
SMALL = XML / "test_current_medline.xml.gz"  # 4 citations and a deletion
MEDLINE_2016 = XML / "medline16n0902.xml.gz"  # 604 citations


def run(home: Path, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    """``medlit ARGS`` in a subprocess; ``fsize`` limits the size of any file it writes (RLIMIT_FSIZE)."""

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        medlit(*args),
        env=environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        check=False,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert all(word in errors[0] for word in words), errors[0]
    return errors[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings_for(home: Path) -> Settings:
    return Settings(home=home)


def index_state(home: Path) -> tuple[dict, str]:
    """The manifest the library holds and the sha256 of the file it names."""
    with Store(home / "library.db") as store:
        info = DenseIndex(store, settings_for(home)).info()
    return info, sha256(Path(info["path"]))


def dense_search_works(home: Path, *, fsize: int | None = None) -> list[int]:
    result = run(home, "search", "cancer", "--mode", "hybrid", "-k", "5", "--json", fsize=fsize)
    assert result.returncode == 0, result.stderr
    hits = [hit["pmid"] for hit in json.loads(result.stdout)]
    assert hits
    return hits


def ingest(home: Path, *paths: Path) -> None:
    with Store(home / "library.db") as store:
        assert ingest_files(store, paths, progress=False, workers=False).status == "done"


def update_index(home: Path) -> None:
    """``medlit index update`` as the CLI runs it (the fake embedder the settings name), then verify."""
    with Store(home / "library.db") as store:
        indexes = IndexSet(store, settings_for(home), embedder=FakeEmbedder(64))
        indexes.update(progress=False)
        assert indexes.verify().ok


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A library of the 604-citation file with a complete index."""
    home = tmp_path / "home"
    ingest(home, MEDLINE_2016)
    update_index(home)
    return home


def change_library(home: Path, tmp_path: Path) -> None:
    """New records, so that ``index update`` has something to write."""
    changes = tmp_path / "changes.jsonl"
    changes.write_text(
        "".join(
            json.dumps({"pmid": 90_000_000 + i, "title": f"New cancer trial {i}"}) + "\n" for i in range(30)
        )
    )
    with Store(home / "library.db") as store:
        ingest_jsonl(store, changes)


def test_index_write_past_the_file_size_limit_keeps_the_index_in_service(home: Path, tmp_path: Path) -> None:
    change_library(home, tmp_path)
    manifest, digest = index_state(home)
    library = library_of(home)
    failed = run(home, "index", "update", fsize=64 * 1024)  # the index is ~160 KB
    assert_one_clear_error(failed, "cannot write the index file", "File too large", "unchanged")
    assert index_state(home) == (manifest, digest)
    lexical = json.loads(run(home, "index", "info", "--only", "lexical", "--json").stdout)["lexical"]["file"]
    served = sorted([manifest["file"], lexical])
    assert sorted(p.name for p in (home / "indexes").iterdir()) == served  # no temp file left
    assert library_of(home) == library
    dense_search_works(home, fsize=64 * 1024)  # served under the same limit
    update_index(home)


def test_library_commit_past_the_file_size_limit_keeps_what_was_committed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ingest(home, SMALL)
    update_index(home)
    before = library_of(home)
    # the WAL grows by a batch per commit: at 512 KB a commit midway through the file fails
    failed = run(home, "ingest", "files", str(MEDLINE_2016), "-q", fsize=512 * 1024)
    assert_one_clear_error(failed, "cannot use the library", "disk I/O error", "committed is kept")
    after = library_of(home)
    assert {p: after.articles.get(p) for p in before.articles} == before.articles  # nothing lost
    assert len(after.articles) < 4 + 604  # it did stop midway
    with Store(home / "library.db") as store:
        assert store.integrity_check() == "ok"
    assert dense_search_works(home)
    ingest(home, MEDLINE_2016)  # resumes
    reference = tmp_path / "reference"
    ingest(reference, SMALL, MEDLINE_2016)
    assert library_of(home) == library_of(reference)


def test_sqlite_full_rolls_back_the_batch_and_keeps_the_library(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with Store.open(settings) as store:
        ingest_files(store, [SMALL], progress=False, workers=False)
        IndexSet(store, settings, embedder=FakeEmbedder(64)).build(progress=False)
    before = library_of(settings.home)
    with Store.open(settings) as store:
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 8}")  # this connection may grow 32 KB more
        with pytest.raises(LibraryError, match=r"the disk is full.*committed is kept") as failure:
            ingest_files(store, [MEDLINE_2016], batch_size=100, progress=False, workers=False)
        assert "\n" not in str(failure.value)
        assert not store.conn.in_transaction  # nothing left open on the connection
        store.conn.execute("PRAGMA max_page_count = 4294967294")
        hits = Searcher(store, settings, embedder=FakeEmbedder(64)).search("cancer", 3)
        assert hits and all(store.get(h.pmid) is not None for h in hits)
    after = library_of(settings.home)
    assert {p: after.articles.get(p) for p in before.articles} == before.articles
    with Store.open(settings) as store:
        assert store.integrity_check() == "ok"
        report = ingest_files(store, [MEDLINE_2016], batch_size=100, progress=False, workers=False)
        assert report.status == "done"
        assert DenseIndex(store, settings, embedder=FakeEmbedder(64)).update(progress=False).added > 0


# ----- a real full disk: a small tmpfs ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs mounted for this test (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", f"medlit-test-{uuid.uuid4().hex[:6]}", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the disk refuses: ENOSPC."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 512, 1):  # big blocks, then the last bytes
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_real_full_disk(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    ingest(home, MEDLINE_2016)
    update_index(home)
    change_library(home, tmp_path)
    manifest, digest = index_state(home)
    library = library_of(home)
    # A long-running server (the API) holds the library open. SQLite needs its shared-memory file to read
    # a WAL library and cannot create it on a disk with no byte free: with nothing holding the library open
    # a new process may not open it until there is room (one clear error then, checked at the end).
    with Store(home / "library.db") as server:
        filler = fill(small_disk)
        assert shutil.disk_usage(small_disk).free < 64 * 1024

        failed = run(home, "index", "update")
        assert_one_clear_error(failed, "cannot write the index file", "No space left on device")
        assert index_state(home) == (manifest, digest)
        with Store(home / "library.db") as store:
            lexical = LexicalIndex(store, settings_for(home)).manifest()
        served = sorted([manifest["file"], lexical.file])
        assert sorted(p.name for p in (home / "indexes").iterdir()) == served  # no half-written index

        failed = run(home, "ingest", "files", str(SMALL))
        assert_one_clear_error(failed, "cannot use the library", "disk is full")
        assert library_of(home) == library
        dense_search_works(home)  # the disk is still full: the library and the index still answer
        hits = Searcher(server, Settings(home=home), embedder=FakeEmbedder(64)).search("cancer", 3)
        assert hits
    after = run(home, "search", "cancer")  # depends on whether SQLite kept its shared-memory file
    if after.returncode != 0:
        assert_one_clear_error(after, "cannot use the library", "disk I/O error")

    filler.unlink()
    ingest(home, SMALL)
    update_index(home)
    with Store(home / "library.db") as store:
        assert store.integrity_check() == "ok"
