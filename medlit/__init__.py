"""medlit: a retrieval-augmented medical literature assistant.

    import medlit

    lib = medlit.Library("medlit-data")
    lib.ingest_files(["pubmed24n0001.xml.gz"])
    lib.index_update()
    answer = lib.ask("Does metformin reduce cancer incidence in type 2 diabetes?")
    print(answer.to_text())

The faces live here (the ``medlit`` CLI, the HTTP API and page, MCP, batch jobs and reports, LangChain);
the layers below are ``ingest`` (records into the library), ``indexes`` (embeddings, FAISS, lexical,
search, training) and ``rag`` (the answer pipeline), on the shared base ``foundation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlit.version import __version__

if TYPE_CHECKING:
    from foundation.errors import EntrezError, InputError, LibraryError, MedlitError
    from foundation.settings import Settings, get_settings
    from indexes.hit import Filters, Hit
    from medlit.batch import BatchReport, run_batch
    from medlit.library import Library, make_filters
    from rag.answer import Answer, AnswerSentence, Citation

# What ``import medlit`` offers, loaded on first use: the ``medlit`` command (and every parse process it
# spawns, which imports it again) starts without numpy, FAISS or SQLite helpers it may not need.
_EXPORTS = {
    "Answer": "rag.answer",
    "AnswerSentence": "rag.answer",
    "BatchReport": "medlit.batch",
    "Citation": "rag.answer",
    "EntrezError": "foundation.errors",
    "Filters": "indexes.hit",
    "Hit": "indexes.hit",
    "InputError": "foundation.errors",
    "Library": "medlit.library",
    "LibraryError": "foundation.errors",
    "MedlitError": "foundation.errors",
    "Settings": "foundation.settings",
    "get_settings": "foundation.settings",
    "make_filters": "medlit.library",
    "run_batch": "medlit.batch",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medlit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Answer",
    "AnswerSentence",
    "BatchReport",
    "Citation",
    "EntrezError",
    "Filters",
    "Hit",
    "InputError",
    "Library",
    "LibraryError",
    "MedlitError",
    "Settings",
    "__version__",
    "ask",
    "get_settings",
    "make_filters",
    "run_batch",
]


def ask(
    question: str,
    filters: Filters | None = None,
    k: int | None = None,
    generator: Any = None,
    *,
    mode: str | None = None,
    live: bool = False,
    settings: Settings | None = None,
) -> Answer:
    """Answer a question from the library of ``settings`` (default: the environment's) in one call.

    ``generator`` is a generator object or a name (extractive, openai, local); ``live=True`` first fetches
    the newest matching PubMed records (only the question's medical terms leave the machine).
    """
    from foundation.settings import get_settings
    from medlit.library import Library

    with Library(settings=settings or get_settings()) as library:
        return library.ask(question, filters=filters, k=k, generator=generator, mode=mode, live=live)
