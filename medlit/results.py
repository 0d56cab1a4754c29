"""The results file of a batch job: ``RESULTS.jsonl`` (one JSON line per question, written whole and
fsynced by ``medlit.batch``) and its manifest beside it. Read by the batch runner when it resumes, by the
report and by the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foundation.errors import InputError


def manifest_path(results: str | Path) -> Path:
    """``RESULTS.jsonl`` → ``RESULTS.manifest.json`` beside it."""
    results = Path(results)
    return results.with_name(results.stem + ".manifest.json")


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The result lines of a RESULTS.jsonl; a torn last line (a killed writer) is left out."""
    return _parse_results(Path(path))[0]


def _parse_results(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(records, clean): ``clean`` is False when the file ends in a torn or unterminated line."""
    if not path.exists():
        return [], True
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _result_line(line)
        if record is None:
            raise InputError(
                f"{path}:{number}: not a result line of `medlit batch` (fix or remove the file to start over)"
            )
        records.append(record)
    if tail.strip():
        record = _result_line(tail)  # complete JSON without its newline is kept; a torn line is dropped
        if record is not None:
            records.append(record)
        return records, False
    return records, True


def _result_line(line: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or "status" not in data:
        return None
    return data
