"""The FAISS vector index: ids inside the index, filters inside FAISS, safe save/load against a manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from foundation.errors import InputError, LibraryError
from indexes.vector_index import (
    KINDS,
    IndexManifest,
    IndexSpec,
    VectorIndex,
    bytes_per_vector,
    choose_spec,
    faiss,
    gpu_available,
    recall_at_k,
)

DIM = 32
SMALL_SPECS = {
    "flat": IndexSpec("flat", DIM),
    "hnsw": IndexSpec("hnsw", DIM, params={"M": 16, "ef_construction": 40, "ef_search": 64}),
    "ivf_sq8": IndexSpec("ivf_sq8", DIM, params={"nlist": 8, "nprobe": 4}),
    "ivf_pq": IndexSpec(
        "ivf_pq", DIM, params={"nlist": 8, "nprobe": 4, "pq_m": 8, "pq_nbits": 4, "k_factor": 8}
    ),
}


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(x: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(queries @ x.T), axis=1)[:, :k]
    return ids[order]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """FAISS on one thread: on a shared machine OpenMP's waiting makes these tiny indexes 100x slower."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = unit_vectors(1000)
    ids = np.arange(1000, dtype=np.int64) * 1000 + 17  # ids far from positions
    return ids, x


def built(kind: str, ids: np.ndarray, x: np.ndarray) -> VectorIndex:
    index = VectorIndex.create(SMALL_SPECS[kind], use_gpu=False)
    index.add(ids, x)
    return index


