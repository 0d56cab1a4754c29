"""medlit ingestion: PubMed records from E-utilities, bulk XML, MEDLINE text and JSONL into the library."""

from __future__ import annotations

from ingest.article import AbstractSection, Article, Author, CommentCorrection, MeshHeading

__all__ = ["AbstractSection", "Article", "Author", "CommentCorrection", "MeshHeading"]
