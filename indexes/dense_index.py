"""The dense index, kept identical to the library: build, incremental update, verify, load for search.

The FAISS file holds the vectors and their ids (``pmid << 8 | passage``); the library holds the index's
manifest (model, dimension, count, checksum, kind, file) and, per PMID, the content hash and passage count
that were embedded. Both are written together: a new index file is written under a new name (temp file,
fsync, rename), then one transaction points the manifest at it, then the old file is removed. Killed at any
moment, the library names a complete file whose checksum matches, so a misaligned index is never served.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foundation.clock import now
from foundation.errors import LibraryError, MedlitError
from foundation.settings import Settings
from indexes.passages import document_text, passages, pmids_of, vector_ids
from ingest.record_codec import decode
from ingest.store import Store

NAME = "dense"
EMBEDDABLE = "(a.title != '' OR a.has_abstract = 1)"


@dataclass(slots=True)
class IndexReport:
    """What build/update did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    vectors: int = 0
    count: int = 0
    kind: str = ""
    model: str = ""
    seconds: float = 0.0
    checkpoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "articles": self.count,
            "vectors": self.vectors,
            "kind": self.kind,
            "model": self.model,
            "seconds": round(self.seconds, 2),
            "checkpoints": self.checkpoints,
        }


@dataclass(slots=True)
class VerifyReport:
    """Index PMIDs against embeddable library PMIDs. ``ok`` only when they are the same set, up to date."""

    library: int = 0
    indexed: int = 0
    missing: list[int] = field(default_factory=list)  # in the library, not in the index
    extra: list[int] = field(default_factory=list)  # in the index, not (or no longer) in the library
    stale: list[int] = field(default_factory=list)  # embedded from an older version of the record
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.stale or self.duplicates or self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "library_pmids": self.library,
            "index_pmids": self.indexed,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "stale": len(self.stale),
            "duplicate_vectors": self.duplicates,
            "examples": {
                "missing": self.missing[:10],
                "extra": self.extra[:10],
                "stale": self.stale[:10],
            },
            "problems": self.problems,
        }


