"""``Library``: the one entry point for notebooks and scripts — the same calls the CLI and the API make.

from medlit.library import Library

with Library("medlit-data") as lib:
    lib.ingest_files(["pubmed24n0001.xml.gz"])
    lib.index_update()
    hits = lib.search("metformin cancer incidence", k=5, years="2015:", study_types=["Meta-Analysis"])
    answer = lib.ask("Does metformin reduce cancer incidence in type 2 diabetes?")
    answer            # renders with numbered citations in Jupyter
    print(lib.export([c.pmid for c in answer.citations], "ris"))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from foundation.settings import Settings, get_settings
from indexes.hit import Filters, Hit
from ingest.article import Article
from ingest.store import RunReport, Store
from rag.answer import Answer


def make_filters(
    years: str | tuple[int | None, int | None] | None = None,
    study_types: Sequence[str] = (),
    mesh: Sequence[str] = (),
    languages: Sequence[str] = (),
    include_retracted: bool = False,
) -> Filters:
    """Filters from user-facing arguments: ``years="2015:2024"`` or ``(2015, None)``."""
    if isinstance(years, tuple):
        year_min, year_max = years
    else:
        year_min, year_max = Filters.parse_years(years)
    return Filters(
        year_min=year_min,
        year_max=year_max,
        publication_types=list(study_types),
        mesh=list(mesh),
        languages=list(languages),
        include_retracted=include_retracted,
    )


class Library:
    """A medlit library directory (``library.db`` + indexes). Each thread gets its own SQLite connection;
    the embedding model is loaded once and shared."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        settings: Settings | None = None,
        embedder: Any = None,
        generator: Any = None,
    ) -> None:
        if settings is None:
            settings = get_settings(**({"home": Path(home)} if home is not None else {}))
        elif home is not None:
            settings = settings.model_copy(update={"home": Path(home)})
        self.settings = settings
        self._embedder = embedder
        self._generator = generator
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stores: list[Store] = []

    def __repr__(self) -> str:
        return f"Library({str(self.settings.home)!r})"

    # ----- plumbing -----

    @property
    def store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store.open(self.settings)
            self._local.store = store
            with self._lock:
                self._stores.append(store)
        return store

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from indexes.dense_index import embedder_from_settings

                    self._embedder = embedder_from_settings(self.settings)
        return self._embedder

    def searcher(self) -> Any:
        """This thread's ``Searcher``: searching needs no generator (nor its model or server)."""
        searcher = getattr(self._local, "searcher", None)
        if searcher is None:
            from indexes.search import Searcher

            searcher = Searcher(self.store, self.settings, embedder=self.embedder)
            self._local.searcher = searcher
        return searcher

    def answerer(self, generator: Any = None) -> Any:
        """This thread's ``Answerer`` (one per generator name), sharing the embedder and the searcher."""
        from rag.ask import Answerer
        from rag.generators import make_generator

        cache: dict[str, Any] = self._local.__dict__.setdefault("answerers", {})
        if generator is not None and not isinstance(generator, str):
            return Answerer(self.store, self.settings, generator=generator, searcher=self.searcher())
        key = generator or "default"
        if key not in cache:
            gen = self._generator if generator is None and self._generator is not None else None
            gen = gen or make_generator(generator, self.settings.answer, home=self.settings.home)
            cache[key] = Answerer(self.store, self.settings, generator=gen, searcher=self.searcher())
        return cache[key]

    def close_thread(self) -> None:
        """Close this thread's connection: a worker thread calls it as it ends (the library stays open)."""
        store = getattr(self._local, "store", None)
        self._local.__dict__.clear()
        if store is not None:
            with self._lock:
                if store in self._stores:
                    self._stores.remove(store)
            store.close()

    def close(self) -> None:
        with self._lock:
            for store in self._stores:
                with contextlib.suppress(Exception):  # a connection owned by a finished thread
                    store.close()
            self._stores.clear()
        self._local = threading.local()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- ingest -----

    def ingest_files(self, paths: Iterable[str | Path], *, progress: bool = False) -> RunReport:
        from ingest.run import ingest_files

        return ingest_files(self.store, paths, batch_size=self.settings.ingest_batch_size, progress=progress)

    def ingest_medline(self, path: str | Path) -> RunReport:
        from ingest.run import ingest_medline

        return ingest_medline(self.store, path, batch_size=self.settings.ingest_batch_size)

    def ingest_jsonl(self, path: str | Path, *, skip_invalid: bool = False) -> RunReport:
        from ingest.run import ingest_jsonl

        return ingest_jsonl(
            self.store, path, batch_size=self.settings.ingest_batch_size, skip_invalid=skip_invalid
        )

    def ingest_pubmed(
        self,
        query: str,
        *,
        mindate: str | None = None,
        maxdate: str | None = None,
        max_records: int | None = None,
        progress: bool = False,
    ) -> RunReport:
        from ingest.run import ingest_pubmed

        return ingest_pubmed(
            self.store,
            self.settings,
            query,
            mindate=mindate,
            maxdate=maxdate,
            max_records=max_records,
            progress=progress,
        )

    # ----- index -----

    def _indexes(self, only: str | None = None) -> Any:
        """Both indexes (or the one ``only`` names); the embedder is loaded only when the dense one is."""
        from indexes.index_set import IndexSet

        embedder = self.embedder if only != "lexical" else None
        return IndexSet(self.store, self.settings, embedder=embedder)

    def index_update(self, *, progress: bool = False, only: str | None = None) -> Any:
        """Index what is new or changed, drop what was deleted, in the lexical and the dense index (each built
        the first time); ``only="lexical"`` or ``"dense"`` updates one."""
        return self._indexes(only).update(only=only, progress=progress)

    def index_build(
        self,
        *,
        kind: str | None = None,
        progress: bool = False,
        engine: str = "local",
        ray_address: str | None = None,
        workers: int | None = None,
        only: str | None = None,
    ) -> Any:
        """New indexes from every article with a title or abstract (lexical, then dense; ``only`` picks one);
        ``engine="ray"`` embeds on Ray actors (local Ray, or the cluster at ``ray_address``), GPU actors
        when the cluster has GPUs."""
        from indexes.index_set import IndexSetReport, parts
        from indexes.ray_embedder import build_index_on_ray, check_engine

        ray = check_engine(engine) == "ray"
        chosen = parts(only)
        indexes = self._indexes("lexical" if ray or "dense" not in chosen else None)
        report = IndexSetReport()
        if "lexical" in chosen:
            report.lexical = indexes.lexical.build(progress=progress)
        if "dense" in chosen and ray:
            report.dense = build_index_on_ray(
                self.store, self.settings, kind=kind, progress=progress, address=ray_address, workers=workers
            )
        elif "dense" in chosen:
            report.dense = indexes.dense.build(kind=kind, progress=progress)
        return report

    def index_verify(self, *, only: str | None = None) -> Any:
        return self._indexes(only).verify(only=only)

    # ----- read -----

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def get(self, pmid: int) -> Article | None:
        return self.store.get(pmid)

    def articles(self, pmids: Iterable[int]) -> list[Article]:
        """Articles in the order asked; PMIDs not in the library are skipped."""
        pmids = [int(p) for p in pmids]
        found = self.store.get_many(pmids)
        return [found[p] for p in pmids if p in found]

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        filters: Filters | None = None,
        years: str | tuple[int | None, int | None] | None = None,
        study_types: Sequence[str] = (),
        mesh: Sequence[str] = (),
        languages: Sequence[str] = (),
        include_retracted: bool = False,
    ) -> list[Hit]:
        filters = filters or make_filters(years, study_types, mesh, languages, include_retracted)
        return self.searcher().search(query, k, filters, mode)

    def search_frame(self, query: str, k: int = 10, **kwargs: Any) -> Any:
        """``search`` as a pandas DataFrame (pandas needed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("search_frame needs pandas: pip install 'medlit[notebook]'") from None
        from rag.evidence import evidence_level

        rows = []
        for hit in self.search(query, k, **kwargs):
            row = hit.to_dict()
            row["evidence_level"] = evidence_level(hit.publication_types).label
            rows.append(row)
        return pd.DataFrame(rows)

    # ----- answer -----

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        generator: Any = None,
        live: bool = False,
        filters: Filters | None = None,
        years: str | tuple[int | None, int | None] | None = None,
        study_types: Sequence[str] = (),
        mesh: Sequence[str] = (),
        languages: Sequence[str] = (),
        include_retracted: bool = False,
    ) -> Answer:
        """A short answer whose every sentence cites retrieved articles, or an honest abstention."""
        filters = filters or make_filters(years, study_types, mesh, languages, include_retracted)
        answerer = self.answerer(generator)
        live_report = None
        if live:
            from rag.live import refresh_from_pubmed

            live_report = refresh_from_pubmed(question, self.store, self.settings, embedder=self.embedder)
        answer = answerer.ask(question, k=k, filters=filters, mode=mode)
        if live_report is not None:
            answer.trace.live = live_report
        return answer

    def export(self, pmids: Iterable[int], fmt: str = "ris") -> str:
        """Citations of these articles as RIS, BibTeX, nbib or CSV, in the order given; PMIDs missing from
        the library are named in one ``InputError`` (as ``medlit export`` does) and nothing is exported."""
        from medlit.export import export, load_articles

        return export(load_articles(self.store, pmids), fmt)
