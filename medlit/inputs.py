"""What a request may carry, checked the same way by every network face (the HTTP API and the MCP server).

``FiltersIn`` is the filters object both accept; ``question_text`` and ``check_k`` apply the limits of
``ServeSettings``; ``validation_message`` turns pydantic's errors into one line that names where the input
was wrong and never quotes the input itself (it may be a question).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from foundation.errors import InputError
from foundation.settings import ServeSettings
from indexes.hit import Filters
from medlit.library import make_filters

Mode = Literal["hybrid", "dense", "bm25"]
GeneratorName = Literal["auto", "extractive", "openai", "local"]
Term = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class FiltersIn(BaseModel):
    """Restrictions on the articles used; empty lists mean no restriction."""

    model_config = ConfigDict(extra="forbid")

    years: str | None = Field(
        None, max_length=20, description='Publication years: "2015:2024", "2015:", ":2024" or "2020".'
    )
    year_min: int | None = Field(None, ge=0, le=9999, description="First publication year (or use years).")
    year_max: int | None = Field(None, ge=0, le=9999, description="Last publication year (or use years).")
    study_types: list[Term] = Field(
        default_factory=list, max_length=50, description='Publication types, e.g. "Meta-Analysis".'
    )
    mesh: list[Term] = Field(default_factory=list, max_length=50, description="MeSH descriptors (any of).")
    languages: list[Term] = Field(default_factory=list, max_length=20, description="Language codes: eng.")
    include_retracted: bool = Field(False, description="Also use retracted articles (flagged loudly).")

    @model_validator(mode="after")
    def _years_one_way(self) -> FiltersIn:
        if self.years is not None and (self.year_min is not None or self.year_max is not None):
            raise ValueError("give years or year_min/year_max, not both")
        return self

    def to_filters(self) -> Filters:
        """``Filters``; InputError for a malformed or empty year range."""
        years = self.years if self.years is not None else (self.year_min, self.year_max)
        return make_filters(years, self.study_types, self.mesh, self.languages, self.include_retracted)


def question_text(text: str, serve: ServeSettings) -> str:
    """The question (or query) without NUL characters and outer spaces; InputError when empty or too long."""
    text = text.replace("\x00", " ").strip()
    if not text:
        raise InputError("the question is empty")
    if len(text) > serve.max_question_chars:
        raise InputError(
            f"the question is too long ({len(text):,} characters; at most {serve.max_question_chars:,})"
        )
    return text


def check_k(k: int | None, serve: ServeSettings) -> int | None:
    """``k`` when it is within 1..``serve.max_k`` (or None: the default); InputError otherwise."""
    if k is not None and not 1 <= k <= serve.max_k:
        raise InputError(f"k must be between 1 and {serve.max_k} (got {k})")
    return k


def validation_message(errors: Iterable[Mapping[str, Any]], whole: str = "input") -> str:
    """ "k: Input should be greater than or equal to 1; filters.years: ..." — never the input itself.

    A location's leading "body" (FastAPI's name for the request body) is left out; an error about the
    whole input is named ``whole``."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or whole
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
