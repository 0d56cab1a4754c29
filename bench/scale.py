"""Scale benchmark: libraries of 50k, 250k and 1M articles, ingested, indexed and searched the way users do.

    .venv/bin/python bench/scale.py --sizes 50000,250000,1000000 --workdir /tmp/scale-bench

**The articles.** The two demo PubMed files (50,788 citations: 1979-80 and 2020-21, about 70% with an
abstract) replicated to size: copy ``r`` of citation ``i`` gets PMID ``(r + 1) * 10**8 + i`` and, from the
second copy on, a light perturbation of its abstract and title (each word dropped with probability 5%,
deterministically per copy), so no two documents are equal while the vocabulary and lengths stay real.
They are written as PubMed XML files of 10,000 citations (``.xml.gz``) and ingested with
``ingest_files`` exactly as ``medlit ingest files`` does (parse child + writer).

**The vectors.** Embedding a million texts with the real model takes hours on 2 cores, so the dense index
holds real MiniLM vectors replicated: ``--base-vectors`` demo articles (title + abstract) are embedded with
the packaged all-MiniLM-L6-v2 (ONNX int8, the default embedder); every article's vector is the vector of its
demo citation (modulo that number) plus Gaussian noise of norm ~0.1, normalised. Queries are embedded by
the real model inside the timed search, as in ``medlit search``.

**What is timed** (one process, warm: every question is asked once before the timed pass): the 200 first
BioASQ questions (``--questions``), one at a time, in bm25, dense and hybrid mode through ``Searcher``,
p50 and p99. Per size one JSON line on stdout: ingest seconds, bytes per article (library, lexical index,
dense index), index build seconds, latencies, peak RSS (this process; parse children apart).
Progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ingest.py would hide ingest/

from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from indexes.embedder import load_embedder
from indexes.evaluation import read_questions
from indexes.lexical_index import LexicalIndex
from indexes.search import Searcher
from indexes.vector_index import VectorIndex, recall_at_k
from ingest.run import ingest_files
from ingest.store import Store

ROOT = Path(__file__).resolve().parents[1]
PER_FILE = 10_000
_CITATION = re.compile(rb"<PubmedArticle>.*?</PubmedArticle>", re.S)
_PMID = re.compile(rb"<PMID Version=\"(\d+)\">\d+</PMID>")
_TEXT = re.compile(rb"(<(?:AbstractText|ArticleTitle)\b[^>]*>)(.*?)(</(?:AbstractText|ArticleTitle)>)", re.S)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def demo_citations(files: list[Path]) -> list[bytes]:
    import gzip

    citations: list[bytes] = []
    for path in files:
        with gzip.open(path, "rb") as handle:
            citations.extend(m.group(0) for m in _CITATION.finditer(handle.read()))
    return citations


def perturbed(citation: bytes, copy: int, ordinal: int) -> bytes:
    """The citation with PMID ``(copy + 1) * 10**8 + ordinal`` and, from copy 1 on, 5% of its title and
    abstract words dropped (deterministic)."""
    pmid = (copy + 1) * 10**8 + ordinal
    out = _PMID.sub(lambda m: b'<PMID Version="%s">%d</PMID>' % (m.group(1), pmid), citation, count=1)
    if copy == 0:
        return out
    rng = random.Random(pmid)

    def drop(match: re.Match[bytes]) -> bytes:
        words = match.group(2).split(b" ")
        # a word holding markup (<i>, &amp;) stays: dropping half a tag would break the XML
        kept = [w for w in words if b"<" in w or b">" in w or b"&" in w or rng.random() >= 0.05] or words[:1]
        return match.group(1) + b" ".join(kept) + match.group(3)

    return _TEXT.sub(drop, out)


def write_files(citations: list[bytes], total: int, folder: Path) -> list[Path]:
    """PubMed XML files holding the first ``total`` replicated citations (reused when already written)."""
    from isal import igzip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(math.ceil(total / PER_FILE)):
        path = folder / f"pubmed99n{number:04d}.xml.gz"
        paths.append(path)
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with igzip.open(tmp, "wb", compresslevel=1) as handle:
            handle.write(b'<?xml version="1.0" ?>\n<PubmedArticleSet>\n')
            for i in range(number * PER_FILE, min(total, (number + 1) * PER_FILE)):
                copy, ordinal = divmod(i, len(citations))
                handle.write(perturbed(citations[ordinal], copy, ordinal))
                handle.write(b"\n")
            handle.write(b"</PubmedArticleSet>\n")
        os.replace(tmp, path)
    return paths


class ReplicatedVectors:
    """Real MiniLM vectors of the demo citations, replicated with noise, for documents; the real model for
    queries. Documents arrive as their PMID (see ``BenchDenseIndex``)."""

    def __init__(self, model: Any, base: np.ndarray, citations: int) -> None:
        self.model = model
        self.base = base
        self.citations = citations
        self.name = f"replicated-{model.name}"
        self.dimension = int(base.shape[1])
        self.seconds = 0.0  # spent making document vectors (what a real model's embedding would be)

    def embed_documents(self, texts: list[str], progress: bool = False) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self._vectors([int(text) for text in texts])
        finally:
            self.seconds += time.perf_counter() - started

    def _vectors(self, pmids: list[int]) -> np.ndarray:
        out = np.empty((len(pmids), self.dimension), dtype=np.float32)
        for row, pmid in enumerate(pmids):
            ordinal = pmid % 10**8
            rng = np.random.default_rng(pmid)
            vector = self.base[ordinal % len(self.base)] + rng.standard_normal(self.dimension).astype(
                np.float32
            ) * (0.1 / math.sqrt(self.dimension))
            out[row] = vector / np.linalg.norm(vector)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.model.embed_query(text), dtype=np.float32)


class BenchDenseIndex(DenseIndex):
    """The library's dense index, handing the embedder PMIDs instead of texts (see ReplicatedVectors)."""

    def _texts(self, pmids: list[int]) -> Any:
        rows = self.store.select_in("SELECT pmid, content_hash FROM articles WHERE pmid IN ({ids})", pmids)
        for pmid, digest in rows:
            yield pmid, digest, [str(pmid)]