def embedder_from_settings(settings: Settings) -> Any:
    """The embedder the settings describe (model exports cached under ``$MEDLIT_HOME/models``)."""
    from indexes.embedder import load_embedder

    cfg = settings.embedding
    return load_embedder(
        cfg.model,
        backend=cfg.backend,
        device=cfg.device,
        cache_dir=settings.model_cache,
        batch_size=cfg.batch_size,
        threads=cfg.threads,
        query_prefix=cfg.query_prefix,
        document_prefix=cfg.document_prefix,
    )


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One query at a time runs faster on one OpenMP thread: on a busy machine FAISS's threads wait for
    each other (measured: a 900-vector flat search took 60 ms with 2 threads under load, <1 ms with 1)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class DenseIndex:
    """The library's dense index. ``embedder`` is loaded from settings when not given."""

    def __init__(self, store: Store, settings: Settings, embedder: Any = None) -> None:
        self.store = store
        self.settings = settings
        self._embedder = embedder
        self._loaded: Any = None
        self._loaded_file: str | None = None
        self._passage_counts: dict[int, int] | None = None

    # ----- parts -----------------------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = embedder_from_settings(self.settings)
        return self._embedder

    def manifest(self) -> Any:
        from indexes.vector_index import IndexManifest

        cursor = self.store.conn.execute("SELECT * FROM index_manifests WHERE name = ?", (NAME,))
        row = cursor.fetchone()
        if row is None:
            return None
        data = dict(zip([d[0] for d in cursor.description], row, strict=True))
        data["extra"] = json.loads(data.get("extra") or "{}")
        data.pop("name", None)
        return IndexManifest.from_dict(data)

    def _path(self, file: str) -> Path:
        return self.settings.index_dir / file

    def load(self) -> Any:
        """The verified vector index; LibraryError when there is none or it does not match its manifest.

        Reloaded when the library names a newer index file (another process updated it), so a long-running
        server never serves an index older than the library's manifest."""
        from indexes.vector_index import VectorIndex

        manifest = self.manifest()
        if self._loaded is not None and manifest is not None and manifest.file == self._loaded_file:
            return self._loaded
        if manifest is None:
            raise LibraryError("the library has no dense index yet: run `medlit index build`")
        if self._embedder is not None and self._embedder.name != manifest.model:
            raise LibraryError(
                f"the dense index was built with model {manifest.model!r} but the configured model is "
                f"{self._embedder.name!r}: run `medlit index build` (or configure the index's model)"
            )
        while True:
            try:
                loaded = VectorIndex.load(self._path(manifest.file), expected=manifest)
                break
            except LibraryError:
                # another process committed a newer index and removed this file between reading the manifest
                # and opening the file: load the one the library names now
                newer = self.manifest()
                if newer is None or newer.file == manifest.file or newer.model != manifest.model:
                    raise
                manifest = newer
        self._loaded = loaded
        self._loaded_file = manifest.file
        return self._loaded

    def _embeddable(self) -> dict[int, str]:
        rows = self.store.conn.execute(f"SELECT a.pmid, a.content_hash FROM articles a WHERE {EMBEDDABLE}")
        return dict(rows.fetchall())

    def _entries(self) -> dict[int, tuple[str, int]]:
        rows = self.store.conn.execute(
            "SELECT pmid, content_hash, passages FROM index_entries WHERE name = ?", (NAME,)
        )
        return {pmid: (digest, n) for pmid, digest, n in rows.fetchall()}

    def passage_counts(self) -> dict[int, int]:
        if self._passage_counts is None:
            self._passage_counts = {pmid: n for pmid, (_h, n) in self._entries().items()}
        return self._passage_counts

    def _texts(self, pmids: list[int]) -> Iterator[tuple[int, str, list[str]]]:
        cfg = self.settings.index
        rows = self.store.select_in(
            "SELECT pmid, content_hash, title, abstract FROM articles WHERE pmid IN ({ids})", pmids, chunk=500
        )
        for pmid, digest, title, stored_abstract in rows:
            abstract = decode(stored_abstract)
            if cfg.passages:
                texts = passages(title, abstract, words=cfg.passage_words, overlap=cfg.passage_overlap)
            else:
                texts = [document_text(title, abstract)]
            yield pmid, digest, texts

    # ----- build and update ----------------------------------------------------------------------

    def build(self, *, kind: str | None = None, progress: bool = True) -> IndexReport:
        """A new index from every embeddable article (the old one is served until the new one is in)."""
        return self._sync(rebuild=True, kind=kind, progress=progress)

    def update(self, *, progress: bool = True) -> IndexReport:
        """Embed only new or changed articles and remove deleted ones (builds when there is no index)."""
        return self._sync(rebuild=self.manifest() is None, kind=None, progress=progress)

    def pending(self) -> int:
        """How many articles an ``update`` would embed now (new or changed; all of them without an index)."""
        if self.manifest() is None:
            return len(self._embeddable())
        row = self.store.conn.execute(
            "SELECT count(*) FROM articles a LEFT JOIN index_entries e ON e.name = ? AND e.pmid = a.pmid "
            f"WHERE {EMBEDDABLE} AND (e.pmid IS NULL OR e.content_hash != a.content_hash)",
            (NAME,),
        ).fetchone()
        return int(row[0])

    def _sync(self, *, rebuild: bool, kind: str | None, progress: bool) -> IndexReport:
        import time

        from indexes.vector_index import VectorIndex, choose_spec

        started = time.perf_counter()
        embedder = self.embedder
        library = self._embeddable()
        if rebuild:
            entries: dict[int, tuple[str, int]] = {}
            expected_vectors = int(len(library) * (1.6 if self.settings.index.passages else 1.0)) + 1
            spec = choose_spec(expected_vectors, embedder.dimension, kind or self.settings.index.kind)
            vindex = VectorIndex.create(spec)
            old_file = None
        else:
            vindex = self.load()
            entries = self._entries()
            manifest = self.manifest()
            old_file = manifest.file if manifest is not None else None
        remove = [p for p, (digest, _n) in entries.items() if library.get(p) != digest]
        add = [p for p, digest in library.items() if entries.get(p, ("", 0))[0] != digest]
        report = IndexReport(model=embedder.name, kind=vindex.spec.kind)
        report.unchanged = len(entries) - len(remove)
        ids_to_remove = [i for p in remove for i in vector_ids(p, entries[p][1])]
        if ids_to_remove:
            vindex.remove(np.asarray(ids_to_remove, dtype=np.int64))
        report.removed = len(remove)
        pending_add: list[tuple[int, str, int]] = []
        pending_remove = list(remove)
        every = self.settings.index.checkpoint_every
        if rebuild and self.manifest() is not None:
            # the index in service stays in service until the new one is whole: no partial checkpoint
            # replaces it (killed midway, a rebuild starts over; a first build resumes from its checkpoints)
            every = len(add) + 1
        batch_pmids: list[int] = []
        batch_texts: list[str] = []
        batch_meta: list[tuple[int, str, int]] = []

        def flush() -> None:
            if not batch_texts:
                return
            vectors = embedder.embed_documents(batch_texts, progress=progress)
            ids = np.asarray(batch_pmids, dtype=np.int64)
            vindex.add(ids, np.asarray(vectors, dtype=np.float32))
            pending_add.extend(batch_meta)
            report.added += len(batch_meta)
            batch_pmids.clear()
            batch_texts.clear()
            batch_meta.clear()

        current_file = old_file
        for pmid, digest, texts in self._texts(add):
            for j, text in enumerate(texts):
                batch_pmids.append((pmid << 8) | j)
                batch_texts.append(text)
            batch_meta.append((pmid, digest, len(texts)))
            # an untrained IVF index trains on its first add: hold that batch until it is big enough
            if len(batch_meta) >= every and (
                vindex.is_trained or len(batch_texts) >= vindex.min_train_vectors
            ):
                flush()
                current_file = self._commit(vindex, pending_add, pending_remove, current_file, rebuild)
                rebuild = False
                pending_add, pending_remove = [], []
                report.checkpoints += 1
        flush()
        self._loaded_file = self._commit(vindex, pending_add, pending_remove, current_file, rebuild)
        report.checkpoints += 1
        report.vectors = len(vindex)
        report.count = len(self._entries())
        report.seconds = time.perf_counter() - started
        self._loaded = vindex
        self._passage_counts = None
        return report

    def _commit(
        self,
        vindex: Any,
        added: list[tuple[int, str, int]],
        removed: list[int],
        old_file: str | None,
        replace_all: bool,
    ) -> str:
        """Write the index under a new name, then point the manifest at it in one transaction."""
        from indexes.vector_index import IndexManifest

        directory = self.settings.index_dir
        directory.mkdir(parents=True, exist_ok=True)
        file = f"{NAME}-{uuid.uuid4().hex[:12]}.faiss"
        checksum = vindex.save(directory / file)
        manifest = IndexManifest(
            model=self.embedder.name,
            dimension=int(self.embedder.dimension),
            count=len(vindex),
            checksum=checksum,
            kind=vindex.spec.kind,
            file=file,
            created_at=now(),
            extra={
                "passages": self.settings.index.passages,
                "passage_words": self.settings.index.passage_words,
                "passage_overlap": self.settings.index.passage_overlap,
            },
        )
        try:
            with self.store.transaction() as conn:
                if replace_all:
                    conn.execute("DELETE FROM index_entries WHERE name = ?", (NAME,))
                conn.executemany(
                    "DELETE FROM index_entries WHERE name = ? AND pmid = ?", [(NAME, p) for p in removed]
                )
                conn.executemany(
                    "INSERT INTO index_entries (name, pmid, content_hash, passages) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name, pmid) DO UPDATE SET content_hash = excluded.content_hash, "
                    "passages = excluded.passages",
                    [(NAME, p, digest, n) for p, digest, n in added],
                )
                data = manifest.to_dict()
                conn.execute(
                    "INSERT INTO index_manifests (name, model, dimension, count, checksum, kind, file, "
                    "created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                    "model = excluded.model, dimension = excluded.dimension, count = excluded.count, "
                    "checksum = excluded.checksum, kind = excluded.kind, file = excluded.file, "
                    "created_at = excluded.created_at, extra = excluded.extra",
                    (
                        NAME,
                        data["model"],
                        data["dimension"],
                        data["count"],
                        data["checksum"],
                        data["kind"],
                        data["file"],
                        data["created_at"],
                        json.dumps(data.get("extra") or {}),
                    ),
                )
        except BaseException:
            (directory / file).unlink(missing_ok=True)
            raise
        if old_file and old_file != file:
            self._path(old_file).unlink(missing_ok=True)
        self._remove_orphans(keep=file)
        return file

    def _remove_orphans(self, keep: str) -> None:
        """Files a killed build left behind (never the one the manifest names)."""
        for path in self.settings.index_dir.glob(f"{NAME}-*.faiss*"):
            if path.name != keep:
                with contextlib.suppress(OSError):
                    path.unlink()

    # ----- checks ----------------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        report = VerifyReport()
        library = self._embeddable()
        report.library = len(library)
        try:
            _ = self.embedder  # the configured model: load() then refuses an index built with another
        except MedlitError as exc:
            report.problems.append(f"the configured embedding model cannot be loaded ({exc})")
        try:
            vindex = self.load()
        except LibraryError as exc:
            report.problems.append(str(exc))
            report.missing = sorted(library)
            return report
        ids = vindex.ids()
        report.duplicates = int(len(ids) - len(np.unique(ids)))
        indexed = set(int(p) for p in np.unique(pmids_of(ids)))
        report.indexed = len(indexed)
        report.missing = sorted(set(library) - indexed)
        report.extra = sorted(indexed - set(library))
        entries = self._entries()
        report.stale = sorted(
            p for p, (digest, _n) in entries.items() if p in library and library[p] != digest
        )
        if set(entries) != indexed:
            report.problems.append(
                f"index entries ({len(entries)}) and index vectors ({len(indexed)} PMIDs) disagree"
            )
        return report

    def info(self) -> dict[str, Any]:
        manifest = self.manifest()
        data: dict[str, Any] = {"index": NAME, "exists": manifest is not None}
        if manifest is not None:
            data.update(manifest.to_dict())
            path = self._path(manifest.file)
            data["path"] = str(path)
            data["bytes"] = path.stat().st_size if path.exists() else None
            data["articles"] = self.store.conn.execute(
                "SELECT count(*) FROM index_entries WHERE name = ?", (NAME,)
            ).fetchone()[0]
        data["embeddable_in_library"] = self.store.conn.execute(
            f"SELECT count(*) FROM articles a WHERE {EMBEDDABLE}"
        ).fetchone()[0]
        return data

    # ----- search ----------------------------------------------------------------------------------

    def search(
        self,
        query_vector: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        excluded: set[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The k best PMIDs (best passage per article) as (pmid, cosine).

        ``allowed`` restricts the search inside FAISS; ``excluded`` drops PMIDs from the results.
        """
        vindex = self.load()
        if k <= 0 or len(vindex) == 0:
            return []
        allowed_ids = None
        if allowed is not None:
            counts = self.passage_counts()
            allowed_ids = np.asarray(
                [i for p in allowed.tolist() for i in vector_ids(p, counts.get(p, 0))], dtype=np.int64
            )
            if len(allowed_ids) == 0:
                return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        fetch = min(len(vindex), max(k * 4, k + 20))
        while True:
            with single_threaded():
                scores, ids = vindex.search(query, fetch, allowed_ids=allowed_ids)
            best: dict[int, float] = {}
            for pmid, score in zip(pmids_of(ids[0]).tolist(), scores[0].tolist(), strict=True):
                if pmid < 0 or (excluded and pmid in excluded):
                    continue
                if pmid not in best:
                    best[pmid] = float(score)
            if len(best) >= k or fetch >= len(vindex):
                return list(best.items())[:k]
            fetch = min(len(vindex), fetch * 4)
