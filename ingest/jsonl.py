"""JSON Lines into Articles: the BioASQ/PubMedQA corpora, or ``Article.to_dict()`` output.

A line holds ``pmid`` (int or digit string) and ``title`` and/or ``abstract`` (strings); every other
Article field is read when present (``mesh``, ``authors``, ``year``, ``journal``, ``doi``...); unknown
keys are ignored.
Texts are kept exactly as written (no whitespace clean-up).

To refuse a whole file before storing anything, call ``validate_jsonl`` first (one streaming pass, no
Articles kept), then ``read_jsonl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from foundation.errors import InputError
from ingest.article import (
    MAX_PMID,
    RETRACTED_PUBLICATION_TYPE,
    AbstractSection,
    Article,
    Author,
    CommentCorrection,
    MeshHeading,
    Rejected,
    pmid_from,
)
from ingest.inputs import open_input
from ingest.medline import parse_author, parse_mesh_heading

__all__ = ["read_jsonl", "validate_jsonl"]

_DIGITS = re.compile(r"[0-9]+")


class _Invalid(ValueError):
    """A line that cannot become an Article; ``pmid`` is set when the line had a valid one."""

    def __init__(self, reason: str, pmid: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pmid = pmid


@dataclass(slots=True)
class _Bad:
    line: int
    reason: str
    pmid: int | None


def read_jsonl(path: str | Path, *, skip_invalid: bool = False) -> Iterator[Article | Rejected]:
    """Stream the Articles of a JSONL file, one line at a time; blank lines are skipped.

    A missing or unreadable file raises ``InputError`` at once. A malformed line raises
    ``InputError("FILE:LINE: reason")`` when iteration reaches it, after the earlier lines were yielded;
    with ``skip_invalid`` it is yielded as ``Rejected(reason="line N: reason", pmid=...)`` instead.
    """
    path = Path(path)
    _open(path).close()  # fail now, not at the first next()
    return _read(path, skip_invalid)


def validate_jsonl(path: str | Path, *, max_errors: int | None = None) -> list[str]:
    """Every problem of a JSONL file as ``"FILE:LINE: reason"`` (empty: the file is good); streams it.

    A missing or unreadable file raises ``InputError``. ``max_errors`` stops after that many messages.
    """
    path = Path(path)
    errors: list[str] = []
    with _open(path) as handle:
        for item in _parse_lines(handle):
            if isinstance(item, _Bad):
                errors.append(f"{path}:{item.line}: {item.reason}")
                if max_errors is not None and len(errors) >= max_errors:
                    break
    return errors


def _open(path: Path) -> BinaryIO:
    return open_input(path, "JSONL")


def _read(path: Path, skip_invalid: bool) -> Iterator[Article | Rejected]:
    with _open(path) as handle:
        for item in _parse_lines(handle):
            if not isinstance(item, _Bad):
                yield item
            elif skip_invalid:
                yield Rejected(reason=f"line {item.line}: {item.reason}", pmid=item.pmid)
            else:
                raise InputError(f"{path}:{item.line}: {item.reason}")


def _parse_lines(handle: BinaryIO) -> Iterator[Article | _Bad]:
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            yield _to_article(_load(raw))
        except _Invalid as exc:
            yield _Bad(number, exc.reason, exc.pmid)


def _load(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Invalid(f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise _Invalid("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise _Invalid(f"invalid JSON: {str(exc).split(':')[0]}") from None
    if not isinstance(data, dict):
        raise _Invalid(f"expected a JSON object, got {_json_type(data)}")
    return data


def _to_article(data: dict[str, Any]) -> Article:
    pmid = _pmid(data.get("pmid"), "pmid")
    if pmid is None:
        raise _Invalid("missing 'pmid'")
    try:
        return _fields(data, pmid)
    except _Invalid as exc:
        raise _Invalid(exc.reason, pmid) from None


def _fields(data: dict[str, Any], pmid: int) -> Article:
    title = _str(data, "title")
    abstract = _str(data, "abstract")
    sections = [_section(item, i) for i, item in enumerate(_list(data, "abstract_sections"))]
    if title is None and abstract is None and "abstract_sections" not in data:
        raise _Invalid("needs a 'title' or an 'abstract' string")
    if not sections and abstract:
        sections = [AbstractSection(text=abstract)]

    languages = _str_list(data, "languages")
    language = _str(data, "language")
    if language and language not in languages:
        languages.insert(0, language)

    article = Article(
        pmid=pmid,
        title=title or "",
        abstract_sections=sections,
        version=_int(data, "version", 1, 1_000_000) or 1,
        journal=_str(data, "journal"),
        journal_iso=_str(data, "journal_iso"),
        year=_int(data, "year", 1000, 9999),
        pub_date=_str(data, "pub_date"),
        authors=[_author(item, i) for i, item in enumerate(_list(data, "authors"))],
        languages=languages,
        publication_types=_str_list(data, "publication_types"),
        mesh=[_mesh(item, i) for i, item in enumerate(_list(data, "mesh"))],
        keywords=_str_list(data, "keywords"),
        doi=_str(data, "doi"),
        pmcid=_pmcid(data),
        comments_corrections=[
            _comment(item, i) for i, item in enumerate(_list(data, "comments_corrections"))
        ],
        kind=_kind(data),
        date_revised=_str(data, "date_revised"),
    )
    retracted = data.get("retracted")
    if retracted is not None and not isinstance(retracted, bool):
        raise _Invalid(f"'retracted' must be true or false, not {_json_type(retracted)}")
    if retracted and not article.retracted:
        article.publication_types.append(RETRACTED_PUBLICATION_TYPE)
    return article


def _pmid(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"'{where}' must be an integer or a string of digits, not {_json_type(value)}")
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise _Invalid(f"'{where}' {value[:40]!r} is not a number")
    number = pmid_from(value)
    if number is None:
        raise _Invalid(f"'{where}' {str(value)[:40]} is out of range (a PMID is 1 to {MAX_PMID})")
    return number


def _str(data: dict[str, Any], key: str, where: str = "") -> str | None:
    return _text(data.get(key), f"{where}{key}")


def _text(value: Any, name: str) -> str | None:
    """``value`` if it is a string of valid Unicode, None if it is null; anything else is invalid."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' must be a string, not {_json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"'{name}' holds an unpaired surrogate (not valid Unicode text)") from None
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"'{key}' must be a list, not {_json_type(value)}")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    items = _list(data, key)
    return [s for i, item in enumerate(items) if (s := _text(item, f"{key}[{i}]")) is not None]


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()) and len(value.strip()) <= 18:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"'{key}' must be an integer, not {_json_type(value)}")
    if not low <= value <= high:
        raise _Invalid(f"'{key}' {value} is out of range ({low}-{high})")
    return value


