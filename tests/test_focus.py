"""What a question is about, and the reading of each retrieved study against it: concepts, synonyms,
populations, designs when publication types are thin, sizes, stances and the verdict they add up to."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.evidence import EvidenceLevel, sample_size, studies_pooled, study_design
from rag.focus import (
    abbreviations,
    age_groups_in_question,
    age_groups_of_study,
    population_mismatch,
    read_question,
    stem,
)
from rag.sentences import marked_sentence
from rag.stance import (
    CONTRADICTS,
    SUPPORTS,
    UNCLEAR,
    StanceVote,
    finding_polarity,
    study_stance,
    summarise,
    verdict_from_stances,
)

# ----- reading the question ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "primary", "roles"),
    [
        (
            "Is dexamethasone effective in reducing mortality in hospitalized COVID-19 patients?",
            "dexamethasone",
            {"dexamethasone": "intervention", "mortality": "outcome", "hospitalized COVID-19": "population"},
        ),
        ("Is laparoscopic cholecystectomy safe in elderly patients?", "laparoscopic cholecystectomy", {}),
        (
            "Does remdesivir shorten recovery in patients hospitalised with COVID-19?",
            "remdesivir",
            {"recovery": "outcome", "COVID-19": "population"},
        ),
        (
            "Advanced epithelial ovarian carcinoma in Thai women: should we continue to offer second-look "
            "laparotomy?",
            "second-look laparotomy",
            {"Thai": "population"},
        ),
        ("Which enzyme is deficient in Wolman disease?", "Wolman", {"enzyme": "answer type"}),
        ("What is the mechanism of action of magrolimab?", "magrolimab", {}),
        ("Is SATB1 necessary for T-cell maturation?", "SATB1", {"T-cell maturation": "outcome"}),
        (
            "Does metformin reduce cancer incidence in type 2 diabetes?",
            "metformin",
            {"cancer incidence": "outcome", "type 2 diabetes": "population"},
        ),
        ("Is there a role for surgery in breast cancer?", "surgery", {"breast cancer": "outcome"}),
    ],
)
def test_the_main_concepts_their_roles_and_the_primary_one(question: str, primary: str, roles: dict) -> None:
    focus = read_question(question)
    assert focus.primary is not None and focus.primary.text == primary
    found = {c.text: c.role for c in focus.concepts}
    for text, role in roles.items():
        assert found.get(text) == role, (text, found)


def test_yes_no_questions_are_told_from_the_others() -> None:
    assert read_question("Does metformin reduce cancer incidence in type 2 diabetes?").yes_no
    assert read_question("Emergency enteroscopy in gastrointestinal bleeding: a feasible approach?").yes_no
    assert not read_question("Which genes are mutated in Wolman disease?").yes_no
    assert not read_question("Describe the mechanism of action of magrolimab.").yes_no


def test_the_direction_a_question_asks_about() -> None:
    assert read_question("Does metformin reduce cancer incidence?").direction == -1
    assert read_question("Does smoking increase the risk of stroke?").direction == 1
    assert read_question("Is aspirin safe in pregnancy?").direction == 0


def test_spellings_and_forms_fold_together() -> None:
    assert (
        stem("hospitalised") == stem("hospitalized") == stem("hospitalization")[: len(stem("hospitalized"))]
    )
    assert stem("tumour") == stem("tumors")
    assert stem("paediatric") == stem("pediatric")
    assert stem("haemoglobin") == stem("hemoglobin")
    assert stem("oesophageal") == stem("esophageal")


def test_a_concept_of_several_words_needs_most_of_them() -> None:
    focus = read_question("Is laparoscopic cholecystectomy safe in elderly patients?")
    assert focus.mentioned("Laparoscopic cholecystectomies were performed in 40 patients.")
    assert not focus.mentioned("Open cholecystectomy was performed.")  # one word of two
    assert focus.mentioned("Open cholecystectomy was performed.", loose=True)


def test_synonyms_are_learnt_from_abbreviations_and_mesh_headings() -> None:
    focus = read_question("Is laparoscopic cholecystectomy safe in elderly patients?")
    focus.learn_synonyms(["Laparoscopic cholecystectomy (LC) is the standard of care."], [])
    assert focus.mentioned("LC was completed in 95% of octogenarians.")
    focus = read_question("Is laparoscopic cholecystectomy safe in elderly patients?")
    assert not focus.mentioned("Outcomes of the procedure", ["Cholecystectomy"])
    focus.learn_synonyms([], ["Cholecystectomy, Laparoscopic"])
    assert focus.mentioned("Outcomes of the procedure", ["Cholecystectomy, Laparoscopic"])
    # the question's own abbreviation learns its long form
    focus = read_question("Does NAC prevent contrast nephropathy?")
    focus.learn_synonyms(["N-acetylcysteine (NAC) was given before angiography."], [])
    assert focus.mentioned("Oral N-acetylcysteine did not reduce nephropathy.")


def test_abbreviations_are_read_as_schwartz_and_hearst_do() -> None:
    pairs = abbreviations(
        "Non-small cell lung cancer (NSCLC) and coronavirus disease 2019 (COVID-19) (p < 0.05) (see Fig 2)."
    )
    assert ("Non-small cell lung cancer", "NSCLC") in pairs
    assert ("coronavirus disease 2019", "COVID-19") in pairs
    assert all(short not in ("see Fig 2", "p < 0.05") for _long, short in pairs)


# ----- populations ------------------------------------------------------------------------------------------


def test_age_groups_of_questions_and_studies() -> None:
    assert age_groups_in_question("Is surgery safe in elderly patients?") == {"older adults"}
    assert age_groups_in_question("Is it safe in children and adolescents?") == {"children", "adolescents"}
    assert age_groups_in_question("Is metformin safe?") == frozenset()
    assert age_groups_of_study("We followed 80 children (mean age 10.4 years).") == {"children"}
    assert age_groups_of_study("Patients aged 18 to 90 years were enrolled.") == {"adults", "older adults"}
    assert age_groups_of_study("Patients aged 65 to 90 years were enrolled.") == {"older adults"}
    assert age_groups_of_study("A cohort study.", ["Aged", "Humans"]) == {"older adults"}
    assert age_groups_of_study("The mean age was 8 months.") == {"infants"}


def test_a_paediatric_cohort_clashes_with_a_question_about_the_elderly() -> None:
    elderly = frozenset({"older adults"})
    assert population_mismatch(elderly, frozenset({"children"}))
    assert not population_mismatch(elderly, frozenset({"adults"}))  # adults may include the elderly
    assert not population_mismatch(elderly, frozenset())  # nothing stated: no clash claimed
    assert not population_mismatch(frozenset(), frozenset({"children"}))
    assert population_mismatch(frozenset({"children"}), frozenset({"older adults"}))


# ----- design when publication types are thin ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "abstract", "level", "label"),
    [
        (
            "Perspectives on glucocorticoid treatment for COVID-19: a systematic review",
            "",
            1,
            "systematic review",
        ),
        ("Statins and stroke: a meta-analysis", "We pooled 24 trials.", 1, "meta-analysis"),
        ("Aspirin in sepsis", "Patients were randomly assigned to aspirin or placebo.", 3, "RCT"),
        (
            "Aspirin in sepsis",
            "In this double-blind, placebo-controlled trial we enrolled 300 adults.",
            3,
            "RCT",
        ),
        ("Outcomes of surgery", "We conducted a retrospective cohort study of 1,204 patients.", 5, "cohort"),
        ("A rare rash", "We report a case of a 40-year-old man with a rash.", 6, "case report"),
        # another study's design, mentioned in passing, is not this study's
        ("Outcomes of surgery", "Previous meta-analyses disagree; we describe our practice.", 8, "study"),
    ],
)
def test_the_title_and_abstract_count_when_publication_types_are_thin(
    title: str, abstract: str, level: int, label: str
) -> None:
    design = study_design(["Journal Article"], [], title, abstract)
    assert (int(design.level), design.label) == (level, label)


def test_publication_types_and_mesh_still_come_first() -> None:
    design = study_design(["Randomized Controlled Trial"], [], "Aspirin", "We report a case of ...")
    assert design.level == EvidenceLevel.RCT and design.basis == "publication type"
    design = study_design(["Journal Article"], ["Retrospective Studies"], "Outcomes", "")
    assert design.label == "cohort" and design.basis == "MeSH"


def test_sample_sizes_and_pooled_studies() -> None:
    assert sample_size("A total of 1,204 patients were enrolled; 45% were women.") == 1204
    assert sample_size("We studied 40 children (mean age 10.4 years) in 2019.") == 40
    assert sample_size("Of the cohort (n = 56), most recovered.") == 56
    assert sample_size("Rates rose by 30% between 2010 and 2019.") is None
    assert studies_pooled("We included 24 randomised trials and 3 cohort studies.") == 24


# ----- stances and verdicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "direction", "polarity"),
    [
        ("There was no significant difference in mortality between the groups.", 0, -1),
        ("Metformin was not associated with cancer incidence.", 0, -1),
        ("Dexamethasone did not reduce 28-day mortality.", -1, -1),
        ("Dexamethasone significantly reduced 28-day mortality.", -1, 1),
        ("Laparoscopic cholecystectomy is safe and feasible in octogenarians.", 0, 1),
        ("Smoking was associated with a higher risk of stroke.", 1, 1),
        # "does X reduce Y?" answered by "X increased Y"
        ("Treatment significantly increased the rate of relapse.", -1, -1),
        ("Twelve patients were enrolled in the study.", 0, 0),
    ],
)
def test_the_polarity_of_a_finding(sentence: str, direction: int, polarity: int) -> None:
    assert finding_polarity(sentence, direction)[0] == polarity


def test_a_safety_question_is_answered_by_harms() -> None:
    assert read_question("Is laparoscopic cholecystectomy safe in elderly patients?").safety
    assert not read_question("Does metformin reduce cancer incidence in type 2 diabetes?").safety
    no_worse = "There was no significant difference in complications between older and younger patients."
    assert finding_polarity(no_worse, 0, True)[0] == 1  # no worse: for safety
    assert finding_polarity(no_worse, 0)[0] == -1  # no effect: against "does it work?"
    assert finding_polarity("Morbidity was significantly higher in patients over 80.", 0, True)[0] == -1
    assert finding_polarity("Conversions were significantly fewer after the change.", 0, True)[0] == 1
    assert finding_polarity("Laparoscopic cholecystectomy was safe in older adults.", 0, True)[0] == 1


def test_a_hedged_finding_is_unclear() -> None:
    stance, _confidence = study_stance(
        ["The role of corticosteroids remains controversial and further studies are needed."], [0.7]
    )
    assert stance == UNCLEAR
    stance, confidence = study_stance(
        ["Corticosteroids significantly reduced mortality.", "Twelve centres took part."], [0.8, 0.2]
    )
    assert stance == SUPPORTS and confidence > 0.5


def test_the_verdict_weighs_design_and_point() -> None:
    rct_for = StanceVote(SUPPORTS, 0.9, EvidenceLevel.RCT, True)
    cohort_against = StanceVote(CONTRADICTS, 0.9, EvidenceLevel.COHORT_CASE_CONTROL, True)
    off_point_against = StanceVote(CONTRADICTS, 1.0, EvidenceLevel.SYSTEMATIC_REVIEW, False)
    assert verdict_from_stances([rct_for, rct_for, cohort_against])[0] == "yes"
    assert verdict_from_stances([rct_for, cohort_against])[0] == "uncertain"
    assert verdict_from_stances([cohort_against, cohort_against])[0] == "no"
    # studies of something else cannot carry the verdict alone
    assert verdict_from_stances([off_point_against])[0] == "uncertain"
    assert verdict_from_stances([])[0] == "uncertain"


def test_for_and_against_read_as_a_clinician_counts() -> None:
    counted = [
        (SUPPORTS, "RCT"),
        (SUPPORTS, "RCT"),
        (SUPPORTS, "RCT"),
        (CONTRADICTS, "cohort"),
        (UNCLEAR, "study"),
    ]
    assert summarise(counted) == "3 RCTs for, 1 cohort against, 1 unclear"
    assert summarise([(SUPPORTS, "meta-analysis"), (SUPPORTS, "meta-analysis")]) == "2 meta-analyses for"


# ----- markers inside a sentence ----------------------------------------------------------------------------


def test_a_marker_inside_a_sentence_keeps_its_place() -> None:
    marked = marked_sentence("The study by [2] found that LC is safe [3].")
    assert [m.number for m in marked.trailing] == [3]
    assert [[m.number for m in g] for g in marked.inline] == [[2]]
    assert marked.text(["[1]"]) == "The study by [1] found that LC is safe."
    assert "found" in marked.text() and "by  found" not in marked.text()
    assert marked_sentence("Effect was large [1], [2].").template == "Effect was large."


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_question_text_is_read_without_error(text: str) -> None:
    focus = read_question(text)
    assert all(c.keys for c in focus.concepts)
    assert focus.primary is None or focus.primary in focus.concepts