def manifest_for(index: VectorIndex, checksum: str, **changes: object) -> IndexManifest:
    fields: dict[str, object] = {
        "model": "fake-embedder",
        "dimension": index.dimension,
        "count": len(index),
        "checksum": checksum,
        "kind": index.kind,
        "file": "dense.faiss",
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return IndexManifest(**fields)  # type: ignore[arg-type]


# ----- choosing an index ---------------------------------------------------------------------------------


def test_choose_spec_by_size_and_explicit_kind() -> None:
    assert choose_spec(10_000, 384).kind == "flat"
    assert choose_spec(1_000_000, 384).kind == "hnsw"
    assert choose_spec(1_000_000, 384).params["M"] == 32
    big = choose_spec(40_000_000, 384)
    assert big.kind == "ivf_sq8"
    assert big.params["nlist"] == round(4 * 40_000_000**0.5)
    assert choose_spec(10_000, 384, "hnsw").kind == "hnsw"
    assert 384 % choose_spec(10_000_000, 384, "ivf_pq").params["pq_m"] == 0
    with pytest.raises(InputError, match="unknown index kind"):
        choose_spec(10, 384, "annoy")


def test_bytes_per_vector_orders_kinds() -> None:
    sizes = {kind: bytes_per_vector(choose_spec(10_000_000, 384, kind)) for kind in KINDS}
    assert sizes["ivf_sq8"] < sizes["flat"] < sizes["hnsw"]
    assert sizes["ivf_sq8"] == 384 + 8


def test_manifest_round_trip_ignores_library_columns() -> None:
    manifest = IndexManifest(
        "m", 384, 10, "abc", "flat", "dense.faiss", "2025-01-01", extra={"passages": True}
    )
    row = {**manifest.to_dict(), "name": "dense"}
    assert IndexManifest.from_dict(row) == manifest


# ----- ids live in the index ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_ids_round_trip(kind: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = built(kind, ids, x)
    assert len(index) == 1000
    assert sorted(index.ids().tolist()) == ids.tolist()
    assert index.remove(ids[:300]) == 300
    assert index.remove(np.array([ids[0], 5], dtype=np.int64)) == 0  # already gone, never there
    assert len(index) == 700
    assert sorted(index.ids().tolist()) == ids[300:].tolist()
    _, found = index.search(x[:300], 5)
    assert not np.isin(found, ids[:300]).any()
    index.add(ids[:10], x[:10])
    assert len(index) == 710
    _, found = index.search(x[:10], 1)
    assert found[:, 0].tolist() == ids[:10].tolist()


@pytest.mark.parametrize("kind", ["hnsw", "ivf_pq"])
def test_tombstones_then_compaction(kind: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = built(kind, ids, x)
    index.remove(ids[:100])  # 10%: kept as tombstones
    assert index._tombstones == 100
    index.remove(ids[100:400])  # 40%: rebuilt without them
    assert index._tombstones == 0
    assert len(index) == 600
    assert sorted(index.ids().tolist()) == ids[400:].tolist()
    _, found = index.search(x[400:450], 1)
    assert found[:, 0].tolist() == ids[400:450].tolist()


def test_add_rejects_bad_input(data: tuple[np.ndarray, np.ndarray]) -> None:
    _, x = data
    index = VectorIndex.create(SMALL_SPECS["flat"], use_gpu=False)
    with pytest.raises(ValueError, match="non-negative"):
        index.add(np.array([-1]), x[:1])
    with pytest.raises(ValueError, match="repeat"):
        index.add(np.array([1, 1]), x[:2])
    with pytest.raises(ValueError, match="dimension 32"):
        index.add(np.array([1]), np.ones((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add(np.array([1, 2]), x[:1])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.array([1]), np.full((1, DIM), np.nan, dtype=np.float32))


def test_ivf_training(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = VectorIndex.create(SMALL_SPECS["ivf_sq8"], use_gpu=False)
    assert not index.is_trained
    with pytest.raises(InputError, match=r"needs at least 312 vectors to train \(got 100\)"):
        index.add(ids[:100], x[:100])
    index.add(ids, x)  # trains on the first batch
    assert index.is_trained and len(index) == 1000


# ----- search ----------------------------------------------------------------------------------------------


def test_search_edges(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = VectorIndex.create(SMALL_SPECS["flat"], use_gpu=False)
    scores, found = index.search(x[:2], 3)
    assert found.tolist() == [[-1] * 3] * 2 and np.isneginf(scores).all()
    index.add(np.array([], dtype=np.int64), np.empty((0, DIM), dtype=np.float32))
    assert len(index) == 0
    index.add(ids[:2], x[:2] * 5.0)  # normalised on the way in
    scores, found = index.search(x[:1], 4)
    assert found[0].tolist() == [ids[0], ids[1], -1, -1]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert found.shape == (1, 4) and index.search(x[0], 1)[1].shape == (1, 1)
    _, none = index.search(x[:1], 2, allowed_ids=np.array([], dtype=np.int64))
    assert none.tolist() == [[-1, -1]]
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(x[:1], 0)


def test_hnsw_recall_against_exact() -> None:
    x = unit_vectors(5000, 64, seed=1)
    queries = unit_vectors(200, 64, seed=2)
    ids = np.arange(5000, dtype=np.int64) + 10**9
    index = VectorIndex.create(choose_spec(5000, 64, "hnsw"), use_gpu=False)
    index.add(ids, x)
    _, found = index.search(queries, 10)
    assert recall_at_k(found, exact_top(x, ids, queries, 10)) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw", "ivf_sq8", "ivf_pq"])
def test_tune_reaches_target(kind: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = built(kind, ids, x)
    assert index.tune(unit_vectors(50, seed=3), target_recall=0.9) >= 0.9
    key = {"hnsw": "ef_search"}.get(kind, "nprobe")
    assert key in index.spec.params


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("share", [0.5, 0.02])  # broad (widened search) and selective (exhaustive scan)
def test_allowed_ids_filter_inside_faiss(
    kind: str, share: float, data: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, x = data
    index = built(kind, ids, x)
    rng = np.random.default_rng(4)
    positions = np.sort(rng.choice(1000, size=int(1000 * share), replace=False))
    allowed = ids[positions]
    queries = unit_vectors(20, seed=5)
    _, found = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(found, allowed).all()  # full rows: never short of what the filter allows
    expected = exact_top(x[positions], allowed, queries, 10)
    assert recall_at_k(found, expected) >= (1.0 if kind == "flat" else 0.8)


def test_filter_excludes_removed_and_unknown_ids(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = built("hnsw", ids, x)
    index.remove(ids[:5])
    _, found = index.search(x[:1], 10, allowed_ids=np.concatenate([ids[:8], [123456789]]))
    assert set(found[0].tolist()) == {*ids[5:8].tolist(), -1}


# ----- persistence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind: str, tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    index = built(kind, ids, x)
    if kind in ("hnsw", "ivf_pq"):
        index.remove(ids[:10])  # tombstones are saved as such
    path = tmp_path / "dense-abc.faiss"
    checksum = index.save(path)
    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    loaded = VectorIndex.load(
        path, expected=manifest_for(index, checksum), model="fake-embedder", use_gpu=False
    )
    assert loaded.kind == kind and len(loaded) == len(index)
    assert loaded.spec.params == index.spec.params
    assert np.array_equal(np.sort(loaded.ids()), np.sort(index.ids()))
    assert np.array_equal(loaded.search(x[:20], 5)[1], index.search(x[:20], 5)[1])


@pytest.fixture
def saved(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> tuple[Path, IndexManifest]:
    ids, x = data
    index = built("flat", ids[:50], x[:50])
    path = tmp_path / "dense.faiss"
    return path, manifest_for(index, index.save(path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dimension": 64}, "dimension 32 \\(manifest: 64\\)"),
        ({"count": 51}, "50 vectors \\(manifest: 51\\)"),
        ({"kind": "hnsw"}, "kind 'flat' \\(manifest: 'hnsw'\\)"),
        ({"checksum": "0" * 64}, "does not match the library's manifest"),
    ],
)
def test_load_refuses_a_mismatch(saved: tuple[Path, IndexManifest], changes: dict, message: str) -> None:
    path, manifest = saved
    wrong = IndexManifest.from_dict({**manifest.to_dict(), **changes})
    with pytest.raises(LibraryError, match=message) as caught:
        VectorIndex.load(path, expected=wrong)
    assert "run `medlit index build`" in str(caught.value)


def test_load_refuses_another_model(saved: tuple[Path, IndexManifest]) -> None:
    path, manifest = saved
    with pytest.raises(
        LibraryError, match=r"built with model 'fake-embedder', not 'other-model'.*index build"
    ):
        VectorIndex.load(path, expected=manifest, model="other-model")


def test_load_refuses_missing_truncated_and_random_files(
    saved: tuple[Path, IndexManifest], tmp_path: Path
) -> None:
    path, manifest = saved
    with pytest.raises(LibraryError, match="missing: run `medlit index build`"):
        VectorIndex.load(tmp_path / "gone.faiss", expected=manifest)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(LibraryError, match="changed, truncated or corrupted"):
        VectorIndex.load(path, expected=manifest)
    # even when the manifest names the broken file's checksum, FAISS's refusal becomes a LibraryError
    for broken in (whole[: len(whole) // 2], np.random.default_rng(6).bytes(4096), b""):
        path.write_bytes(broken)
        same = IndexManifest.from_dict({**manifest.to_dict(), "checksum": hashlib.sha256(broken).hexdigest()})
        with pytest.raises(LibraryError, match=r"not a readable FAISS index.*index build"):
            VectorIndex.load(path, expected=same)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a GPU")
def test_gpu_search_matches_cpu(data: tuple[np.ndarray, np.ndarray]) -> None:
    ids, x = data
    for kind in ("flat", "ivf_sq8"):
        cpu = VectorIndex.create(SMALL_SPECS[kind], use_gpu=False)
        gpu = VectorIndex.create(SMALL_SPECS[kind], use_gpu=True)
        cpu.add(ids, x)
        gpu.add(ids, x)
        queries = unit_vectors(20, seed=7)
        assert recall_at_k(gpu.search(queries, 10)[1], cpu.search(queries, 10)[1]) >= 0.95
