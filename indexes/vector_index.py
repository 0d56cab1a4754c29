"""A FAISS vector index whose ids live inside it, saved without pickle and loaded only against a manifest.

Kinds (vectors are L2-normalised float32, scored by inner product = cosine):

- ``flat``: exact, ``IndexIDMap2(IndexFlatIP)``; the default below 200k vectors.
- ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)``, M=32, efConstruction=80, efSearch tuned for recall@10 ≥ 0.95;
  up to a few million vectors.
- ``ivf_sq8``: an inverted file (nlist ≈ 4·sqrt(n)) of 8-bit scalar-quantised codes holding the ids itself
  (``add_with_ids``: an ``IndexIDMap`` over an IVF breaks on removal); d + 8 bytes a vector, scores within
  ~1e-3 of exact, so no re-ranking; the default for tens of millions.
- ``ivf_pq``: ``IndexIDMap2(IndexRefineFlat(IndexIVFPQ))``: PQ codes (d/8 bytes) find k·k_factor candidates,
  re-ranked exactly from the float vectors the refine stage keeps, so it needs as much memory as ``flat``:
  fast scans with exact scores, not a memory saving (choose ``ivf_sq8`` for that).

IVF kinds need training (``train`` or the first ``add``). FAISS's HNSW and IndexRefine cannot remove
vectors, so in ``hnsw`` and ``ivf_pq`` a removed vector's id becomes -1 in the id map (a tombstone, skipped by
every search) and the index is rebuilt from its live vectors once a quarter of it is tombstones.

Filters run inside FAISS: ``search(..., allowed_ids=...)`` passes an ``IDSelectorBatch`` in the kind's
search parameters (translated to positions where IndexIDMap2 cannot do it, under IndexRefine); a selective
filter widens the search (efSearch / nprobe divided by the allowed fraction) or scans every stored code of
the allowed ids, and a row left short of k is searched again exhaustively, so filters do not lose hits.

Persistence is ``faiss.write_index`` (temp file, fsync, ``os.replace``, directory fsync) and returns the
file's sha256; ``VectorIndex.load`` refuses a file whose checksum, kind, dimension or count differ from the
``IndexManifest`` the library holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from foundation.errors import InputError, LibraryError

# faiss 1.15's bundled stubs lack SearchParametersHNSW, keyword constructors and downcast types: untyped here.
faiss: Any = _faiss

KINDS = ("flat", "hnsw", "ivf_sq8", "ivf_pq")
FLAT_MAX = 200_000  # auto: exact search below this many vectors
HNSW_MAX = 5_000_000  # auto: HNSW up to this many, IVF-SQ8 beyond
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128  # recall@10 ≥ 0.95 against exact on 1M 384-d vectors (bench/vector.py)
IVF_NPROBE_FRACTION = 1 / 32  # of nlist; tune() adjusts on real queries
PQ_K_FACTOR = 32  # ivf_pq re-ranks k·32 PQ candidates exactly
MIN_POINTS_PER_CENTROID = 39  # FAISS's k-means warns below this many training points per centroid
COMPACT_FRACTION = 0.25  # rebuilt from live vectors when this share of the index is tombstones
EXHAUSTIVE_FRACTION = 0.05  # a filter allowing fewer than this share of vectors scans all their codes
MAX_EF_SEARCH = 2048
_ID_MAPPED = ("flat", "hnsw", "ivf_pq")  # ids in an IndexIDMap2; ivf_sq8 keeps them in its inverted lists
_TOMBSTONED = ("hnsw", "ivf_pq")  # FAISS cannot remove from these: removed ids become -1
_ANY_ID = (0, 2**63 - 1)  # IDSelectorRange over every valid id: excludes tombstones (-1)

# faiss-cpu 1.15.1 defaults to 128000, so batched queries against a flat index never use BLAS: at 1 a batch
# of 256 queries on 50k vectors runs 7.8x faster (bench/vector.py --blas); single queries are unchanged.
faiss.cvar.distance_compute_blas_threshold = 1


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What kind of index to build: kind, dimension, metric and the kind's parameters."""

    kind: str
    dimension: int
    metric: str = "ip"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown index kind {self.kind!r}: expected auto or one of {', '.join(KINDS)}")
        if self.dimension <= 0:
            raise InputError(f"index dimension must be positive (got {self.dimension})")
        if self.metric != "ip":
            raise InputError(f"only the inner-product metric is supported (got {self.metric!r})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        return cls(
            kind=str(data["kind"]),
            dimension=int(data["dimension"]),
            metric=str(data.get("metric", "ip")),
            params=dict(data.get("params") or {}),
        )


