"""`medlit train`: the generic pair-classifier trainer, the pair model it saves, and reranking with it.

A tiny BERT built in code (tests/tiny_bert.py) keeps every training run to seconds; the real recipe runs in
bench/train.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from foundation.errors import InputError
from indexes.pair_model import MANIFEST_FILE, ONNX_FILE, PairClassifier
from indexes.reranking import fused_order
from indexes.training import (
    PairExample,
    Recipe,
    _subsample_groups,
    classification_metrics,
    listwise_loss,
    split_by_group,
    train_pair_classifier,
)
from tests.tiny_bert import build_tiny_bert

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

FAST = {"epochs": 3, "max_length": 32, "batch_size": 8, "learning_rate": 2e-3, "checkpoint_minutes": 0}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def separable_pairs(n_questions: int = 12, seed: int = 0) -> list[PairExample]:
    """Pairs a tiny model learns in a few steps: relevant texts report a trial in patients, the others are
    about mice and cells."""
    rng = random.Random(seed)
    drugs = ["aspirin", "statin", "metformin", "insulin", "warfarin", "heparin", "vaccine", "antibiotic"]
    outcomes = ["stroke", "cancer", "diabetes", "mortality", "infection", "pain"]
    examples = []
    for q in range(n_questions):
        drug = drugs[q % len(drugs)]
        outcome = rng.choice(outcomes)
        question = f"does {drug} reduce {outcome} risk in patients?"
        for _ in range(2):
            examples.append(
                PairExample(f"q{q}", question, f"{drug} significantly reduced {outcome} in patients", 1)
            )
            examples.append(PairExample(f"q{q}", question, "protein expression of cells in mice", 0))
    return examples


def test_split_by_group_keeps_questions_whole() -> None:
    examples = separable_pairs(20)
    assert len({e.group for e in examples}) == 20
    train, held = split_by_group(examples, 0.25, seed=3)
    assert {e.group for e in train}.isdisjoint({e.group for e in held})
    assert len({e.group for e in held}) == 5
    assert len(train) + len(held) == len(examples)
    with pytest.raises(InputError, match="at least 2 questions"):
        split_by_group([e for e in examples if e.group == "q0"], 0.2, seed=1)


def test_classification_metrics() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    metrics = classification_metrics(probabilities, np.array([0, 1, 1, 1]))
    assert metrics["accuracy"] == 0.75
    assert metrics["average_precision"] == 1.0  # every positive ranked above the negative
    assert 0 < metrics["macro_f1"] < 1


def test_train_save_export_load_and_predict(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "reranker"
    trained = train_pair_classifier(
        "reranker",
        separable_pairs(),
        out=out,
        base=tiny_base,
        recipe=Recipe(**FAST, eval_share=0.25),
        data={"note": "separable test pairs"},
        progress=False,
    )
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest == trained.manifest
    assert manifest["task"] == "reranker" and manifest["labels"] == ["irrelevant", "relevant"]
    assert manifest["data"]["held_out_questions"] == 3 and manifest["data"]["train_questions"] == 9
    assert len(manifest["metrics"]["epochs"]) == 3  # evaluated each epoch
    assert manifest["metrics"]["held_out"]["average_precision"] > 0.9
    assert manifest["metrics"]["held_out_int8"]["average_precision"] > 0.9
    assert (out / ONNX_FILE).is_file() and not (out / "checkpoints").exists()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl"))  # safetensors and JSON only

    model = PairClassifier.load(out)
    probabilities = model.predict_proba(
        [
            ("does aspirin reduce stroke risk?", "aspirin significantly reduced stroke in patients"),
            ("does aspirin reduce stroke risk?", "protein expression of cells in mice"),
        ]
    )
    assert probabilities.shape == (2, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert probabilities[0, 1] > probabilities[1, 1]
    assert model.predict_proba([]).shape == (0, 2)

    with pytest.raises(InputError, match="already holds a trained model"):
        train_pair_classifier("reranker", separable_pairs(), out=out, base=tiny_base, progress=False)


def test_listwise_loss_is_each_positive_against_its_own_groups_negatives() -> None:
    torch = pytest.importorskip("torch")
    # scores (logit 1 - logit 0): group 0 has positive 2.0 and negatives 0.0, 1.0; group 1 has positive 0.0
    # and negative 3.0; group 2 has only a negative (no term)
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 3.0], [0.0, 5.0]])
    labels = torch.tensor([1, 0, 0, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    first = -np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(0.0) + np.exp(1.0)))
    second = -np.log(np.exp(0.0) / (np.exp(0.0) + np.exp(3.0)))
    loss = listwise_loss(logits, labels, groups)
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-5)
    # a batch of single held-out pairs (each its own group) has no term: zero, still differentiable
    single = listwise_loss(logits.clone().requires_grad_(), labels, torch.arange(6))
    assert float(single) == 0.0 and single.requires_grad


def test_fused_order_interpolates_the_two_scores() -> None:
    search = [3.0, 2.0, 1.0, 0.0]  # the search's order: 0, 1, 2, 3
    model = [0.1, 0.2, 0.9, 0.95]  # the reranker's: 3, 2, 1, 0
    assert fused_order(search, model, 0.0) == [0, 1, 2, 3]
    assert fused_order(search, model, 1.0) == [3, 2, 1, 0]
    assert fused_order(search, model, 0.5) == [2, 0, 3, 1]  # z-scores: 2 gains most, 1 loses most
    assert fused_order([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], 0.5) == [0, 1, 2]  # ties keep the search's order
    assert fused_order([], [], 0.5) == []
    with pytest.raises(ValueError, match="one search score and one reranker score"):
        fused_order([1.0], [0.5, 0.6], 0.5)


def test_group_subsample_keeps_questions_whole() -> None:
    examples = separable_pairs(20)  # 4 pairs a question
    kept = _subsample_groups(examples, 30, seed=5)
    assert 26 <= len(kept) <= 30
    for group in {e.group for e in kept}:
        assert sum(e.group == group for e in kept) == 4
    assert _subsample_groups(examples, None, seed=5) == examples


def test_listwise_training_ranks_and_refuses_three_labels(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "listwise"
    trained = train_pair_classifier(
        "reranker",
        separable_pairs(),
        out=out,
        base=tiny_base,
        recipe=Recipe(**FAST, eval_share=0.25, loss="listwise"),
        progress=False,
    )
    assert trained.manifest["recipe"]["loss"] == "listwise"
    assert trained.manifest["data"]["train_questions"] == 9
    assert trained.manifest["metrics"]["held_out"]["average_precision"] > 0.9
    model = PairClassifier.load(out)
    probabilities = model.predict_proba(
        [
            ("does aspirin reduce stroke risk?", "aspirin significantly reduced stroke in patients"),
            ("does aspirin reduce stroke risk?", "protein expression of cells in mice"),
        ]
    )
    assert probabilities[0, 1] > probabilities[1, 1]
    three = [PairExample(e.group, e.first, e.second, e.label * 2) for e in separable_pairs()]
    with pytest.raises(InputError, match="listwise loss ranks pairs of two labels"):
        train_pair_classifier(
            "verdict",
            three,
            out=tmp_path / "verdict",
            base=tiny_base,
            recipe=Recipe(**FAST, loss="listwise"),
            progress=False,
        )
    with pytest.raises(InputError, match="loss must be one of"):
        Recipe(loss="pairwise")


def test_training_resumes_from_its_last_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    from transformers.trainer_callback import TrainerCallback

    class Killed(Exception):
        pass

    class KillAfter(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            raise Killed  # as if the process died right after its first checkpoint

    out = tmp_path / "resumable"
    recipe = Recipe(**{**FAST, "checkpoint_minutes": 0}, eval_share=0.25)
    with pytest.raises(Killed):
        train_pair_classifier(
            "reranker",
            separable_pairs(),
            out=out,
            base=tiny_base,
            recipe=recipe,
            progress=False,
            callbacks=[KillAfter()],
        )
    assert list((out / "checkpoints").glob("checkpoint-*")) and not (out / MANIFEST_FILE).exists()

    with pytest.raises(InputError, match="unfinished training with another"):
        train_pair_classifier(
            "reranker", separable_pairs(seed=9), out=out, base=tiny_base, recipe=recipe, progress=False
        )
    trained = train_pair_classifier(
        "reranker", separable_pairs(), out=out, base=tiny_base, recipe=recipe, progress=False
    )
    assert trained.resumed_from is not None and "checkpoint-" in trained.resumed_from
    assert (out / MANIFEST_FILE).is_file()


def test_load_refuses_missing_and_damaged_directories(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        PairClassifier.load(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="neither a model saved by"):
        PairClassifier.load(empty)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        PairClassifier.load(damaged)


def test_a_plain_hugging_face_classifier_is_exported_once_and_cached(tiny_base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    plain = tmp_path / "cross-encoder"
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_base), num_labels=1)
    model.save_pretrained(str(plain))
    AutoTokenizer.from_pretrained(str(tiny_base)).save_pretrained(str(plain))
    cache = tmp_path / "cache"
    first = PairClassifier.load(plain, cache_dir=cache)
    assert first.labels == ["irrelevant", "relevant"] and first.single_logit
    exported = list(cache.rglob("model.int8.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    second = PairClassifier.load(plain, cache_dir=cache)
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again
    pairs = [("does aspirin reduce stroke?", "aspirin reduced stroke"), ("a question", "other text")]
    assert np.allclose(first.predict_proba(pairs), second.predict_proba(pairs))
    assert np.allclose(first.predict_proba(pairs).sum(axis=1), 1.0, atol=1e-5)


def test_freeze_layers_fixes_the_embeddings_and_the_lowest_layers(tiny_base: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from indexes.training import _freeze

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_base), num_labels=2)
    _freeze(model, 1)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(".embeddings." in n or ".layer.0." in n for n in frozen)
    assert any(".layer.1." in n for n, p in model.named_parameters() if p.requires_grad)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("classifier"))
