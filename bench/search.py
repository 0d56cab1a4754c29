"""Search benchmark: medlit against the LangChain quick-start, same corpus, same model, in one run.

    .venv/bin/python bench/search.py                      # 500 PubMedQA abstracts + 5,000 distractors
    .venv/bin/python bench/search.py --n 1000 --questions-limit 100 --skip-langchain

Corpus: the 500 PubMedQA abstracts (``--corpus``) plus the first ``--n`` articles with an abstract of the
demo PubMed file (``--distractors``); questions: PubMedQA's 500 (``question``, ``relevant_pmids``).

Systems, each in its own child process (so peak memory is its own):

- ``medlit-truncate`` / ``medlit-passages``: a fresh library in a temp dir (``ingest_jsonl``), the dense
  index built with the ONNX int8 embedder, ``index.passages`` off (title + abstract truncated to the model's
  256 tokens) and on (overlapping passages); searched with ``Searcher`` in ``--modes`` (dense, hybrid).
- ``langchain``: ``HuggingFaceEmbeddings(model_name=<the packaged model>)`` (sentence-transformers fp32,
  torch) + ``FAISS.from_texts`` + ``similarity_search(question, k=10)``, library defaults throughout.

Every system embeds the same texts (title + newline + abstract). Index time includes embedding (medlit's
library ingest is timed apart); query latency is one question end to end (embed, search, hydrate the hits),
after 3 warm-up questions; recall@10 = |relevant ∩ top 10| / min(|relevant|, 10), averaged. Memory: the
child's peak RSS and the RSS growth across the index build; bytes per document: medlit's whole home
(library.db with its WAL + the FAISS file), LangChain's ``save_local`` (index.faiss + index.pkl).
The systems run one after the other on a shared machine: ``cpu_s`` (process time) moves less than wall time
with load; the load averages are reported. One JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ingest.py hides ingest/
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never reach for a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED = ROOT.parent / "shared" / "data" / "pubmedqa"
K = 10
WARMUP = 3
SYSTEMS = ("medlit-truncate", "medlit-passages", "langchain")
QUIET = False


def log(message: str) -> None:
    """Progress on stderr (silenced by ``--json-only``)."""
    if not QUIET:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    """Current resident memory of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def recall_at(ranked: list[int], relevant: set[int], k: int = K) -> float:
    return len(relevant.intersection(ranked[:k])) / min(len(relevant), k)


# ----- parent: corpus, questions, children, comparison ------------------------------------------------------


def build_corpus(corpus: Path, distractors: Path, n: int, out: Path) -> dict[str, int]:
    """Write the PubMedQA abstracts + the first ``n`` distractors with an abstract as one JSONL."""
    from ingest.article import Article
    from ingest.pubmed_xml import iter_records

    seen: set[int] = set()
    counts = {"pubmedqa": 0, "distractors": 0, "distractor_duplicates_skipped": 0}
    with out.open("w", encoding="utf-8") as handle:
        with corpus.open(encoding="utf-8") as source:
            for line in source:
                if not line.strip():
                    continue
                item = json.loads(line)
                pmid = int(item["pmid"])
                if pmid in seen:
                    continue
                seen.add(pmid)
                row = {"pmid": pmid, "title": item.get("title") or "", "abstract": item["abstract"]}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts["pubmedqa"] += 1
        if n > 0:
            for record in iter_records(distractors):
                if not isinstance(record, Article) or not record.has_abstract:
                    continue
                if record.pmid in seen:
                    counts["distractor_duplicates_skipped"] += 1
                    continue
                seen.add(record.pmid)
                row = {"pmid": record.pmid, "title": record.title, "abstract": record.abstract}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts["distractors"] += 1
                if counts["distractors"] >= n:
                    break
    counts["documents"] = counts["pubmedqa"] + counts["distractors"]
    return counts


def read_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """``{"question", "relevant"}`` for each question with relevant PMIDs, up to ``limit``."""
    questions = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            item = json.loads(line)
            relevant = [int(p) for p in item.get("relevant_pmids") or []]
            if item.get("question", "").strip() and relevant:
                questions.append({"question": item["question"], "relevant": relevant})
            if limit is not None and len(questions) >= limit:
                break
    return questions


