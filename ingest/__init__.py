"""medlit ingestion: PubMed records from E-utilities, bulk XML, MEDLINE text and JSONL into the library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest.article import AbstractSection, Article, Author, CommentCorrection, MeshHeading
from ingest.errors import EntrezError, InputError, LibraryError, MedlitError

if TYPE_CHECKING:
    from ingest.settings import Settings, get_settings

__all__ = [
    "AbstractSection",
    "Article",
    "Author",
    "CommentCorrection",
    "EntrezError",
    "InputError",
    "LibraryError",
    "MedlitError",
    "MeshHeading",
    "Settings",
    "get_settings",
]


def __getattr__(name: str) -> Any:
    """``Settings`` and ``get_settings`` load pydantic on first use, not with every ``ingest`` module
    (a parse process never needs them)."""
    if name in ("Settings", "get_settings"):
        from ingest import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'ingest' has no attribute {name!r}")