def _nlist(n_vectors: int) -> int:
    return max(1, round(4 * math.sqrt(max(n_vectors, 1))))


def _pq_m(dimension: int) -> int:
    """Sub-quantisers for PQ: about one byte per 8 dimensions, dividing the dimension."""
    for m in range(max(1, dimension // 8), 0, -1):
        if dimension % m == 0:
            return m
    return 1


def choose_spec(n_vectors: int, dimension: int, kind: str = "auto") -> IndexSpec:
    """The index for ``n_vectors`` of ``dimension``: flat < 200k ≤ hnsw < 5M ≤ ivf_sq8; ``kind`` overrides."""
    if kind == "auto":
        kind = "flat" if n_vectors < FLAT_MAX else "hnsw" if n_vectors < HNSW_MAX else "ivf_sq8"
    params: dict[str, Any] = {}
    if kind == "hnsw":
        params = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    elif kind in ("ivf_sq8", "ivf_pq"):
        nlist = _nlist(n_vectors)
        params = {"nlist": nlist, "nprobe": max(1, min(nlist, round(nlist * IVF_NPROBE_FRACTION)))}
        if kind == "ivf_pq":
            params.update({"pq_m": _pq_m(dimension), "pq_nbits": 8, "k_factor": PQ_K_FACTOR})
    return IndexSpec(kind=kind, dimension=dimension, params=params)


def bytes_per_vector(spec: IndexSpec) -> float:
    """Approximate memory a vector takes in an index of ``spec`` (codes, graph links, id, id map)."""
    d = spec.dimension
    id_map = 8 + 40  # IndexIDMap2: the id and its reverse-map hash entry
    if spec.kind == "flat":
        return 4 * d + id_map
    if spec.kind == "hnsw":
        m = int(spec.params.get("M", HNSW_M))
        links = 4 * 2 * m + 4 * m / (m - 1)  # level 0 holds 2M links; upper levels M each, for 1/M of nodes
        return 4 * d + links + 4 + id_map  # + the node's level offset
    if spec.kind == "ivf_sq8":
        return d + 8
    code = math.ceil(int(spec.params.get("pq_m", _pq_m(d))) * int(spec.params.get("pq_nbits", 8)) / 8)
    return code + 8 + 4 * d + id_map  # PQ code and its position in the list, float copy, id map


@dataclass(slots=True)
class IndexManifest:
    """What the library records about a saved index; a file is served only if it matches."""

    model: str
    dimension: int
    count: int
    checksum: str
    kind: str
    file: str
    created_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexManifest:
        """From ``to_dict`` output or a library row (unknown keys such as ``name`` are ignored)."""
        return cls(
            model=str(data["model"]),
            dimension=int(data["dimension"]),
            count=int(data["count"]),
            checksum=str(data["checksum"]),
            kind=str(data["kind"]),
            file=str(data["file"]),
            created_at=str(data["created_at"]),
            extra=dict(data.get("extra") or {}),
        )


# ----- GPU (faiss-gpu only) --------------------------------------------------------------------------

_gpu_resources: Any = None


def gpu_available() -> bool:
    """True with a faiss-gpu build and at least one visible GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu() -> Any:
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    return _gpu_resources


# ----- the index -------------------------------------------------------------------------------------


def _id_map(index: Any) -> np.ndarray:
    """A writable view (no copy) of an IndexIDMap2's ids by position; invalid after the next add."""
    size = index.id_map.size()
    if size == 0:
        return np.empty(0, dtype=np.int64)
    return faiss.rev_swig_ptr(index.id_map.data(), size)


def _ids_at(index: Any, positions: np.ndarray) -> np.ndarray:
    """The ids at these positions of an IndexIDMap2 (-1 stays -1)."""
    id_map = _id_map(index)
    return np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)


class VectorIndex:
    """A FAISS index of (id, vector) pairs. Make one with ``create``, open a saved one with ``load``."""

    def __init__(self, index: Any, spec: IndexSpec, *, use_gpu: bool | None = None) -> None:
        self._index = index
        self.spec = spec
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._gpu_index: Any = None
        self._tombstones = 0
        if spec.kind in _TOMBSTONED:
            self._tombstones = int(np.count_nonzero(_id_map(index) < 0))

    @classmethod
    def create(cls, spec: IndexSpec, *, use_gpu: bool | None = None) -> VectorIndex:
        """An empty index of ``spec`` (IVF kinds still need training). ``use_gpu`` None: when there is one."""
        return cls(_build(spec), spec, use_gpu=use_gpu)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def min_train_vectors(self) -> int:
        """How many vectors ``train`` needs (0 for kinds that need no training)."""
        if self.kind not in ("ivf_sq8", "ivf_pq"):
            return 0
        centroids = int(self.spec.params["nlist"])
        if self.kind == "ivf_pq":
            centroids = max(centroids, 2 ** int(self.spec.params.get("pq_nbits", 8)))
        return centroids * MIN_POINTS_PER_CENTROID

    def __len__(self) -> int:
        return int(self._index.ntotal) - self._tombstones

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, dimension={self.dimension}, vectors={len(self)})"

    # the FAISS parts of each kind

    def _hnsw(self) -> Any:
        return faiss.downcast_index(self._index.index)

    def _refine(self) -> Any:
        return faiss.downcast_index(self._index.index)

    def _ivf(self) -> Any:
        if self.kind == "ivf_pq":
            return faiss.downcast_index(self._refine().base_index)
        return self._index

    def _float_vectors(self) -> Any:
        """The IndexFlat holding every float vector by position (hnsw and ivf_pq)."""
        if self.kind == "hnsw":
            return faiss.downcast_index(self._hnsw().storage)
        return faiss.downcast_index(self._refine().refine_index)

    # ----- writing -----------------------------------------------------------------------------------

    def train(self, sample: np.ndarray) -> None:
        """Train an IVF kind's coarse quantiser and codes on ``sample`` (representative vectors)."""
        if self.kind not in ("ivf_sq8", "ivf_pq"):
            return
        x = self._vectors(sample)
        if len(x) < self.min_train_vectors:
            raise InputError(
                f"a {self.kind} index with nlist={self.spec.params['nlist']} needs at least "
                f"{self.min_train_vectors:,} vectors to train (got {len(x):,}): train on a larger sample "
                f"or choose kind flat or hnsw"
            )
        self._gpu_index = None
        if self.use_gpu and self.kind == "ivf_sq8":
            with contextlib.suppress(RuntimeError):  # a configuration the GPU cannot hold: train on the CPU
                gpu_index = faiss.index_cpu_to_gpu(_gpu(), 0, self._index)
                gpu_index.train(x)
                self._index = faiss.index_gpu_to_cpu(gpu_index)
                return
        self._index.train(x)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ``ids`` (non-negative int64, unique within the call; normalised on the way in).

        An untrained IVF index trains on this first batch (it must hold ``min_train_vectors``). Ids already
        in the index are not looked for (that costs a pass over every id); ``ids()`` shows duplicates.
        """
        keys = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        x = self._vectors(vectors)
        if len(keys) != len(x):
            raise ValueError(f"{len(keys)} ids for {len(x)} vectors")
        if len(keys) == 0:
            return
        if keys.min() < 0:
            raise ValueError("ids must be non-negative (-1 means 'no result' in FAISS)")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("ids repeat within one add()")
        if not self.is_trained:
            self.train(x)
        self._index.add_with_ids(x, keys)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids (absent ones are ignored); returns how many vectors went."""
        keys = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        keys = keys[keys >= 0]
        if len(keys) == 0 or len(self) == 0:
            return 0
        self._gpu_index = None
        if self.kind not in _TOMBSTONED:
            return int(self._index.remove_ids(faiss.IDSelectorBatch(keys)))
        id_map = _id_map(self._index)
        hit = np.isin(id_map, keys)
        removed = int(np.count_nonzero(hit))
        if removed:
            id_map[hit] = -1
            self._index.construct_rev_map()
            self._tombstones += removed
            if self._tombstones > COMPACT_FRACTION * self._index.ntotal:
                self._compact()
        return removed

    def _compact(self) -> None:
        """Rebuild from the live vectors, dropping tombstones (IVF training and search settings kept)."""
        id_map = _id_map(self._index).copy()
        live = np.flatnonzero(id_map >= 0)
        vectors = self._float_vectors().reconstruct_n(0, int(self._index.ntotal))[live]
        if self.kind == "hnsw":
            hnsw = self._hnsw().hnsw
            params = {**self.spec.params, "ef_construction": hnsw.efConstruction, "ef_search": hnsw.efSearch}
            self.spec = IndexSpec("hnsw", self.dimension, params=params)
            fresh = _build(self.spec)
        else:
            ivf = faiss.clone_index(self._ivf())
            ivf.reset()
            refine = faiss.IndexRefineFlat(ivf)
            refine.k_factor = self._refine().k_factor
            fresh = faiss.IndexIDMap2(refine)
        if len(live):
            fresh.add_with_ids(vectors, id_map[live])
        self._index = fresh
        self._tombstones = 0

    # ----- reading -----------------------------------------------------------------------------------

    def ids(self) -> np.ndarray:
        """Every id in the index (int64, in index order)."""
        if self.kind in _ID_MAPPED:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
            return ids[ids >= 0] if self._tombstones else ids
        invlists = self._index.invlists
        parts = []
        for list_no in range(self._index.nlist):
            size = invlists.list_size(list_no)
            if size:
                pointer = invlists.get_ids(list_no)
                parts.append(np.array(faiss.rev_swig_ptr(pointer, size), dtype=np.int64))
                invlists.release_ids(list_no, pointer)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best (scores, ids) per query row, best first; missing slots have id -1, score -inf.

        ``allowed_ids`` restricts results to those ids, inside FAISS.
        """
        if k <= 0:
            raise ValueError(f"k must be positive (got {k})")
        q = self._vectors(queries)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        labels = np.full((len(q), k), -1, dtype=np.int64)
        allowed = None
        if allowed_ids is not None:  # no np.unique: sorting 100k ids costs more than the search
            allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64).reshape(-1)
            if len(allowed) and allowed.min() < 0:
                allowed = allowed[allowed >= 0]
        if len(q) == 0 or len(self) == 0 or (allowed is not None and len(allowed) == 0):
            return scores, labels
        fraction = 1.0 if allowed is None else min(1.0, len(allowed) / len(self))
        selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        if selector is None and self._tombstones:
            selector = faiss.IDSelectorRange(*_ANY_ID)
        exhaustive = allowed is not None and fraction < EXHAUSTIVE_FRACTION
        found_scores, found = self._search(q, k, selector, fraction, exhaustive=exhaustive)
        if not exhaustive and self.kind != "flat":
            # a filter (or an unlucky graph walk) left rows short of what exists: search those exhaustively
            expected = min(k, len(self) if allowed is None else len(allowed))
            short = np.flatnonzero((found >= 0).sum(axis=1) < expected)
            if len(short):
                found_scores[short], found[short] = self._search(q[short], k, selector, 1.0, exhaustive=True)
        valid = found >= 0
        scores[valid] = found_scores[valid]
        labels[valid] = found[valid]
        return scores, labels

    def _search(
        self, q: np.ndarray, k: int, selector: Any, fraction: float, *, exhaustive: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search; ``exhaustive`` scores every stored vector (or code) the selector allows."""
        if self.kind == "flat":
            if selector is None and self.use_gpu:
                return self._gpu_search(q, k)
            return self._index.search(q, k, params=faiss.SearchParameters(sel=selector) if selector else None)
        if self.kind == "hnsw":
            if exhaustive:  # exact over the float vectors the graph stores, by position
                translated = faiss.IDSelectorTranslated(self._index.id_map, selector) if selector else None
                params = faiss.SearchParameters(sel=translated) if translated else None
                distances, positions = self._float_vectors().search(q, k, params=params)
                return distances, _ids_at(self._index, positions)
            ef = max(self._hnsw().hnsw.efSearch, k)
            ef = min(math.ceil(ef / fraction), max(MAX_EF_SEARCH, ef))
            return self._index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=ef, sel=selector))
        ivf = self._ivf()
        nprobe = ivf.nlist if exhaustive else min(ivf.nlist, math.ceil(ivf.nprobe / fraction))
        if self.kind == "ivf_sq8":
            if selector is None and self.use_gpu:
                return self._gpu_search(q, k, nprobe=nprobe)
            return self._index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=selector))
        # ivf_pq: IndexIDMap2 cannot reach the IVF under IndexRefine, so the selector goes in by position
        translated = faiss.IDSelectorTranslated(self._index.id_map, selector) if selector else None
        base = faiss.SearchParametersIVF(nprobe=nprobe, sel=translated)
        params = faiss.IndexRefineSearchParameters(k_factor=self._refine().k_factor, base_index_params=base)
        return self._index.search(q, k, params=params)

    def _gpu_search(
        self, q: np.ndarray, k: int, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered search on a GPU copy (made on first use, dropped on any change)."""
        if self._gpu_index is None:
            source = self._index.index if self.kind == "flat" else self._index
            self._gpu_index = faiss.index_cpu_to_gpu(_gpu(), 0, faiss.downcast_index(source))
        if nprobe is not None:
            self._gpu_index.nprobe = nprobe
        distances, labels = self._gpu_index.search(q, k)
        if self.kind == "flat":  # the GPU copy holds the vectors by position; the ids stay in the id map
            labels = _ids_at(self._index, labels)
        return distances, labels

    def tune(self, queries: np.ndarray, *, k: int = 10, target_recall: float = 0.95) -> float:
        """Set the smallest efSearch (hnsw), nprobe (ivf) and k_factor (ivf_pq) reaching ``target_recall``.

        The reference is an exhaustive search of the same index (exact for hnsw and ivf_pq, every list for
        ivf_sq8), so this measures what the approximate search loses. Returns the recall reached (flat: 1).
        """
        if self.kind == "flat" or len(self) == 0:
            return 1.0
        q = self._vectors(queries)
        selector = faiss.IDSelectorRange(*_ANY_ID) if self._tombstones else None
        if self.kind == "ivf_pq":
            self._refine().k_factor = 4 * PQ_K_FACTOR  # tune nprobe with a near-exact re-ranking first
        _, truth = self._search(q, k, selector, 1.0, exhaustive=True)

        def recall() -> float:
            _, found = self._search(q, k, selector, 1.0, exhaustive=False)
            return recall_at_k(found, truth, k)

        reached = 0.0
        if self.kind == "hnsw":
            hnsw = self._hnsw().hnsw
            for ef in [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, MAX_EF_SEARCH]:
                hnsw.efSearch = ef
                if (reached := recall()) >= target_recall:
                    break
            self.spec = IndexSpec("hnsw", self.dimension, params={**self.spec.params, "ef_search": ef})
            return reached
        ivf = self._ivf()
        for nprobe in sorted({min(ivf.nlist, 2**i) for i in range(int(ivf.nlist).bit_length() + 1)}):
            ivf.nprobe = nprobe
            if (reached := recall()) >= target_recall:
                break
        params = {**self.spec.params, "nprobe": nprobe}
        if self.kind == "ivf_pq":
            refine = self._refine()
            for factor in (2, 4, 8, 16, 32, 64, 128):
                refine.k_factor = factor
                if (reached := recall()) >= target_recall:
                    break
            params["k_factor"] = factor
        self.spec = IndexSpec(self.kind, self.dimension, params=params)
        self._gpu_index = None
        return reached

    def _vectors(self, vectors: np.ndarray) -> np.ndarray:
        """A normalised float32 (n, d) copy; refuses another dimension, NaN and infinity."""
        x = np.array(vectors, dtype=np.float32, order="C", copy=True, ndmin=2)
        if x.size == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of dimension {self.dimension}, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("vectors hold NaN or infinite values")
        faiss.normalize_L2(x)
        return x

    # ----- persistence -------------------------------------------------------------------------------

    def save(self, path: Path) -> str:
        """Write the index atomically (temp file, fsync, rename, directory fsync); returns its sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            faiss.write_index(self._index, str(temp))
            with temp.open("rb+") as handle:
                os.fsync(handle.fileno())
            checksum = file_sha256(temp)
            os.replace(temp, path)
        except (RuntimeError, OSError) as exc:  # FAISS reports a failed write as a RuntimeError
            temp.unlink(missing_ok=True)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _last_reason(exc)
            raise LibraryError(
                f"cannot write the index file {path} ({reason}): the index in service is unchanged"
            ) from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return checksum

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        expected: IndexManifest,
        model: str | None = None,
        use_gpu: bool | None = None,
    ) -> VectorIndex:
        """Open a saved index, refusing (LibraryError) anything that differs from ``expected``.

        Checked: the file exists and its sha256 is the manifest's (so a truncated or altered file is never
        parsed), FAISS reads it, and its kind, dimension and vector count match; ``model`` (the embedder
        that will query it), when given, must be the manifest's model.
        """
        path = Path(path)
        rebuild = "run `medlit index build`"
        if model is not None and model != expected.model:
            raise LibraryError(
                f"the index {path.name} was built with model {expected.model!r}, not {model!r}: {rebuild}"
            )
        try:
            checksum = file_sha256(path)
        except FileNotFoundError:
            raise LibraryError(f"the index file {path} is missing: {rebuild}") from None
        except OSError as exc:
            raise LibraryError(f"the index file {path} cannot be read ({exc.strerror}): {rebuild}") from None
        if checksum != expected.checksum:
            raise LibraryError(
                f"the index file {path} does not match the library's manifest (sha256 {checksum[:12]}…, "
                f"expected {expected.checksum[:12]}…): it was changed, truncated or corrupted: {rebuild}"
            )
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LibraryError(
                f"the index file {path} is not a readable FAISS index ({reason}): {rebuild}"
            ) from None
        spec = _spec_of(index)
        if spec is None:
            raise LibraryError(f"the index file {path} holds a FAISS index medlit does not make: {rebuild}")
        loaded = cls(index, spec, use_gpu=use_gpu)
        differences = []
        if spec.kind != expected.kind:
            differences.append(f"kind {spec.kind!r} (manifest: {expected.kind!r})")
        if spec.dimension != expected.dimension:
            differences.append(f"dimension {spec.dimension} (manifest: {expected.dimension})")
        if len(loaded) != expected.count:
            differences.append(f"{len(loaded):,} vectors (manifest: {expected.count:,})")
        if differences:
            raise LibraryError(
                f"the index file {path} does not match its manifest: {'; '.join(differences)}: {rebuild}"
            )
        return loaded


