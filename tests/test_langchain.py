"""The LangChain integration: MedlitRetriever (filters, per-call overrides, batch across threads), the answer
pipeline as a Runnable, chains built from them, and the install hint when langchain-core is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from pydantic import ValidationError

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.embedder import FakeEmbedder
from indexes.hit import Filters
from medlit.langchain import MedlitRetriever, answer_runnable, format_documents
from medlit.library import Library
from rag.answer import Answer
from rag.generators import ExtractiveGenerator

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Does metformin reduce cancer incidence in type 2 diabetes?"
ARTICLES = [
    {
        "pmid": 601,
        "title": "Metformin and cancer incidence in type 2 diabetes: a meta-analysis",
        "abstract": "RESULTS: Metformin use was associated with a lower cancer incidence in type 2 diabetes. "
        "CONCLUSIONS: Metformin reduces cancer incidence in adults with type 2 diabetes.",
        "year": 2019,
        "journal": "Diabetes Care",
        "publication_types": ["Journal Article", "Meta-Analysis"],
        "language": "eng",
    },
    {
        "pmid": 602,
        "title": "Metformin for cancer prevention in diabetes: a randomized controlled trial",
        "abstract": "In this randomized trial of adults with type 2 diabetes, metformin did not reduce "
        "overall cancer incidence over five years.",
        "year": 2022,
        "journal": "Lancet Oncol",
        "publication_types": ["Journal Article", "Randomized Controlled Trial"],
        "language": "eng",
    },
    {
        "pmid": 603,
        "title": "Metformin cures every cancer in diabetes",
        "abstract": "Metformin reduced cancer incidence in type 2 diabetes to zero in a fabricated cohort.",
        "year": 2016,
        "publication_types": ["Journal Article", "Retracted Publication"],
        "language": "eng",
    },
    {
        "pmid": 604,
        "title": "Aspirin after transient ischaemic attack",
        "abstract": "Aspirin reduced recurrent stroke after transient ischaemic attack in older adults.",
        "year": 2010,
        "publication_types": ["Journal Article", "Review"],
        "language": "eng",
    },
]
METADATA = {
    "pmid",
    "title",
    "journal",
    "year",
    "publication_types",
    "retracted",
    "doi",
    "url",
    "score",
    "rank",
}


@pytest.fixture
def library(tmp_path: Path, fake_model_env: Path) -> Iterator[Library]:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    with Library(settings=Settings(), embedder=FakeEmbedder(64)) as library:
        library.ingest_jsonl(corpus)
        library.index_update()
        yield library


# ----- the retriever ----------------------------------------------------------------------------------------


def test_retriever_returns_documents_best_first(library: Library) -> None:
    docs = MedlitRetriever(library=library, k=3).invoke("metformin cancer incidence diabetes")
    assert 1 <= len(docs) <= 3 and all(isinstance(d, Document) for d in docs)
    assert docs[0].metadata["pmid"] in (601, 602)
    assert [d.metadata["rank"] for d in docs] == list(range(1, len(docs) + 1))
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    by_pmid = {a["pmid"]: a for a in ARTICLES}
    for doc in docs:
        meta = doc.metadata
        assert set(meta) == METADATA
        article = by_pmid[meta["pmid"]]
        assert doc.id == str(meta["pmid"])
        assert doc.page_content.startswith(article["title"] + "\n\n")
        assert article["abstract"].rsplit(": ", 1)[-1] in doc.page_content.split("\n\n", 1)[1]
        assert meta["year"] == article["year"] and meta["publication_types"] == article["publication_types"]
        assert meta["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{meta['pmid']}/"
        assert meta["retracted"] is False  # 603 is retracted: left out by default
    json.dumps([d.metadata for d in docs])  # plain data: serialisable as it is


def test_retriever_filters(library: Library) -> None:
    query = "metformin cancer incidence"
    rct = MedlitRetriever(library=library, filters=Filters(publication_types=["Randomized Controlled Trial"]))
    assert [d.metadata["pmid"] for d in rct.invoke(query)] == [602]
    recent = MedlitRetriever(library=library, filters={"year_min": 2020})
    assert {d.metadata["pmid"] for d in recent.invoke(query)} == {602}
    loud = MedlitRetriever(library=library, filters={"include_retracted": True}, mode="bm25")
    retracted = [d for d in loud.invoke(query) if d.metadata["pmid"] == 603]
    assert retracted and retracted[0].metadata["retracted"] is True
    nothing = MedlitRetriever(library=library, filters={"year_min": 1950, "year_max": 1951})
    assert nothing.invoke(query) == []


def test_retriever_per_call_overrides(library: Library) -> None:
    retriever = MedlitRetriever(library=library, k=3)
    assert len(retriever.invoke("metformin cancer", k=1)) == 1
    only_2022 = retriever.invoke("metformin cancer", filters={"year_min": 2022, "year_max": 2022})
    assert [d.metadata["pmid"] for d in only_2022] == [602]
    assert [d.metadata["pmid"] for d in retriever.invoke("aspirin stroke", mode="bm25")] == [604]
    assert retriever.k == 3 and retriever.filters is None and retriever.mode == "hybrid"


def test_retriever_batch_runs_across_threads(library: Library) -> None:
    retriever = MedlitRetriever(library=library, k=2)
    queries = ["metformin cancer", "aspirin stroke", "metformin trial", "cancer incidence"]
    batched = retriever.batch(queries, config={"max_concurrency": 4})
    assert [[d.metadata["pmid"] for d in docs] for docs in batched] == [
        [d.metadata["pmid"] for d in retriever.invoke(q)] for q in queries
    ]


def test_retriever_rejects_bad_settings(library: Library) -> None:
    with pytest.raises(ValidationError):
        MedlitRetriever(library=library, k=0)
    with pytest.raises(ValidationError, match="mode must be one of"):
        MedlitRetriever(library=library, mode="fuzzy")
    with pytest.raises(InputError, match="unknown filter year"):
        MedlitRetriever(library=library, filters={"year": 2020})
    with pytest.raises(InputError, match="empty"):
        MedlitRetriever(library=library).invoke("   ")


# ----- the answer pipeline as a Runnable --------------------------------------------------------------------


def test_answer_runnable_invoke(library: Library) -> None:
    runnable = answer_runnable(library, generator=ExtractiveGenerator())
    answer = runnable.invoke(QUESTION)
    assert isinstance(answer, Answer) and not answer.abstained
    assert answer.citations and {c.pmid for c in answer.citations} <= set(answer.trace.retrieved)

    recent = runnable.invoke({"question": QUESTION, "filters": {"year_min": 2020}, "k": 3})
    assert recent.trace.filters["year_min"] == 2020 and recent.trace.k == 3
    assert all((c.year or 0) >= 2020 for c in recent.citations)
    as_dict = (runnable | RunnableLambda(Answer.to_dict)).invoke({"question": QUESTION, "mode": "bm25"})
    assert as_dict["trace"]["mode"] == "bm25" and json.dumps(as_dict)


def test_answer_runnable_batch(library: Library) -> None:
    runnable = answer_runnable(library, generator="extractive", filters=Filters(year_max=2020))
    answers = runnable.batch([QUESTION, {"question": "Which pizza crust is crispiest in Naples?"}])
    assert [a.question for a in answers] == [QUESTION, "Which pizza crust is crispiest in Naples?"]
    assert not answers[0].abstained and all((c.year or 0) <= 2020 for c in answers[0].citations)
    assert answers[1].abstained and answers[1].citations == []
    assert answers[0].trace.filters["year_max"] == 2020


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (42, "takes a question, not int"),
        ({"query": QUESTION}, "unknown: query"),
        ({"question": QUESTION, "filters": {"colour": "red"}}, "unknown filter colour"),
        ({"question": QUESTION, "k": 0}, "k must be between"),
    ],
)
def test_answer_runnable_rejects_bad_input(library: Library, request_: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        answer_runnable(library, generator="extractive").invoke(request_)  # type: ignore[arg-type]


# ----- chains -----------------------------------------------------------------------------------------------


def test_retriever_piped_into_a_formatter(library: Library) -> None:
    context = (MedlitRetriever(library=library, k=2) | format_documents).invoke("metformin cancer incidence")
    blocks = context.split("\n\n")
    assert len(blocks) == 2
    assert re.match(r"\[1\] Metformin .+ \((Diabetes Care|Lancet Oncol), 20\d\d\) PMID 60[12]\n", blocks[0])
    assert blocks[1].startswith("[2] ")


def test_retriever_in_a_prompt_and_model_chain(library: Library) -> None:
    """The usual LangChain RAG shape runs with medlit as the retriever (a fake chat model answers)."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from these sources only:\n{context}"), ("human", "{question}")]
    )
    model = FakeListChatModel(responses=["Metformin reduced cancer incidence [1]."])
    seen: list[str] = []

    def remember(value):
        seen.append(value.to_string())
        return value

    chain = (
        {
            "context": MedlitRetriever(library=library, k=2) | format_documents,
            "question": RunnablePassthrough(),
        }
        | prompt
        | RunnableLambda(remember)
        | model
        | StrOutputParser()
    )
    assert chain.invoke(QUESTION) == "Metformin reduced cancer incidence [1]."
    assert "[1] Metformin" in seen[0] and "PMID 60" in seen[0] and QUESTION in seen[0]


# ----- an optional extra ------------------------------------------------------------------------------------


def test_without_langchain_core_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in sys.modules if n == "langchain_core" or n.startswith("langchain_core.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: "import" raises ImportError
    monkeypatch.delitem(sys.modules, "medlit.langchain")
    with pytest.raises(ImportError, match=re.escape("pip install 'medlit[langchain]'")):
        import medlit.langchain  # noqa: F401


def test_nothing_else_in_medlit_imports_langchain() -> None:
    importers = []
    for path in sorted(
        p
        for package in ("foundation", "ingest", "indexes", "rag", "medlit")
        for p in (ROOT / package).rglob("*.py")
    ):
        if re.search(r"^\s*(?:from|import)\s+(?:langchain|medlit\.langchain\b)", path.read_text(), re.M):
            importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["medlit/langchain.py"]
    code = (
        "import sys, medlit.cli, medlit.library, rag.ask, rag.generators, indexes.search, ingest.store\n"
        "print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