def base_vectors(model: Any, citations: list[bytes], n: int, cache: Path) -> np.ndarray:
    """Real vectors of the first ``n`` demo citations' title + abstract (cached as .npy)."""
    if cache.exists():
        return np.load(cache)
    from ingest.pubmed_xml import iter_records

    tmp = cache.with_suffix(".xml")
    tmp.write_bytes(b"<PubmedArticleSet>" + b"\n".join(citations[:n]) + b"</PubmedArticleSet>")
    texts = [f"{a.title}\n{a.abstract}".strip() for a in iter_records(tmp) if hasattr(a, "title")]
    tmp.unlink()
    started = time.perf_counter()
    vectors = np.asarray(model.embed_documents(texts, progress=False), dtype=np.float32)
    log(f"embedded {len(texts):,} base texts in {time.perf_counter() - started:.0f} s")
    np.save(cache, vectors)
    return vectors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def timed(searcher: Searcher, questions: list[str], mode: str) -> dict[str, float]:
    for question in questions:  # warm: caches, the mmap'd index pages, ONNX Runtime's arena
        searcher.search(question, 10, mode=mode)
    times = []
    for question in questions:
        started = time.perf_counter()
        searcher.search(question, 10, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 99), 2)}


@contextlib.contextmanager
def timing(cls: type, name: str, spent: dict[str, float]) -> Any:
    """Add the seconds spent in ``cls.name`` to ``spent[name]`` while inside."""
    real = getattr(cls, name)

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    setattr(cls, name, timed_call)
    try:
        yield
    finally:
        setattr(cls, name, real)


