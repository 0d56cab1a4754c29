"""Shared test helpers: where the real shared data (fixtures, corpora) lives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_server import EntityServer

SHARED_DATA = Path(
    os.environ.get("MEDLIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``MEDLIT_SHARED_DATA``, default ``../shared/data`` beside the repository)."""
    return SHARED_DATA


@pytest.fixture
def fake_model_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``MEDLIT_HOME`` with the deterministic FakeEmbedder, and the answer thresholds on its scale
    (its similarities are word overlaps, not the default model's cosines). Returns the home directory."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDLIT_HOME", str(home))
    monkeypatch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
    monkeypatch.setenv("MEDLIT_ANSWER__ABSTAIN_THRESHOLD", "0.45")
    monkeypatch.setenv("MEDLIT_ANSWER__SUPPORT_THRESHOLD", "0.6")
    monkeypatch.setenv("MEDLIT_ANSWER__SUMMARY_THRESHOLD", "0.5")
    monkeypatch.setenv("MEDLIT_ANSWER__QUOTE_WITHIN", "0.2")  # word overlaps spread wider than cosines
    # the packaged verdict head would speak first on every yes/no question: tests of the other verdict
    # sources (a model's "Verdict:" line, the stances) switch it off; tests of it switch it back on
    monkeypatch.setenv("MEDLIT_ANSWER__VERDICT_MODEL", "none")
    return home


@pytest.fixture
def entity_server() -> Iterator[EntityServer]:
    """A server on 127.0.0.1 recording every request: point DTD and entity URLs at ``entity_server.url``."""
    with EntityServer() as server:
        yield server
