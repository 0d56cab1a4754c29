"""Ingest benchmark: medlit against pubmed_parser and Biopython on the same PubMed XML files.

Systems (``--only`` picks some, comma-separated):

- ``medlit-parse``: ``ingest.pubmed_xml.iter_records`` over every file, counting the Articles yielded;
- ``medlit-store``: ``ingest.run.ingest_files`` (parse in a spawned child, write here) into a fresh
  library in a temporary directory; counts inserted+updated+unchanged, checks ``Store.count()``, and
  reports the library's size on disk per article;
- ``pubmed-parser``: ``pubmed_parser.parse_medline_xml`` (0.5.1) materialised into a list, with its
  offline defaults spelled out (it never uses the network; it yields PubmedArticle records only, so
  the DeleteCitation PMIDs of update files are not among them: ``deleted_records`` checks that);
- ``biopython``: ``Bio.Entrez.read``'s parser on each gunzipped file, counting ``PubmedArticle`` entries
  (validating, with local DTDs only; see ``run_biopython`` for why its handler is built directly).

Every (system, repeat) runs in its own fresh interpreter (this script with ``--worker``): one system's
memory does not inflate another's, peak RSS (``getrusage``, the worker and, for medlit-store, its parse
child) is per system, and ``ingest_files``' spawn start method gets a clean ``__main__``. Only the work
itself is timed, not interpreter start-up or imports; every system reads the same ``.xml.gz`` files and
gunzips them itself. ``seconds`` is the median over ``--repeat`` runs; ``x_vs_pubmed_parser`` is
pubmed_parser's seconds divided by the system's (above 1: faster than pubmed_parser's parse).

Progress goes to stderr (``--json-only`` silences it); one JSON object goes to stdout. ``count_check``
compares the citation counts (and a digest of the PMIDs) of all systems and states any difference.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as ``python bench/ingest.py``, this file's folder comes first on sys.path and its name would shadow
# the ``ingest`` package: drop the folder and put the project root first (spawned children inherit it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SYSTEMS = ("medlit-parse", "medlit-store", "pubmed-parser", "biopython")
REFERENCE = "pubmed-parser"


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _pmid_summary(pmids: Iterable[int]) -> dict[str, Any]:
    """How many distinct PMIDs, and a short digest of them, to check that systems saw the same citations."""
    distinct = sorted(set(pmids))
    text = ",".join(str(p) for p in distinct)
    return {"distinct_pmids": len(distinct), "pmid_digest": hashlib.sha256(text.encode()).hexdigest()[:16]}


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest waited-for child, in MiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    peak = {"peak_rss_mb": round(own / 2**20, 1)}
    if child:
        peak["child_peak_rss_mb"] = round(child / 2**20, 1)
    return peak


def run_medlit_parse(files: list[str]) -> dict[str, Any]:
    """Parse only: every record from iter_records; citations are the Articles."""
    from ingest.article import Article, Deletion, Rejected
    from ingest.pubmed_xml import iter_records

    pmids: list[int] = []
    deleted = rejected = 0
    start = time.perf_counter()
    for path in files:
        for record in iter_records(path):
            if isinstance(record, Article):
                pmids.append(record.pmid)
            elif isinstance(record, Deletion):
                deleted += len(record.pmids)
            elif isinstance(record, Rejected):
                rejected += 1
    seconds = time.perf_counter() - start
    return {
        "citations": len(pmids),
        "seconds": seconds,
        "deleted_pmids_seen": deleted,
        "rejected": rejected,
        **_pmid_summary(pmids),
    }


def run_medlit_store(files: list[str]) -> dict[str, Any]:
    """Parse and store into a fresh library; the count comes from the run report."""
    from ingest.run import ingest_files
    from ingest.store import Store

    with tempfile.TemporaryDirectory(prefix="medlit-bench-") as tmp:
        start = time.perf_counter()
        store = Store(Path(tmp) / "library.db")
        report = ingest_files(store, files, progress=False, workers=True)
        seconds = time.perf_counter() - start
        counts = report.to_dict()
        stored = store.count()
        pmids = [row[0] for row in store.conn.execute("SELECT pmid FROM articles")]
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())
    citations = counts["inserted"] + counts["updated"] + counts["unchanged"]
    return {
        "citations": citations,
        "seconds": seconds,
        "status": counts["status"],
        "report": {k: counts[k] for k in ("seen", "inserted", "updated", "unchanged", "deleted", "failed")},
        "store_count": stored,
        "library_bytes": size,
        "library_bytes_per_article": round(size / stored, 1) if stored else None,
        **_pmid_summary(pmids),
    }


def run_pubmed_parser(files: list[str]) -> dict[str, Any]:
    """pubmed_parser.parse_medline_xml, materialised; its defaults written out (none needs the network)."""
    import pubmed_parser

    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    for path in files:
        records.extend(
            pubmed_parser.parse_medline_xml(
                path,
                year_info_only=True,
                nlm_category=False,
                author_list=False,
                reference_list=False,
                parse_downto_mesh_subterms=False,
            )
        )
    seconds = time.perf_counter() - start
    deleted = sum(1 for r in records if r.get("delete"))
    pmids = [int(r["pmid"]) for r in records if not r.get("delete")]
    return {
        "citations": len(records) - deleted,
        "seconds": seconds,
        "records": len(records),
        "deleted_records": deleted,
        "includes_deleted": deleted > 0,
        **_pmid_summary(pmids),
    }


def run_biopython(files: list[str]) -> dict[str, Any]:
    """Bio.Entrez.read on each gunzipped file, validating against the DTDs Biopython ships, offline.

    ``Entrez.read(h)`` is ``DataHandler(validate=True, escape=False, ignore_errors=False).read(h)``; it is
    called that way here for one reason: pubmed20n0014 names its DTD by an ``http://`` URL, which
    Biopython 1.88 refuses ("Expected secure URL to NCBI") before even looking for the file locally, so
    the handler's ``bypass_url_security`` is set. The DTD then comes from Biopython's user DTD cache or
    its bundled ``Bio/Entrez/DTDs`` (which has ``pubmed_190101.dtd`` and the modules it includes), never
    the network: ``urlopen`` is replaced by one that fails, so a DTD missing offline stops the run.
    Validation stays on (``validate=False`` would not skip the DTD either; it only tolerates unknown tags).
    """
    from Bio.Entrez import Parser

    def _offline(url: str, *args: object, **kwargs: object) -> Any:
        raise OSError(f"network disabled in the benchmark: {url}")

    Parser.urlopen = _offline  # type: ignore[assignment]
    pmids: list[int] = []
    deleted = books = 0
    start = time.perf_counter()
    for path in files:
        handler = Parser.DataHandler(validate=True, escape=False, ignore_errors=False)
        handler.bypass_url_security = True
        with gzip.open(path, "rb") as handle:
            result = handler.read(handle)
        pmids.extend(int(a["MedlineCitation"]["PMID"]) for a in result.get("PubmedArticle", []))
        deleted += len(result.get("DeleteCitation", []))  # one DeleteCitation: a list of PMIDs
        books += len(result.get("PubmedBookArticle", []))
        del result
    seconds = time.perf_counter() - start
    return {
        "citations": len(pmids),
        "seconds": seconds,
        "deleted_pmids_seen": deleted,
        "book_articles": books,
        "how": "Bio.Entrez.Parser.DataHandler(validate=True).read, bypass_url_security, local DTDs only",
        **_pmid_summary(pmids),
    }


RUNNERS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "medlit-parse": run_medlit_parse,
    "medlit-store": run_medlit_store,
    "pubmed-parser": run_pubmed_parser,
    "biopython": run_biopython,
}


def _worker(system: str, files: list[str]) -> None:
    """Child side: run one system once and print its result as one JSON line."""
    result = RUNNERS[system](files)
    result.update(_peak_rss_mb())
    print(json.dumps(result), flush=True)


def _run_once(system: str, files: list[str]) -> dict[str, Any]:
    """Parent side: one system, one repeat, in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, *files]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"worker exited with code {proc.returncode}"}
    return dict(json.loads(lines[-1]))


