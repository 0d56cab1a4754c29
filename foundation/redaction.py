"""Secrets (the NCBI api_key, LLM keys) never reach a log line, an error message or a stored file.

Every secret medlit is given is registered here; ``redact`` replaces any registered value, and any
``api_key=...`` / ``"api-key": "..."`` / ``Authorization: Bearer ...`` pattern, with ``***``.
``RedactingFilter`` applies it to every log record of the ``medlit`` loggers.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

_LOCK = threading.Lock()
_SECRETS: set[str] = set()
_PATTERNS = [
    re.compile(r"(api[_-]?key[\"']?\s*(?:=|:|%3D)\s*[\"']?)([^\s&\"',;}<]+)", re.IGNORECASE),
    re.compile(r"(authorization[\"']?\s*[=:]\s*[\"']?bearer\s+)([^\s\"',;}]+)", re.IGNORECASE),
]
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` removes it wherever it appears."""
    if value:
        with _LOCK:
            _SECRETS.update({value, quote(value, safe=""), quote_plus(value)})


def redact(text: str) -> str:
    """``text`` with every registered secret and every key-looking parameter masked."""
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and drops the args it was built from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad format arguments: logging reports those itself
            return True
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned += "\n" + redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg = cleaned
        record.args = ()
        return True
