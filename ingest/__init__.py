"""medlit ingestion: PubMed records from E-utilities, bulk XML, MEDLINE text and JSONL into the library."""

from ingest.article import AbstractSection, Article, Author, CommentCorrection, MeshHeading
from ingest.errors import EntrezError, InputError, LibraryError, MedlitError
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
