"""Trained pair classifiers: (text, text) → class probabilities, on ONNX Runtime int8 on the CPU.

One class serves every model ``medlit train`` makes — the reranker (question, article), the verdict
classifier (question, evidence) and the support classifier (answer sentence, evidence sentence) — and any
local Hugging Face sequence-classification directory (a cross-encoder, a BioBERT fine-tune).

A directory saved by ``medlit train`` holds::

    manifest.json          task, labels, base model, training data (files, counts, hashes), recipe, metrics
    model/                 the Hugging Face model and tokenizer (safetensors, JSON, vocab: no pickle)
    onnx/model.int8.onnx   the model exported once to ONNX and quantised to int8 (dynamic, per channel)

A plain Hugging Face directory is exported on its first load into ``cache_dir`` (keyed by a hash of its
files, as the embedder's export is) and reused after that.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foundation.durable import atomic_path
from foundation.errors import InputError
from indexes.embedder import (
    _cpu_count,
    _exclusive,
    _export_fp32,
    _load_tokenizer,
    _model_digest,
    _package_versions,
    _quantize_int8,
    _read_json,
    _require,
)

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
ONNX_FILE = "onnx/model.int8.onnx"
MANIFEST_FORMAT = 1
TASKS = ("reranker", "verdict", "support")
DEFAULT_LABELS = {
    "reranker": ["irrelevant", "relevant"],
    "verdict": ["yes", "no", "maybe"],
    "support": ["unsupported", "supported"],
}
DEFAULT_MAX_LENGTH = 256
# Small length-sorted batches: a reranker's 20 candidates (snippets of 30 tokens beside abstracts of 192)
# scored in 170 ms p50 in batches of 4 against 340 ms in one batch of 32 (2 CPU cores, docs/benchmarks.md)
PREDICT_BATCH = 4


def export_onnx_int8(model_dir: Path, target: Path) -> dict[str, Any]:
    """Export a sequence-classification directory to ONNX (logits out) and quantise it to int8 at ``target``;
    the fp32 intermediate is removed. Returns what the export recorded (inputs, seconds, versions)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = _load_tokenizer(model_dir)
    fp32 = target.with_name(target.name.replace(".int8", "") + ".fp32.tmp")
    started = time.perf_counter()
    try:
        names = _export_fp32(model_dir, fp32, tokenizer, head="logits")
        exported = time.perf_counter()
        _quantize_int8(fp32, target)
    finally:
        fp32.unlink(missing_ok=True)
    return {
        "input_names": names,
        "export_seconds": round(exported - started, 2),
        "quantize_seconds": round(time.perf_counter() - exported, 2),
        "quantization": "dynamic int8, per-channel QInt8 weights",
        "versions": _package_versions(),
    }


def _manifest_of(path: Path) -> dict[str, Any]:
    manifest = _read_json(path / MANIFEST_FILE)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(
            f"{path}: manifest format {manifest.get('format')!r} is not one this medlit reads "
            f"({MANIFEST_FORMAT})"
        )
    labels = manifest.get("labels")
    if manifest.get("task") not in TASKS or not isinstance(labels, list) or len(labels) < 2:
        raise InputError(f"{path}/{MANIFEST_FILE}: no task ({', '.join(TASKS)}) and labels")
    if not isinstance(manifest.get("max_length"), int) or manifest["max_length"] < 8:
        raise InputError(f"{path}/{MANIFEST_FILE}: max_length missing")
    return manifest


def _foreign_manifest(path: Path, tokenizer: Any, task: str | None) -> dict[str, Any]:
    """What a plain Hugging Face directory says about itself: labels from id2label (one logit: relevance)."""
    config = _read_json(path / "config.json")
    id2label = config.get("id2label") or {}
    count = int(config.get("num_labels") or len(id2label) or 2)
    if count == 1:
        labels = list(DEFAULT_LABELS["reranker"])  # a single relevance logit: sigmoid is P(relevant)
    else:
        labels = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))).lower() for i in range(count)]
    model_max = getattr(tokenizer, "model_max_length", None)
    limits = [int(config.get("max_position_embeddings") or 512), 512]
    if isinstance(model_max, int) and model_max < 1_000_000:
        limits.append(model_max)
    return {
        "format": MANIFEST_FORMAT,
        "task": task or "reranker",
        "labels": labels,
        "logits": count,
        "max_length": min(limits),
        "base": {"path": str(path)},
        "foreign": True,
    }


