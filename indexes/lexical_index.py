"""The lexical index: BM25 over title + abstract in tantivy, beside the library and kept identical to it.

**What it holds.** One tantivy document per article with a title or an abstract: ``text`` (title and
abstract in one field, tokenised by ``ANALYZER``: words split on anything not a letter or digit, lowercased,
diacritics folded, English Snowball stems), the PMID and the first 64 bits of the article's content hash
(fast fields: the ids are inside the index, as in the FAISS file), and the filter fields: year, retracted,
language, publication types and MeSH descriptors (raw, lowercased). Filters are clauses of the tantivy
query, scored 0, so they never change the order of what they let through.

**Why one text field.** tantivy scores every field with its own BM25: a separate title field, boosted,
lets a short title outweigh the abstract (its top 10 agreed with FTS5's at Jaccard ~0.3), while one field
scores like FTS5 over title + abstract (Jaccard ~0.8). Measured recall for the variants is in
docs/benchmarks.md ("Lexical engine").

**Queries.** The question's terms are ``indexes.lexical.query_terms`` (stopwords and question words
dropped, "type 2"-style phrases kept); each runs through the same analyzer as the documents: one token is
a term query, several ("covid-19", "type 2") a phrase query; all are OR-ed (BM25 sums the matching ones).

**Kept identical to the library, the way the dense index is.** A build or an update writes a new index
directory ``lexical-<id>``: an update first hard-links the files of the current one (tantivy never writes
into an existing file: segments are written once, deletions and ``meta.json`` are new files renamed into
place), applies the change feed (PMIDs whose content hash differs from ``index_entries``: new, changed,
deleted), commits, and fsyncs. Then one SQLite transaction writes ``index_entries`` (PMID, content hash) and
the manifest (``index_manifests``: count, the sha256 of ``meta.json``, every file's size and sha256), and
only then is the old directory removed. Killed at any moment, the library names a complete directory whose
files are the ones it recorded. A load checks ``meta.json``'s checksum, every file's size and the document
count, and refuses a damaged or foreign index with a message naming ``medlit index build``; ``verify``
compares the PMIDs and content hashes inside the index with the library's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.clock import now
from foundation.errors import InputError, LibraryError
from foundation.progress import progress_bar
from foundation.settings import Settings
from indexes.hit import Filters
from indexes.lexical import query_terms
from ingest.record_codec import decode
from ingest.store import Store

NAME = "lexical"
ENGINE = "tantivy-bm25"
SCHEMA_VERSION = 1  # fields, analyzer and what each holds; another value is refused (rebuild)
INDEXABLE = "(a.title != '' OR a.has_abstract = 1)"
ANALYZER_NAME = "medlit_en"
_LOCKS = (".tantivy-writer.lock", ".tantivy-meta.lock")
_WRITER_HEAP = 192_000_000  # bytes tantivy buffers before it writes a segment (fewer segments to merge)
_CHUNK = 2000  # articles read from the library at once
_FULL_DISK_BYTES = 16 * 1024 * 1024  # less free than this after a writer died: the disk is full
_IO_TROUBLE = re.compile(
    r"IO error|\bIo[({ ]|io::Error|os error \d+|StorageFull|No space left|File too large|writer was killed"
)


def _tantivy() -> Any:
    import tantivy

    return tantivy


def analyzer() -> Any:
    """The analyzer of documents and queries alike (like FTS5's ``porter unicode61 remove_diacritics``)."""
    t = _tantivy()
    return (
        t.TextAnalyzerBuilder(t.Tokenizer.simple())
        .filter(t.Filter.remove_long(40))
        .filter(t.Filter.lowercase())
        .filter(t.Filter.ascii_fold())
        .filter(t.Filter.stemmer("english"))
        .build()
    )


def schema() -> Any:
    t = _tantivy()
    builder = t.SchemaBuilder()
    builder.add_unsigned_field("pmid", indexed=True, fast=True)
    builder.add_unsigned_field("content", fast=True)  # the first 64 bits of the content hash
    builder.add_text_field("text", tokenizer_name=ANALYZER_NAME, index_option="position")
    builder.add_integer_field("year", indexed=True, fast=True)
    builder.add_unsigned_field("retracted", indexed=True, fast=True)
    builder.add_text_field("language", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("publication_type", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("mesh", tokenizer_name="raw", index_option="basic")
    return builder.build()


def content_key(content_hash: str) -> int:
    """The first 64 bits of a hex content hash (0 for anything else), as stored in the index."""
    try:
        return int(content_hash[:16], 16)
    except (TypeError, ValueError):
        return 0


@dataclass(slots=True)
class LexicalReport:
    """What a lexical build or update did."""

    added: int = 0
    removed: int = 0
    unchanged: int = 0
    count: int = 0
    segments: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": NAME,
            "engine": ENGINE,
            "added": self.added,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "articles": self.count,
            "segments": self.segments,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
        }


@dataclass(slots=True)
class LexicalVerifyReport:
    """The index's PMIDs and content hashes against the library's. ``ok`` only when they are the same."""

    library: int = 0
    indexed: int = 0
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
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
            "duplicate_documents": self.duplicates,
            "examples": {"missing": self.missing[:10], "extra": self.extra[:10], "stale": self.stale[:10]},
            "problems": self.problems,
        }


@dataclass(slots=True)
class LexicalManifest:
    """The library's record of the lexical index it serves (a row of ``index_manifests``)."""

    file: str  # the index directory under the index folder
    count: int
    checksum: str  # sha256 of meta.json
    files: dict[str, tuple[int, str]]  # every file of the directory: (size, sha256)
    schema_version: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "file": self.file,
            "count": self.count,
            "checksum": self.checksum,
            "schema_version": self.schema_version,
            "files": len(self.files),
            "created_at": self.created_at,
        }


