"""Shared test helpers: where the real shared data (fixtures, corpora) lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("MEDLIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``MEDLIT_SHARED_DATA``, default ``../shared/data`` beside the repository)."""
    return SHARED_DATA