def _bench(system: str, files: list[str], repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Run one system ``repeat`` times; the median seconds and the largest peak RSS."""
    runs: list[dict[str, Any]] = []
    for i in range(repeat):
        log(f"{system}: run {i + 1}/{repeat} ...")
        run = _run_once(system, files)
        if "error" in run:
            log(f"{system}: FAILED ({run['error']})")
            return {"system": system, "error": run["error"]}
        log(f"{system}: {run['citations']} citations in {run['seconds']:.2f} s")
        runs.append(run)
    seconds = statistics.median(r["seconds"] for r in runs)
    result: dict[str, Any] = {"system": system, "citations": runs[-1]["citations"]}
    result["seconds"] = round(seconds, 3)
    result["citations_per_s"] = round(result["citations"] / seconds, 1) if seconds else None
    result["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    if len({r["citations"] for r in runs}) > 1:
        result["citations_per_run"] = [r["citations"] for r in runs]
    for key in ("peak_rss_mb", "child_peak_rss_mb"):
        if any(key in r for r in runs):
            result[key] = max(r.get(key, 0.0) for r in runs)
    skip = {"citations", "seconds", "peak_rss_mb", "child_peak_rss_mb"}
    result.update({k: v for k, v in runs[-1].items() if k not in skip})
    return result


def _count_check(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Do all systems count the same citations and see the same PMIDs? Differences are spelled out."""
    ok = [r for r in results if "error" not in r]
    counts = {r["system"]: r["citations"] for r in ok}
    check: dict[str, Any] = {"counts": counts}
    failed = [r["system"] for r in results if "error" in r]
    if failed:
        check["failed_systems"] = failed
    if not counts:
        check["all_equal"] = False
        return check
    ref_system = "medlit-parse" if "medlit-parse" in counts else next(iter(counts))
    ref = counts[ref_system]
    check["all_equal"] = len(set(counts.values())) == 1 and not failed
    differences = {s: n - ref for s, n in counts.items() if n != ref}
    if differences:
        check["differences_vs_" + ref_system] = differences
    parsed = {r["system"]: r for r in ok if r["system"] != "medlit-store"}
    digests = {s: r["pmid_digest"] for s, r in parsed.items()}
    if digests:
        check["parsers_same_pmids"] = len(set(digests.values())) == 1
        if not check["parsers_same_pmids"]:
            check["pmid_digests"] = digests
    notes: list[str] = []
    first = next(iter(parsed.values()), None)
    if first is not None and first["distinct_pmids"] != first["citations"]:
        repeats = first["citations"] - first["distinct_pmids"]
        notes.append(
            f"{first['citations']} citations carry {first['distinct_pmids']} distinct PMIDs: {repeats} "
            "PMID(s) appear more than once across the files (a later version of the record)"
        )
    store = next((r for r in ok if r["system"] == "medlit-store"), None)
    if store is not None:
        check["medlit_store_count"] = store["store_count"]
        if first is not None:
            same = store["pmid_digest"] == first["pmid_digest"]
            check["medlit_store_pmids_match_parsed"] = same
            if store["store_count"] != first["distinct_pmids"]:
                notes.append(
                    f"the library holds {store['store_count']} articles for {first['distinct_pmids']} "
                    f"distinct PMIDs parsed (report: deleted={store['report']['deleted']})"
                )
    if notes:
        check["notes"] = notes
    return check


def _machine() -> dict[str, Any]:
    """Where the numbers come from (the load average shows how busy a shared machine was)."""
    import lxml.etree

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "lxml": ".".join(str(v) for v in lxml.etree.LXML_VERSION),
    }
    for dist in ("medlit", "pubmed_parser", "biopython"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            info[dist] = None
    return info


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen systems, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="+", help="PubMed .xml.gz files (baseline or update)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per system; seconds is the median")
    parser.add_argument("--only", help=f"comma-separated systems to run, from: {','.join(SYSTEMS)}")
    parser.add_argument("--json-only", action="store_true", help="no progress on stderr, just the JSON")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = [str(Path(f).resolve()) for f in args.files]
    if args.worker:
        _worker(args.worker, files)
        return 0
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    systems = list(SYSTEMS)
    if args.only:
        systems = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")

    def log(message: str) -> None:
        if not args.json_only:
            _log(message)

    machine = _machine()
    results = [_bench(system, files, args.repeat, log) for system in systems]
    reference = next((r for r in results if r["system"] == REFERENCE and "error" not in r), None)
    for r in results:
        if "error" not in r:
            ratio = reference["seconds"] / r["seconds"] if reference and r["seconds"] else None
            r["x_vs_pubmed_parser"] = round(ratio, 2) if ratio is not None else None
    check = _count_check(results)
    ok = [r["citations"] for r in results if "error" not in r]
    citations = check["counts"].get("medlit-parse", ok[0] if ok else None)
    report = {
        "files": [Path(f).name for f in files],
        "citations": citations,
        "repeat": args.repeat,
        "results": results,
        "count_check": check,
        "machine": machine,
    }
    print(json.dumps(report, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
