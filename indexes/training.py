"""Fine-tuning a pair classifier with the Hugging Face ``Trainer``: the one recipe behind ``medlit train``.

``train_pair_classifier(task, examples, out=...)`` takes labelled text pairs (each tagged with the question it
belongs to), holds out a share of the *questions* (never a pair of a training question), fine-tunes
``AutoModelForSequenceClassification`` on the rest with ``TrainingArguments`` (evaluation each epoch, the best
epoch kept), saves the model with its manifest and exports it once to ONNX int8 (``indexes.pair_model``).

- Progress bar with ETA on stderr (the Trainer's tqdm bar; its log lines go to stderr too).
- Resumable: checkpoints land in ``out/checkpoints`` at each epoch and every ``checkpoint_minutes``; running
  the same command again after a kill resumes from the last one (the plan — data hash, base, recipe — must
  match, or the run is refused rather than mixing two trainings).
- ``engine='ray'`` runs the same Trainer in Ray Train workers (``TorchTrainer`` + ``prepare_trainer`` +
  ``RayTrainReportCallback``), on a local Ray or the cluster at ``ray_address``; Ray keeps the checkpoints
  (``out/ray``) and restores an interrupted run of the same name.

Heavy libraries (torch, transformers, accelerate, ray) are imported only here, when training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import resource
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foundation.durable import atomic_path
from foundation.errors import InputError, LibraryError
from indexes.embedder import _model_digest, _require, default_model_path
from indexes.pair_model import (
    DEFAULT_LABELS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MODEL_DIR,
    ONNX_FILE,
    TASKS,
    PairClassifier,
    export_onnx_int8,
)

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
LOSSES = ("pointwise", "listwise")
CHECKPOINTS = "checkpoints"
PLAN_FILE = "plan.json"
_INSTALL_TRAIN = "pip install 'medlit[train]'"


@dataclass(slots=True, frozen=True)
class PairExample:
    """One labelled pair. ``group`` is the question it belongs to: the held-out split keeps groups whole."""

    group: str
    first: str
    second: str
    label: int


@dataclass(slots=True)
class Recipe:
    """How to train; the defaults are the laptop recipe (measured in docs/benchmarks.md)."""

    epochs: float = 1.0
    max_length: int = 192
    batch_size: int = 16
    learning_rate: float = 4e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of the steps with a rising learning rate
    max_pairs: int | None = None  # training pairs kept (a random subsample) after the held-out split
    max_eval_pairs: int = 1500
    eval_share: float = 0.1  # share of the questions held out
    seed: int = 13
    checkpoint_minutes: float = 5.0  # also save a checkpoint this often (0: at each epoch only)
    workers: int = 2  # Ray Train workers (engine='ray')
    freeze_layers: int = 0  # keep the embeddings and the first N transformer layers fixed (cheaper steps)
    best_metric: str | None = None  # default: average_precision for two labels, macro_f1 otherwise
    # "pointwise": cross-entropy of each pair's label; "listwise" (two labels only): each question's pairs
    # form one group in a step, and each positive is scored against its group's negatives by a softmax
    # (localised contrastive estimation), plus the pointwise term that keeps P(label 1) a probability
    loss: str = "pointwise"

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise InputError("epochs must be positive")
        if not 16 <= self.max_length <= 4096:
            raise InputError("max_length must be between 16 and 4096 tokens")
        if self.batch_size < 1 or self.workers < 1:
            raise InputError("batch_size and workers must be at least 1")
        if not 0 < self.eval_share < 1:
            raise InputError("eval_share must be between 0 and 1 (a share of the questions)")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise InputError("max_pairs must be at least 2")
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)} (got {self.loss!r})")

    def metric(self, labels: int) -> str:
        return self.best_metric or ("average_precision" if labels == 2 else "macro_f1")


@dataclass(slots=True)
class TrainedModel:
    """Where a trained model was saved, its manifest, and whether the run resumed an interrupted one."""

    path: Path
    manifest: dict[str, Any]
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "resumed_from": self.resumed_from, "manifest": self.manifest}


# ----- splitting and describing the data --------------------------------------------------------------------


def split_by_group(
    examples: Sequence[PairExample], eval_share: float, seed: int
) -> tuple[list[PairExample], list[PairExample]]:
    """(train, held out): a random ``eval_share`` of the groups (questions) is held out whole."""
    groups = sorted({e.group for e in examples})
    if len(groups) < 2:
        raise InputError(
            f"training needs pairs of at least 2 questions (a held-out split by question); got {len(groups)}"
        )
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(len(groups) * eval_share))])
    train = [e for e in examples if e.group not in held]
    evaluation = [e for e in examples if e.group in held]
    return train, evaluation


def pairs_digest(examples: Sequence[PairExample]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.group, e.first, e.second, e.label], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _label_counts(examples: Sequence[PairExample], labels: list[str]) -> dict[str, int]:
    counts = {label: 0 for label in labels}
    for e in examples:
        counts[labels[e.label]] += 1
    return counts


def _subsample(examples: list[PairExample], limit: int | None, seed: int) -> list[PairExample]:
    if limit is None or len(examples) <= limit:
        return examples
    chosen = list(examples)
    random.Random(seed).shuffle(chosen)
    return chosen[:limit]


def _subsample_groups(examples: list[PairExample], limit: int | None, seed: int) -> list[PairExample]:
    """Whole questions, in a random order, while their pairs fit in ``limit`` (the listwise loss needs a
    question's positives and negatives together)."""
    if limit is None or len(examples) <= limit:
        return examples
    by_group: dict[str, list[PairExample]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    keys = sorted(by_group)
    random.Random(seed).shuffle(keys)
    chosen: list[PairExample] = []
    for key in keys:
        if chosen and len(chosen) + len(by_group[key]) > limit:
            continue
        chosen.extend(by_group[key])
    return chosen


# ----- metrics ----------------------------------------------------------------------------------------------


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy, macro-F1 and, for two labels, average precision of label 1 (ranking quality)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    predicted = probabilities.argmax(axis=1)
    f1s = []
    for c in range(probabilities.shape[1]):
        tp = int(((predicted == c) & (labels == c)).sum())
        fp = int(((predicted == c) & (labels != c)).sum())
        fn = int(((predicted != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    metrics = {
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
    }
    if probabilities.shape[1] == 2:
        metrics["average_precision"] = average_precision(probabilities[:, 1], labels == 1)
    return {key: round(value, 4) for key, value in metrics.items()}


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(positive, dtype=bool)[order]
    if not hits.any():
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _compute_metrics(prediction: Any) -> dict[str, float]:
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    return classification_metrics(_softmax(logits), prediction.label_ids)


# ----- the Trainer ------------------------------------------------------------------------------------------


class _PairDataset:
    """Tokenised pairs for the Trainer (a map-style torch dataset of dicts; padding happens per batch)."""

    def __init__(self, tokenizer: Any, rows: Sequence[tuple[Any, ...]], max_length: int) -> None:
        encoded = tokenizer(
            [r[0] for r in rows],
            [r[1] for r in rows],
            truncation="longest_first",
            max_length=max_length,
            verbose=False,
        )
        self.features = [{key: encoded[key][i] for key in encoded} for i in range(len(rows))]
        for feature, row in zip(self.features, rows, strict=True):
            feature["labels"] = int(row[2])

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


class _GroupDataset:
    """The listwise loss's training items: one question's tokenised pairs each (rows carry the question as
    their fourth element)."""

    def __init__(self, tokenizer: Any, rows: Sequence[tuple[str, str, int, str]], max_length: int) -> None:
        pairs = _PairDataset(tokenizer, rows, max_length).features
        by_group: dict[str, list[dict[str, Any]]] = {}
        for feature, row in zip(pairs, rows, strict=True):
            by_group.setdefault(str(row[3]), []).append(feature)
        self.groups = [{"pairs": members} for members in by_group.values()]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.groups[index]


def _group_collator(tokenizer: Any) -> Any:
    """Pads a batch of groups (or of single pairs: each its own group) into one batch of pairs, with
    ``groups`` (the item each pair came from) for the listwise loss."""
    torch = _require("torch", "training a pair model")
    transformers = _require("transformers", "training a pair model")
    pad = transformers.DataCollatorWithPadding(tokenizer)

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        flat: list[dict[str, Any]] = []
        groups: list[int] = []
        for index, feature in enumerate(features):
            members = feature.get("pairs", [feature])
            flat.extend(members)
            groups.extend([index] * len(members))
        batch = pad(flat)
        batch["groups"] = torch.tensor(groups, dtype=torch.long)
        return batch

    return collate


def listwise_loss(logits: Any, labels: Any, groups: Any) -> Any:
    """Localised contrastive estimation: for each positive pair, -log softmax of its score (logit 1 minus
    logit 0) against the scores of its group's negatives; the mean over positives that have negatives (zero
    when none has: a batch of held-out single pairs)."""
    torch = _require("torch", "training a pair model")
    scores = logits[:, 1] - logits[:, 0]
    terms = []
    for group in torch.unique(groups):
        member = groups == group
        positives = scores[member & (labels == 1)]
        negatives = scores[member & (labels == 0)]
        if positives.numel() and negatives.numel():
            table = torch.cat([positives[:, None], negatives[None, :].expand(len(positives), -1)], dim=1)
            terms.append(torch.logsumexp(table, dim=1) - positives)
    if not terms:
        return scores.sum() * 0.0
    return torch.cat(terms).mean()


def _listwise_trainer_class() -> Any:
    torch = _require("torch", "training a pair model")
    transformers = _require("transformers", "training a pair model")

    class ListwiseTrainer(transformers.Trainer):  # type: ignore[name-defined]
        """The Trainer with the listwise loss plus the pointwise cross-entropy (which keeps P(relevant) a
        probability for abstention thresholds)."""

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any
        ) -> Any:
            groups = inputs.pop("groups")
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            loss = listwise_loss(logits, labels, groups) + torch.nn.functional.cross_entropy(logits, labels)
            return (loss, outputs) if return_outputs else loss

    return ListwiseTrainer


def _callbacks_module() -> Any:
    return _require("transformers.trainer_callback", "training a pair model")


def _stderr_progress() -> Any:
    """The Trainer's progress bar (tqdm on stderr, with ETA) whose log lines go to stderr, not stdout."""
    callbacks = _callbacks_module()

    class StderrProgress(callbacks.ProgressCallback):  # type: ignore[name-defined]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                from tqdm import tqdm

                shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items()}
                shown.pop("total_flos", None)
                tqdm.write(json.dumps(shown), file=sys.stderr)

    return StderrProgress()


def _save_every(minutes: float) -> Any:
    """A callback that asks the Trainer for a checkpoint every ``minutes`` (so a kill loses little)."""
    callbacks = _callbacks_module()

    class SaveEvery(callbacks.TrainerCallback):  # type: ignore[name-defined]
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if minutes > 0 and time.monotonic() - self.last >= minutes * 60:
                control.should_save = True
                self.last = time.monotonic()
            return control

    return SaveEvery()


def _build_trainer(
    base: str,
    labels: list[str],
    train_rows: Sequence[tuple[str, str, int, str]],
    eval_rows: Sequence[tuple[str, str, int, str]],
    recipe: Recipe,
    output_dir: str,
    *,
    progress: bool,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The Hugging Face Trainer for one pair-classification job (the same in local and Ray workers)."""
    _require("accelerate", f"training with the Hugging Face Trainer ({_INSTALL_TRAIN})")
    torch = _require("torch", "training a pair model")
    transformers = _require("transformers", "training a pair model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    with _quiet_transformers():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
    if recipe.freeze_layers > 0:
        _freeze(model, recipe.freeze_layers)
    listwise = recipe.loss == "listwise"
    batch_size = recipe.batch_size
    train_dataset: Any = _PairDataset(tokenizer, train_rows, recipe.max_length)
    if listwise:  # whole questions a step, as many as hold about batch_size pairs
        train_dataset = _GroupDataset(tokenizer, train_rows, recipe.max_length)
        batch_size = max(1, round(recipe.batch_size * len(train_dataset) / max(1, len(train_rows))))
    steps_per_epoch = max(1, math.ceil(len(train_dataset) / batch_size))
    args = transformers.TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=recipe.batch_size * 2,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=int(recipe.warmup * steps_per_epoch * recipe.epochs),
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=recipe.metric(len(labels)),
        greater_is_better=True,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 10),
        report_to="none",
        disable_tqdm=True,  # our own bar below, on stderr
        seed=recipe.seed,
        data_seed=recipe.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=not listwise,  # the groups travel to compute_loss
    )
    trainer_class = _listwise_trainer_class() if listwise else transformers.Trainer
    collator = _group_collator(tokenizer) if listwise else transformers.DataCollatorWithPadding(tokenizer)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=_PairDataset(tokenizer, eval_rows, recipe.max_length),
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=_compute_metrics,
        callbacks=list(callbacks),
    )
    # with disable_tqdm the Trainer prints its logs on stdout (PrinterCallback): stdout is for results
    trainer.remove_callback(_callbacks_module().PrinterCallback)
    if progress:
        trainer.add_callback(_stderr_progress())
    return trainer


def _freeze(model: Any, layers: int) -> None:
    """No gradients for the embeddings and the first ``layers`` encoder layers (BERT-family names)."""
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        if "embeddings" in parts:
            parameter.requires_grad = False
        elif "layer" in parts:
            index = parts[parts.index("layer") + 1]
            if index.isdigit() and int(index) < layers:
                parameter.requires_grad = False


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """'Some weights were newly initialized' is the point of fine-tuning a new head: not worth a warning."""
    transformers = _require("transformers", "training a pair model")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def _last_checkpoint(directory: Path) -> str | None:
    if not directory.is_dir():
        return None
    utils = _require("transformers.trainer_utils", "training a pair model")
    return utils.get_last_checkpoint(str(directory))


def _fit_local(
    base: str,
    labels: list[str],
    train_rows: list[tuple[str, str, int, str]],
    eval_rows: list[tuple[str, str, int, str]],
    recipe: Recipe,
    checkpoints: Path,
    model_out: Path,
    *,
    progress: bool,
    callbacks: Sequence[Any],
) -> tuple[dict[str, Any], str | None]:
    """Train in this process; the best epoch's model lands in ``model_out``. (best metrics, resumed from)."""
    extra = [*callbacks]
    if recipe.checkpoint_minutes > 0:
        extra.append(_save_every(recipe.checkpoint_minutes))
    trainer = _build_trainer(
        base, labels, train_rows, eval_rows, recipe, str(checkpoints), progress=progress, callbacks=extra
    )
    resume = _last_checkpoint(checkpoints)
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    history = [
        _strip_eval(entry) | {"epoch": entry.get("epoch")}
        for entry in trainer.state.log_history
        if any(k.startswith("eval_") for k in entry)
    ]
    metrics = trainer.evaluate()  # the best epoch's model, loaded at the end
    # save_pretrained, not trainer.save_model: that also writes training_args.bin, a pickle
    trainer.model.save_pretrained(str(model_out))
    trainer.processing_class.save_pretrained(str(model_out))
    return {"best": _strip_eval(metrics), "epochs": history}, resume


def _strip_eval(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k.removeprefix("eval_"): (round(v, 4) if isinstance(v, float) else v)
        for k, v in metrics.items()
        if k.startswith("eval_")
    }


# ----- Ray Train --------------------------------------------------------------------------------------------


def _ray_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the same Trainer, prepared for Ray, reporting checkpoints to Ray Train."""
    import tempfile

    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    torch = _require("torch", "training a pair model")
    torch.set_num_threads(max(1, int(config.get("threads") or 1)))
    recipe = Recipe(**config["recipe"])
    output_dir = tempfile.mkdtemp(prefix="medlit-train-")
    trainer = _build_trainer(
        config["base"],
        config["labels"],
        config["train"],
        config["eval"],
        recipe,
        output_dir,
        progress=bool(config["progress"]) and ray.train.get_context().get_world_rank() == 0,
        callbacks=[RayTrainReportCallback()],
    )
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as restored:
            trainer.train(resume_from_checkpoint=str(Path(restored) / RayTrainReportCallback.CHECKPOINT_NAME))
    else:
        trainer.train()
    shutil.rmtree(output_dir, ignore_errors=True)


def _fit_ray(
    base: str,
    labels: list[str],
    train_rows: list[tuple[str, str, int, str]],
    eval_rows: list[tuple[str, str, int, str]],
    recipe: Recipe,
    storage: Path,
    model_out: Path,
    *,
    progress: bool,
    ray_address: str | None,
    run_name: str,
) -> tuple[dict[str, Any], str | None]:
    """The same Trainer in ``recipe.workers`` Ray Train workers (1 CPU each, data parallel)."""
    from indexes.ray_embedder import ray_session

    _require("ray.train", "training with --engine ray (pip install 'medlit[ray]')")
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    metric = f"eval_{recipe.metric(len(labels))}"
    resumed = (storage / run_name).is_dir()
    with ray_session(ray_address) as ray:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        threads = max(1, int(cpus // recipe.workers)) if not ray_address else 1
        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config={
                "base": base,
                "labels": labels,
                "train": train_rows,
                "eval": eval_rows,
                "recipe": asdict(recipe),
                "progress": progress,
                "threads": threads,
            },
            scaling_config=ScalingConfig(
                num_workers=recipe.workers, use_gpu=False, resources_per_worker={"CPU": 1}
            ),
            run_config=RunConfig(
                name=run_name,
                storage_path=str(storage),
                checkpoint_config=CheckpointConfig(
                    num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order="max"
                ),
            ),
        )
        try:
            result = trainer.fit()
        except Exception as exc:
            raise LibraryError(f"Ray Train failed: {str(exc).strip().splitlines()[-1][:400]}") from None
        candidates = [(c, m) for c, m in (result.best_checkpoints or []) if metric in m]
        if not candidates and result.checkpoint is not None:
            candidates = [(result.checkpoint, result.metrics or {})]
        if not candidates:
            raise LibraryError("Ray Train finished without a checkpoint")
        best, best_metrics = max(candidates, key=lambda item: float(item[1].get(metric, -1)))
        with best.as_directory() as directory:
            source = Path(directory) / "checkpoint"
            transformers = _require("transformers", "training a pair model")
            model = transformers.AutoModelForSequenceClassification.from_pretrained(str(source))
            model.save_pretrained(str(model_out))
            transformers.AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(model_out))
    history = [
        _strip_eval(m) for _c, m in sorted(result.best_checkpoints or [], key=lambda i: i[1].get("epoch", 0))
    ]
    return {"best": _strip_eval(best_metrics), "epochs": history}, (run_name if resumed else None)


# ----- the whole job ----------------------------------------------------------------------------------------


def _peak_memory_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)  # Linux reports KiB


def _medlit_version() -> str:
    try:
        from importlib.metadata import version

        return version("medlit")
    except Exception:
        return "unknown"


def resolve_base(base: str | Path | None) -> tuple[Path, str]:
    """(directory, name) of the base model: None is the BERT body of the packaged all-MiniLM-L6-v2."""
    if base is None or str(base) == "default":
        return default_model_path(), "all-MiniLM-L6-v2"
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise InputError(f"base model {path}: not a Hugging Face model directory (no config.json)")
    return path.resolve(), path.name


def train_pair_classifier(
    task: str,
    examples: Sequence[PairExample],
    *,
    out: str | Path,
    base: str | Path | None = None,
    labels: Sequence[str] | None = None,
    recipe: Recipe | None = None,
    data: dict[str, Any] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainedModel:
    """Fine-tune a pair classifier and save it (model, manifest, ONNX int8) in ``out``.

    ``examples``: labelled pairs; ``labels``: the names of label 0, 1, ... (default per task); ``data``:
    what the pairs were built from (files, hashes, counts) for the manifest. Running it again on the same
    ``out`` resumes an interrupted training; a finished ``out`` is never overwritten.
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    recipe = recipe or Recipe()
    names = list(labels or DEFAULT_LABELS[task])
    out = Path(out).expanduser()
    if (out / MANIFEST_FILE).is_file():
        raise InputError(f"{out} already holds a trained model: choose another --out (or delete it)")
    if recipe.loss == "listwise" and len(names) != 2:
        raise InputError("the listwise loss ranks pairs of two labels (a reranker or a support model)")
    for example in examples:
        if not 0 <= example.label < len(names):
            raise InputError(f"label {example.label} is not one of {names}")
    base_dir, base_name = resolve_base(base)
    started = time.perf_counter()

    train, held_out = split_by_group(examples, recipe.eval_share, recipe.seed)
    subsample = _subsample_groups if recipe.loss == "listwise" else _subsample
    train = subsample(train, recipe.max_pairs, recipe.seed)
    held_out = _subsample(held_out, recipe.max_eval_pairs, recipe.seed + 1)
    present = {e.label for e in train}
    if len(present) < 2:
        raise InputError(
            f"the training pairs hold only one label ({names[next(iter(present))]}): nothing to learn"
        )
    plan: dict[str, Any] = {
        "task": task,
        "labels": names,
        "base": str(base_dir),
        "base_sha256": _model_digest(base_dir),
        "pairs_sha256": pairs_digest(examples),
        "recipe": asdict(recipe),
        "engine": engine,
    }
    checkpoints = out / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    plan_path = checkpoints / PLAN_FILE
    if plan_path.is_file():
        previous = json.loads(plan_path.read_text(encoding="utf-8"))
        if previous != plan:
            changed = sorted(k for k in plan if previous.get(k) != plan[k])
            raise InputError(
                f"{out} holds an unfinished training with another {', '.join(changed)}: delete {checkpoints} "
                "to start over, or choose another --out"
            )
    else:
        with atomic_path(plan_path) as tmp:
            tmp.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")

    rows = [(e.first, e.second, e.label, e.group) for e in train]
    eval_rows = [(e.first, e.second, e.label, e.group) for e in held_out]
    model_out = out / MODEL_DIR
    if engine == "local":
        metrics, resumed = _fit_local(
            str(base_dir),
            names,
            rows,
            eval_rows,
            recipe,
            checkpoints,
            model_out,
            progress=progress,
            callbacks=callbacks,
        )
    else:
        metrics, resumed = _fit_ray(
            str(base_dir),
            names,
            rows,
            eval_rows,
            recipe,
            (out / "ray").resolve(),
            model_out,
            progress=progress,
            ray_address=ray_address,
            run_name=f"medlit-{task}-{plan['pairs_sha256'][:12]}",
        )
    trained_seconds = time.perf_counter() - started
    export = export_onnx_int8(model_out, out / ONNX_FILE)

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "task": task,
        "labels": names,
        "max_length": recipe.max_length,
        "onnx": ONNX_FILE,
        "base": {"name": base_name, "path": str(base_dir), "sha256": plan["base_sha256"]},
        "data": {
            **(data or {}),
            "pairs": len(examples),
            "pairs_sha256": plan["pairs_sha256"],
            "questions": len({e.group for e in examples}),
            "train_pairs": len(train),
            "train_questions": len({e.group for e in train}),
            "held_out_pairs": len(held_out),
            "held_out_questions": len({e.group for e in held_out}),
            "train_labels": _label_counts(train, names),
            "held_out_labels": _label_counts(held_out, names),
        },
        "recipe": asdict(recipe),
        "engine": engine,
        "metrics": {"held_out": metrics["best"], "epochs": metrics["epochs"]},
        "export": export,
        "train_seconds": round(trained_seconds, 1),
        "peak_memory_mb": _peak_memory_mb(),
        "threads": _threads(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "medlit_version": _medlit_version(),
    }
    # the int8 model on the held-out pairs: what users will run (quantisation may cost a little)
    model = PairClassifier(
        out, model_out, out / ONNX_FILE, manifest, _load_tokenizer_for(model_out), threads=None
    )
    if eval_rows:
        probabilities = model.predict_proba([(row[0], row[1]) for row in eval_rows])
        manifest["metrics"]["held_out_int8"] = classification_metrics(
            probabilities, np.array([row[2] for row in eval_rows])
        )
    with atomic_path(out / MANIFEST_FILE) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(checkpoints, ignore_errors=True)
    shutil.rmtree(out / "ray", ignore_errors=True)
    return TrainedModel(path=out, manifest=manifest, resumed_from=resumed)


def _load_tokenizer_for(model_dir: Path) -> Any:
    from indexes.embedder import _load_tokenizer

    return _load_tokenizer(model_dir)


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1
