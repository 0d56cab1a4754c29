"""The library's two search indexes together: lexical (tantivy BM25) and dense (FAISS).

``medlit index build|update|verify|info`` act on both unless ``only`` names one. The lexical index goes
first: it takes seconds to minutes where embedding takes much longer, so a library is searchable with BM25
early, and a build killed while embedding keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from indexes.lexical_index import LexicalIndex, LexicalReport, LexicalVerifyReport
from ingest.store import Store

PARTS = ("lexical", "dense")


def parts(only: str | None) -> tuple[str, ...]:
    """The indexes ``only`` names (None or "all": both), in the order they are built."""
    if only in (None, "all"):
        return PARTS
    if only not in PARTS:
        raise InputError(f"index must be one of lexical, dense or all (got {only!r})")
    return (only,)


@dataclass(slots=True)
class IndexSetReport:
    """What a build or update did to each index (None: not touched)."""

    dense: Any = None
    lexical: LexicalReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """The dense report's fields at the top (as before the lexical index existed), the lexical one's
        under ``lexical``."""
        data: dict[str, Any] = self.dense.to_dict() if self.dense is not None else {}
        if self.lexical is not None:
            data["lexical"] = self.lexical.to_dict()
        return data


@dataclass(slots=True)
class IndexSetVerifyReport:
    dense: Any = None
    lexical: LexicalVerifyReport | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in (self.dense, self.lexical) if r is not None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = self.dense.to_dict() if self.dense is not None else {}
        if self.lexical is not None:
            data["lexical"] = self.lexical.to_dict()
        data["ok"] = self.ok
        return data


class IndexSet:
    """Both indexes of one library. ``embedder`` is loaded from settings when the dense index needs it."""

    def __init__(self, store: Store, settings: Settings, *, embedder: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.lexical = LexicalIndex(store, settings)
        self.dense = DenseIndex(store, settings, embedder=embedder)

    def build(
        self, *, only: str | None = None, kind: str | None = None, progress: bool = True
    ) -> IndexSetReport:
        report = IndexSetReport()
        for part in parts(only):
            if part == "lexical":
                report.lexical = self.lexical.build(progress=progress)
            else:
                report.dense = self.dense.build(kind=kind, progress=progress)
        return report

    def update(self, *, only: str | None = None, progress: bool = True) -> IndexSetReport:
        report = IndexSetReport()
        for part in parts(only):
            if part == "lexical":
                report.lexical = self.lexical.update(progress=progress)
            else:
                report.dense = self.dense.update(progress=progress)
        return report

    def verify(self, *, only: str | None = None) -> IndexSetVerifyReport:
        report = IndexSetVerifyReport()
        for part in parts(only):
            if part == "lexical":
                report.lexical = self.lexical.verify()
            else:
                report.dense = self.dense.verify()
        return report

    def info(self, *, only: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for part in parts(only):
            if part == "lexical":
                data["lexical"] = self.lexical.info()
            else:
                data.update(self.dense.info())
        return data