def _build(spec: IndexSpec) -> Any:
    d = spec.dimension
    metric = faiss.METRIC_INNER_PRODUCT
    if spec.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    if spec.kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, int(spec.params.get("M", HNSW_M)), metric)
        hnsw.hnsw.efConstruction = int(spec.params.get("ef_construction", HNSW_EF_CONSTRUCTION))
        hnsw.hnsw.efSearch = int(spec.params.get("ef_search", HNSW_EF_SEARCH))
        return faiss.IndexIDMap2(hnsw)
    nlist = int(spec.params["nlist"])
    if spec.kind == "ivf_sq8":
        ivf = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, metric
        )
        ivf.nprobe = int(spec.params.get("nprobe", 1))
        return ivf
    m = int(spec.params.get("pq_m", _pq_m(d)))
    if m <= 0 or d % m:
        raise InputError(f"pq_m={m} must divide the dimension {d}")
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, int(spec.params.get("pq_nbits", 8)), metric)
    ivf.nprobe = int(spec.params.get("nprobe", 1))
    refine = faiss.IndexRefineFlat(ivf)
    refine.k_factor = float(spec.params.get("k_factor", PQ_K_FACTOR))
    return faiss.IndexIDMap2(refine)


def _spec_of(index: Any) -> IndexSpec | None:
    """The spec of an index read from a file, or None for an index this module does not make."""
    index = faiss.downcast_index(index)
    d = int(index.d)
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        if index.sq.qtype != faiss.ScalarQuantizer.QT_8bit:
            return None
        return IndexSpec("ivf_sq8", d, params={"nlist": int(index.nlist), "nprobe": int(index.nprobe)})
    if not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSWFlat):
        hnsw = inner.hnsw
        params = {"M": int(hnsw.nb_neighbors(1)), "ef_construction": int(hnsw.efConstruction)}
        return IndexSpec("hnsw", d, params={**params, "ef_search": int(hnsw.efSearch)})
    if isinstance(inner, faiss.IndexRefineFlat):
        ivf = faiss.downcast_index(inner.base_index)
        if not isinstance(ivf, faiss.IndexIVFPQ):
            return None
        params = {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe), "pq_m": int(ivf.pq.M)}
        return IndexSpec(
            "ivf_pq", d, params={**params, "pq_nbits": int(ivf.pq.nbits), "k_factor": inner.k_factor}
        )
    if isinstance(inner, faiss.IndexFlat) and inner.metric_type == faiss.METRIC_INNER_PRODUCT:
        return IndexSpec("flat", d)
    return None


def _last_reason(exc: BaseException) -> str:
    """The operating system's reason at the end of a FAISS message ("... (No space left on device)")."""
    text = str(exc).strip()
    match = re.search(r"\(([^()]+)\)\s*$", text)
    return match.group(1) if match else (text.splitlines() or [type(exc).__name__])[-1][-200:]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean over rows of |found[:k] ∩ truth[:k]| / |truth[:k]| (ids -1 ignored)."""
    total = 0.0
    rows = 0
    for got, want in zip(found[:, :k], truth[:, :k], strict=True):
        relevant = set(want[want >= 0].tolist())
        if relevant:
            total += len(relevant & set(got.tolist())) / len(relevant)
            rows += 1
    return total / rows if rows else 1.0
