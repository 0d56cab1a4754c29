"""A damaged index, or one made for another model or dimension, as the user meets it: through ``medlit``.

``tests/test_vector_index.py`` checks ``VectorIndex.load`` refuses each mismatch; here every command that
touches the index says so in one line and exits 1, BM25 search keeps working, ``index update`` never adds
vectors to an index it cannot trust, and ``index build`` repairs it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from medlit.cli import cli
from tests.conftest import SHARED_DATA

CURRENT = SHARED_DATA / "fixtures" / "pubmed_xml" / "test_current_medline.xml.gz"
PUBMED4 = SHARED_DATA / "fixtures" / "entrez" / "pubmed4.xml"


@pytest.fixture(scope="module")
def indexed_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("indexed") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
        assert medlit(home, "ingest", "files", str(CURRENT), str(PUBMED4), "-q").exit_code == 0
        assert medlit(home, "index", "build", "-q").exit_code == 0
    return home


@pytest.fixture
def home(indexed_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of a small library with a complete index (the fake embedder's)."""
    monkeypatch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
    home = tmp_path / "home"
    shutil.copytree(indexed_library, home)
    return home


def medlit(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def one_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def manifest(home: Path) -> dict:
    return json.loads(medlit(home, "index", "info", "--json").stdout)


def set_manifest(home: Path, **values: object) -> None:
    with closing(sqlite3.connect(home / "library.db")) as conn, conn:
        for column, value in values.items():
            conn.execute(f"UPDATE index_manifests SET {column} = ? WHERE name = 'dense'", (value,))


def truncate(path: Path, home: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes_with_a_matching_checksum(path: Path, home: Path) -> None:
    junk = np.random.default_rng(3).bytes(path.stat().st_size)
    path.write_bytes(junk)
    set_manifest(home, checksum=hashlib.sha256(junk).hexdigest())


def flipped_byte(path: Path, home: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def deleted(path: Path, home: Path) -> None:
    path.unlink()


def other_model(path: Path, home: Path) -> None:
    set_manifest(home, model="sentence-transformers/all-MiniLM-L6-v2", dimension=384)


def other_dimension(path: Path, home: Path) -> None:
    set_manifest(home, dimension=384)


def other_count(path: Path, home: Path) -> None:
    set_manifest(home, count=3)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncate, "changed, truncated or corrupted"),
        (flipped_byte, "changed, truncated or corrupted"),
        (random_bytes_with_a_matching_checksum, "not a readable FAISS index"),
        (deleted, "is missing"),
        (other_model, "built with model 'sentence-transformers/all-MiniLM-L6-v2'"),
        (other_dimension, "dimension 64 (manifest: 384)"),
        (other_count, "vectors (manifest: 3)"),
    ],
)
def test_a_damaged_or_foreign_index_is_refused_clearly_and_rebuilt(
    home: Path, damage: Callable[[Path, Path], None], message: str
) -> None:
    info = manifest(home)
    damage(Path(info["path"]), home)
    for args in (["search", "cancer"], ["search", "cancer", "--mode", "dense"], ["index", "update"]):
        error = one_error(medlit(home, *args))
        assert message in error, error
        assert "medlit index build" in error
    verify = medlit(home, "index", "verify")
    assert verify.exit_code == 1 and "Traceback" not in verify.output
    assert "medlit index build" in verify.stdout  # the problem is named, with its repair
    bm25 = medlit(home, "search", "cancer", "--mode", "bm25", "--json")
    assert bm25.exit_code == 0 and json.loads(bm25.stdout)  # words still find articles
    assert medlit(home, "index", "build", "-q").exit_code == 0  # the repair the message names
    assert medlit(home, "index", "verify").exit_code == 0
    assert json.loads(medlit(home, "search", "cancer", "--mode", "dense", "--json").stdout)


def test_an_index_folder_of_stray_files_is_cleaned_by_the_next_build(home: Path) -> None:
    info = manifest(home)
    folder = Path(info["path"]).parent
    (folder / "dense-0123456789ab.faiss").write_bytes(b"left by a killed build")
    (folder / f"{info['file']}.deadbeef.tmp").write_bytes(b"half written")
    assert medlit(home, "search", "cancer", "--mode", "dense").exit_code == 0  # strays are ignored
    assert medlit(home, "index", "build", "-q").exit_code == 0
    lexical = json.loads(medlit(home, "index", "info", "--json").stdout)["lexical"]["file"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([manifest(home)["file"], lexical])
