"""`medlit train reranker|verdict|support` on a small library (fake embedder, tiny BERT base), the trained
reranker inside search, the verdict and support wrappers, the screening CSV, and `--engine ray`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.index_set import IndexSet
from indexes.reranker_data import calibrate_reranker, read_question_files, read_screening_csv
from indexes.search import Searcher
from ingest.run import ingest_jsonl
from ingest.store import Store
from medlit.cli import cli
from rag.ask import Answerer
from rag.generators import ExtractiveGenerator
from rag.support_model import SupportClassifier, change_numbers, negate, swap_term
from rag.verdict import (
    LinearHead,
    VerdictClassifier,
    decide,
    finding_sentences,
    findings_text,
    polarity_features,
    statistic_features,
    verdict_passage,
)
from tests.tiny_bert import build_tiny_bert

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

DRUGS = ["aspirin", "statin", "metformin", "insulin", "warfarin", "heparin", "vaccine", "antibiotic"]
OUTCOMES = ["stroke", "cancer", "diabetes", "mortality", "infection", "pain"]
FAST = ["--epochs", "2", "--max-length", "48", "--batch-size", "8", "--learning-rate", "0.002"]


def corpus_and_questions(tmp: Path) -> tuple[Path, Path]:
    """24 topics: one trial per (drug, outcome) that answers yes or no, plus an off-topic mouse study each."""
    rng = random.Random(5)
    articles, questions = [], []
    pmid = 1000
    for i, drug in enumerate(DRUGS):
        for outcome in OUTCOMES[i % 2 :: 2]:
            yes = rng.random() < 0.6
            finding = "significantly reduced" if yes else "did not reduce"
            pmid += 1
            articles.append(
                {
                    "pmid": pmid,
                    "title": f"{drug} and {outcome} risk in patients: a randomized trial",
                    "abstract": f"BACKGROUND: {outcome} is common. RESULTS: In 300 patients {drug} "
                    f"{finding} {outcome} risk compared with placebo (p < 0.05). "
                    f"CONCLUSIONS: {drug} {finding} {outcome}.",
                    "year": 2020,
                }
            )
            pmid += 1
            articles.append(
                {
                    "pmid": pmid,
                    "title": f"{drug} protein expression in mice",
                    "abstract": f"We studied {drug} and gene expression of {outcome} cells in mice. "
                    "Protein levels increased after 3 weeks.",
                    "year": 2018,
                }
            )
            questions.append(
                {
                    "id": f"q{pmid}",
                    "batch": "7B2" if len(questions) % 4 else "10B1",
                    "type": "yesno",
                    "question": f"Does {drug} reduce {outcome} risk in patients?",
                    "relevant_pmids": [pmid - 1],
                    "exact_answer": "yes" if yes else "no",
                    "ideal_answer": [
                        f"{'Yes' if yes else 'No'}, {drug} {finding} {outcome} risk in 300 patients compared "
                        "with placebo."
                    ],
                }
            )
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in articles))
    question_file = tmp / "questions.jsonl"
    question_file.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return corpus, question_file


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def library(fake_model_env: Path, tmp_path: Path) -> tuple[Settings, Path]:
    corpus, questions = corpus_and_questions(tmp_path)
    settings = Settings()
    with Store.open(settings) as store:
        ingest_jsonl(store, corpus)
        IndexSet(store, settings).build(progress=False)
    return settings, questions


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, [*args, "--json", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_reranker_then_search_reranks_with_it(
    library: tuple[Settings, Path], tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, questions = library
    out = tmp_path / "reranker"
    manifest = run(
        "train", "reranker", "--questions", str(questions), "--batch", "7B", "--base", str(tiny_base),
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert manifest["task"] == "reranker"
    data = manifest["data"]
    assert data["questions_used"] == 18 and data["mined_negatives"] > 0  # only batch 7B: 18 of 24
    assert data["negatives_from"] == "judged"  # the default
    assert manifest["recipe"]["loss"] == "listwise"  # a reranker's default loss
    assert data["sources"][0]["sha256"] and data["library_articles"] == 48
    assert data["held_out_questions"] >= 1 and manifest["metrics"]["held_out_int8"]

    monkeypatch.setenv("MEDLIT_INDEX__RERANKER", str(out))
    monkeypatch.setenv("MEDLIT_INDEX__RERANK_CANDIDATES", "5")
    reranked = Settings()
    with Store.open(reranked) as store:
        searcher = Searcher(store, reranked)
        assert searcher.reranker is not None and searcher.reranker.candidates == 5
        hits = searcher.search("Does aspirin reduce stroke risk in patients?", k=8)
        without = settings.model_copy(
            update={"index": settings.index.model_copy(update={"reranker": "none"})}
        )
        plain = Searcher(store, without).search("Does aspirin reduce stroke risk in patients?", k=8)
    assert [h.rank for h in hits] == list(range(1, 9))
    scored = [h for h in hits if h.rerank_score is not None]
    assert len(scored) == 5 and all(0.0 <= h.rerank_score <= 1.0 for h in scored)
    assert {h.pmid for h in hits[:5]} == {h.pmid for h in plain[:5]}  # the same candidates, reordered
    assert [h.pmid for h in hits[5:]] == [h.pmid for h in plain[5:]]
    assert hits[0].to_dict()["rerank_score"] == scored[0].rerank_score
    # by default the order fuses the two scores: z-scores over the candidates (the reranker's log-odds),
    # the reranker weighted 0.5 (its training held out 2 questions: too few to calibrate a weight)
    search_rank = {h.pmid: rank for rank, h in enumerate(plain[:5], start=1)}
    by_score = sorted(scored, key=lambda h: (-h.rerank_score, search_rank[h.pmid]))
    odds = {h.pmid: np.log(h.rerank_score / (1 - h.rerank_score)) for h in scored}
    searched = {h.pmid: h.score for h in plain[:5]}

    def z(values: dict[int, float]) -> dict[int, float]:
        mean, spread = np.mean(list(values.values())), np.std(list(values.values()))
        return {p: (v - mean) / spread for p, v in values.items()}

    z_odds, z_search = z(odds), z(searched)
    fused = sorted(search_rank, key=lambda p: (-(0.5 * z_odds[p] + 0.5 * z_search[p]), search_rank[p]))
    assert [h.pmid for h in hits[:5]] == fused

    monkeypatch.setenv("MEDLIT_INDEX__RERANK_FUSION", "false")  # the reranker's score alone
    alone = Settings()
    with Store.open(alone) as store:
        hits = Searcher(store, alone).search("Does aspirin reduce stroke risk in patients?", k=8)
    assert [h.pmid for h in hits[:5]] == [h.pmid for h in by_score]

    result = CliRunner().invoke(cli, ["search", "Does aspirin reduce stroke risk?", "--json"])
    assert result.exit_code == 0, result.output

    # fusion and abstention: 2 held-out questions are too few to calibrate on; on all 24 when asked
    assert manifest["abstention"]["abstain_below"] is None and manifest["fusion"]["weight"] is None
    assert "calibration needs 20" in manifest["abstention"]["reason"]
    assert json.loads((out / "manifest.json").read_text())["abstention"] == manifest["abstention"]
    with Store.open(settings) as store:
        plain_searcher = Searcher(store, without)
        fusion, calibrated = calibrate_reranker(
            plain_searcher, out, read_question_files([questions]), k=5, candidates=5, fusion=True,
            min_questions=1, progress=False,
        )  # fmt: skip
    assert fusion["questions"] == 24 and fusion["weight"] in [round(0.1 * i, 1) for i in range(11)]
    by_weight = fusion["ndcg_at_10_by_weight"]
    assert len(by_weight) == 11 and by_weight[f"{fusion['weight']:.1f}"] == max(by_weight.values())
    assert calibrated["questions"] == 24 and 0.0 < calibrated["abstain_below"] < 1.0
    assert calibrated["answerable_answered"] >= 0.95
    assert 0.0 <= calibrated["relevant_removed_abstained"] <= 1.0

    def ask_with(abstain_below: float, **env: str) -> object:
        written = json.loads((out / "manifest.json").read_text())
        written["abstention"] = {**calibrated, "abstain_below": abstain_below}
        (out / "manifest.json").write_text(json.dumps(written))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        current = Settings()
        with Store.open(current) as store:
            answerer = Answerer(store, current, generator=ExtractiveGenerator())
            return answerer.ask("Does aspirin reduce stroke risk in patients?", k=5)

    monkeypatch.setenv("MEDLIT_INDEX__RERANK_CANDIDATES", "5")
    answer = ask_with(1.01)  # off by default: the cosine threshold decides, as before
    assert answer.trace.rerank_threshold is None and "reranker" not in (answer.reason or "")
    monkeypatch.setenv("MEDLIT_INDEX__RERANK_ABSTAIN", "true")
    answer = ask_with(1.01)  # nothing reaches it: the reranker's threshold decides
    assert answer.abstained and "the reranker's best score" in answer.reason
    assert answer.trace.rerank_threshold == 1.01 and answer.trace.rerank_relevance is not None
    # it decides instead of the cosine threshold, however high that is set
    answer = ask_with(0.0, MEDLIT_ANSWER__ABSTAIN_THRESHOLD="0.99")
    assert not answer.abstained or ("reranker" not in answer.reason and "close enough" not in answer.reason)
    answer = ask_with(0.0, MEDLIT_INDEX__RERANK_ABSTAIN="false")  # switched off: the cosine one again
    assert answer.abstained and "close enough to the question" in answer.reason
    assert answer.trace.rerank_threshold is None


def test_hard_negatives_are_judged_articles_unless_the_library_is_asked_for(
    library: tuple[Settings, Path],
) -> None:
    from indexes.reranker_data import read_question_files, reranker_examples
    from indexes.reranking import document_text

    settings, question_file = library
    questions = read_question_files([question_file])
    trials = {p for q in questions for p in q.relevant}  # the judged articles: one trial per question
    with Store.open(settings) as store:
        searcher = Searcher(store, settings)
        texts = {
            a.pmid: document_text(a.title, a.abstract) for a in store.get_many(range(1000, 1100)).values()
        }
        judged, judged_summary = reranker_examples(searcher, questions, negatives=3, progress=False)
        anywhere, library_summary = reranker_examples(
            searcher, questions, negatives=3, negatives_from="library", progress=False
        )
        with pytest.raises(InputError, match="negatives_from"):
            reranker_examples(searcher, questions, negatives_from="web", progress=False)
    by_text = {text: pmid for pmid, text in texts.items()}
    judged_negatives = {by_text[e.second] for e in judged if e.label == 0}
    library_negatives = {by_text[e.second] for e in anywhere if e.label == 0}
    # judged: other questions' trials only, never the unjudged mouse studies; library: the mouse studies too
    assert judged_negatives and judged_negatives <= trials
    assert library_negatives - trials
    assert judged_summary["negatives_from"] == "judged" and library_summary["negatives_from"] == "library"
    # a question's own relevant article is never its negative
    for example in judged:
        if example.label == 0:
            question = next(q for q in questions if q.key == example.group)
            assert by_text[example.second] not in question.relevant


def test_default_model_locations(fake_model_env: Path) -> None:
    settings = Settings()
    assert settings.trained_model(None, "reranker") is None
    (settings.model_cache / "reranker").mkdir(parents=True)
    assert settings.trained_model(None, "reranker") == settings.model_cache / "reranker"
    assert settings.trained_model("none", "reranker") is None
    assert settings.trained_model("/x/y", "verdict") == Path("/x/y")


def test_reranker_setting_pointing_nowhere_is_one_clear_error(fake_model_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["search", "aspirin"], env={"MEDLIT_INDEX__RERANKER": str(tmp_path / "missing")}
    )
    assert result.exit_code == 1
    assert "no such directory" in result.output and "Traceback" not in result.output


def test_screening_csv(tmp_path: Path) -> None:
    path = tmp_path / "screening.csv"
    path.write_text(
        "Question,PMID,Label\n"
        "Does aspirin prevent stroke?,1001,include\n"
        "Does aspirin prevent stroke?,1002,Excluded\n"
        "Does aspirin prevent stroke?,1004,exclude\n"
        "Is metformin safe?,1003,1\n"
    )
    questions = {q.text: q for q in read_screening_csv(path)}
    assert questions["Does aspirin prevent stroke?"].relevant == {1001}
    assert questions["Does aspirin prevent stroke?"].irrelevant == {1002, 1004}
    assert questions["Is metformin safe?"].relevant == {1003}
    bad = tmp_path / "bad.csv"
    bad.write_text("question,pmid,label\nDoes it?,12x,include\n")
    with pytest.raises(InputError, match=r"bad.csv:2: pmid '12x'"):
        read_screening_csv(bad)
    bad.write_text("question,pmid,label\nDoes it?,12,perhaps\n")
    with pytest.raises(InputError, match="not include or exclude"):
        read_screening_csv(bad)
    bad.write_text("title,pmid\nx,1\n")
    with pytest.raises(InputError, match="missing: question, label"):
        read_screening_csv(bad)


def test_train_reranker_from_a_screening_csv(
    library: tuple[Settings, Path], tiny_base: Path, tmp_path: Path
) -> None:
    _settings, questions = library
    rows = ["question,pmid,label"]
    for line in questions.read_text().splitlines():
        item = json.loads(line)
        rows.append(f'"{item["question"]}",{item["relevant_pmids"][0]},include')
        rows.append(f'"{item["question"]}",{item["relevant_pmids"][0] + 1},exclude')
    screening = tmp_path / "screening.csv"
    screening.write_text("\n".join(rows) + "\n")
    manifest = run(
        "train", "reranker", "--screening", str(screening), "--base", str(tiny_base), "--out",
        str(tmp_path / "screened"), "--negatives", "2", "--negatives-from", "library", *FAST,
    )  # fmt: skip
    assert manifest["data"]["negatives_from"] == "library"
    assert manifest["data"]["judged_negatives"] == 24
    assert manifest["data"]["questions_used"] == 24


def test_train_errors_are_one_line(library: tuple[Settings, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "reranker", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "give labelled questions" in result.output
    result = CliRunner().invoke(
        cli, ["train", "verdict", "--questions", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "v")]
    )
    assert result.exit_code == 1 and "no such questions file" in result.output


def test_linear_verdict_head_trains_saves_and_predicts(
    library: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, questions = library
    out = tmp_path / "verdict.json"
    result = run("train", "verdict", "--head", "linear", "--questions", str(questions), "--out", str(out))
    assert result["path"] == str(out) and result["bytes"] < 400_000
    assert result["data"]["questions"] == 24 and "uncertain_below" in result
    assert not list(tmp_path.rglob("*.pkl"))
    model = VerdictClassifier.load(out)
    with Store.open(settings) as store:
        answerer = Answerer(store, settings, generator=ExtractiveGenerator())
        _hits, evidence, _trace = answerer.retrieve("Does aspirin reduce stroke risk in patients?")
        assert evidence is not None
        prediction = model.predict(evidence)
    assert prediction.label in ("yes", "no", "uncertain")
    assert set(prediction.probabilities) == {"yes", "no", "uncertain"}
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-3
    assert prediction.basis == verdict_passage(evidence) and "aspirin" in prediction.basis
    assert len(prediction.basis.split()) <= 150 + 40  # within the passage budget

    damaged = tmp_path / "damaged.json"
    data = json.loads(out.read_text())
    data["bias"] = data["bias"][:1]
    damaged.write_text(json.dumps(data))
    with pytest.raises(InputError, match="do not fit together"):
        VerdictClassifier.load(damaged)


def test_findings_verdict_head_reads_the_best_articles_statistics(
    library: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, questions = library
    out = tmp_path / "findings.json"
    result = run("train", "verdict", "--head", "findings", "--questions", str(questions), "--out", str(out))
    assert result["head"] == "findings" and result["class_weights"] == "none"
    assert result["bytes"] < 10_000  # 24 features: a file small enough to ship
    model = VerdictClassifier.load(out)
    assert model.linear is not None and model.linear.features == "findings-stance"
    assert model.linear.weights.shape == (24, 3)
    with Store.open(settings) as store:
        answerer = Answerer(store, settings, generator=ExtractiveGenerator())
        _hits, evidence, _trace = answerer.retrieve("Does aspirin reduce stroke risk in patients?")
        assert evidence is not None
        prediction = model.predict(evidence)
    best = (evidence.on_point() or evidence.sources)[0]
    assert prediction.basis == findings_text(evidence)
    chosen = finding_sentences(evidence)
    assert chosen and {evidence.sentences[i].pmid for i in chosen} == {best.pmid}
    assert "p < 0.05" in prediction.basis  # the trial's results, not the mouse study
    polarity = polarity_features(evidence)  # the trial's findings read against the question
    positive = "significantly reduced" in prediction.basis  # the trial's finding, drawn at random
    assert (polarity[0] > 0) == positive and (polarity[1] > 0) == (not positive)
    assert polarity[6] == -1  # "reduce": the question asks about a reduction
    # a head saved before the polarity features (17 values, "findings") still loads and predicts
    data = json.loads(out.read_text())
    old = dict(data, features="findings", mean=data["mean"][:17], scale=data["scale"][:17])
    old["weights"] = data["weights"][:17]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert VerdictClassifier.load(tmp_path / "old.json").predict(evidence).label in ("yes", "no", "uncertain")
    # a head of another feature set is refused by name
    data = json.loads(out.read_text())
    data["features"] = "telepathy"
    (tmp_path / "odd.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown feature set"):
        VerdictClassifier.load(tmp_path / "odd.json")


@pytest.mark.parametrize(
    ("sentences", "expected"),
    [
        # p-values under / over 0.05, "NS", a ratio whose interval excludes 1 and one that holds it
        (
            ["Mortality was lower (OR 0.62, 95% CI 0.45-0.85; p = 0.003).",
             "Length of stay did not differ (HR, 1.1; 95% CI, 0.8 to 1.4; P=.42), NS."],
            {"small": 1, "large": 2, "excludes": 1, "holds": 1, "share": 0.4, "read": 1.0},
        ),
        (
            ["There was no significant difference in pain scores (p > 0.05)."],
            {"small": 0, "large": 1, "excludes": 0, "holds": 0, "share": 0.0, "negated": 1},
        ),
        (["Patients were followed for 12 months."], {"small": 0, "large": 0, "share": 0.5, "read": 0.0}),
    ],
)  # fmt: skip
def test_statistic_features_read_p_values_and_intervals(sentences: list[str], expected: dict) -> None:
    values = statistic_features(sentences)
    names = ["small", "large", "excludes", "holds", "signed", "negated", "share", "read"]
    got = dict(zip(names, values.tolist(), strict=True))
    for name, value in expected.items():
        if name in ("share", "read"):
            assert got[name] == pytest.approx(value)
        else:
            assert got[name] == pytest.approx(np.log1p(value))


def test_uncertain_when_neither_yes_nor_no_is_confident() -> None:
    assert decide({"yes": 0.55, "no": 0.35, "uncertain": 0.10}, 0.6) == "uncertain"
    assert decide({"yes": 0.75, "no": 0.15, "uncertain": 0.10}, 0.6) == "yes"
    assert decide({"yes": 0.2, "no": 0.3, "uncertain": 0.5}, 0.6) == "uncertain"


def test_linear_head_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x[:, :3].argmax(axis=1)  # linear boundaries between three classes
    head = LinearHead.fit(x, y, ["yes", "no", "maybe"], l2=0.1)
    accuracy = float((head.predict_proba(x).argmax(axis=1) == y).mean())
    assert accuracy > 0.9
    again = LinearHead.from_json(json.loads(json.dumps(head.to_json())), Path("x.json"))
    assert np.allclose(again.predict_proba(x), head.predict_proba(x), atol=1e-4)


def test_cross_encoder_verdict_and_support_models(
    library: tuple[Settings, Path], tiny_base: Path, tmp_path: Path
) -> None:
    settings, questions = library
    verdict = run(
        "train", "verdict", "--questions", str(questions), "--base", str(tiny_base), "--out",
        str(tmp_path / "verdict"), *FAST,
    )  # fmt: skip
    assert verdict["task"] == "verdict" and verdict["labels"] == ["yes", "no", "maybe"]
    assert "uncertain_below" in verdict and verdict["calibration"]
    model = VerdictClassifier.load(tmp_path / "verdict")
    with Store.open(settings) as store:
        answerer = Answerer(store, settings, generator=ExtractiveGenerator())
        _hits, evidence, _trace = answerer.retrieve("Does statin reduce cancer risk in patients?")
        assert evidence is not None
        assert model.predict(evidence).label in ("yes", "no", "uncertain")

    support = run(
        "train", "support", "--questions", str(questions), "--base", str(tiny_base), "--out",
        str(tmp_path / "support"), *FAST,
    )  # fmt: skip
    assert support["recipe"]["loss"] == "pointwise"  # support models keep the pointwise loss
    kinds = support["data"]["pair_kinds"]
    assert kinds["supported"] == 24 and kinds["other_article"] > 0 and kinds.get("negated", 0) > 0
    comparison = support["vs_cosine"]
    assert {"cosine_configured", "cosine_calibrated", "classifier_0.5"} <= set(comparison)
    classifier = SupportClassifier.load(tmp_path / "support")
    scores = classifier.score([("aspirin reduced stroke", "aspirin significantly reduced stroke risk")])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) <= 1.0
    with pytest.raises(InputError, match="not a support model"):
        SupportClassifier.load(tmp_path / "verdict")
    check_answers_use_the_support_model(settings, tmp_path / "support")


def check_answers_use_the_support_model(settings: Settings, trained: Path) -> None:
    """``answer.support_model`` (or $MEDLIT_HOME/models/support) decides a citation instead of the
    similarity threshold, at the threshold calibrated in its manifest; the number and denial checks stay."""
    question = "Does statin reduce cancer risk in patients?"
    claim = "Statin was given to patients in a cancer study [1]."  # a weak paraphrase: under 0.75 cosine

    def verify_with(model: str, threshold: float | None = None) -> tuple[Answerer, list]:
        answer = settings.answer.model_copy(update={"support_model": model})
        answerer = Answerer(
            store, settings.model_copy(update={"answer": answer}), generator=ExtractiveGenerator()
        )
        if threshold is not None:
            answerer.support_model().threshold = threshold
        _hits, evidence, _trace = answerer.retrieve(question)
        assert evidence is not None
        verifier = answerer._verifier(evidence)
        return answerer, [
            *verifier.check_text(claim),
            *verifier.check_text("Statin reduced cancer by 97% [1]."),
        ]

    with Store.open(settings) as store:
        answerer, (plain, _) = verify_with("none")
        assert answerer.support_model() is None
        assert not plain.supported and plain.support is not None and plain.support < 0.75
        answerer, (lenient, numbers) = verify_with(str(trained), threshold=0.0)
        assert isinstance(answerer.support_model(), SupportClassifier)
        assert lenient.supported  # the classifier, not the cosine, decided
        assert not numbers.supported  # "97%" is in no abstract, whatever the classifier says
        _answerer, (strict, _) = verify_with(str(trained), threshold=1.01)
        assert not strict.supported
        answer = Answerer(store, settings, generator=ExtractiveGenerator())
        assert answer.support_model() is None  # nothing in $MEDLIT_HOME/models/support
        settings.model_cache.mkdir(parents=True, exist_ok=True)
        (settings.model_cache / "support").symlink_to(trained)
        assert isinstance(Answerer(store, settings).support_model(), SupportClassifier)


def test_claim_perturbations() -> None:
    assert (
        negate("Aspirin is effective for stroke prevention.")
        == "Aspirin is not effective for stroke prevention."
    )
    assert negate("Aspirin does not reduce stroke.") == "Aspirin does reduce stroke."
    assert negate("Aspirin lowers stroke rates.") is None
    changed = change_numbers("Mortality fell by 12% in 300 patients.", random.Random(1))
    assert changed is not None and "12%" not in changed and "300" not in changed
    swapped = swap_term("Trastuzumab improves survival in HER2 cancer.", ["Rituximab"], random.Random(1))
    assert swapped is not None and "Rituximab" in swapped


@pytest.mark.slow  # starting Ray and two torch workers: ~1 min idle, several on a loaded 2-core machine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_engine_ray_runs_the_same_trainer_in_two_workers(tiny_base: Path, tmp_path: Path) -> None:
    from indexes.training import Recipe, train_pair_classifier
    from tests.test_training import separable_pairs

    trained = train_pair_classifier(
        "reranker",
        separable_pairs(),
        out=tmp_path / "ray-reranker",
        base=tiny_base,
        recipe=Recipe(epochs=2, max_length=32, batch_size=8, learning_rate=2e-3, workers=2, eval_share=0.25),
        engine="ray",
        progress=False,
    )
    manifest = trained.manifest
    assert manifest["engine"] == "ray" and manifest["recipe"]["workers"] == 2
    assert manifest["metrics"]["held_out"]["average_precision"] > 0.5
    assert (tmp_path / "ray-reranker" / "onnx" / "model.int8.onnx").is_file()
    assert not (tmp_path / "ray-reranker" / "ray").exists()
