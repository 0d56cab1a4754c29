"""``medlit train verdict`` and ``medlit train support``: the answer pipeline's models, trained on a library.

Both build their inputs through the answer pipeline's own path (``Answerer.retrieve`` for verdicts, the
library's search for the support negatives), then train with ``indexes.training`` (the cross-encoders) or
fit the linear verdict head in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.search import Searcher
from indexes.training import Recipe, TrainedModel, split_by_group, train_pair_classifier
from ingest.store import Store
from rag.ask import Answerer
from rag.generators import ExtractiveGenerator
from rag.support_model import (
    LABELS as SUPPORT_LABELS,
)
from rag.support_model import (
    SupportClassifier,
    compare_with_cosine,
    read_support_questions,
    support_data_summary,
    support_examples,
    support_pairs,
)
from rag.verdict import (
    read_verdict_questions,
    retrieve_for_verdicts,
    train_cross_encoder_verdict,
    train_linear_verdict,
    verdict_data_summary,
)

HEADS = ("cross-encoder", "linear", "findings")


def _plain(settings: Settings) -> Settings:
    """The library's settings without a reranker (training data must not depend on a previous model)."""
    return settings.model_copy(update={"index": settings.index.model_copy(update={"reranker": "none"})})


def _open_nonempty(settings: Settings) -> Store:
    store = Store.open(settings)
    if store.count() == 0:
        store.close()
        raise InputError(f"the library {settings.library_path} is empty: ingest the corpora first")
    return store


def train_verdict(
    settings: Settings,
    *,
    out: str | Path,
    question_files: Sequence[str | Path],
    batches: Sequence[str] = (),
    head: str = "cross-encoder",
    base: str | Path | None = None,
    recipe: Recipe | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Retrieve evidence for every yes/no(/maybe) question, then train the cross-encoder (a directory) or
    fit the linear head (``out`` a .json file, or ``out/verdict.json``). Returns the manifest and path."""
    if head not in HEADS:
        raise InputError(f"unknown verdict head {head!r}: choose one of {', '.join(HEADS)}")
    questions = read_verdict_questions(question_files, batches)
    plain = _plain(settings)
    with _open_nonempty(plain) as store:
        answerer = Answerer(store, plain, generator=ExtractiveGenerator())
        retrieved = retrieve_for_verdicts(answerer, questions, progress=progress)
        embedder_name = str(answerer.embedder.name)
    data = verdict_data_summary(questions) | {"batches": list(batches), "embedder": embedder_name}
    if head in ("linear", "findings"):
        features = "findings" if head == "findings" else "embedding"
        return train_linear_verdict(retrieved, out, data=data, embedder_name=embedder_name, features=features)
    trained = train_cross_encoder_verdict(
        retrieved,
        out,
        data=data,
        base=base,
        recipe=recipe,
        engine=engine,
        ray_address=ray_address,
        progress=progress,
    )
    return {"path": str(trained.path), "resumed_from": trained.resumed_from, **trained.manifest}


def train_support(
    settings: Settings,
    *,
    out: str | Path,
    question_files: Sequence[str | Path],
    batches: Sequence[str] = (),
    base: str | Path | None = None,
    recipe: Recipe | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
) -> TrainedModel:
    """Support pairs from BioASQ-style ideal answers against the library, the cross-encoder trained on them,
    and its held-out comparison with the verifier's cosine threshold (in the manifest, ``vs_cosine``)."""
    import json

    from foundation.durable import atomic_path

    questions = read_support_questions(question_files, batches)
    plain = _plain(settings)
    with _open_nonempty(plain) as store:
        searcher = Searcher(store, plain)
        pairs = support_pairs(searcher, searcher.dense.embedder, questions, progress=progress)
        embedder_name = str(searcher.dense.embedder.name)
    if not pairs:
        raise InputError("no support pairs: the library holds none of the questions' relevant articles")
    recipe = recipe or Recipe(max_length=128, epochs=1.0)
    examples = support_examples(pairs)
    trained = train_pair_classifier(
        "support",
        examples,
        out=out,
        base=base,
        labels=SUPPORT_LABELS,
        recipe=recipe,
        data=support_data_summary(questions, pairs) | {"batches": list(batches), "embedder": embedder_name},
        engine=engine,
        ray_address=ray_address,
        progress=progress,
    )
    _train, held = split_by_group(examples, recipe.eval_share, recipe.seed)
    held_groups = {e.group for e in held}
    classifier = SupportClassifier.load(trained.path)
    comparison = compare_with_cosine(
        classifier,
        [p for p in pairs if p.group not in held_groups][:2000],
        [p for p in pairs if p.group in held_groups],
        cosine_threshold=settings.answer.support_threshold,
    )
    manifest = dict(trained.manifest)
    manifest["vs_cosine"] = comparison
    manifest["threshold"] = comparison["classifier_calibrated"]["threshold"]
    with atomic_path(Path(trained.path) / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    trained.manifest = manifest
    return trained
