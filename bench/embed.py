"""Embedding benchmark: medlit's ``OnnxEmbedder`` (int8 and fp32) against ``SentenceTransformer.encode``
(fp32, the reference) on the same texts, with the same model, on the CPU, in one run.

Systems:

- ``onnx-int8``: ``indexes.embedder.OnnxEmbedder(quantize=True)``, the default CPU path;
- ``onnx-fp32``: the same export without quantisation;
- ``st-fp32``: ``sentence_transformers.SentenceTransformer(model, device="cpu").encode(texts,
  batch_size=..., normalize_embeddings=True)``.

Texts are title + abstract from the ``--corpus`` JSONL files, read in order until ``--n``. Each repeat
embeds all of them once per system, the systems taking turns (so a load change on a shared machine hits
every system alike); ``docs_per_s`` is the median over ``--repeat``, after one small warm-up call each.
``x_vs_st_fp32`` is a system's docs/s divided by sentence-transformers' (medians; ``_per_repeat`` pairs the
runs of one repeat); ``x_vs_st_fp32_cpu_time`` divides CPU seconds per document (process time, all threads),
which moves less than wall time when other work shares the machine. Cosines compare each text's vector
with sentence-transformers' vector of the same text. The ONNX export goes to a fresh temporary cache unless
``--cache-dir`` is given, so ``export`` reports a cold export (and a warm reload).

Progress goes to stderr (``--json-only`` silences it); one JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never reach for a hub

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_CORPORA = [SHARED / "pubmedqa" / "corpus.jsonl", SHARED / "bioasq" / "corpus.jsonl"]
REFERENCE = "st-fp32"
QUIET = False


def _log(message: str) -> None:
    if not QUIET:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def read_texts(corpora: list[Path], n: int) -> list[str]:
    """The first ``n`` non-empty title + abstract texts of the corpora, in order."""
    texts: list[str] = []
    for corpus in corpora:
        with corpus.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                text = f"{record.get('title') or ''}\n{record.get('abstract') or ''}".strip()
                if text:
                    texts.append(text)
                if len(texts) == n:
                    return texts
    if len(texts) < n:
        _log(f"only {len(texts)} texts in {', '.join(map(str, corpora))}")
    return texts


def _cosines(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = (vectors.astype(np.float64) * reference.astype(np.float64)).sum(axis=1)
    return {
        "mean": round(float(cos.mean()), 6),
        "min": round(float(cos.min()), 6),
        "p01": round(float(np.percentile(cos, 1)), 6),
    }


def main(argv: list[str] | None = None) -> int:
    global QUIET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="texts to embed (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per system (median reported)")
    parser.add_argument(
        "--corpus", type=Path, nargs="+", default=DEFAULT_CORPORA, help="JSONL with title/abstract fields"
    )
    parser.add_argument("--model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (all CPUs)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="ONNX cache (default: a fresh temp dir)")
    parser.add_argument("--json-only", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    QUIET = args.json_only

    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    if QUIET:
        transformers.utils.logging.disable_progress_bar()

    from indexes.embedder import DEFAULT_MODEL_ID, MANIFEST_FILE, OnnxEmbedder, default_model_path

    model_dir = Path(args.model).resolve() if args.model else default_model_path()
    model_id = DEFAULT_MODEL_ID if args.model is None else model_dir.name
    texts = read_texts(args.corpus, args.n)
    _log(f"{len(texts)} texts, model {model_id}, batch size {args.batch_size}, {args.repeat} repeats")

    with tempfile.TemporaryDirectory(prefix="medlit-embed-bench-") as scratch:
        cache_dir = args.cache_dir or Path(scratch)
        common = {
            "cache_dir": cache_dir,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "model_id": model_id,
        }
        started = time.perf_counter()
        int8 = OnnxEmbedder(model_dir, quantize=True, **common)
        first_load = time.perf_counter() - started
        manifest = json.loads((int8.cache_path / MANIFEST_FILE).read_text()) if int8.exported else {}
        started = time.perf_counter()
        int8 = OnnxEmbedder(model_dir, quantize=True, **common)
        warm_load = time.perf_counter() - started
        fp32 = OnnxEmbedder(model_dir, quantize=False, **common)
        started = time.perf_counter()
        st = SentenceTransformer(str(model_dir), device="cpu")
        st_load = time.perf_counter() - started
        export = {
            "cold": bool(manifest),
            "export_seconds": manifest.get("export_seconds"),
            "quantize_seconds": manifest.get("quantize_seconds"),
            "first_load_seconds": round(first_load, 2),
            "warm_load_seconds": round(warm_load, 2),
            "int8_mb": round((int8.cache_path / "model.int8.onnx").stat().st_size / 2**20, 1),
            "fp32_mb": round((fp32.cache_path / "model.onnx").stat().st_size / 2**20, 1),
        }
        _log(f"export: {export}")

        def st_encode(batch: list[str]) -> np.ndarray:
            return np.asarray(
                st.encode(
                    batch, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True
                ),
                dtype=np.float32,
            )

        systems: dict[str, Callable[[list[str]], np.ndarray]] = {
            "onnx-int8": int8.embed_documents,
            "onnx-fp32": fp32.embed_documents,
            REFERENCE: st_encode,
        }
        names = {
            "onnx-int8": int8.name,
            "onnx-fp32": fp32.name,
            REFERENCE: f"{model_id}/sentence-transformers-fp32",
        }
        for embed in systems.values():  # warm-up: first-call allocations are not timed
            embed(texts[:8])
        rates: dict[str, list[float]] = {system: [] for system in systems}
        cpu: dict[str, list[float]] = {system: [] for system in systems}
        vectors: dict[str, np.ndarray] = {}
        for repeat in range(args.repeat):
            for system, embed in systems.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                result = embed(texts)
                seconds = time.perf_counter() - started
                rates[system].append(len(texts) / seconds)
                cpu[system].append((time.process_time() - cpu_started) / len(texts) * 1000)
                vectors.setdefault(system, result)
                _log(f"repeat {repeat + 1}/{args.repeat} {system}: {len(texts) / seconds:.1f} docs/s")

        tokens = np.array(int8.count_tokens(texts))
        reference_rate = statistics.median(rates[REFERENCE])
        reference_cpu = statistics.median(cpu[REFERENCE])
        results: dict[str, Any] = {}
        for system in systems:
            rate = statistics.median(rates[system])
            paired = [mine / ref for mine, ref in zip(rates[system], rates[REFERENCE], strict=True)]
            results[system] = {
                "name": names[system],
                "docs_per_s": round(rate, 1),
                "runs_docs_per_s": [round(r, 1) for r in rates[system]],
                "x_vs_st_fp32": round(rate / reference_rate, 2),
                "x_vs_st_fp32_per_repeat": [round(x, 2) for x in paired],
                "cpu_seconds_per_1k_docs": round(statistics.median(cpu[system]), 1),
                "x_vs_st_fp32_cpu_time": round(reference_cpu / statistics.median(cpu[system]), 2),
                "cosine_vs_st_fp32": _cosines(vectors[system], vectors[REFERENCE]),
            }
        int8_result = results["onnx-int8"]
        report = {
            "benchmark": "embed",
            "n": len(texts),
            "corpus": [str(p) for p in args.corpus],
            "model": model_id,
            "batch_size": args.batch_size,
            "repeat": args.repeat,
            "tokens": {
                "mean": round(float(tokens.mean()), 1),
                "median": int(np.median(tokens)),
                "max_tokens": int8.max_tokens,
                "truncated_share": round(float((tokens > int8.max_tokens).mean()), 3),
            },
            "machine": {
                "cpus": os.cpu_count(),
                "onnxruntime_threads": int8.threads,
                "torch_threads": torch.get_num_threads(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "versions": manifest.get("versions"),
            },
            "export": export,
            "systems": results,
            "target": {
                "x_vs_st_fp32": 3.0,
                "mean_cosine": 0.99,
                "met": int8_result["x_vs_st_fp32"] >= 3.0
                and int8_result["cosine_vs_st_fp32"]["mean"] >= 0.99,
            },
        }
        report["export"]["st_load_seconds"] = round(st_load, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