def run_child(system: str, work: Path, modes: str) -> dict[str, Any]:
    """Run one system in a fresh interpreter; its result is ``work/<system>.json``."""
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--child", system, "--work", str(work), "--modes", modes]
    if QUIET:
        command.append("--json-only")
    started = time.perf_counter()
    done = subprocess.run(command, stderr=subprocess.PIPE if QUIET else None, text=True, check=False)
    if done.returncode != 0:
        if QUIET and done.stderr:
            print(done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{system} failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads((work / f"{system}.json").read_text(encoding="utf-8"))
    result["child_wall_s"] = round(time.perf_counter() - started, 1)
    return result


def agreement(a: list[list[int]], b: list[list[int]], relevant: list[set[int]]) -> dict[str, Any]:
    """How two systems' top 10s compare: mean shared fraction, and who alone found a relevant PMID."""
    shared = [len(set(x) & set(y)) / K for x, y in zip(a, b, strict=True)]
    only_a = sum(1 for x, y, r in zip(a, b, relevant, strict=True) if r & set(x) and not r & set(y))
    only_b = sum(1 for x, y, r in zip(a, b, relevant, strict=True) if r & set(y) and not r & set(x))
    return {
        "top10_shared": round(float(np.mean(shared)), 4),
        "hit_only_medlit": only_a,
        "hit_only_langchain": only_b,
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def compare(
    medlit: dict[str, Any], langchain: dict[str, Any], questions: list[dict[str, Any]]
) -> dict[str, Any]:
    """LangChain / medlit ratios (> 1: medlit better) and recall differences for one medlit config."""
    relevant = [set(q["relevant"]) for q in questions]
    out: dict[str, Any] = {
        "index_x_faster": ratio(langchain["index_s"], medlit["index_s"]),
        "index_x_less_cpu": ratio(langchain["index_cpu_s"], medlit["index_cpu_s"]),
        "peak_rss_x_smaller": ratio(langchain["peak_rss_mb"], medlit["peak_rss_mb"]),
        "bytes_per_doc_x_smaller": ratio(langchain["bytes_per_doc"], medlit["bytes_per_doc"]),
        "index_bytes_per_doc_x_smaller": ratio(
            langchain["index_bytes_per_doc"], medlit["index_bytes_per_doc"]
        ),
    }
    for mode, result in medlit["modes"].items():
        lc = langchain["modes"]["similarity_search"]
        out[f"query_p50_x_faster_{mode}"] = ratio(lc["p50_ms"], result["p50_ms"])
        out[f"query_p99_x_faster_{mode}"] = ratio(lc["p99_ms"], result["p99_ms"])
        out[f"recall_minus_langchain_{mode}"] = round(result["recall@10"] - lc["recall@10"], 4)
        out[f"vs_langchain_{mode}"] = agreement(result["top10"], lc["top10"], relevant)
    return out


def parent(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare the corpus and the ONNX export, run each system, and assemble the report."""
    started = time.perf_counter()
    report: dict[str, Any] = {"load_avg_start": load_avg()}
    with tempfile.TemporaryDirectory(prefix="medlit-search-bench-") as scratch:
        work = Path(scratch)
        log(f"corpus: {args.corpus} + {args.n:,} distractors from {args.distractors.name}")
        report["corpus"] = build_corpus(args.corpus, args.distractors, args.n, work / "docs.jsonl")
        questions = read_questions(args.questions, args.questions_limit)
        report["questions"] = len(questions)
        (work / "questions.json").write_text(json.dumps(questions), encoding="utf-8")

        from indexes.embedder import load_embedder

        cached = any(args.cache_dir.glob("*/model.int8.onnx"))
        t0 = time.perf_counter()
        embedder = load_embedder("default", backend="onnx", cache_dir=args.cache_dir)
        report["onnx_export"] = {
            "cache_dir": str(args.cache_dir),
            "was_cached": cached,
            "seconds": round(time.perf_counter() - t0, 1),
            "model": embedder.name,
        }
        (work / "config.json").write_text(json.dumps({"cache_dir": str(args.cache_dir)}), encoding="utf-8")
        del embedder

        systems = [s for s in SYSTEMS if not (args.skip_langchain and s == "langchain")]
        results = {}
        for system in systems:
            log(f"--- {system} (load average {load_avg()})")
            results[system] = run_child(system, work, args.modes)
            log(f"{system}: {json.dumps(_summary(results[system]))}")

    report["systems"] = results
    if "langchain" in results:
        report["ratios"] = {
            config: compare(results[f"medlit-{config}"], results["langchain"], questions)
            for config in ("truncate", "passages")
        }
    for result in results.values():  # per-question rankings served the comparison; keep the JSON short
        for mode in result["modes"].values():
            mode.pop("top10", None)
    report["load_avg_end"] = load_avg()
    report["machine"] = {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    report["total_s"] = round(time.perf_counter() - started, 1)
    return report


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    modes = {m: {k: v for k, v in r.items() if k != "top10"} for m, r in result["modes"].items()}
    return {"index_s": result["index_s"], "peak_rss_mb": result["peak_rss_mb"], "modes": modes}


# ----- children: one system each ----------------------------------------------------------------------------


def time_queries(
    questions: list[dict[str, Any]], search: Callable[[str], list[int]], label: str
) -> dict[str, Any]:
    """Latency of one question end to end, and recall@10, over every question (after a warm-up)."""
    for question in questions[:WARMUP]:
        search(question["question"])
    times, recalls, top10 = [], [], []
    cpu = time.process_time()
    for i, question in enumerate(questions, start=1):
        t0 = time.perf_counter()
        ranked = search(question["question"])
        times.append((time.perf_counter() - t0) * 1000)
        recalls.append(recall_at(ranked, set(question["relevant"])))
        top10.append(ranked[:K])
        if i % 100 == 0:
            log(f"{label}: {i}/{len(questions)} questions")
    ms = np.asarray(times)
    return {
        "recall@10": round(float(np.mean(recalls)), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "cpu_ms_per_query": round((time.process_time() - cpu) * 1000 / len(questions), 2),
        "load_avg": load_avg(),
        "top10": top10,
    }


def child_medlit(work: Path, passages: bool, modes: list[str]) -> dict[str, Any]:
    """A fresh medlit library of the corpus, its dense index built, searched in each mode."""
    from foundation.settings import get_settings
    from indexes.dense_index import DenseIndex
    from indexes.embedder import load_embedder
    from indexes.search import Searcher
    from ingest.run import ingest_jsonl
    from ingest.store import Store

    config = json.loads((work / "config.json").read_text(encoding="utf-8"))
    questions = json.loads((work / "questions.json").read_text(encoding="utf-8"))
    rss_start = rss_mb()
    t0 = time.perf_counter()
    embedder = load_embedder("default", backend="onnx", cache_dir=Path(config["cache_dir"]))
    out: dict[str, Any] = {"model": embedder.name, "threads": getattr(embedder, "threads", None)}
    out["model_load_s"] = round(time.perf_counter() - t0, 2)
    out["rss_after_model_mb"] = round(rss_mb(), 1)
    with tempfile.TemporaryDirectory(prefix="medlit-lib-") as home:
        base = get_settings(home=Path(home))
        settings = base.model_copy(update={"index": base.index.model_copy(update={"passages": passages})})
        with Store.open(settings) as store:
            t0 = time.perf_counter()
            run = ingest_jsonl(store, work / "docs.jsonl")
            out["ingest_s"] = round(time.perf_counter() - t0, 2)
            out["documents"] = store.count()
            out["ingest_counts"] = {"inserted": run.counts.inserted, "failed": run.counts.failed}
            log(f"medlit passages={passages}: ingested {out['documents']:,} in {out['ingest_s']}s; embedding")
            searcher = Searcher(store, settings, embedder=embedder)
            dense: DenseIndex = searcher.dense
            rss_before = rss_mb()
            t0, cpu0 = time.perf_counter(), time.process_time()
            built = dense.build(progress=not QUIET)
            out["index_s"] = round(time.perf_counter() - t0, 2)
            out["index_cpu_s"] = round(time.process_time() - cpu0, 2)
            out["index_load_avg"] = load_avg()
            out["build_rss_delta_mb"] = round(rss_mb() - rss_before, 1)
            out["vectors"] = built.vectors
            out["index_kind"] = built.kind
            out["docs_per_s"] = round(out["documents"] / out["index_s"], 1)
            log(f"medlit passages={passages}: {built.vectors:,} vectors in {out['index_s']}s")
            out["modes"] = {}
            for mode in modes:

                def search(question: str, mode: str = mode) -> list[int]:
                    return [hit.pmid for hit in searcher.search(question, K, mode=mode)]

                out["modes"][mode] = time_queries(questions, search, f"medlit {mode}")
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            library = sum(p.stat().st_size for p in Path(home).glob("library.db*"))
            index = dir_bytes(settings.index_dir)
        out["library_bytes_per_doc"] = round(library / out["documents"], 1)
        out["index_bytes_per_doc"] = round(index / out["documents"], 1)
        out["bytes_per_doc"] = round((library + index) / out["documents"], 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["peak_rss_over_start_mb"] = round(peak_rss_mb() - rss_start, 1)
    return out


def child_langchain(work: Path) -> dict[str, Any]:
    """The LangChain quick-start: HuggingFaceEmbeddings + FAISS.from_texts + similarity_search."""
    import torch
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings

    from indexes.embedder import default_model_path
    from indexes.passages import document_text

    questions = json.loads((work / "questions.json").read_text(encoding="utf-8"))
    texts, metadatas = [], []
    with (work / "docs.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            texts.append(document_text(doc["title"], doc["abstract"]))
            metadatas.append({"pmid": doc["pmid"]})
    rss_start = rss_mb()
    t0 = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=str(default_model_path()))
    out: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2/sentence-transformers-fp32",
        "threads": torch.get_num_threads(),
    }
    out["model_load_s"] = round(time.perf_counter() - t0, 2)
    out["rss_after_model_mb"] = round(rss_mb(), 1)
    out["max_seq_length"] = getattr(getattr(embeddings, "_client", None), "max_seq_length", None)
    out["normalize_embeddings"] = bool(embeddings.encode_kwargs.get("normalize_embeddings", False))
    out["documents"] = len(texts)
    log(f"langchain: embedding {len(texts):,} texts (sentence-transformers fp32, {out['threads']} threads)")
    rss_before = rss_mb()
    t0, cpu0 = time.perf_counter(), time.process_time()
    store = FAISS.from_texts(texts, embeddings, metadatas=metadatas)
    out["index_s"] = round(time.perf_counter() - t0, 2)
    out["index_cpu_s"] = round(time.process_time() - cpu0, 2)
    out["index_load_avg"] = load_avg()
    out["build_rss_delta_mb"] = round(rss_mb() - rss_before, 1)
    out["vectors"] = int(store.index.ntotal)
    out["index_kind"] = type(store.index).__name__
    out["distance_strategy"] = str(store.distance_strategy)
    out["docs_per_s"] = round(len(texts) / out["index_s"], 1)
    log(f"langchain: {out['vectors']:,} vectors in {out['index_s']}s")

    def search(question: str) -> list[int]:
        return [int(doc.metadata["pmid"]) for doc in store.similarity_search(question, k=K)]

    out["modes"] = {"similarity_search": time_queries(questions, search, "langchain")}
    with tempfile.TemporaryDirectory(prefix="langchain-faiss-") as saved:
        store.save_local(saved)
        out["index_bytes_per_doc"] = round((Path(saved) / "index.faiss").stat().st_size / len(texts), 1)
        out["docstore_bytes_per_doc"] = round((Path(saved) / "index.pkl").stat().st_size / len(texts), 1)
        out["bytes_per_doc"] = round(dir_bytes(Path(saved)) / len(texts), 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["peak_rss_over_start_mb"] = round(peak_rss_mb() - rss_start, 1)
    return out


def child(system: str, work: Path, modes: list[str]) -> None:
    """Run one system and write its result to ``work/<system>.json``."""
    if QUIET:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    if system == "langchain":
        result = child_langchain(work)
    else:
        result = child_medlit(work, passages=system == "medlit-passages", modes=modes)
    (work / f"{system}.json").write_text(json.dumps(result), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    global QUIET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="distractor abstracts (default 5000)")
    parser.add_argument("--questions-limit", type=int, default=None, help="first N questions (default all)")
    parser.add_argument("--json-only", action="store_true", help="no progress on stderr")
    parser.add_argument("--skip-langchain", action="store_true", help="medlit only")
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=SHARED / "questions.jsonl")
    parser.add_argument("--distractors", type=Path, default=ROOT / ".cache" / "demo" / "pubmed21n1298.xml.gz")
    parser.add_argument(
        "--cache-dir", type=Path, default=ROOT / ".cache" / "models", help="ONNX export cache"
    )
    parser.add_argument("--modes", default="dense,hybrid", help="medlit search modes (comma-separated)")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    QUIET = args.json_only
    modes = [m for m in args.modes.split(",") if m]
    if args.child:
        child(args.child, args.work, modes)
        return 0
    report = parent(args)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