class _Opened:
    """A tantivy index opened for search: the index, its schema and the analyzer of queries."""

    def __init__(self, path: Path) -> None:
        t = _tantivy()
        self.index = t.Index.open(str(path))
        self.analyzer = analyzer()
        self.index.register_tokenizer(ANALYZER_NAME, self.analyzer)
        self.index.config_reader("Manual", 0)  # the directory never changes once committed: no watcher
        self.schema = self.index.schema


class LexicalIndex:
    """The library's lexical index: build, update, verify, info, and search."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._opened: _Opened | None = None
        self._opened_file: str | None = None

    # ----- the manifest and the directory -----------------------------------------------------

    def manifest(self) -> LexicalManifest | None:
        row = self.store.conn.execute(
            "SELECT count, checksum, file, created_at, extra FROM index_manifests WHERE name = ?", (NAME,)
        ).fetchone()
        if row is None:
            return None
        count, checksum, file, created_at, extra = row
        data = json.loads(extra or "{}")
        files = {name: (int(size), str(digest)) for name, (size, digest) in (data.get("files") or {}).items()}
        return LexicalManifest(
            file=file,
            count=int(count),
            checksum=checksum,
            files=files,
            schema_version=int(data.get("schema_version") or 0),
            created_at=created_at,
        )

    def _path(self, file: str) -> Path:
        return self.settings.index_dir / file

    def _check(self, manifest: LexicalManifest, *, thorough: bool = False) -> list[str]:
        """What is wrong with the directory the manifest names (empty: nothing); ``thorough`` hashes every
        file (``verify``) instead of checking ``meta.json``'s checksum and every file's size."""
        if manifest.schema_version != SCHEMA_VERSION:
            return [
                f"the lexical index was built by another medlit (schema {manifest.schema_version}, this "
                f"medlit reads {SCHEMA_VERSION})"
            ]
        path = self._path(manifest.file)
        if not path.is_dir():
            return [f"the lexical index directory {path} is missing"]
        problems = []
        meta = path / "meta.json"
        if not meta.is_file() or _sha256(meta) != manifest.checksum:
            problems.append(f"{meta} does not match the library's manifest (changed or missing)")
        for name, (size, digest) in sorted(manifest.files.items()):
            file = path / name
            try:
                actual = file.stat().st_size
            except OSError:
                problems.append(f"{file} is missing")
                continue
            if actual != size:
                problems.append(f"{file} has {actual:,} bytes, the manifest says {size:,}")
            elif thorough and _sha256(file) != digest:
                problems.append(f"{file} does not match its checksum")
        return problems

    def load(self) -> _Opened:
        """The checked index; LibraryError when there is none or it does not match its manifest.

        Reopened when the library names a newer directory (another process updated the index)."""
        manifest = self.manifest()
        if self._opened is not None and manifest is not None and manifest.file == self._opened_file:
            return self._opened
        for _attempt in range(5):
            if manifest is None:
                raise LibraryError("the library has no lexical index yet: run `medlit index update`")
            problems = self._check(manifest)
            if not problems:
                try:
                    opened = _Opened(self._path(manifest.file))
                except (OSError, ValueError) as exc:
                    problems = [f"tantivy cannot open it ({exc})"]
                else:
                    if opened.index.searcher().num_docs == manifest.count:
                        self._opened, self._opened_file = opened, manifest.file
                        return opened
                    problems = [
                        f"it holds {opened.index.searcher().num_docs:,} documents, the manifest says "
                        f"{manifest.count:,}"
                    ]
            newer = self.manifest()  # another process may have replaced it since the manifest was read
            if newer is None or newer.file == manifest.file:
                raise LibraryError(
                    f"the lexical index is damaged: {problems[0]}: run `medlit index build --only lexical`"
                )
            manifest = newer
        raise LibraryError("the lexical index kept changing while it was opened: try again")

    # ----- search ----------------------------------------------------------------------------------

    def search(self, question: str, k: int, *, filters: Filters | None = None) -> list[tuple[int, float]]:
        """The ``k`` best (pmid, BM25 score) for a question, best first (higher is better)."""
        if k <= 0:
            return []
        opened = self.load()
        text = self._text_query(opened, question)
        if text is None:
            return []
        query = self._filtered(opened, text, filters or Filters())
        searcher = opened.index.searcher()
        try:
            hits = searcher.search(query, int(k), count=False).hits
        except ValueError as exc:
            raise InputError(f"the question cannot be searched as text ({exc})") from None
        if not hits:
            return []
        pmids = searcher.fast_field_values("pmid", [address for _score, address in hits])
        return [(int(pmid), float(score)) for (score, _a), pmid in zip(hits, pmids, strict=True)]

    def _text_query(self, opened: _Opened, question: str) -> Any:
        t = _tantivy()
        clauses = []
        seen: set[tuple[str, ...]] = set()
        for term in query_terms(question):
            tokens = tuple(opened.analyzer.analyze(term))
            if not tokens or tokens in seen:
                continue
            seen.add(tokens)
            if len(tokens) == 1:
                clause = t.Query.term_query(opened.schema, "text", tokens[0])
            else:
                clause = t.Query.phrase_query(opened.schema, "text", list(tokens))
            clauses.append((t.Occur.Should, clause))
        if not clauses:
            return None
        return t.Query.boolean_query(clauses)

    def _filtered(self, opened: _Opened, text: Any, filters: Filters) -> Any:
        """The text query restricted by the filters inside tantivy (filter clauses score 0)."""
        t = _tantivy()
        schema = opened.schema
        clauses: list[tuple[Any, Any]] = [(t.Occur.Must, text)]

        def only(query: Any) -> None:
            clauses.append((t.Occur.Must, t.Query.const_score_query(query, 0.0)))

        def any_of(name: str, values: list[str]) -> None:
            terms = sorted({value.lower() for value in values})
            only(t.Query.term_set_query(schema, name, terms))

        if not filters.include_retracted:
            clauses.append((t.Occur.MustNot, t.Query.term_query(schema, "retracted", 1)))
        if filters.year_min is not None or filters.year_max is not None:
            only(
                t.Query.range_query(
                    schema,
                    "year",
                    t.FieldType.Integer,
                    None if filters.year_min is None else int(filters.year_min),
                    None if filters.year_max is None else int(filters.year_max),
                )
            )
        if filters.languages:
            any_of("language", filters.languages)
        if filters.publication_types:
            any_of("publication_type", filters.publication_types)
        if filters.mesh:
            any_of("mesh", filters.mesh)
        if len(clauses) == 1:
            return text
        return t.Query.boolean_query(clauses)

    def document_frequency(self, word: str) -> int:
        """In how many articles ``word`` (one token after analysis) appears; 0 without an index."""
        try:
            opened = self.load()
        except LibraryError:
            return 0
        tokens = opened.analyzer.analyze(word)
        if len(tokens) != 1:
            return 0
        return int(opened.index.searcher().doc_freq("text", tokens[0]))

    # ----- build and update ----------------------------------------------------------------------

    def build(self, *, progress: bool = True) -> LexicalReport:
        """A new index of every article with a title or abstract (the old one serves until it is in)."""
        return self._sync(rebuild=True, progress=progress)

    def update(self, *, progress: bool = True) -> LexicalReport:
        """Apply the library's changes since the last build or update (builds when there is no index)."""
        manifest = self.manifest()
        if manifest is not None and (problems := self._check(manifest)):
            raise LibraryError(
                f"the lexical index is damaged: {problems[0]}: run `medlit index build --only lexical`"
            )
        return self._sync(rebuild=manifest is None, progress=progress)

    def _feed(self, rebuild: bool) -> tuple[list[int], list[int], int]:
        """(PMIDs to add, PMIDs to remove, how many stay): the change feed, from the content hashes."""
        conn = self.store.conn
        if rebuild:
            add = [r[0] for r in conn.execute(f"SELECT a.pmid FROM articles a WHERE {INDEXABLE} ORDER BY 1")]
            return add, [], 0
        add = [
            r[0]
            for r in conn.execute(
                "SELECT a.pmid FROM articles a LEFT JOIN index_entries e ON e.name = ? AND e.pmid = a.pmid "
                f"WHERE {INDEXABLE} AND (e.pmid IS NULL OR e.content_hash != a.content_hash) ORDER BY 1",
                (NAME,),
            )
        ]
        remove = [
            r[0]
            for r in conn.execute(
                "SELECT e.pmid FROM index_entries e LEFT JOIN articles a ON a.pmid = e.pmid WHERE e.name = ? "
                f"AND (a.pmid IS NULL OR NOT {INDEXABLE} OR a.content_hash != e.content_hash) ORDER BY 1",
                (NAME,),
            )
        ]
        entries = conn.execute("SELECT count(*) FROM index_entries WHERE name = ?", (NAME,)).fetchone()[0]
        return add, remove, int(entries) - len(remove)

    def _documents(self, pmids: list[int]) -> Iterator[tuple[int, str, Any]]:
        """(pmid, content hash, tantivy Document) for these PMIDs, read from the library in chunks."""
        t = _tantivy()
        for start in range(0, len(pmids), _CHUNK):
            part = pmids[start : start + _CHUNK]
            mesh: dict[int, list[str]] = {}
            for pmid, descriptor in self.store.select_in(
                "SELECT pmid, descriptor FROM article_mesh WHERE pmid IN ({ids})", part, chunk=_CHUNK
            ):
                mesh.setdefault(pmid, []).append(descriptor.lower())
            rows = self.store.select_in(
                "SELECT pmid, content_hash, title, abstract, year, retracted, language, publication_types "
                "FROM articles WHERE pmid IN ({ids})",
                part,
                chunk=_CHUNK,
            )
            for pmid, digest, title, abstract, year, retracted, language, types in rows:
                doc = t.Document()
                doc.add_unsigned("pmid", pmid)
                doc.add_unsigned("content", content_key(digest))
                abstract = decode(abstract)
                doc.add_text("text", f"{title}\n{abstract}" if abstract else title)
                if year is not None:
                    doc.add_integer("year", int(year))
                doc.add_unsigned("retracted", int(retracted))
                if language:
                    doc.add_text("language", language.lower())
                for name in json.loads(types or "[]"):
                    doc.add_text("publication_type", name.lower())
                for descriptor in mesh.get(pmid, ()):
                    doc.add_text("mesh", descriptor)
                yield pmid, digest, doc

    def _sync(self, *, rebuild: bool, progress: bool) -> LexicalReport:
        started = time.perf_counter()
        t = _tantivy()
        report = LexicalReport()
        old = None if rebuild else self.manifest()
        directory = self.settings.index_dir
        directory.mkdir(parents=True, exist_ok=True)
        add, remove, report.unchanged = self._feed(rebuild or old is None)
        report.removed = len(remove)
        if old is not None and not add and not remove:
            report.count = old.count
            report.seconds = time.perf_counter() - started
            self._remove_orphans(keep=old.file)
            return report
        file = f"{NAME}-{uuid.uuid4().hex[:12]}"
        path = directory / file
        try:
            if old is None:
                path.mkdir()
            else:
                _link_copy(self._path(old.file), path)
            index = t.Index(schema(), path=str(path), reuse=True)
            index.register_tokenizer(ANALYZER_NAME, analyzer())
            writer = index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            schema_ = index.schema
            for start in range(0, len(remove), 10_000):  # (by_term builds a signed term: it misses u64 ids)
                part = remove[start : start + 10_000]
                writer.delete_documents_by_query(t.Query.term_set_query(schema_, "pmid", part))
            added: list[tuple[int, str]] = []
            bar = progress_bar(len(add), "lexical index", "doc", progress)
            try:
                for pmid, digest, doc in self._documents(add):
                    writer.add_document(doc)
                    added.append((pmid, digest))
                    if len(added) % 1000 == 0:
                        bar.update(1000)
                bar.update(len(added) % 1000)
            finally:
                bar.close()
            writer.commit()
            writer.wait_merging_threads()
            cleaner = index.writer(heap_size=15_000_000, num_threads=1)
            cleaner.garbage_collect_files()  # the segments merged away
            cleaner.wait_merging_threads()
            index.reload()
            searcher = index.searcher()
            report.count, report.segments = int(searcher.num_docs), int(searcher.num_segments)
            del searcher, index
            manifest = self._manifest_of(path, report.count, old)
            report.bytes = sum(size for size, _d in manifest.files.values())
            self._commit(manifest, added, remove, replace_all=old is None)
        except (OSError, ValueError) as exc:  # tantivy's I/O errors come as ValueError
            reason = _os_reason(exc, directory)  # before the partial files go: they fill the disk
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, ValueError) and not _IO_TROUBLE.search(str(exc)):
                raise
            raise LibraryError(
                f"cannot write the index files of {path} ({reason}): the index in service is unchanged"
            ) from None
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        report.added = len(added)
        if old is not None:
            shutil.rmtree(self._path(old.file), ignore_errors=True)
        self._remove_orphans(keep=file)
        self._opened, self._opened_file = None, None
        report.seconds = time.perf_counter() - started
        return report

    def _manifest_of(self, path: Path, count: int, old: LexicalManifest | None) -> LexicalManifest:
        """The files of a committed directory, fsynced, with their sizes and checksums (a file linked from
        the previous directory keeps the checksum recorded for it: tantivy never rewrites a file)."""
        files: dict[str, tuple[int, str]] = {}
        known = old.files if old is not None else {}
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            if entry.name in _LOCKS or not entry.is_file():
                continue
            size = entry.stat().st_size
            _fsync(entry)
            previous = known.get(entry.name)
            if previous is not None and previous[0] == size and entry.name != "meta.json":
                files[entry.name] = previous
            else:
                files[entry.name] = (size, _sha256(entry))
        _fsync(path)
        _fsync(path.parent)
        return LexicalManifest(
            file=path.name,
            count=count,
            checksum=files["meta.json"][1],
            files=files,
            schema_version=SCHEMA_VERSION,
            created_at=now(),
        )

    def _commit(
        self,
        manifest: LexicalManifest,
        added: list[tuple[int, str]],
        removed: list[int],
        *,
        replace_all: bool,
    ) -> None:
        extra = {
            "schema_version": manifest.schema_version,
            "engine": ENGINE,
            "files": {name: [size, digest] for name, (size, digest) in manifest.files.items()},
        }
        with self.store.transaction() as conn:
            if replace_all:
                conn.execute("DELETE FROM index_entries WHERE name = ?", (NAME,))
            conn.executemany(
                "DELETE FROM index_entries WHERE name = ? AND pmid = ?", [(NAME, p) for p in removed]
            )
            conn.executemany(
                "INSERT INTO index_entries (name, pmid, content_hash, passages) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (name, pmid) DO UPDATE SET content_hash = excluded.content_hash",
                [(NAME, p, digest) for p, digest in added],
            )
            conn.execute(
                "INSERT INTO index_manifests (name, model, dimension, count, checksum, kind, file, "
                "created_at, extra) VALUES (?, ?, 0, ?, ?, 'tantivy', ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET model = excluded.model, dimension = 0, count = excluded.count, "
                "checksum = excluded.checksum, kind = excluded.kind, file = excluded.file, "
                "created_at = excluded.created_at, extra = excluded.extra",
                (
                    NAME,
                    ENGINE,
                    manifest.count,
                    manifest.checksum,
                    manifest.file,
                    manifest.created_at,
                    json.dumps(extra, sort_keys=True),
                ),
            )

    def _remove_orphans(self, keep: str) -> None:
        """Directories a killed build or update left behind (never the one the manifest names)."""
        for path in self.settings.index_dir.glob(f"{NAME}-*"):
            if path.name != keep:
                shutil.rmtree(path, ignore_errors=True)

    # ----- checks ----------------------------------------------------------------------------------

    def _library(self) -> dict[int, str]:
        rows = self.store.conn.execute(f"SELECT a.pmid, a.content_hash FROM articles a WHERE {INDEXABLE}")
        return dict(rows.fetchall())

    def indexed(self) -> list[tuple[int, int]]:
        """(PMID, content key) of every document inside the index, in PMID order."""
        t = _tantivy()
        opened = self.load()
        searcher = opened.index.searcher()
        total = int(searcher.num_docs)
        if total == 0:
            return []
        hits = searcher.search(t.Query.all_query(), total, count=False, order_by_field="pmid").hits
        addresses = [address for _pmid, address in hits]
        keys = searcher.fast_field_values("content", addresses)
        return sorted((int(pmid), int(key)) for (pmid, _a), key in zip(hits, keys, strict=True))

    def verify(self) -> LexicalVerifyReport:
        """The index's own PMIDs and content hashes against the library's, and its files against the
        manifest (every file hashed)."""
        report = LexicalVerifyReport()
        library = self._library()
        report.library = len(library)
        manifest = self.manifest()
        if manifest is not None:
            report.problems.extend(self._check(manifest, thorough=True))
        try:
            inside = self.indexed() if not report.problems else []
        except LibraryError as exc:
            report.problems.append(str(exc))
            inside = []
        if report.problems or manifest is None:
            report.missing = sorted(library)
            return report
        pmids = [pmid for pmid, _key in inside]
        unique = set(pmids)
        report.duplicates = len(pmids) - len(unique)
        report.indexed = len(unique)
        report.missing = sorted(set(library) - unique)
        report.extra = sorted(unique - set(library))
        report.stale = sorted(
            pmid for pmid, key in inside if pmid in library and content_key(library[pmid]) != key
        )
        entries = dict(
            self.store.conn.execute(
                "SELECT pmid, content_hash FROM index_entries WHERE name = ?", (NAME,)
            ).fetchall()
        )
        if set(entries) != unique or any(content_key(entries[p]) != key for p, key in inside if p in entries):
            report.problems.append(
                f"index entries ({len(entries):,}) and the documents inside the index ({len(unique):,}) "
                "disagree"
            )
        return report

    def info(self) -> dict[str, Any]:
        manifest = self.manifest()
        data: dict[str, Any] = {"index": NAME, "exists": manifest is not None}
        if manifest is not None:
            data.update(manifest.to_dict())
            path = self._path(manifest.file)
            data["path"] = str(path)
            data["bytes"] = sum(size for size, _d in manifest.files.values())
            data["articles"] = manifest.count
        data["indexable_in_library"] = self.store.conn.execute(
            f"SELECT count(*) FROM articles a WHERE {INDEXABLE}"
        ).fetchone()[0]
        return data


def _link_copy(source: Path, target: Path) -> None:
    """``target`` a new directory holding hard links to ``source``'s files (a copy where links fail)."""
    if not source.is_dir():
        raise LibraryError(f"the lexical index directory {source} is missing: run `medlit index build`")
    target.mkdir()
    for entry in source.iterdir():
        if entry.name in _LOCKS or not entry.is_file():
            continue
        try:
            os.link(entry, target / entry.name)
        except OSError:
            shutil.copy2(entry, target / entry.name)


def _os_reason(exc: BaseException, directory: Path | None = None) -> str:
    """The operating system's reason in an OSError or in tantivy's "... 'File too large (os error 27)'".

    A writer thread that died of an I/O error is reported by tantivy without its cause ("An index writer
    was killed"); when the index's disk is then (nearly) full, that is the reason given."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    match = re.search(r"([A-Z][^'\"]*?) \(os error \d+\)", text) or re.search(r'message: "([^"]+)"', text)
    if match:
        return match.group(1)
    if directory is not None:
        try:
            if shutil.disk_usage(directory).free < _FULL_DISK_BYTES:
                return os.strerror(errno.ENOSPC)
        except OSError:
            pass
    return text.strip()[-200:]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