class PairClassifier:
    """A pair classifier on ONNX Runtime (CPU, int8). ``predict_proba`` gives one row per pair."""

    task: str
    labels: list[str]
    manifest: dict[str, Any]

    def __init__(
        self,
        directory: Path,
        model_dir: Path,
        onnx_path: Path,
        manifest: dict[str, Any],
        tokenizer: Any,
        *,
        threads: int | None = None,
    ) -> None:
        ort = _require("onnxruntime", "running a trained pair model")
        self.directory = directory
        self.model_dir = model_dir
        self.onnx_path = onnx_path
        self.manifest = manifest
        self.task = str(manifest["task"])
        self.labels = [str(label) for label in manifest["labels"]]
        self.max_length = int(manifest["max_length"])
        self.single_logit = int(manifest.get("logits") or len(self.labels)) == 1
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _cpu_count()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(
                f"{onnx_path}: ONNX Runtime cannot load the model ({type(exc).__name__}); the directory is "
                "damaged: train it again (or delete the file to export it again)"
            ) from exc
        self.input_names = [node.name for node in self.session.get_inputs()]
        width = int(self.session.get_outputs()[0].shape[-1] or 0) if self.session.get_outputs() else 0
        if width and width != (1 if self.single_logit else len(self.labels)):
            raise InputError(f"{onnx_path}: the model gives {width} logits for {len(self.labels)} labels")

    @property
    def name(self) -> str:
        return f"{self.task}:{self.directory.name}"

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        cache_dir: str | Path | None = None,
        task: str | None = None,
        threads: int | None = None,
    ) -> PairClassifier:
        """A directory saved by ``medlit train``, or any local Hugging Face sequence-classification directory
        (exported to ONNX int8 into ``cache_dir`` on its first load; default: ``$MEDLIT_HOME/models``)."""
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise InputError(f"pair model {directory}: no such directory")
        directory = directory.resolve()
        if (directory / MANIFEST_FILE).is_file():
            manifest = _manifest_of(directory)
            model_dir = directory / MODEL_DIR
            if not (model_dir / "config.json").is_file():
                raise InputError(
                    f"{directory}: {MODEL_DIR}/config.json is missing (a damaged model directory)"
                )
            tokenizer = _load_tokenizer(model_dir)
            onnx_path = directory / str(manifest.get("onnx") or ONNX_FILE)
            if not onnx_path.is_file():
                onnx_path = _cached_export(model_dir, directory / "onnx", manifest)
        elif (directory / "config.json").is_file():
            tokenizer = _load_tokenizer(directory)
            manifest = _foreign_manifest(directory, tokenizer, task)
            model_dir = directory
            if cache_dir is None:
                from foundation.settings import get_settings

                cache_dir = get_settings().model_cache
            slug = re.sub(r"[^\w.-]+", "--", directory.name).strip("-") or "model"
            target = Path(cache_dir).expanduser() / f"pair-{slug}-{_model_digest(directory)[:16]}"
            onnx_path = _cached_export(directory, target, manifest)
        else:
            raise InputError(
                f"{directory} is neither a model saved by `medlit train` ({MANIFEST_FILE}) nor a Hugging "
                "Face model directory (config.json)"
            )
        if task is not None and manifest["task"] != task:
            raise InputError(f"{directory} holds a {manifest['task']} model, not a {task} model")
        return cls(directory, model_dir, onnx_path, manifest, tokenizer, threads=threads)

    def predict_proba(self, pairs: Sequence[tuple[str, str]], batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """float32 (len(pairs), len(labels)); each row sums to 1. Texts are truncated to ``max_length``
        tokens together (the longer one first); pairs are length-sorted so a batch pads to its longest."""
        if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str):
            raise TypeError("pass a sequence of (text, text) pairs, not one pair")
        out = np.zeros((len(pairs), len(self.labels)), dtype=np.float32)
        if not pairs:
            return out
        firsts = [str(a) for a, _b in pairs]
        seconds = [str(b) for _a, b in pairs]
        rows = self.tokenizer(
            firsts, seconds, truncation="longest_first", max_length=self.max_length, verbose=False
        )
        rows = {key: rows[key] for key in rows}
        lengths = np.array([len(ids) for ids in rows["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for first in range(0, len(pairs), max(1, batch_size)):
            index = order[first : first + max(1, batch_size)]
            width = int(lengths[index].max())
            feed: dict[str, np.ndarray] = {}
            for name in self.input_names:
                fill = pad if name == "input_ids" else 0
                array = np.full((len(index), width), fill, dtype=np.int64)
                for row, i in enumerate(index):
                    values = rows[name][i] if name in rows else [1] * int(lengths[i])
                    array[row, : len(values)] = values
                feed[name] = array
            logits = np.asarray(self.session.run(None, feed)[0], dtype=np.float64)
            out[index] = _probabilities(logits, self.single_logit)
        return out

    def __repr__(self) -> str:
        return f"PairClassifier(task={self.task!r}, labels={self.labels}, dir={str(self.directory)!r})"


def _probabilities(logits: np.ndarray, single_logit: bool) -> np.ndarray:
    if single_logit:
        relevant = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - relevant, relevant], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _cached_export(model_dir: Path, cache: Path, manifest: dict[str, Any]) -> Path:
    """The int8 ONNX file of ``model_dir`` in ``cache``, exported first if missing (one process at a time)."""
    target = cache / Path(ONNX_FILE).name
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{cache}: cannot create the ONNX cache ({exc.strerror})") from None
    with _exclusive(cache / ".lock"):
        if target.is_file():
            return target
        log.info("exporting the pair model %s to ONNX int8 in %s", model_dir, cache)
        record = export_onnx_int8(model_dir, target)
        record.update({"source": str(model_dir), "task": manifest["task"], "labels": manifest["labels"]})
        with atomic_path(cache / "export.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target
