"""Crash safety: ``medlit`` killed with SIGKILL at random moments, restarted, compared with an unkilled run.

Each trial starts from a fresh library, runs the real command in a subprocess, sends SIGKILL to it (only to
the command's process, as the OOM killer would: a child it started must notice and go by itself), checks the
library and index it left behind, restarts the command, kills it again, and finally lets it finish. Then the
result must equal an uninterrupted run's.

- ``ingest files FILE``: after every kill the library passes ``PRAGMA integrity_check`` and holds exactly
  the file's first N records, N being the file's ``records_done`` checkpoint, with run counts that add up
  to N (nothing counted twice, nothing lost); after the last run the articles (PMID and content hash) and
  the tombstones equal the uninterrupted run's.
- ``index update`` (no index yet: a first build, the dense side in checkpoints), ``index build`` over
  complete indexes, and ``index update`` after records changed, were added and were deleted; each runs the
  lexical index (tantivy) first, then the dense one. After every kill the served dense index loads, its
  vectors are exactly its entries, without duplicates, and a dense search works; the served lexical index
  (when the library names one) loads, its documents are exactly its entries with their content hashes, and a
  BM25 search works; a killed rebuild leaves the previous complete indexes served. After the last run
  ``medlit index verify`` passes for both, the vectors (ids and values) and the lexical documents (PMIDs and
  content hashes) equal the uninterrupted run's, and the index folder holds only the two indexes the
  library names.

Kills land either at a random delay (anywhere: start-up, parsing, a commit, the index write) or when the
command's committed progress reaches a random point (mid-run for certain). Run as a module it prints the
figures as JSON, and exits 1 when any check failed::

    python -m tests.crash_harness --trials 20 --file .cache/demo/pubmed20n0014.xml.gz
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900.0  # a safety net for a hung command, never a measure of speed
GRACE = 10.0  # how long a killed command's children get to notice and exit
INDEX_KINDS = ("first-build", "rebuild", "update")


# ----- running and killing the real command -------------------------------------------------------------


def medlit(*args: str) -> list[str]:
    """The ``medlit`` command line with this interpreter (the same environment as the tests)."""
    return [sys.executable, "-m", "medlit.cli", *args]


def environment(home: Path, **settings: str | int) -> dict[str, str]:
    """The command's environment: no MEDLIT_/NCBI_ setting from outside, the fake embedder, ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDLIT_", "NCBI_"))}
    env.update(
        {
            "MEDLIT_HOME": str(home),
            "MEDLIT_EMBEDDING__BACKEND": "fake",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update({k: str(v) for k, v in settings.items()})
    return env


def run_to_end(args: list[str], env: dict[str, str], *, timeout: float = TIMEOUT) -> float:
    """Run a command to its end; returns its duration; RuntimeError when it fails."""
    started = time.monotonic()
    done = subprocess.run(
        args, env=env, cwd=env["MEDLIT_HOME"], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - started


@dataclass(slots=True)
class Kill:
    """One SIGKILL: when and where it landed, and whether the command's children went by themselves."""

    command: str
    mode: str  # "delay" (a random moment) or "progress" (once committed work reached a random point)
    seconds: float  # after the start
    before: int  # committed work units when the command started (records_done, up-to-date index entries)
    progress: int  # ... and when the kill landed
    total: int  # ... when the work is complete
    finished_first: bool = False  # the command ended before the kill could land
    leftover_processes: int = 0  # its children still alive GRACE seconds after the kill

    @property
    def landing(self) -> str:
        """Where the kill landed: before this run committed anything, between commits, after the last."""
        if self.finished_first:
            return "finished first"
        if self.progress >= self.total:
            return "after the last commit"
        return "between commits" if self.progress > self.before else "before the first commit"

    @property
    def point(self) -> float:
        """How far through its own work the run was (0: nothing committed yet, 1: all committed)."""
        todo = self.total - self.before
        return (self.progress - self.before) / todo if todo > 0 else 1.0


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group (Linux /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def run_killed(
    args: list[str],
    env: dict[str, str],
    *,
    mode: str,
    rng: random.Random,
    duration: float,
    progress: Callable[[], int],
    total: int,
    timeout: float = TIMEOUT,
) -> Kill:
    """Start the command and SIGKILL it: at a random delay within ``duration`` (the length of a whole run;
    mode "delay"), or once ``progress()`` reaches a random point between where it stands and ``total``
    (mode "progress")."""
    start_at = progress()
    target = rng.randint(start_at + 1, total) if total > start_at else total
    # a restarted run has only the rest to do: draw the delay within about its length
    delay = rng.uniform(0.0, duration * max(0.25, (total - start_at) / total if total else 1.0))
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=env["MEDLIT_HOME"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        started = time.monotonic()
        try:
            while proc.poll() is None:
                now = time.monotonic() - started
                if now > timeout:
                    raise RuntimeError(f"{' '.join(args[2:])} still running after {timeout} s")
                if mode == "delay" and now >= delay:
                    break
                if mode == "progress" and progress() >= target:
                    time.sleep(rng.uniform(0.0, 0.01))  # somewhere in the next batch
                    break
                time.sleep(0.005)
            finished_first = proc.poll() is not None
            if not finished_first:
                os.kill(proc.pid, signal.SIGKILL)
            seconds = time.monotonic() - started
            proc.wait(timeout=60)
            leftovers = _wait_for_group(proc.pid)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _kill_group(proc.pid)
        if finished_first and proc.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(args[2:])} failed ({proc.returncode}): {message}")
    return Kill(
        command=" ".join(args[3:5]),
        mode=mode,
        seconds=round(seconds, 3),
        before=start_at,
        progress=progress(),
        total=total,
        finished_first=finished_first,
        leftover_processes=len(leftovers),
    )


def _wait_for_group(pgid: int) -> list[int]:
    deadline = time.monotonic() + GRACE
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return members


def _kill_group(pgid: int) -> None:
    """Clean up after the check: whatever of the group is still alive goes (the harness's own processes)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# ----- reading a library the way a crash left it (plain sqlite3: opening a Store would repair it) --------


@contextmanager
def connect(home: Path, *, timeout: float = 30.0) -> Iterator[sqlite3.Connection]:
    """A connection to an existing library (never creates one: the command must do that)."""
    uri = (home / "library.db").resolve().as_uri() + "?mode=rw"
    with closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as conn:
        yield conn


def integrity(home: Path) -> str:
    with connect(home) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def records_done(home: Path) -> int:
    """The checkpoint of the (one) file being ingested; 0 before it is registered."""
    try:
        with connect(home, timeout=0.2) as conn:
            row = conn.execute("SELECT coalesce(max(records_done), 0) FROM files").fetchone()
    except sqlite3.OperationalError:  # not created yet, or being created
        return 0
    return int(row[0])


def up_to_date_entries(home: Path) -> int:
    """Index entries committed for the current version of their article."""
    try:
        with connect(home, timeout=0.2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM index_entries e JOIN articles a "
                "ON a.pmid = e.pmid AND a.content_hash = e.content_hash WHERE e.name = 'dense'"
            ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


@dataclass(slots=True)
class Library:
    """What an ingest must reproduce: articles (PMID -> content hash) and tombstones."""

    articles: dict[int, str]
    tombstones: set[int]


def library_of(home: Path) -> Library:
    with connect(home) as conn:
        articles = dict(conn.execute("SELECT pmid, content_hash FROM articles").fetchall())
        tombstones = {row[0] for row in conn.execute("SELECT pmid FROM deleted_articles")}
    return Library(articles, tombstones)


def run_rows(home: Path) -> list[dict[str, Any]]:
    with connect(home) as conn:
        cursor = conn.execute("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _counts_add_up(run: dict[str, Any]) -> bool:
    parts = ("inserted", "updated", "unchanged", "deleted", "failed")
    return bool(run["seen"] == sum(run[name] for name in parts))


# ----- the file's records, to know the library a checkpoint stands for -----------------------------------


@dataclass(slots=True)
class FileRecords:
    """The file's records in order, reduced to what the library keeps of each."""

    items: list[
        tuple[str, Any]
    ]  # ("article", (pmid, version, hash)), ("delete", [pmids]), ("rejected", None)

    @classmethod
    def read(cls, path: Path) -> FileRecords:
        from ingest.article import Article, Deletion
        from ingest.pubmed_xml import iter_records
        from ingest.store import prepare

        items: list[tuple[str, Any]] = []
        for record in iter_records(path):
            if isinstance(record, Article):
                items.append(("article", (record.pmid, record.version, prepare(record).content_hash)))
            elif isinstance(record, Deletion):
                items.append(("delete", list(record.pmids)))
            else:
                items.append(("rejected", None))
        return cls(items)

    def __len__(self) -> int:
        return len(self.items)

    def library_after(self, n: int) -> Library:
        """The library an empty one becomes after the first ``n`` records (one file: one origin rank)."""
        articles: dict[int, tuple[int, str]] = {}
        tombstones: set[int] = set()
        for kind, value in self.items[:n]:
            if kind == "article":
                pmid, version, digest = value
                stored = articles.get(pmid)
                if stored is None or version >= stored[0]:
                    articles[pmid] = (version, digest)
                    tombstones.discard(pmid)
            elif kind == "delete":
                for pmid in value:
                    articles.pop(pmid, None)
                    tombstones.add(pmid)
        return Library({p: d for p, (_v, d) in articles.items()}, tombstones)


# ----- figures ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """What a set of trials showed; ``failures`` must be empty."""

    command: str
    trials: int = 0
    kills: list[Kill] = field(default_factory=list)
    restarts_completed: int = 0
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    reference_seconds: dict[str, float] = field(default_factory=dict)

    def check(self, ok: bool, message: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(message)

    def to_dict(self) -> dict[str, Any]:
        landed = [k for k in self.kills if not k.finished_first]
        between = [k for k in landed if k.landing == "between commits"]
        points = sorted(round(k.point, 3) for k in between)
        places = ("before the first commit", "between commits", "after the last commit", "finished first")
        return {
            "command": self.command,
            "trials": self.trials,
            "kills_sent": len(landed),
            "kills_by_command": {
                c: sum(1 for k in landed if k.command == c) for c in sorted({k.command for k in landed})
            },
            "kills_by_landing": {place: sum(1 for k in self.kills if k.landing == place) for place in places},
            "kill_modes": {m: sum(1 for k in landed if k.mode == m) for m in ("delay", "progress")},
            "kill_points_between_commits": {
                "min": points[0] if points else None,
                "median": statistics.median(points) if points else None,
                "max": points[-1] if points else None,
                "deciles": [sum(1 for p in points if i / 10 <= p < (i + 1) / 10) for i in range(10)],
            },
            "kill_seconds_max": max((k.seconds for k in landed), default=None),
            "leftover_processes": sum(k.leftover_processes for k in self.kills),
            "restarts_completed": self.restarts_completed,
            "checks": self.checks,
            "failures": self.failures,
            "reference_seconds": self.reference_seconds,
        }


# ----- ingest files ----------------------------------------------------------------------------------------


def crash_ingest(
    path: Path,
    *,
    trials: int,
    kills: int,
    workdir: Path,
    seed: int = 0,
    batch_size: int = 50,
) -> Figures:
    """``medlit ingest files PATH`` killed ``kills`` times per trial, then run to its end; see the module."""
    path = Path(path).resolve()
    rng = random.Random(seed)
    figures = Figures(command="ingest files")
    records = FileRecords.read(path)
    total = len(records)
    args = medlit("ingest", "files", str(path), "--json", "-q")
    settings = {"MEDLIT_INGEST_BATCH_SIZE": batch_size}

    reference_home = workdir / "ingest-reference"
    reference_home.mkdir(parents=True)
    duration = run_to_end(args, environment(reference_home, **settings))
    figures.reference_seconds["ingest files"] = round(duration, 2)
    reference = library_of(reference_home)
    figures.check(reference == records.library_after(total), "the uninterrupted run differs from the file")

    for trial in range(trials):
        figures.trials += 1
        home = workdir / f"ingest-{trial}"
        home.mkdir()
        env = environment(home, **settings)
        for k in range(kills):
            if records_done(home) >= total:
                break  # all committed: a kill now tests nothing new
            mode = "progress" if (trial + k) % 2 == 0 else "delay"
            progress = partial(records_done, home)
            kill = run_killed(
                args, env, mode=mode, rng=rng, duration=duration, progress=progress, total=total
            )
            figures.kills.append(kill)
            if not (home / "library.db").exists():
                continue  # killed before the library was created
            where = f"trial {trial} kill {k} ({kill.mode}, {kill.seconds} s, {kill.progress}/{total})"
            figures.check(kill.leftover_processes == 0, f"{where}: {kill.leftover_processes} processes left")
            state = integrity(home)
            figures.check(state == "ok", f"{where}: integrity_check: {state}")
            done = records_done(home)
            expected = records.library_after(done)
            found = library_of(home)
            figures.check(
                found == expected,
                f"{where}: the library is not the file's first {done} records "
                f"({len(found.articles)} articles, expected {len(expected.articles)})",
            )
            runs = run_rows(home)
            figures.check(all(_counts_add_up(r) for r in runs), f"{where}: run counts do not add up")
            seen = sum(r["seen"] for r in runs)
            figures.check(seen == done, f"{where}: runs saw {seen} records, the checkpoint says {done}")
        run_to_end(args, env)
        figures.restarts_completed += 1
        where = f"trial {trial} (final)"
        figures.check(integrity(home) == "ok", f"{where}: integrity_check failed")
        figures.check(
            library_of(home) == reference, f"{where}: the library differs from the uninterrupted run"
        )
        runs = run_rows(home)
        figures.check(all(_counts_add_up(r) for r in runs), f"{where}: run counts do not add up")
        seen = sum(r["seen"] for r in runs)
        figures.check(seen == total, f"{where}: runs saw {seen} records in all, the file holds {total}")
        figures.check(runs[-1]["status"] == "done", f"{where}: the last run is {runs[-1]['status']}")
        left = [r["status"] for r in runs[:-1] if r["status"] not in ("interrupted", "done")]
        figures.check(not left, f"{where}: killed runs not closed as interrupted: {left}")
        shutil.rmtree(home)
    return figures


# ----- index build and update ------------------------------------------------------------------------------


def index_content(home: Path) -> dict[int, Any]:
    """Vector id -> vector of the index the manifest names (flat kind), or {} without an index."""
    import faiss

    with connect(home) as conn:
        row = conn.execute("SELECT file FROM index_manifests WHERE name = 'dense'").fetchone()
    if row is None:
        return {}
    index = faiss.read_index(str(home / "indexes" / row[0]))
    ids = faiss.vector_to_array(index.id_map).tolist()
    vectors = faiss.downcast_index(index.index).reconstruct_n(0, index.ntotal)
    return dict(zip(ids, vectors, strict=True))


def lexical_content(home: Path) -> list[tuple[int, int]]:
    """(PMID, content key) of every document of the lexical index the library names ([] without one)."""
    from foundation.settings import Settings
    from indexes.lexical_index import LexicalIndex
    from ingest.store import Store

    with Store(home / "library.db") as store:
        lexical = LexicalIndex(store, Settings(home=home))
        return lexical.indexed() if lexical.manifest() is not None else []


def same_vectors(a: dict[int, Any], b: dict[int, Any]) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.allclose(a[i], b[i], atol=1e-6) for i in a)


def index_files(home: Path) -> list[str]:
    folder = home / "indexes"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def manifest_file(home: Path, name: str = "dense") -> str | None:
    with connect(home) as conn:
        row = conn.execute("SELECT file FROM index_manifests WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def _moved_from(home: Path, file: str | None) -> int:
    try:
        return int(manifest_file(home) != file)
    except sqlite3.OperationalError:
        return 0


def check_served_index(home: Path, figures: Figures, where: str, *, complete: bool) -> None:
    """The index the library names loads, holds exactly its entries once each, and answers a search."""
    from foundation.settings import Settings
    from indexes.dense_index import DenseIndex
    from indexes.embedder import FakeEmbedder
    from indexes.search import Searcher
    from ingest.store import Store

    settings = Settings(home=home)
    with Store(home / "library.db") as store:
        dense = DenseIndex(store, settings, embedder=FakeEmbedder(64))
        if dense.manifest() is None:
            return
        report = dense.verify()
        figures.check(not report.problems, f"{where}: {report.problems}")
        figures.check(report.duplicates == 0, f"{where}: {report.duplicates} duplicate vectors")
        if complete:
            figures.check(
                report.ok, f"{where}: the previous complete index is not served: {report.to_dict()}"
            )
        try:
            hits = Searcher(store, settings, embedder=FakeEmbedder(64)).search("cancer", 5, mode="dense")
        except Exception as exc:
            figures.check(False, f"{where}: dense search failed: {type(exc).__name__}: {exc}")
        else:
            figures.check(all(store.get(h.pmid) is not None for h in hits), f"{where}: a hit is not stored")


def check_served_lexical_index(home: Path, figures: Figures, where: str, *, complete: bool) -> None:
    """The lexical index the library names loads, holds exactly its entries (PMIDs and content hashes),
    and answers a BM25 search."""
    from foundation.settings import Settings
    from indexes.lexical_index import LexicalIndex
    from indexes.search import Searcher
    from ingest.store import Store

    settings = Settings(home=home)
    with Store(home / "library.db") as store:
        lexical = LexicalIndex(store, settings)
        if lexical.manifest() is None:
            return
        report = lexical.verify()
        figures.check(not report.problems, f"{where}: lexical: {report.problems}")
        figures.check(report.duplicates == 0, f"{where}: lexical: {report.duplicates} duplicate documents")
        if complete:
            figures.check(report.ok, f"{where}: the previous lexical index is not served: {report.to_dict()}")
        try:
            hits = Searcher(store, settings).search("cancer", 5, mode="bm25")
        except Exception as exc:
            figures.check(False, f"{where}: BM25 search failed: {type(exc).__name__}: {exc}")
        else:
            figures.check(all(store.get(h.pmid) is not None for h in hits), f"{where}: a hit is not stored")


def write_changes(home: Path, folder: Path, rng: random.Random) -> tuple[Path, Path]:
    """A JSONL changing ~5% of the articles and adding new ones, and an XML deleting ~2% others."""
    with connect(home) as conn:
        pmids = [r[0] for r in conn.execute("SELECT pmid FROM articles ORDER BY pmid")]
    rng.shuffle(pmids)
    n = max(1, len(pmids) // 20)
    changed, deleted = pmids[:n], pmids[n : n + max(1, n // 2)]
    new = [max(pmids) + 1 + i for i in range(n)]
    jsonl = folder / "changes.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"pmid": p, "title": f"Revised record {p} on cancer and blood", "year": 2024}) + "\n"
            for p in changed + new
        )
    )
    xml = folder / "zz-deletions.xml"
    xml.write_text(
        "<PubmedArticleSet><DeleteCitation>"
        + "".join(f"<PMID Version='1'>{p}</PMID>" for p in deleted)
        + "</DeleteCitation></PubmedArticleSet>"
    )
    return jsonl, xml


def crash_index(
    path: Path,
    *,
    trials: int,
    kills: int,
    workdir: Path,
    seed: int = 0,
    checkpoint_every: int = 100,
) -> Figures:
    """``medlit index update`` / ``build`` killed ``kills`` times per trial, then run to its end."""
    path = Path(path).resolve()
    rng = random.Random(seed + 1)
    figures = Figures(command="index build/update")
    settings = {"MEDLIT_INDEX__CHECKPOINT_EVERY": checkpoint_every}
    update, build = medlit("index", "update", "--json", "-q"), medlit("index", "build", "--json", "-q")

    # three starting points, made once: a library without an index, with a complete index, and with a
    # complete index that the library has since moved away from
    plain = workdir / "index-plain"
    plain.mkdir(parents=True)
    run_to_end(medlit("ingest", "files", str(path), "-q"), environment(plain))
    indexed = workdir / "index-indexed"
    shutil.copytree(plain, indexed)
    figures.reference_seconds["first-build"] = round(run_to_end(update, environment(indexed, **settings)), 2)
    changed = workdir / "index-changed"
    shutil.copytree(indexed, changed)
    jsonl, xml = write_changes(changed, workdir, rng)
    run_to_end(medlit("ingest", "jsonl", str(jsonl)), environment(changed))
    run_to_end(medlit("ingest", "files", str(xml)), environment(changed))
    starts = {"first-build": plain, "rebuild": indexed, "update": changed}
    commands = {"first-build": update, "rebuild": build, "update": update}

    references: dict[str, dict[int, Any]] = {}
    lexical_references: dict[str, list[tuple[int, int]]] = {}
    durations: dict[str, float] = {}
    for kind in INDEX_KINDS:
        home = workdir / f"index-reference-{kind}"
        shutil.copytree(starts[kind], home)
        durations[kind] = run_to_end(commands[kind], environment(home, **settings))
        figures.reference_seconds[kind] = round(durations[kind], 2)
        references[kind] = index_content(home)
        lexical_references[kind] = lexical_content(home)
        shutil.rmtree(home)
    with connect(changed) as conn:
        library_size = conn.execute(
            "SELECT count(*) FROM articles WHERE title != '' OR has_abstract = 1"
        ).fetchone()[0]

    for trial in range(trials):
        figures.trials += 1
        kind = INDEX_KINDS[trial % len(INDEX_KINDS)]
        home = workdir / f"index-{trial}"
        shutil.copytree(starts[kind], home)
        env = environment(home, **settings)
        total = library_size if kind == "update" else len(references[kind])
        progress = partial(up_to_date_entries, home)
        if kind == "rebuild":  # one commit at the end: progress is whether the manifest moved to a new file
            total = 1
            progress = partial(_moved_from, home, manifest_file(home))
        for k in range(kills):
            if progress() >= total:
                break  # all committed: a kill now tests nothing new
            # a rebuild commits once, an update of a few changes about once: a random delay finds the moment
            mode = "progress" if kind == "first-build" and k % 2 == 0 else "delay"
            kill = run_killed(
                commands[kind],
                env,
                mode=mode,
                rng=rng,
                duration=durations[kind],
                progress=progress,
                total=total,
            )
            kill.command = f"index {kind}"
            figures.kills.append(kill)
            where = f"trial {trial} {kind} kill {k} ({kill.mode}, {kill.seconds} s, {kill.progress}/{total})"
            figures.check(kill.leftover_processes == 0, f"{where}: {kill.leftover_processes} processes left")
            state = integrity(home)
            figures.check(state == "ok", f"{where}: integrity_check: {state}")
            check_served_index(home, figures, where, complete=kind == "rebuild")
            check_served_lexical_index(home, figures, where, complete=kind == "rebuild")
        run_to_end(commands[kind], env)
        figures.restarts_completed += 1
        where = f"trial {trial} {kind} (final)"
        verify = subprocess.run(
            medlit("index", "verify", "--json"),
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            check=False,
        )
        figures.check(verify.returncode == 0, f"{where}: index verify: {verify.stdout} {verify.stderr}")
        figures.check(integrity(home) == "ok", f"{where}: integrity_check failed")
        figures.check(
            same_vectors(index_content(home), references[kind]),
            f"{where}: the vectors differ from the uninterrupted run's",
        )
        figures.check(
            lexical_content(home) == lexical_references[kind],
            f"{where}: the lexical documents differ from the uninterrupted run's",
        )
        files = index_files(home)
        served = sorted([manifest_file(home), manifest_file(home, "lexical")])
        figures.check(files == served, f"{where}: stray files in the index folder: {files}")
        shutil.rmtree(home)
    return figures


# ----- the command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", type=Path, required=True, help="a PubMed XML file (.xml or .xml.gz)")
    parser.add_argument("--trials", type=int, default=20, help="trials per command (default 20)")
    parser.add_argument("--kills", type=int, default=3, help="kills per trial before the run to the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500, help="MEDLIT_INGEST_BATCH_SIZE")
    parser.add_argument("--checkpoint-every", type=int, default=2000, help="MEDLIT_INDEX__CHECKPOINT_EVERY")
    parser.add_argument("--only", choices=["ingest", "index"], default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp dir)")
    options = parser.parse_args(argv)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medlit-crash-") as temp:
        workdir = options.workdir or Path(temp)
        results: dict[str, Any] = {
            "file": str(options.file),
            "trials": options.trials,
            "kills_per_trial": options.kills,
            "seed": options.seed,
            "batch_size": options.batch_size,
            "checkpoint_every": options.checkpoint_every,
        }
        if options.only in (None, "ingest"):
            results["ingest"] = crash_ingest(
                options.file,
                trials=options.trials,
                kills=options.kills,
                workdir=workdir / "ingest",
                seed=options.seed,
                batch_size=options.batch_size,
            ).to_dict()
        if options.only in (None, "index"):
            results["index"] = crash_index(
                options.file,
                trials=options.trials,
                kills=options.kills,
                workdir=workdir / "index",
                seed=options.seed,
                checkpoint_every=options.checkpoint_every,
            ).to_dict()
    results["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2))
    failed = any(results.get(part, {}).get("failures") for part in ("ingest", "index"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
