"""The installed medlit's version ("unknown" when run from a source tree that is not installed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medlit")
except PackageNotFoundError:
    __version__ = "unknown"
