"""Answers about the question, whatever the generator: no paragraph about other drugs or other patients.

The two failures a user met on the demo library, rebuilt small (FakeEmbedder, extractive and a model over
the fake OpenAI-compatible server): a dexamethasone question answered with aspirin and statins, and an
elderly question answered from a paediatric cohort and a fundoplication study.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from foundation.settings import AnswerSettings, Settings
from indexes.embedder import FakeEmbedder
from ingest.run import ingest_jsonl
from ingest.store import Store
from rag.answer import Answer
from rag.appraise import reported
from rag.ask import Answerer
from rag.focus import read_question, stems
from rag.generators import DraftSentence, ExtractiveGenerator
from tests.fake_openai import ChatRequest, FakeOpenAI

DEXAMETHASONE = "Is dexamethasone effective in reducing mortality in hospitalized COVID-19 patients?"
ELDERLY = "Is laparoscopic cholecystectomy safe in elderly patients?"

ARTICLES = [
    {
        "pmid": 301,
        "title": "Perspectives on glucocorticoid treatment for hospitalized COVID-19 patients: "
        "a systematic review",
        "abstract": "We searched PubMed and Embase for studies of glucocorticoids in hospitalized COVID-19 "
        "patients. Glucocorticoid treatment reduced mortality in hospitalized COVID-19 patients who "
        "needed oxygen.",
        "year": 2021,
        "publication_types": ["Journal Article"],
        "mesh": ["Glucocorticoids", "COVID-19", "Humans"],
        "language": "eng",
    },
    {
        "pmid": 302,
        "title": "Low-dose aspirin and mortality in hospitalized COVID-19 patients",
        "abstract": "Aspirin use was associated with lower mortality in hospitalized COVID-19 patients in "
        "this cohort of 412 adults.",
        "year": 2021,
        "publication_types": ["Journal Article"],
        "mesh": ["Aspirin", "COVID-19", "Humans"],
        "language": "eng",
    },
    {
        "pmid": 303,
        "title": "Statins and mortality in hospitalized COVID-19 patients",
        "abstract": "Statin use reduced mortality in hospitalized COVID-19 patients in a retrospective "
        "cohort.",
        "year": 2020,
        "publication_types": ["Journal Article"],
        "mesh": ["Hydroxymethylglutaryl-CoA Reductase Inhibitors", "COVID-19", "Humans"],
        "language": "eng",
    },
    {
        "pmid": 401,
        "title": "Laparoscopic cholecystectomy in children",
        "abstract": "We reviewed 40 children (mean age 10.4 years) who underwent laparoscopic "
        "cholecystectomy. Laparoscopic cholecystectomy was safe in children, with no conversions.",
        "year": 2015,
        "publication_types": ["Journal Article"],
        "mesh": ["Cholecystectomy, Laparoscopic", "Child", "Humans"],
        "language": "eng",
    },
    {
        "pmid": 402,
        "title": "Laparoscopic cholecystectomy in elderly patients aged 80 years or older",
        "abstract": "Elderly patients aged 80 years or older underwent laparoscopic cholecystectomy. "
        "Laparoscopic cholecystectomy was safe in elderly patients, with low morbidity and no deaths.",
        "year": 2018,
        "publication_types": ["Journal Article"],
        "mesh": ["Cholecystectomy, Laparoscopic", "Aged, 80 and over", "Humans"],
        "language": "eng",
    },
    {
        "pmid": 403,
        "title": "Laparoscopic fundoplication in elderly patients",
        "abstract": "Laparoscopic fundoplication was safe in elderly patients with reflux disease.",
        "year": 2012,
        "publication_types": ["Journal Article"],
        "mesh": ["Fundoplication", "Aged", "Humans"],
        "language": "eng",
    },
]


@pytest.fixture
def store(fake_model_env: Path, tmp_path: Path) -> Iterator[Store]:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    with Store.open(Settings()) as store:
        ingest_jsonl(store, corpus)
        yield store


class DrugClassEmbedder(FakeEmbedder):
    """The FakeEmbedder, knowing one thing a real model knows: dexamethasone is a glucocorticoid (in
    documents only, so that the question's own retrieval does not favour the glucocorticoid review)."""

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return super().embed_documents([t.replace("dexamethasone", "Glucocorticoids") for t in texts])


@pytest.fixture
def extractive(store: Store) -> Answerer:
    answerer = Answerer(store, Settings(), embedder=DrugClassEmbedder(256), generator=ExtractiveGenerator())
    answerer.searcher.lexical.build(progress=False)
    answerer.searcher.dense.build(progress=False)
    return answerer


def test_no_retrieved_study_of_the_drug_is_said_plainly(extractive: Answerer) -> None:
    answer = extractive.ask(DEXAMETHASONE, k=3)
    assert answer.focus is not None and answer.focus["primary"] == "dexamethasone"
    assert not answer.abstained
    assert answer.notes[0].startswith(
        "No retrieved article studies dexamethasone; the closest evidence concerns"
    )
    assert answer.text.startswith("No retrieved article studies dexamethasone")
    # the closest evidence only: nothing about aspirin or statins
    assert answer.trace.retrieved[0] != 301  # not the best ranked: the closest to dexamethasone
    assert [c.pmid for c in answer.citations] == [301]
    assert "aspirin" not in answer.text.lower() and "statin" not in answer.text.lower()
    assert f"[{answer.citations[0].number}]" in answer.notes[0]
    # a verdict about dexamethasone cannot rest on other drugs
    assert (
        answer.verdict == "uncertain" and "no retrieved article studies dexamethasone" in answer.verdict_basis
    )
    # the review says it is one, though PubMed's types say only "Journal Article"
    assert answer.citations[0].design == "systematic review"
    assert answer.citations[0].evidence_level == "systematic review / meta-analysis"
    assert "No retrieved article studies dexamethasone" in answer.to_text()


def test_an_elderly_question_is_not_answered_from_other_procedures_and_children_are_flagged(
    extractive: Answerer,
) -> None:
    answer = extractive.ask(ELDERLY, k=3)
    assert not answer.abstained
    cited = [c.pmid for c in answer.citations]
    assert 403 not in cited  # fundoplication is not cholecystectomy
    assert 402 in cited
    assert cited[0] == 402  # the study of the question's population comes first
    if 401 in cited:
        number = next(c.number for c in answer.citations if c.pmid == 401)
        assert (
            f"Population: the question asks about older adults; [{number}] studies children "
            "(mean age 10.4 years)." in answer.notes
        )
    assert all("fundoplication" not in s.text.lower() for s in answer.sentences)
    assert answer.verdict == "yes" and answer.stance_summary


def test_every_citation_shows_design_size_and_stance(extractive: Answerer) -> None:
    answer = extractive.ask(ELDERLY, k=3)
    data = answer.to_dict()
    for citation in data["citations"]:
        assert citation["design"] and citation["stance"] in ("supports", "contradicts", "unclear")
    assert data["stances"] is not None and sum(data["stances"].values()) == len(data["citations"])
    assert data["verdict_basis"].startswith("the stances of the cited studies")
    assert "For and against:" in answer.to_text() and "**For and against:**" in answer.to_markdown()


def test_the_packaged_findings_head_gives_the_verdict_by_default(
    extractive: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDLIT_ANSWER__VERDICT_MODEL")  # as a user who configured nothing
    extractive.settings = Settings()
    answer = extractive.ask(ELDERLY, k=3)
    assert answer.trace.verdicts["classifier"] in ("yes", "no", "uncertain")
    assert "stances" in answer.trace.verdicts  # formed too, scored apart by eval answers
    basis = answer.to_dict()["verdict_basis"]
    assert basis.startswith("the verdict classifier verdict-findings.json (p=") or basis.startswith(
        "none of the cited studies"
    )
    # a higher threshold than the calibrated one: only a surer verdict than any here stays definite
    monkeypatch.setenv("MEDLIT_ANSWER__VERDICT_UNCERTAIN_BELOW", "0.999")
    surer = Answerer(
        extractive.store, Settings(), searcher=extractive.searcher, generator=ExtractiveGenerator()
    )
    assert surer.ask(ELDERLY, k=3).trace.verdicts["classifier"] == "uncertain"
    monkeypatch.setenv("MEDLIT_ANSWER__VERDICT_MODEL", "none")  # off: the stances speak
    off = Answerer(
        extractive.store, Settings(), searcher=extractive.searcher, generator=ExtractiveGenerator()
    )
    assert "classifier" not in off.ask(ELDERLY, k=3).trace.verdicts


def test_a_question_about_nothing_retrieved_abstains(extractive: Answerer) -> None:
    answer = extractive.ask("Does tocilizumab reduce mortality in hospitalized COVID-19 patients?", k=3)
    # COVID-19 mortality articles are retrieved, none about tocilizumab: said so, from the closest study
    assert answer.abstained or answer.notes[0].startswith("No retrieved article studies tocilizumab")


OTHER_CONTEXTS = [
    {
        "pmid": 501,
        "title": "Dexamethasone for postoperative nausea and vomiting",
        "abstract": "Dexamethasone is effective in reducing postoperative nausea and vomiting in "
        "hospitalized patients after surgery, in a trial of 200 adults.",
        "year": 2013,
        "publication_types": ["Journal Article"],
        "language": "eng",
    },
    {
        "pmid": 502,
        "title": "Treatment regimens and mortality in hospitalized COVID-19 patients",
        "abstract": "All 209 hospitalized COVID-19 patients received corticosteroids (dexamethasone), with "
        "or without colchicine. The colchicine combination significantly reduced mortality in "
        "hospitalized COVID-19 patients.",
        "year": 2021,
        "publication_types": ["Journal Article"],
        "language": "eng",
    },
]


def ask_over(articles: list[dict], tmp_path: Path, question: str, k: int) -> Answer:
    """The extractive answer to ``question`` from a library of just ``articles`` (FakeEmbedder)."""
    corpus = tmp_path / "articles.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in articles))
    with Store.open(Settings()) as store:
        ingest_jsonl(store, corpus)
        answerer = Answerer(store, Settings(), embedder=FakeEmbedder(256), generator=ExtractiveGenerator())
        answerer.searcher.lexical.build(progress=False)
        answerer.searcher.dense.build(progress=False)
        return answerer.ask(question, k=k)


def test_the_drug_in_another_context_is_not_evidence_and_a_finding_on_another_drug_is_no_stance(
    fake_model_env: Path, tmp_path: Path
) -> None:
    answer = ask_over(OTHER_CONTEXTS, tmp_path, DEXAMETHASONE, k=2)
    assert sorted(answer.trace.retrieved) == [501, 502]
    # dexamethasone for nausea says nothing about dexamethasone in COVID-19
    assert [c.pmid for c in answer.citations] == [502]
    assert "nausea" not in answer.text.lower()
    # the cohort found that colchicine helped: no stance on dexamethasone, so no "yes" from it
    assert answer.citations[0].stance == "unclear"
    assert answer.verdict != "yes"


def test_no_study_of_the_age_group_asked_about_is_said_and_leaves_the_verdict_uncertain(
    fake_model_env: Path, tmp_path: Path
) -> None:
    adults = {
        "pmid": 601,
        "title": "Laparoscopic cholecystectomy outcomes",
        "abstract": "Laparoscopic cholecystectomy is safe in patients, with no significant "
        "difference in complications between day-case and overnight stay.",
        "year": 2019,
        "publication_types": ["Journal Article"],
        "language": "eng",
    }
    answer = ask_over([adults], tmp_path, ELDERLY, k=1)
    assert [c.pmid for c in answer.citations] == [601]
    assert answer.citations[0].stance == "supports"  # a safety question: no more complications is for it
    assert answer.trace.verdicts.get("stances") == "yes"
    assert (
        "Population: the question asks about older adults; none of the cited studies says it studied them."
        in answer.notes
    )
    assert answer.verdict == "uncertain" and answer.verdict_basis == (
        "none of the cited studies says it studied older adults"
    )


def test_an_outcome_no_cited_study_reports_is_said_and_leaves_the_verdict_uncertain(
    fake_model_env: Path, tmp_path: Path
) -> None:
    glycaemia = {
        "pmid": 701,
        "title": "Metformin and glycaemic control in type 2 diabetes: a randomized trial",
        "abstract": "BACKGROUND: Metformin is first-line therapy. RESULTS: In 400 patients with type 2 "
        "diabetes, metformin reduced HbA1c by 1.1% compared with placebo. CONCLUSIONS: Metformin "
        "significantly reduced HbA1c.",
        "year": 2018,
        "publication_types": ["Randomized Controlled Trial"],
        "language": "eng",
    }
    answer = ask_over(
        [glycaemia], tmp_path, "Does metformin reduce cancer incidence in type 2 diabetes?", k=1
    )
    assert [c.pmid for c in answer.citations] == [701]
    assert (
        "Outcome: the question asks about cancer incidence; none of the cited studies reports it."
        in answer.notes
    )
    # it reduced HbA1c: the stances say "yes", but that is no "yes" to a question about cancer
    assert answer.trace.verdicts.get("stances") == "yes"
    assert answer.verdict == "uncertain"
    assert answer.verdict_basis == "none of the cited studies reports cancer incidence"


def test_a_reviews_search_is_not_a_finding() -> None:
    from rag.generators import METHOD

    for text in (
        "The research was done electronically on the PubMed database using the following terms: steroids.",
        "MEDLINE and Embase were searched up to March 2020.",
        "We searched PubMed for randomised trials.",
    ):
        assert METHOD.search(text), text
    assert not METHOD.search("Dexamethasone reduced 28-day mortality (rate ratio 0.83).")


# ----- a model's answer -------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def model(store: Store, fake: FakeOpenAI) -> Answerer:
    settings = Settings()
    cfg = AnswerSettings(
        **{
            **settings.answer.model_dump(),
            "generator": "openai",
            "base_url": fake.url,
            "model": "fake-med-7b",
            "max_retries": 0,
            "timeout": 10.0,
        }
    )
    settings = settings.model_copy(update={"answer": cfg})
    answerer = Answerer(store, settings, embedder=FakeEmbedder(256))
    answerer.searcher.lexical.build(progress=False)
    answerer.searcher.dense.build(progress=False)
    return answerer


def test_a_models_off_topic_sentence_is_set_aside(model: Answerer, fake: FakeOpenAI) -> None:
    # the fundoplication study is not shown to the model (not about the question); a model that writes
    # about fundoplication anyway, citing a shown source, gets the sentence set aside
    fake.script(
        lambda r: (
            "Laparoscopic cholecystectomy was safe in elderly patients, with low morbidity "
            f"[{r.number(402)}]. "
            f"Laparoscopic fundoplication was safe in elderly patients with reflux disease [{r.number(402)}]."
        )
    )
    answer = model.ask(ELDERLY, k=3)
    assert 403 not in fake.requests[0].sources
    assert [c.pmid for c in answer.citations] == [402]
    assert [s.text for s in answer.off_point] == [
        "Laparoscopic fundoplication was safe in elderly patients with reflux disease."
    ]
    assert "laparoscopic cholecystectomy" in answer.off_point[0].note
    assert "fundoplication" not in answer.text


def test_a_marker_inside_a_sentence_keeps_its_place_renumbered(model: Answerer, fake: FakeOpenAI) -> None:
    fake.script(
        lambda r: (
            f"The study by [{r.number(402)}] found that laparoscopic cholecystectomy was safe in elderly "
            "patients, with low morbidity."
        )
    )
    answer = model.ask(ELDERLY, k=3)
    (sentence,) = answer.sentences
    assert sentence.supported and sentence.citations == [1] and sentence.inline == [1]
    assert sentence.text.startswith("The study by [1] found that")
    assert sentence.marked == sentence.text  # the marker is not written twice
    assert "by found" not in answer.text and answer.text.startswith("The study by [1] found")


def test_an_inline_marker_that_fails_is_never_cut_out(model: Answerer, fake: FakeOpenAI) -> None:
    fake.script(
        lambda r: (
            f"The study by [{r.number(401)}] found that laparoscopic cholecystectomy cured reflux in adults."
        )
    )
    answer_settings = model.settings.answer.model_copy(update={"quote_fallback": False})  # keep its text
    model.settings = model.settings.model_copy(update={"answer": answer_settings})
    answer = model.ask(ELDERLY, k=3)
    shown = answer.sentences[0] if answer.sentences else None
    assert shown is not None and not shown.supported
    assert "[citation removed]" in shown.text and "by found" not in shown.text


def test_an_opening_verdict_sentence_rests_on_what_the_rest_cites(model: Answerer, fake: FakeOpenAI) -> None:
    def reply(r: ChatRequest) -> str:
        return (
            "Verdict: yes\n"
            "Laparoscopic cholecystectomy is safe in elderly patients. "
            "Laparoscopic cholecystectomy was safe in elderly patients, with low morbidity "
            f"[{r.number(402)}]."
        )

    fake.script(reply, reply)
    answer = model.ask(ELDERLY, k=3)
    opening, second = answer.sentences
    assert second.supported and second.citations == [1]
    assert (
        opening.supported
        and opening.citations == [1]
        and opening.note == "sums up the evidence the answer cites"
    )
    assert answer.verdict == "yes" and answer.verdict_basis.startswith("the model")
    # streamed, the opening sentence comes once the rest is verified, with its place
    events = list(model.stream(ELDERLY, k=3))
    sentences = [e["data"] for e in events if e["event"] == "sentence"]
    assert [s["index"] for s in sentences] == [1, 0]
    assert events[-1]["data"]["sentences"][0]["note"] == "sums up the evidence the answer cites"


def test_an_uncited_claim_in_the_middle_is_not_covered_by_the_rest(model: Answerer, fake: FakeOpenAI) -> None:
    fake.script(
        lambda r: (
            "Laparoscopic cholecystectomy was safe in elderly patients, with low morbidity "
            f"[{r.number(402)}]. "
            "Laparoscopic cholecystectomy halves hospital costs in elderly patients."
        )
    )
    answer = model.ask(ELDERLY, k=3)
    assert answer.sentences[1].supported is False
    assert answer.sentences[1].note == "no citation, and no retrieved abstract supports it"


@pytest.mark.parametrize(
    ("question", "text", "reports"),
    [
        ("Is SMOC2 expressed during wound healing?", "Smoc2 functions in the response to wounding.", True),
        ("Is AGO2 related to cytokinesis?", "AGO2 localizes to cytokinetic protrusions.", True),
        ("Does metformin reduce cancer incidence?", "Metformin lowered the incidence of cancers.", True),
        ("Does metformin reduce cancer incidence?", "Metformin improved glycaemic control.", False),
        ("Is AGO2 related to cytokinesis?", "AGO2 binds cytokines in plasma.", False),
    ],
)
def test_an_outcome_is_reported_in_other_words(question: str, text: str, reports: bool) -> None:
    """The outcome rule takes a verdict away only when no cited study reports the outcome in any form."""
    (outcome,) = [c for c in read_question(question).concepts if c.role == "outcome"]
    assert reported(outcome, stems(text)) is reports


HEPARIN = {
    "pmid": 501,
    "title": "Nebulised heparin in mechanically ventilated patients",
    "abstract": "Ventilator-associated pneumonia (VAP) is common in ventilated patients. We randomised 214 "
    "patients to nebulised heparin or usual care. There was no difference in the development of VAP between "
    "the groups (P=0.70).",
    "year": 2016,
    "publication_types": ["Randomized Controlled Trial"],
    "language": "eng",
}


class RecordingEmbedder(FakeEmbedder):
    """The FakeEmbedder, keeping every document text it was asked to embed."""

    def __init__(self, dimension: int) -> None:
        super().__init__(dimension)
        self.seen: list[str] = []

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.seen.extend(texts)
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        self.seen.append(f"query: {text}")
        return super().embed_query(text)


def test_abbreviations_are_written_out_for_embedding(fake_model_env: Path, tmp_path: Path) -> None:
    """A finding written with the article's own abbreviation ("no difference in VAP") is embedded with it
    written out, as is a question that uses it, for sentence choice and for the support check; the quote
    stays verbatim."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(HEPARIN) + "\n")
    embedder = RecordingEmbedder(256)
    with Store.open(Settings()) as store:
        ingest_jsonl(store, corpus)
        answerer = Answerer(store, Settings(), embedder=embedder, generator=ExtractiveGenerator())
        answerer.searcher.lexical.build(progress=False)
        answerer.searcher.dense.build(progress=False)
        question = "Does nebulised heparin prevent ventilator-associated pneumonia?"
        embedder.seen.clear()
        _hits, evidence, _trace = answerer.retrieve(question, k=1)
        assert evidence is not None
        assert evidence.sources[0].abbreviations == {"VAP": "Ventilator-associated pneumonia"}
        finding = next(i for i, s in enumerate(evidence.sentences) if "(P=0.70)" in s.text)
        assert "of VAP between" in evidence.sentences[finding].text  # what is shown and quoted
        written_out = "no difference in the development of Ventilator-associated pneumonia (VAP) between"
        assert any(written_out in text for text in embedder.seen)
        plain = embedder.embed_documents([evidence.sentences[finding].text])[0]
        assert float(evidence.vectors[finding] @ evidence.question_vector) > float(
            plain @ evidence.question_vector
        )
        # a question that uses the abbreviation is read as the article writes it
        embedder.seen.clear()
        answerer.retrieve("Does nebulised heparin prevent VAP?", k=1)
        assert "query: Does nebulised heparin prevent Ventilator-associated pneumonia (VAP)?" in embedder.seen
        # the support check embeds an answer sentence with the abbreviations of the articles it cites
        embedder.seen.clear()
        verifier = answerer._verifier(evidence)
        verifier.check([DraftSentence(text="Nebulised heparin did not reduce VAP.", pmids=[501])])
        assert embedder.seen == ["Nebulised heparin did not reduce Ventilator-associated pneumonia (VAP)."]
        # and `eval answers` counts such a sentence as naming the question's concept
        from medlit.evaluation import _read_with_synonyms

        assert not read_question(question).mentioned("No difference in VAP.", loose=True)
        assert _read_with_synonyms(answerer, question, [501]).mentioned("No difference in VAP.", loose=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No difference in VAP (P=0.7).", "No difference in ventilator-associated pneumonia (VAP) (P=0.7)."),
        ("Ventilator-associated pneumonia (VAP) is rare.", "Ventilator-associated pneumonia (VAP) is rare."),
        ("VAPs were rare; so was ARDS.", "ventilator-associated pneumonias (VAPs) were rare; so was ARDS."),
        ("The vap rate and anti-VAP bundles, VAPID.", "The vap rate and anti-VAP bundles, VAPID."),
    ],
)
def test_abbreviations_are_written_out_whole_words_only(text: str, expected: str) -> None:
    from rag.focus import expand_abbreviations

    assert expand_abbreviations(text, {"VAP": "ventilator-associated pneumonia"}) == expected
