"""Embedders: the fake one (deterministic, word overlap means closeness) and the packaged all-MiniLM-L6-v2
through ONNX Runtime (int8 and fp32) against sentence-transformers fp32, on real PubMed abstracts.

The ONNX export happens once per session (a tmp_path_factory cache); every other real-model test reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: nothing comes from a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from foundation.errors import InputError
from indexes.embedder import (
    DEFAULT_MODEL_ID,
    FP32_FILE,
    INT8_FILE,
    MANIFEST_FILE,
    Embedder,
    FakeEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_model_path,
    load_embedder,
)
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


# ----- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def abstracts() -> list[str]:
    """Eight real PubMedQA abstracts (title + abstract); most are longer than MiniLM's 256 tokens."""
    texts = []
    with (SHARED_DATA / "pubmedqa" / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['title']}\n{record['abstract']}".strip())
            if len(texts) == 8:
                break
    return texts


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def int8(onnx_cache: Path) -> OnnxEmbedder:
    """The packaged model exported and quantised once for the session (batches of 4: several per call)."""
    return OnnxEmbedder(default_model_path(), cache_dir=onnx_cache, batch_size=4, model_id=DEFAULT_MODEL_ID)


@pytest.fixture(scope="session")
def fp32(int8: OnnxEmbedder, onnx_cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(
        default_model_path(), cache_dir=onnx_cache, quantize=False, batch_size=3, model_id=DEFAULT_MODEL_ID
    )


@pytest.fixture(scope="session")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(default_model_path(), device="cpu", model_id=DEFAULT_MODEL_ID)


def _unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5))


# ----- light: no model ----------------------------------------------------------------------------------


def test_import_stays_light() -> None:
    code = (
        "import sys, indexes.embedder\n"
        "heavy = ('torch', 'transformers', 'onnxruntime', 'sentence_transformers')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fake_is_deterministic_across_processes() -> None:
    texts = ["Aspirin for secondary prevention", "Statins and myopathy", ""]
    here = FakeEmbedder(32).embed_documents(texts)
    code = (
        "import json, sys; from indexes.embedder import FakeEmbedder\n"
        "print(json.dumps(FakeEmbedder(32).embed_documents(json.loads(sys.argv[1])).tolist()))"
    )
    for seed in ("1", "2"):  # Python's hash() would differ between these; blake2b does not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(texts)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert np.array_equal(np.array(json.loads(out.stdout), dtype=np.float32), here)
    assert np.array_equal(FakeEmbedder(32).embed_documents(texts), here)


def test_fake_similarity_follows_shared_words() -> None:
    fake = FakeEmbedder()
    docs = fake.embed_documents(
        [
            "Aspirin reduces the risk of myocardial infarction in adults",
            "Aspirin and bleeding risk in the elderly",
            "Deep learning segmentation of retinal images",
        ]
    )
    scores = docs @ fake.embed_query("does aspirin reduce myocardial infarction risk")
    assert scores[0] > scores[1] > scores[2]
    assert fake.name == "fake-hash-64" and fake.dimension == 64
    assert fake.count_tokens(["two words", ""]) == [2, 0]


def test_fake_shapes_and_normalisation() -> None:
    fake = FakeEmbedder(16)
    assert isinstance(fake, Embedder)
    vectors = fake.embed_documents(["", "!!!", "Case report", "case REPORT"])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 16) and _unit_rows(vectors)
    assert np.array_equal(vectors[2], vectors[3])  # lower-cased words
    assert fake.embed_documents([]).shape == (0, 16)
    with pytest.raises(TypeError):
        fake.embed_documents("one string")
    query = fake.embed_query("case report")
    assert query.shape == (16,) and np.isclose(np.linalg.norm(query), 1.0)


def test_load_embedder_fake_and_bad_backend(tmp_path: Path) -> None:
    fake = load_embedder(backend="fake", cache_dir=tmp_path, dimension=8)
    assert isinstance(fake, FakeEmbedder) and fake.name == "fake-hash-8"
    prefixed = load_embedder(backend="fake", cache_dir=tmp_path, dimension=8, query_prefix="query: ")
    assert prefixed.name != fake.name
    with pytest.raises(InputError, match="unknown embedding backend"):
        load_embedder(backend="tensorflow", cache_dir=tmp_path)
    with pytest.raises(InputError, match="runs on the CPU"):
        load_embedder(backend="onnx", device="cuda:0", cache_dir=tmp_path)


def test_default_model_path() -> None:
    path = default_model_path()
    assert (path / "config.json").is_file() and (path / "modules.json").is_file()


