"""LangChain integration (optional: ``pip install 'medlit[langchain]'``, which brings langchain-core only).

```python
from medlit.langchain import MedlitRetriever, answer_runnable, format_documents
from medlit.library import Library

library = Library("medlit-data")
retriever = MedlitRetriever(library=library, k=5, filters={"year_min": 2015})
docs = retriever.invoke("metformin cancer incidence")          # Documents, best first
context = (retriever | format_documents).invoke("metformin")   # numbered sources for a prompt
answer = answer_runnable(library).invoke("Does metformin reduce cancer incidence?")   # a verified Answer
```

The retriever searches through the library (``Library.search``, i.e. ``indexes.search.Searcher``), which keeps
one SQLite connection per thread: LangChain's ``batch`` runs in a thread pool, and a bare ``Searcher`` is
bound to the thread that opened it. Nothing else in medlit imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda
except ImportError as exc:  # pragma: no cover - exercised with langchain-core hidden
    raise ImportError("medlit.langchain needs langchain-core: pip install 'medlit[langchain]'") from exc

from pydantic import ConfigDict, Field, field_validator

from foundation.errors import InputError
from indexes.hit import Filters, Hit
from indexes.search import MAX_K, MODES
from medlit.library import Library
from rag.answer import Answer

_FILTER_FIELDS = frozenset(f.name for f in fields(Filters))


def as_filters(value: Filters | Mapping[str, Any] | None) -> Filters | None:
    """``Filters`` from a ``Filters``, a dict of its fields (``{"year_min": 2015}``) or None."""
    if value is None or isinstance(value, Filters):
        return value
    if not isinstance(value, Mapping):
        raise InputError(f"filters must be a Filters or a dict, not {type(value).__name__}")
    unknown = sorted(set(value) - _FILTER_FIELDS)
    if unknown:
        raise InputError(f"unknown filter {', '.join(unknown)}: use {', '.join(sorted(_FILTER_FIELDS))}")
    return Filters(**value)


def to_document(hit: Hit) -> Document:
    """A search hit as a LangChain ``Document``: title and abstract as text, the rest as metadata."""
    text = "\n\n".join(part for part in (hit.title, hit.abstract) if part)
    return Document(
        page_content=text,
        id=str(hit.pmid),
        metadata={
            "pmid": hit.pmid,
            "title": hit.title,
            "journal": hit.journal,
            "year": hit.year,
            "publication_types": list(hit.publication_types),
            "retracted": hit.retracted,
            "doi": hit.doi,
            "url": hit.url,
            "score": hit.score,
            "rank": hit.rank,
        },
    )


class MedlitRetriever(BaseRetriever):
    """The library's hybrid (or dense, or BM25) search as a LangChain retriever.

    ``invoke(query, k=..., filters=..., mode=...)`` overrides the fields for one call. Retracted articles
    are left out unless ``filters`` says ``include_retracted``; those included carry ``retracted=True``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    library: Library
    k: int = Field(10, ge=1, le=MAX_K, description="Documents returned per query.")
    filters: Filters | None = Field(None, description="Years, study types, MeSH, languages, retracted.")
    mode: str = Field("hybrid", description="hybrid, dense or bm25.")

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Filters | None:
        return as_filters(value)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)} (got {value!r})")
        return value

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: Filters | Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[Document]:
        hits = self.library.search(
            query,
            self.k if k is None else k,
            mode=mode or self.mode,
            filters=as_filters(filters) if filters is not None else self.filters,
        )
        return [to_document(hit) for hit in hits]


def format_documents(documents: Sequence[Document]) -> str:
    """Documents as numbered sources for a prompt: ``[1] Title (Journal, 2019) PMID 123`` then the text."""
    blocks = []
    for number, doc in enumerate(documents, start=1):
        meta = doc.metadata
        where = ", ".join(str(p) for p in (meta.get("journal"), meta.get("year")) if p)
        flag = " RETRACTED" if meta.get("retracted") else ""
        head = f"[{number}] {meta.get('title') or 'Untitled'}" + (f" ({where})" if where else "")
        abstract = doc.page_content.removeprefix(meta.get("title") or "").strip()
        blocks.append(f"{head} PMID {meta.get('pmid')}{flag}\n{abstract}".rstrip())
    return "\n\n".join(blocks)


def answer_runnable(
    library: Library,
    *,
    k: int | None = None,
    mode: str | None = None,
    filters: Filters | Mapping[str, Any] | None = None,
    generator: Any = None,
) -> RunnableLambda[str | Mapping[str, Any], Answer]:
    """The answer pipeline as a Runnable: a question, or ``{"question": ..., "filters": ..., "k": ...,
    "mode": ...}``, in; a verified ``Answer`` out (``| RunnableLambda(Answer.to_dict)`` for plain JSON).

    ``generator``: a name (extractive, openai, local) or a generator object; default: the settings'.
    """
    default_filters = as_filters(filters)

    def answer(request: str | Mapping[str, Any]) -> Answer:
        if isinstance(request, str):
            question, options = request, {}
        elif isinstance(request, Mapping):
            options = dict(request)
            question = options.pop("question", None)
            unknown = sorted(set(options) - {"filters", "k", "mode"})
            if not isinstance(question, str) or unknown:
                raise InputError(
                    "the answer runnable takes a question, or a dict with 'question' and optionally "
                    "'filters', 'k', 'mode'" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
                )
        else:
            raise InputError(f"the answer runnable takes a question, not {type(request).__name__}")
        chosen = as_filters(options["filters"]) if "filters" in options else default_filters
        return library.ask(
            question,
            k=options.get("k", k),
            mode=options.get("mode", mode),
            filters=chosen,
            generator=generator,
        )

    return RunnableLambda(answer, name="medlit_answer")