def recall_vs_exact(
    dense: DenseIndex, embedder: ReplicatedVectors, questions: list[str], store: Store
) -> float:
    """Recall@10 of the served index against exact inner-product search over the same vectors."""
    import faiss

    vindex = dense.load()
    if vindex.kind == "flat":
        return 1.0
    pmids = [
        r[0] for r in store.conn.execute("SELECT pmid FROM articles WHERE title != '' OR has_abstract = 1")
    ]
    exact = faiss.IndexFlatIP(embedder.dimension)
    for start in range(0, len(pmids), 100_000):
        exact.add(embedder._vectors(pmids[start : start + 100_000]))
    queries = np.stack([embedder.embed_query(q) for q in questions]).astype(np.float32)
    _scores, rows = exact.search(queries, 10)
    truth = np.asarray(pmids, dtype=np.int64)[rows] << 8
    _s, found = vindex.search(queries, 10)
    return round(recall_at_k(found, truth, 10), 4)


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_size(
    size: int, args: argparse.Namespace, citations: list[bytes], model: Any, base: np.ndarray
) -> dict:
    work = Path(args.workdir)
    files = write_files(citations, size, work / "xml")
    home = work / f"library-{size}"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    result: dict[str, Any] = {"articles_target": size, "load_before": os.getloadavg()[0]}
    with Store.open(settings) as store:
        log(f"{size:,}: ingesting {len(files)} files")
        started = time.perf_counter()
        report = ingest_files(store, files, batch_size=settings.ingest_batch_size, progress=False)
        result["ingest_s"] = round(time.perf_counter() - started, 1)
        if report.status != "done":
            raise SystemExit(f"ingest {report.status}: {report.error}")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        articles = store.count()
        result["articles"] = articles
        result["with_abstract"] = store.stats()["with_abstract"]
        result["ingest_records_per_s"] = round(report.counts.seen / result["ingest_s"])
        result["library_bytes_per_article"] = round(settings.library_path.stat().st_size / articles)

        log(f"{size:,}: lexical index")
        started = time.perf_counter()
        lexical = LexicalIndex(store, settings).build(progress=False)
        result["lexical_build_s"] = round(time.perf_counter() - started, 1)
        result["lexical_segments"] = lexical.segments
        result["lexical_bytes_per_article"] = round(lexical.bytes / articles)

        embedder = ReplicatedVectors(model, base, len(citations))
        searcher = Searcher(store, settings, embedder=embedder)
        searcher.dense = BenchDenseIndex(store, settings, embedder=embedder)
        questions = [q.text for q in read_questions(args.questions)][: args.n_questions]
        modes = [m for m in ("bm25", "dense", "hybrid") if m in args.modes.split(",")]
        if "bm25" in modes:  # first, and where its time goes: tantivy's search vs the library's reads
            spent = {"search": 0.0}
            with timing(LexicalIndex, "search", spent):
                result["bm25"] = timed(searcher, questions, "bm25")
            result["bm25"]["in_lexical_index_mean_ms"] = round(
                spent["search"] * 1000 / (2 * len(questions)), 2
            )
        if modes != ["bm25"]:
            log(f"{size:,}: dense index")
            spent = {"add": 0.0, "save": 0.0}
            with timing(VectorIndex, "add", spent), timing(VectorIndex, "save", spent):
                started = time.perf_counter()
                dense = BenchDenseIndex(store, settings, embedder=embedder).build(
                    kind=args.kind, progress=False
                )
                result["dense_build_s"] = round(time.perf_counter() - started, 1)
            result["dense_build_parts_s"] = {
                "vectors": round(embedder.seconds, 1),
                "faiss_add": round(spent["add"], 1),
                "save_and_sha256": round(spent["save"], 1),
                "rest (library reads, manifest)": round(
                    result["dense_build_s"] - embedder.seconds - spent["add"] - spent["save"], 1
                ),
            }
            result["dense_kind"] = dense.kind
            manifest = BenchDenseIndex(store, settings, embedder=embedder).manifest()
            result["dense_bytes_per_article"] = round(
                folder_bytes(settings.index_dir / manifest.file) / articles
            )

            log(f"{size:,}: {len(questions)} questions x {len(modes)} modes")
            result["load_during_search"] = os.getloadavg()[0]
            for mode in modes:
                if mode != "bm25":
                    result[mode] = timed(searcher, questions, mode)
            result["dense_recall_at_10_vs_exact"] = recall_vs_exact(
                searcher.dense, embedder, questions, store
            )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["parse_children_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50000,250000,1000000")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--demo", type=Path, default=ROOT / ".cache" / "demo", help="the demo PubMed files")
    parser.add_argument("--questions", type=Path, default=ROOT.parent / "shared/data/bioasq/questions.jsonl")
    parser.add_argument("--n-questions", type=int, default=200)
    parser.add_argument("--base-vectors", type=int, default=5000, help="demo citations embedded for real")
    parser.add_argument("--kind", default="auto", help="dense index kind (auto picks by size)")
    parser.add_argument("--keep", action="store_true", help="keep each size's library")
    parser.add_argument(
        "--modes", default="bm25,dense,hybrid", help="modes timed (bm25 alone: no dense index)"
    )
    args = parser.parse_args()
    demo = sorted(args.demo.glob("*.xml.gz"))
    if not demo:
        raise SystemExit(f"no demo files in {args.demo} (make demo-data)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    citations = demo_citations(demo)
    log(f"{len(citations):,} demo citations")
    settings = Settings(home=args.workdir / "model-home")
    model = load_embedder("default", backend="onnx", cache_dir=settings.model_cache)
    base = base_vectors(model, citations, args.base_vectors, args.workdir / f"base-{args.base_vectors}.npy")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(size % PER_FILE for size in sizes):
        raise SystemExit(f"sizes must be multiples of {PER_FILE:,} (the files are shared between sizes)")
    for size in sizes:
        result = run_size(size, args, citations, model, base)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