def test_missing_or_broken_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    for make in (
        lambda: OnnxEmbedder(missing, cache_dir=tmp_path),
        lambda: SentenceTransformerEmbedder(missing),
        lambda: load_embedder(str(missing), backend="onnx", cache_dir=tmp_path),
        lambda: load_embedder("./relative/missing", backend="torch", device="cpu", cache_dir=tmp_path),
    ):
        with pytest.raises(InputError, match="not found"):
            make()
    with pytest.raises(InputError, match="neither a local directory"):  # offline: not in the local HF cache
        OnnxEmbedder("medlit-tests/no-such-model", cache_dir=tmp_path)

    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(InputError, match=r"no config\.json"):
        OnnxEmbedder(broken, cache_dir=tmp_path)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InputError):
        OnnxEmbedder(broken, cache_dir=tmp_path)

    weightless = tmp_path / "weightless"  # configs and tokenizer, no weights: fails at export
    weightless.mkdir()
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        shutil.copy(default_model_path() / name, weightless / name)
    with pytest.raises(InputError, match="cannot load the model weights"):
        OnnxEmbedder(weightless, cache_dir=tmp_path / "cache")
    assert not [
        p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".onnx", ".tmp")
    ]  # nothing half-written


# ----- the real model -----------------------------------------------------------------------------------


def test_int8_matches_sentence_transformers(
    int8: OnnxEmbedder, fp32: OnnxEmbedder, reference: SentenceTransformerEmbedder, abstracts: list[str]
) -> None:
    texts = [*abstracts, "Is aspirin effective?", "BRCA1"]
    assert max(int8.count_tokens(abstracts)) > int8.max_tokens  # truncation is exercised
    expected = reference.embed_documents(texts)
    assert (int8.embed_documents(texts) * expected).sum(axis=1).min() >= 0.98
    assert (fp32.embed_documents(texts) * expected).sum(axis=1).min() >= 0.9999
    assert reference.name == "all-MiniLM-L6-v2/torch-fp32" and reference.max_tokens == int8.max_tokens
    assert int8.count_tokens(["hello world"]) == reference.count_tokens(["hello world"]) == [4]
    question = "Do leukocyte count and CRP help diagnose appendicitis in the elderly?"
    assert float(int8.embed_query(question) @ reference.embed_query(question)) >= 0.98


def test_outputs_are_normalised_float32(int8: OnnxEmbedder, abstracts: list[str]) -> None:
    vectors = int8.embed_documents([*abstracts[:3], ""])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384) and _unit_rows(vectors)
    query = int8.embed_query("appendicitis")
    assert query.dtype == np.float32 and query.shape == (384,) and _unit_rows(query)
    assert int8.embed_documents([]).shape == (0, 384)
    assert int8.name == "all-MiniLM-L6-v2/onnx-int8" and int8.dimension == 384 and int8.max_tokens == 256
    assert isinstance(int8, Embedder)


def test_order_preserved_after_length_sorting(
    fp32: OnnxEmbedder, int8: OnnxEmbedder, abstracts: list[str]
) -> None:
    texts = [
        abstracts[0],
        "short",
        abstracts[1][:300],
        "a somewhat longer sentence about statins",
        abstracts[2],
    ]
    one_by_one = np.stack([fp32.embed_documents([text])[0] for text in texts])
    assert np.allclose(fp32.embed_documents(texts), one_by_one, atol=1e-5)
    together = int8.embed_documents(texts)  # int8 activations scale per batch: close, not identical
    similarity = together @ one_by_one.T
    assert list(similarity.argmax(axis=1)) == list(range(len(texts)))
    assert np.diag(similarity).min() >= 0.98


def test_export_cache_is_reused(int8: OnnxEmbedder, onnx_cache: Path) -> None:
    cache = int8.cache_path
    assert cache.parent == onnx_cache and cache.name.startswith("all-MiniLM-L6-v2-")
    assert sorted(p.name for p in cache.iterdir()) == sorted([".lock", FP32_FILE, INT8_FILE, MANIFEST_FILE])
    manifest = json.loads((cache / MANIFEST_FILE).read_text())
    assert manifest["model_id"] == DEFAULT_MODEL_ID and manifest["opset"] >= 14
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = OnnxEmbedder(default_model_path(), cache_dir=onnx_cache, model_id=DEFAULT_MODEL_ID)
    assert not again.exported and again.cache_path == cache and again.onnx_path == cache / INT8_FILE
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    auto = load_embedder(cache_dir=onnx_cache, device="cpu")  # 'auto' on a CPU: ONNX int8, same cache
    assert isinstance(auto, OnnxEmbedder) and not auto.exported and auto.name == int8.name


def test_query_and_document_prefixes(int8: OnnxEmbedder, onnx_cache: Path) -> None:
    e5_style = OnnxEmbedder(
        default_model_path(),
        cache_dir=onnx_cache,
        query_prefix="query: ",
        document_prefix="passage: ",
        model_id=DEFAULT_MODEL_ID,
    )
    assert e5_style.name != int8.name and e5_style.name.startswith(int8.name)
    text = "statins and muscle pain"
    assert np.allclose(e5_style.embed_query(text), int8.embed_documents([f"query: {text}"])[0], atol=1e-6)
    assert np.allclose(
        e5_style.embed_documents([text])[0], int8.embed_documents([f"passage: {text}"])[0], atol=1e-6
    )
    assert not np.allclose(e5_style.embed_query(text), e5_style.embed_documents([text])[0], atol=1e-3)
    assert e5_style.count_tokens([text]) == int8.count_tokens([f"passage: {text}"])
    assert e5_style.count_tokens([text])[0] > int8.count_tokens([text])[0]