def _object(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _Invalid(f"'{where}' must be an object, not {_json_type(item)}")
    return item


def _section(item: Any, index: int) -> AbstractSection:
    where = f"abstract_sections[{index}]"
    if isinstance(item, str):
        item = {"text": item}
    obj = _object(item, where)
    text = _str(obj, "text", f"{where}.")
    if text is None:
        raise _Invalid(f"'{where}' has no 'text'")
    return AbstractSection(
        text=text, label=_str(obj, "label", f"{where}.") or None, category=_str(obj, "category", f"{where}.")
    )


def _author(item: Any, index: int) -> Author:
    where = f"authors[{index}]"
    if isinstance(item, str):
        name = _text(item, where) or ""
        if not name.strip():
            raise _Invalid(f"'{where}' is an empty name")
        return parse_author(fau=name) if "," in name else parse_author(au=name)
    obj = _object(item, where)
    author = Author(
        last_name=_str(obj, "last_name", f"{where}."),
        fore_name=_str(obj, "fore_name", f"{where}."),
        initials=_str(obj, "initials", f"{where}."),
        collective_name=_str(obj, "collective_name", f"{where}."),
        affiliations=[
            s
            for i, a in enumerate(_list(obj, "affiliations"))
            if (s := _text(a, f"{where}.affiliations[{i}]")) is not None
        ],
    )
    if not (author.last_name or author.collective_name):
        raise _Invalid(f"'{where}' needs a 'last_name' or a 'collective_name'")
    return author


def _mesh(item: Any, index: int) -> MeshHeading:
    where = f"mesh[{index}]"
    if isinstance(item, str):
        heading = parse_mesh_heading(_text(item, where) or "")
    else:
        obj = _object(item, where)
        major = obj.get("major", False)
        if not isinstance(major, bool):
            raise _Invalid(f"'{where}.major' must be true or false, not {_json_type(major)}")
        heading = MeshHeading(
            descriptor=_str(obj, "descriptor", f"{where}.") or "",
            ui=_str(obj, "ui", f"{where}."),
            major=major,
            qualifiers=_str_list(obj, "qualifiers"),
        )
    if not heading.descriptor:
        raise _Invalid(f"'{where}' has no descriptor")
    return heading


def _comment(item: Any, index: int) -> CommentCorrection:
    where = f"comments_corrections[{index}]"
    obj = _object(item, where)
    ref_type = _str(obj, "ref_type", f"{where}.")
    if not ref_type:
        raise _Invalid(f"'{where}' has no 'ref_type'")
    return CommentCorrection(
        ref_type=ref_type,
        pmid=_pmid(obj.get("pmid"), f"{where}.pmid"),
        source=_str(obj, "source", f"{where}."),
    )


def _pmcid(data: dict[str, Any]) -> str | None:
    value = data.get("pmcid")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(value, "pmcid")
    if text and _DIGITS.fullmatch(text):
        return f"PMC{text}"
    return text


def _kind(data: dict[str, Any]) -> str:
    kind = _str(data, "kind") or "article"
    if kind not in ("article", "book"):
        raise _Invalid(f"'kind' must be 'article' or 'book', not {kind[:40]!r}")
    return kind


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
