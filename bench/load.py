"""Load test of the HTTP API: the app under `medlit serve` (uvicorn) on 127.0.0.1, real library, real model.

    .venv/bin/python bench/load.py                       # builds a library from the 500 PubMedQA abstracts
    .venv/bin/python bench/load.py --home medlit-data --no-ingest-phase   # an existing library, read-only

1. Library: ``--home`` (left as it is), or a fresh one in a temp dir from ``--corpus`` (default
   ``../shared/data/pubmedqa/corpus.jsonl``) indexed with the default model (ONNX int8 on CPU; the model
   export is copied from ``--model-cache`` when there, else made once).
2. Server: ``medlit --home H serve --port P`` in a child process, rate limit off, its stderr (the request
   log) kept in a file.
3. Phase ``read-only``: ``--search`` GET /search (k=10, hybrid) and ``--ask`` POST /ask requests, shuffled
   with a fixed seed, sent by ``--concurrency`` threads (httpx, one client per thread); PubMedQA questions.
4. Phase ``with-ingest`` (temp library only): the same requests while a writer process ingests
   ``--ingest-corpus`` (default: BioASQ's 10,848 abstracts) into the same library in chunks of 1,000, with
   a ``medlit index update`` after the first chunk (the server picks the new index file up while serving).
5. Privacy: how many of the questions sent appear anywhere in the server's log (must be 0).

Prints one JSON object: requests/s, p50/p99 latency per endpoint, errors (must be 0), "database is locked"
count, the writer's runs, and the privacy figures. Progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
MEDLIT = [sys.executable, "-m", "medlit.cli"]
CHUNK = 1000


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def medlit(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEDLIT, "--home", str(home), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def build_library(home: Path, corpus: Path, model_cache: Path | None) -> None:
    if model_cache is not None and model_cache.is_dir():
        shutil.copytree(model_cache, home / "models", dirs_exist_ok=True)
    for args in (("ingest", "jsonl", str(corpus), "--json"), ("index", "build", "-q", "--json")):
        started = time.perf_counter()
        done = medlit(home, *args)
        if done.returncode:
            raise SystemExit(f"medlit {' '.join(args)} failed: {done.stderr.strip()}")
        log(f"medlit {' '.join(args[:2])}: {time.perf_counter() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(home: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEDLIT_SERVE__RATE_LIMIT": "0"}
    with log_file.open("wb") as sink:
        server = subprocess.Popen(
            [*MEDLIT, "--home", str(home), "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    for _ in range(1200):
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log_file.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.terminate()
    raise SystemExit("the server did not answer /health")


def requests_plan(questions: list[str], n_search: int, n_ask: int, seed: int) -> list[tuple[str, str]]:
    plan = [("/search", questions[i % len(questions)]) for i in range(n_search)]
    plan += [("/ask", questions[(i * 7) % len(questions)]) for i in range(n_ask)]
    random.Random(seed).shuffle(plan)
    return plan


def run_phase(base: str, plan: list[tuple[str, str]], concurrency: int) -> dict[str, Any]:
    local = threading.local()
    latencies: dict[str, list[float]] = {"/search": [], "/ask": []}
    errors: list[str] = []
    lock = threading.Lock()

    def send(item: tuple[str, str]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=120)
        endpoint, question = item
        started = time.perf_counter()
        try:
            if endpoint == "/search":
                response = client.get("/search", params={"q": question, "k": 10})
            else:
                response = client.post("/ask", json={"question": question})
            ok = response.status_code == 200
            problem = f"{endpoint} {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, problem = False, f"{endpoint} {type(exc).__name__}: {exc}"
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies[endpoint].append(elapsed)
            if not ok:
                errors.append(problem)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, plan))
    seconds = time.perf_counter() - started
    endpoints = {
        name: {
            "n": len(values),
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(max(values), 1),
        }
        for name, values in latencies.items()
        if values
    }
    return {
        "requests": len(plan),
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(plan) / seconds, 1),
        "endpoints": endpoints,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


class Writer(threading.Thread):
    """Ingests chunks of a corpus into the library (a child process per command) until told to stop."""

    def __init__(self, home: Path, corpus: Path, workdir: Path) -> None:
        super().__init__(daemon=True)
        self.home = home
        self.stop = threading.Event()
        self.runs: list[dict[str, Any]] = []
        lines = [line for line in corpus.read_text().split("\n") if line.strip()]
        self.chunks = []
        for number, start in enumerate(range(0, len(lines), CHUNK)):
            path = workdir / f"chunk-{number:03d}.jsonl"
            path.write_text("\n".join(lines[start : start + CHUNK]) + "\n")
            self.chunks.append(path)

    def _run(self, *args: str) -> None:
        started = time.perf_counter()
        done = medlit(self.home, *args)
        record: dict[str, Any] = {
            "command": " ".join(args[:2]),
            "exit": done.returncode,
            "seconds": round(time.perf_counter() - started, 2),
            "locked": (done.stdout + done.stderr).count("database is locked"),
        }
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1])
            record.update({k: report[k] for k in ("inserted", "updated", "added", "removed") if k in report})
        except (IndexError, ValueError):
            record["stderr"] = done.stderr.strip()[-300:]
        self.runs.append(record)

    def run(self) -> None:
        for number, chunk in enumerate(self.chunks):
            if self.stop.is_set():
                return
            self._run("ingest", "jsonl", str(chunk), "--json")
            if number == 0 and not self.stop.is_set():
                self._run("index", "update", "-q", "--json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="an existing library (default: a fresh one from --corpus)")
    parser.add_argument("--corpus", type=Path, default=SHARED / "pubmedqa" / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=SHARED / "pubmedqa" / "questions.jsonl")
    parser.add_argument("--ingest-corpus", type=Path, default=SHARED / "bioasq" / "corpus.jsonl")
    parser.add_argument("--model-cache", type=Path, default=ROOT / "medlit-data" / "models")
    parser.add_argument("--search", type=int, default=500, help="GET /search requests per phase")
    parser.add_argument("--ask", type=int, default=100, help="POST /ask requests per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-ingest-phase", action="store_true", help="only the read-only phase")
    args = parser.parse_args()

    lines = args.questions.read_text().split("\n")  # not splitlines(): questions may hold U+2028
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="medlit-load-"))
    home = args.home
    fresh = home is None
    if home is None:
        home = work / "home"
        log(f"building a library from {args.corpus} in {home}")
        build_library(home, args.corpus, args.model_cache)
    port = free_port()
    server_log = work / "server.log"
    server = start_server(home, port, server_log)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "phases": [],
    }
    try:
        health = httpx.get(f"{base}/health").json()
        result["library"] = {
            "articles": health["library"]["articles"],
            "model": health["index"].get("model"),
            "index_kind": health["index"].get("kind"),
        }
        sent: list[str] = []
        plan = requests_plan(questions, args.search, args.ask, args.seed)
        sent += [q for _, q in plan]
        log(f"phase read-only: {len(plan)} requests, concurrency {args.concurrency}")
        result["phases"].append({"name": "read-only", **run_phase(base, plan, args.concurrency)})
        if fresh and not args.no_ingest_phase:
            writer = Writer(home, args.ingest_corpus, work)
            plan = requests_plan(questions, args.search, args.ask, args.seed + 1)
            sent += [q for _, q in plan]
            log(f"phase with-ingest: {len(plan)} requests while {args.ingest_corpus.name} is ingested")
            writer.start()
            phase = run_phase(base, plan, args.concurrency)
            writer.stop.set()
            writer.join()
            after = httpx.get(f"{base}/health").json()
            phase["writer"] = writer.runs
            phase["articles_after"] = after["library"]["articles"]
            phase["index_count_after"] = after["index"].get("count")
            result["phases"].append({"name": "with-ingest", **phase})
    finally:
        server.terminate()
        server.wait(timeout=60)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = server_log.read_text(errors="replace")
    lines = text.splitlines()
    distinct = sorted(set(sent))
    result["database_locked"] = text.count("database is locked") + sum(
        run.get("locked", 0) for phase in result["phases"] for run in phase.get("writer", [])
    )
    result["privacy"] = {
        "questions_sent": len(sent),
        "distinct_questions": len(distinct),
        "questions_found_in_server_log": sum(1 for q in distinct if q in text),
        "server_log_lines": len(lines),
        "request_lines": sum(1 for line in lines if " request_id=" in line and " status=" in line),
        "lines_with_a_query_string": sum(1 for line in lines if "?q=" in line or "&k=" in line),
    }
    result["server_log_sample"] = [line for line in lines if " path=/search " in line][:1]
    print(json.dumps(result, indent=2))
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"server log kept in {server_log}")


if __name__ == "__main__":
    main()
