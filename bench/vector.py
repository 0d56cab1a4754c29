"""Dense search benchmark: build time, single-query latency, recall@10 against exact, memory per vector.

    .venv/bin/python bench/vector.py                  # 1,000,000 x 384-d, flat + hnsw + ivf_sq8
    .venv/bin/python bench/vector.py --n 200000 --kinds flat,hnsw

Vectors are synthetic and L2-normalised: ``clustered`` (default) draws points around random centres, as
sentence embeddings cluster by topic; ``random`` is uniform on the sphere, the hardest case for any
approximate index (no neighbour is much closer than another). Queries are fresh draws from the same
distribution, not indexed vectors. Recall@10 is against exact inner-product search (IndexFlatIP); latency
is per single query (100 queries for flat, whose cost does not vary).

Memory: the vectors alone take n x 384 x 4 bytes (1.5 GB at 1M); the run holds them, one index at a time
and the exact ground truth, so ~5 GB at 1M. One JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# run as a script, bench/ comes first on sys.path and bench/ingest.py would hide the ingest package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexes.vector_index import VectorIndex, bytes_per_vector, choose_spec, faiss, recall_at_k


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def make_vectors(
    n: int, dim: int, rng: np.random.Generator, centres: np.ndarray | None, noise: float
) -> np.ndarray:
    """n normalised vectors, in chunks (the temporary float64 arrays stay small)."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        if centres is None:
            chunk = rng.standard_normal((size, dim), dtype=np.float32)
        else:
            picks = rng.integers(0, len(centres), size)
            chunk = centres[picks] + noise * rng.standard_normal((size, dim), dtype=np.float32)
        faiss.normalize_L2(chunk)
        out[start : start + size] = chunk
    return out


def latencies(
    index: VectorIndex, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> dict[str, float]:
    times = []
    for row in queries:
        started = time.perf_counter()
        index.search(row[None, :], k, allowed_ids=allowed)
        times.append(time.perf_counter() - started)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def blas_threshold(x: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Batched flat search with faiss's default BLAS threshold (128000 in 1.15.1) vs the module's 1."""
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    result: dict[str, Any] = {"batch": len(queries)}
    for threshold in (128_000, 1):
        faiss.cvar.distance_compute_blas_threshold = threshold
        flat.search(queries[:8], 10)
        started = time.perf_counter()
        flat.search(queries, 10)
        result[f"threshold_{threshold}_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["speedup"] = round(result["threshold_128000_ms"] / result["threshold_1_ms"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--kinds", default="flat,hnsw,ivf_sq8", help="comma-separated index kinds")
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and latency")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--target-recall", type=float, default=0.95, help="recall tune() aims for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas", action="store_true", help="also time batched flat search vs BLAS threshold")
    parser.add_argument("--threads", type=int, default=0, help="FAISS (OpenMP) threads; 0: all cores")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    centres = None
    noise = 0.0
    if args.data == "clustered":
        centres = rng.standard_normal((max(16, args.n // 1000), args.dim), dtype=np.float32)
        faiss.normalize_L2(centres)
        noise = 1.2 / float(np.sqrt(args.dim))  # a point's cosine to its centre ~0.64, as topic neighbours go
    started = time.perf_counter()
    x = make_vectors(args.n, args.dim, rng, centres, noise)
    queries = make_vectors(args.queries, args.dim, rng, centres, noise)
    tuning = make_vectors(200, args.dim, rng, centres, noise)
    ids = np.arange(args.n, dtype=np.int64) * 7 + 11  # ids that are not positions
    log(f"data: {args.n:,} x {args.dim} {args.data} in {time.perf_counter() - started:.1f}s")

    report: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "data": args.data,
        "queries": args.queries,
        "k": args.k,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
        "kinds": {},
    }
    if args.blas:
        report["blas_batched_flat"] = blas_threshold(x, queries[:256])
        log(f"blas: {report['blas_batched_flat']}")

    truth: np.ndarray | None = None
    for kind in args.kinds.split(","):
        spec = choose_spec(args.n, args.dim, kind)
        before = rss_bytes()
        started = time.perf_counter()
        index = VectorIndex.create(spec)
        if index.min_train_vectors:
            size = min(args.n, max(index.min_train_vectors, 100_000))
            index.train(x[np.sort(rng.choice(args.n, size=size, replace=False))])
        for start in range(0, args.n, 100_000):
            index.add(ids[start : start + 100_000], x[start : start + 100_000])
        build_s = time.perf_counter() - started
        memory = (rss_bytes() - before) / args.n
        log(f"{kind}: built in {build_s:.1f}s")
        entry: dict[str, Any] = {"build_s": round(build_s, 1), "params": dict(spec.params)}
        if kind == "flat":
            started = time.perf_counter()
            _, truth = index.search(queries, args.k)
            entry["batch_search_all_queries_s"] = round(time.perf_counter() - started, 2)
        assert truth is not None, "flat must come first: it is the exact reference"
        _, found = index.search(queries, args.k)
        entry["recall_at_10"] = round(recall_at_k(found, truth, args.k), 4)
        entry.update(latencies(index, queries[:100] if kind == "flat" else queries, args.k))
        if kind != "flat":
            entry["tuned_recall_at_10_on_tuning_queries"] = round(
                index.tune(tuning, k=args.k, target_recall=args.target_recall), 4
            )
            entry["tuned_params"] = dict(index.spec.params)
            _, found = index.search(queries, args.k)
            entry["tuned_recall_at_10"] = round(recall_at_k(found, truth, args.k), 4)
            entry["tuned"] = latencies(index, queries, args.k)
        for share in (0.1, 0.01):
            positions = np.sort(rng.choice(args.n, size=int(args.n * share), replace=False))
            allowed = ids[positions]
            exact = np.argsort(-(queries[:200] @ x[positions].T), axis=1)[:, : args.k]
            _, found = index.search(queries[:200], args.k, allowed_ids=allowed)
            entry[f"filtered_{share:g}"] = {
                "recall_at_10": round(recall_at_k(found, allowed[exact], args.k), 4),
                **latencies(index, queries[: 100 if kind == "flat" else 200], args.k, allowed),
            }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            index.save(path)
            entry["file_bytes_per_vector"] = round(path.stat().st_size / args.n, 1)
        entry["rss_bytes_per_vector"] = round(memory, 1)
        entry["estimated_bytes_per_vector"] = round(bytes_per_vector(index.spec), 1)
        report["kinds"][kind] = entry
        log(f"{kind}: {json.dumps(entry)}")
        del index
    print(json.dumps(report))


if __name__ == "__main__":
    main()
