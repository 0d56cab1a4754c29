"""Batch jobs: question files, results and manifest, resume after a kill, errors recorded, reports, parallel
workers, the Ray engine (a real local Ray) and `index build --engine ray`."""

from __future__ import annotations

import base64
import csv
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from foundation.errors import InputError
from foundation.settings import Settings
from indexes.dense_index import DenseIndex
from medlit.batch import Question, question_id, read_questions, run_batch
from medlit.batch_report import write_report
from medlit.cli import cli
from medlit.library import Library
from medlit.results import read_results
from rag.answer import INSUFFICIENT
from rag.generators import ExtractiveGenerator, GenerationError
from tests.test_answer import ARTICLES, QUESTION

QUESTIONS = [
    {"id": "metformin", "question": QUESTION},
    {"id": "aspirin", "question": "Does aspirin reduce recurrent stroke after transient ischaemic attack?"},
    {"id": "vitamin-d", "question": "Does vitamin D supplementation prevent fractures in elderly women?"},
    {"id": "pizza", "question": "Which pizza crust is crispiest in Naples?"},
    {
        "id": "metformin-rct",
        "question": QUESTION,
        "years": "2020:",
        "study_types": ["Randomized Controlled Trial"],
    },
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings(fake_model_env: Path) -> Settings:
    return Settings()


@pytest.fixture
def library(settings: Settings, tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES))
    with Library(settings=settings) as lib:
        lib.ingest_jsonl(corpus)
        lib.index_update()
        yield lib


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    """The result lines by id, without the timings (the only part that differs between runs)."""
    records = read_results(path)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"an id appears twice in {path.name}"
    for record in records:
        if record["answer"]:
            record["answer"]["trace"].pop("timings_ms")
    return {r["id"]: r for r in records}


# ----- input ---------------------------------------------------------------------------------------------


def test_csv_questions_with_filters_and_default_ids(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM
        writer = csv.writer(handle)
        writer.writerow(["ID", "Question", "years", "study_types", "include_retracted", "notes"])
        writer.writerow(
            ["a1", QUESTION, "2015:2024", "Randomized Controlled Trial; Meta-Analysis", "yes", "x"]
        )
        writer.writerow(["", "  Does aspirin   prevent stroke?  ", "", "", "", ""])
        writer.writerow(["", "", "", "", "", ""])  # a blank row
    first, second = read_questions(path)
    assert first == Question(
        id="a1",
        question=QUESTION,
        years="2015:2024",
        study_types=("Randomized Controlled Trial", "Meta-Analysis"),
        include_retracted=True,
    )
    assert first.filters().year_min == 2015 and first.filters().include_retracted
    assert second.question == "Does aspirin   prevent stroke?"
    assert second.id == question_id("Does aspirin prevent stroke?") and not second.has_filters


def test_jsonl_questions(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"id": 7, "question": "Q one?", "mesh": "Aspirin;Stroke", "languages": ["eng"]})
        + "\n\n"
        + json.dumps({"question": "Q two?", "years": 2020, "study_types": ["Review"]})
        + "\n"
    )
    one, two = read_questions(path)
    assert (one.id, one.mesh, one.languages) == ("7", ("Aspirin", "Stroke"), ("eng",))
    assert (two.id, two.years, two.study_types) == (question_id("Q two?"), "2020", ("Review",))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("q.csv", "id,text\n1,Does aspirin help?\n", "no 'question' column (columns: id, text)"),
        ("q.csv", "", "no questions"),
        ("q.csv", "id,question\n", "no questions"),
        ("q.jsonl", "", "no questions"),
        ("q.jsonl", '{"question": "ok?"}\n{"question": "broken?"\n', "q.jsonl:2: not valid JSON"),
        ("q.jsonl", '["a list"]\n', "q.jsonl:1: expected a JSON object"),
        ("q.jsonl", '{"id": "x"}\n', "q.jsonl:1: no question"),
        ("q.jsonl", '{"question": "a?", "years": "soon"}\n', "q.jsonl:1: year range 'soon'"),
        ("q.csv", "question,include_retracted\nA?,maybe\n", "q.csv:2: include_retracted must be"),
        ("q.jsonl", '{"question": "same?"}\n{"question": "same?"}\n', "question 2 has the same id"),
        ("q.txt", "Does aspirin help?\n", "expected a .csv or .jsonl file"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_bad_question_files_give_one_clear_error(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)):
        read_questions(path)


def test_cli_reports_bad_input_in_one_line(library: Library, tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "broken?"\n')
    out = tmp_path / "R.jsonl"
    result = CliRunner().invoke(
        cli, ["--home", str(library.settings.home), "batch", str(bad), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "q.jsonl:1: not valid JSON" in result.stderr
    assert "Traceback" not in result.output and not out.exists()


# ----- results, manifest, resume, errors ----------------------------------------------------------------


def test_results_and_manifest_without_secrets(
    library: Library, questions_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLIT_ANSWER__API_KEY", "sk-secret-answer-key")
    monkeypatch.setenv("MEDLIT_NCBI__API_KEY", "ncbi-secret-key-123")
    secret_settings = Settings()
    assert secret_settings.answer.api_key is not None
    out = tmp_path / "out" / "RESULTS.jsonl"
    report = run_batch(questions_file, out, settings=secret_settings)
    assert (report.status, report.questions, report.answered, report.errors) == ("done", 5, 5, 0)
    assert report.abstained == 1

    results = by_id(out)
    assert list(results) == [q["id"] for q in QUESTIONS]  # one worker: in question order
    assert all(r["status"] == "ok" and r["error"] is None for r in results.values())
    metformin = results["metformin"]["answer"]
    assert not metformin["abstained"] and metformin["citations"]
    for citation in metformin["citations"]:
        assert citation["evidence_level"] and citation["year"] and "evidence_rank" in citation
    assert {c["pmid"] for c in results["metformin-rct"]["answer"]["citations"]} == {202}
    pizza = results["pizza"]["answer"]
    assert pizza["abstained"] and pizza["reason"] and not pizza["citations"]

    manifest_text = (tmp_path / "out" / "RESULTS.manifest.json").read_text()
    for secret in ("sk-secret-answer-key", "ncbi-secret-key-123"):
        assert secret not in manifest_text and secret not in out.read_text()
    manifest = json.loads(manifest_text)
    index = DenseIndex(library.store, library.settings).manifest()
    assert manifest["index"]["checksum"] == index.checksum
    assert manifest["index"]["count"] == index.count == len(ARTICLES) and manifest["index"]["kind"] == "flat"
    assert manifest["index"]["model"] == manifest["embedding_model"] == "fake-hash-64"
    assert manifest["generator"] == "extractive" and manifest["medlit_version"]
    assert manifest["settings"]["answer"]["api_key"] == "**********"
    assert manifest["settings"]["home"] == str(library.settings.home)
    assert manifest["status"] == "done" and manifest["started_at"] <= manifest["finished_at"]
    assert manifest["counts"] == {
        "questions": 5,
        "skipped": 0,
        "retried": 0,
        "answered": 5,
        "abstained": 1,
        "errors": 0,
    }


def test_resume_after_a_kill_answers_each_question_once(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.jsonl"
    run_batch(questions_file, whole, library=library)
    lines = whole.read_text().splitlines(keepends=True)
    # what a job killed while writing its third line leaves: two lines and the start of the third
    killed = tmp_path / "killed.jsonl"
    killed.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])
    with pytest.raises(json.JSONDecodeError):
        [json.loads(line) for line in killed.read_text().splitlines()]
    assert [r["id"] for r in read_results(killed)] == ["metformin", "aspirin"]  # readable as it is

    report = run_batch(questions_file, killed, library=library)
    assert (report.skipped, report.answered, report.repaired) == (2, 3, True)
    assert by_id(killed) == by_id(whole)
    assert killed.read_text().endswith("\n")
    again = run_batch(questions_file, killed, library=library)  # nothing left to do
    assert (again.skipped, again.answered) == (5, 0)
    manifest = json.loads((tmp_path / "killed.manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 5
    assert [run["counts"]["answered"] for run in manifest["previous_runs"]] == [3]


SLOW_JOB = """
import sys, time
from foundation.settings import get_settings
from medlit.batch import run_batch
from rag.generators import ExtractiveGenerator

class StallsOnTheThirdAnswer(ExtractiveGenerator):
    calls = 0

    def generate(self, evidence):
        type(self).calls += 1
        if self.calls == 3:
            time.sleep(600)  # killed here
        return super().generate(evidence)

run_batch(sys.argv[1], sys.argv[2], generator=StallsOnTheThirdAnswer.from_settings(get_settings().answer))
"""


def test_resume_after_a_real_sigkill(library: Library, questions_file: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    run_batch(questions_file, whole, library=library)
    out = tmp_path / "killed.jsonl"
    job = subprocess.Popen([sys.executable, "-c", SLOW_JOB, str(questions_file), str(out)])
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_text().count("\n") >= 2):
            assert job.poll() is None and time.monotonic() < deadline, "the job never wrote two answers"
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    assert [r["id"] for r in read_results(out)] == ["metformin", "aspirin"]
    manifest = json.loads((tmp_path / "killed.manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["finished_at"] is None  # what a kill leaves
    report = run_batch(questions_file, out, library=library)
    assert (report.skipped, report.answered) == (2, 3)
    assert by_id(out) == by_id(whole)


def test_a_corrupt_line_inside_the_results_is_not_overwritten(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "R.jsonl"
    out.write_text('{"id": "metformin", "status": "ok", "answer": null}\nnot json\n')
    with pytest.raises(InputError, match=r"R\.jsonl:2: not a result line"):
        run_batch(questions_file, out, library=library)
    assert out.read_text().endswith("not json\n")


class FlakyGenerator:
    """The extractive generator, except that questions about aspirin fail like a model server would."""

    name = "flaky"

    def generate(self, evidence: Any) -> Any:
        if "aspirin" in evidence.question.lower():
            raise GenerationError("the model server answered 503 (api_key=sk-leaked)")
        return ExtractiveGenerator().generate(evidence)


def test_one_failing_question_is_recorded_and_retried_on_resume(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "R.jsonl"
    report = run_batch(questions_file, out, generator=FlakyGenerator(), library=library)
    assert (report.status, report.answered, report.errors) == ("done", 4, 1)
    results = by_id(out)
    failed = results["aspirin"]
    assert failed["status"] == "error" and failed["answer"] is None
    assert failed["error"]["type"] == "GenerationError" and "503" in failed["error"]["message"]
    assert "sk-leaked" not in out.read_text()
    assert all(r["status"] == "ok" for i, r in results.items() if i != "aspirin")

    report = run_batch(questions_file, out, library=library)  # the server is back
    assert (report.skipped, report.retried, report.answered, report.errors) == (4, 1, 1, 0)
    results = by_id(out)
    assert set(results) == {q["id"] for q in QUESTIONS}
    assert all(r["status"] == "ok" for r in results.values())


def test_parallel_workers_give_the_same_answers(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_batch(questions_file, one, workers=1, library=library)
    calls: list[tuple[int, int]] = []
    report = run_batch(
        questions_file,
        two,
        workers=2,
        progress=lambda done, total: calls.append((done, total)),
        library=library,
    )
    assert report.workers == 2 and report.answered == 5
    assert by_id(one) == by_id(two)
    assert calls[-1] == (5, 5) and len(calls) == 5


def test_cancel_stops_after_the_questions_in_flight(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "R.jsonl"
    cancel = threading.Event()
    report = run_batch(
        questions_file, out, cancel=cancel, progress=lambda done, total: cancel.set(), library=library
    )
    assert report.status == "cancelled" and report.answered == 1
    assert run_batch(questions_file, out, library=library).answered == 4
    assert len(by_id(out)) == 5


def test_list_of_questions_and_shared_filters(library: Library, tmp_path: Path) -> None:
    from medlit.library import make_filters

    out = tmp_path / "R.jsonl"
    run_batch(
        [QUESTION],
        out,
        filters=make_filters(study_types=["Randomized Controlled Trial"]),
        k=3,
        library=library,
    )
    (record,) = read_results(out)
    assert record["id"] == question_id(QUESTION)
    assert {c["pmid"] for c in record["answer"]["citations"]} == {202}
    assert record["answer"]["trace"]["k"] == 3


# ----- reports ---------------------------------------------------------------------------------------


def test_markdown_and_html_reports_with_the_years_histogram(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "R.jsonl"
    runner = CliRunner()
    home = ["--home", str(library.settings.home)]
    result = runner.invoke(
        cli,
        [
            *home,
            "batch",
            str(questions_file),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "r.md"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["answered"] == 5 and summary["report"] == str(tmp_path / "r.md")

    markdown = (tmp_path / "r.md").read_text()
    png = tmp_path / "r-cited-years.png"
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert "![Cited articles by publication year](r-cited-years.png)" in markdown
    assert "| pizza | Which pizza crust is crispiest in Naples? | yes | 0 |  |  |" in markdown
    metformin_row = next(line for line in markdown.splitlines() if line.startswith("| metformin |"))
    assert "| no |" in metformin_row and "2022" in metformin_row  # newest cited year
    assert "4 answered, 1 abstained" in markdown and "## Most cited articles" in markdown
    assert "systematic review / meta-analysis" in markdown  # the meta-analysis, among the levels cited

    write_report(out, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    encoded = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(encoded).startswith(PNG_MAGIC)
    assert '<a href="#answer-4">pizza</a>' in page and "pubmed.ncbi.nlm.nih.gov/201/" in page
    with pytest.raises(InputError, match="Markdown"):
        write_report(out, tmp_path / "r.pdf")


HOSTILE_QUESTION = 'Does <script>alert("x")</script> *metformin* | [help](javascript:alert(1))?'


def _reviewed_results(library: Library, questions_file: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """A real batch's records, plus what the answers issue adds to an answer (verdict, its basis, stances,
    notes, focus, and stance/design/sample size per citation), a failed question and a hostile one."""
    out = tmp_path / "R.jsonl"
    run_batch(questions_file, out, library=library)
    records = read_results(out)
    metformin = next(r for r in records if r["id"] == "metformin")["answer"]
    metformin.update(
        verdict="uncertain",
        verdict_basis="the stances of the cited studies",
        stance_summary="1 meta-analysis for, 1 RCT against",
        stances={"supports": 1, "contradicts": 1, "unclear": 0},
        notes=[
            "Population: the question asks about type 2 diabetes; [2] studies adults with type 2 diabetes."
        ],
        focus={"intervention": ["metformin"], "population": [], "outcome": ["cancer"], "missing": []},
    )
    for citation in metformin["citations"]:
        rct = citation["pmid"] == 202
        citation.update(
            stance="contradicts" if rct else "supports",
            design="RCT" if rct else "meta-analysis",
            sample_size=3000 if rct else None,
        )
    failed = {
        "id": "broken",
        "question": "Does the model server answer?",
        "status": "error",
        "answer": None,
        "error": {
            "type": "GenerationError",
            "message": "the model server at 127.0.0.1:9 refused the connection",
        },
    }
    hostile = {
        **next(r for r in records if r["id"] == "aspirin"),
        "id": "<b>x</b>",
        "question": HOSTILE_QUESTION,
    }
    hostile["answer"] = {
        **hostile["answer"],
        "citations": [
            {**c, "title": "<img src=x onerror=alert(1)> [Trial] of aspirin"}
            for c in hostile["answer"]["citations"]
        ],
    }
    return [*records, failed, hostile]


def test_reports_show_each_answer_before_the_summary(
    library: Library, questions_file: Path, tmp_path: Path
) -> None:
    records = _reviewed_results(library, questions_file, tmp_path)
    markdown = write_report(records, tmp_path / "review.md").read_text()
    answers, summary = markdown.split("\n## Questions\n", 1)
    assert "## Answers" in answers and "## Evidence levels cited" in summary and "## Cited years" in summary
    assert "## Counts" in summary and "| 5 | 1 | 1 | 7 |" in summary  # answered, abstained, failed, questions
    block = answers.split("### 1. metformin: ", 1)[1].split("\n### ", 1)[0]
    assert "**Verdict:** uncertain (the stances of the cited studies)" in block
    assert "**The cited studies:** 1 meta-analysis for, 1 RCT against" in block
    assert "- Population: the question asks about type 2 diabetes; [2] studies adults" in block
    metformin = next(r for r in records if r["id"] == "metformin")["answer"]
    first = metformin["sentences"][0]
    marks = "".join(f"[{n}]" for n in first["citations"])
    assert marks and marks in block and first["text"].rstrip(".")[:40] in block  # sentences, with [n]
    rct = next(c for c in metformin["citations"] if c["pmid"] == 202)
    line = next(x for x in block.splitlines() if "pubmed.ncbi.nlm.nih.gov/202/" in x)
    assert line.startswith(f"{rct['number']}. [Metformin for cancer prevention in diabetes")
    for fact in (
        "Lancet Oncol",
        "2022",
        rct["evidence_level"],
        "design: RCT",
        "n = 3,000",
        "stance: contradicts",
    ):
        assert fact in line
    assert "_Generator: extractive_" in block
    pizza = answers.split("### 4. pizza: ", 1)[1].split("\n### ", 1)[0]
    assert f"**{INSUFFICIENT}**" in pizza and "_Reason:_ no retrieved article is close enough" in pizza
    assert "References:" not in pizza
    assert "**Failed:** the model server at 127.0.0.1:9 refused the connection" in answers
    rct_only = answers.split("### 5. metformin-rct: ", 1)[1].split("\n### ", 1)[0]
    assert "_Filters: years 2020-; study types: Randomized Controlled Trial_" in rct_only
    assert "_Filters:" not in block
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown and "<img" not in markdown
    assert "\\[Trial\\]" in markdown  # a bracket in a title does not break its link
    assert "](javascript:" not in markdown.replace("\\](", "")  # nor does a question's text make a link

    page = write_report(records, tmp_path / "review.html").read_text()
    assert (
        page.index("<h2>Answers</h2>") < page.index("<h2>Questions</h2>") < page.index("<h2>Cited years</h2>")
    )
    assert "<script" not in page.lower() and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; [Trial] of aspirin" in page
    assert '<section class="answer" id="answer-1">' in page and '<a href="#answer-1">metformin</a>' in page
    assert "<b>Verdict:</b> uncertain (the stances of the cited studies)" in page
    assert "design: RCT; n = 3,000; stance: contradicts" in page
    assert "<b>Failed:</b> the model server at 127.0.0.1:9 refused the connection" in page
    assert f"<b>{INSUFFICIENT}</b><br><i>Reason:</i> no retrieved article is close enough" in page


# ----- Ray ----------------------------------------------------------------------------------------------


def test_without_ray_the_engine_says_what_to_install(
    library: Library, questions_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    out = tmp_path / "R.jsonl"
    with pytest.raises(InputError, match=re.escape("pip install 'medlit[ray]'")):
        run_batch(questions_file, out, engine="ray", library=library)
    assert not out.exists()
    with pytest.raises(InputError, match="needs Ray"):
        library.index_build(engine="ray")
    with pytest.raises(InputError, match="unknown engine"):
        run_batch(questions_file, out, engine="spark", library=library)


@pytest.fixture(scope="module")
def ray_cluster():
    """One real local Ray (2 CPUs) for the module: it takes seconds to start."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_same_results(
    ray_cluster: Any, library: Library, questions_file: Path, tmp_path: Path
) -> None:
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(questions_file, local, library=library)
    # resumable the same way: one answer is already there
    on_ray.write_text(local.read_text().splitlines(keepends=True)[0])
    report = run_batch(
        questions_file, on_ray, engine="ray", workers=2, report=tmp_path / "r.html", library=library
    )
    assert (report.engine, report.skipped, report.answered, report.errors) == ("ray", 1, 4, 0)
    assert by_id(on_ray) == by_id(local)
    manifest = json.loads((tmp_path / "ray.manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["embedding_model"] == "fake-hash-64"
    assert (tmp_path / "r.html").exists()


def test_index_build_on_ray_equals_the_local_build(ray_cluster: Any, library: Library) -> None:
    dense = DenseIndex(library.store, library.settings)
    local = dense.manifest()
    local_ids = set(dense.load().ids().tolist())
    local_hits = [h.pmid for h in library.search(QUESTION, k=3)]

    report = library.index_build(engine="ray", workers=2)
    assert report.dense.added == len(ARTICLES) and report.dense.model == "fake-hash-64"
    assert report.lexical.count == len(ARTICLES)
    dense = DenseIndex(library.store, library.settings)
    verify = dense.verify()
    assert verify.ok, verify.to_dict()
    built = dense.manifest()
    assert built.file != local.file and (built.count, built.kind) == (local.count, local.kind)
    assert set(dense.load().ids().tolist()) == local_ids  # the same PMIDs (and passages)
    assert built.checksum == local.checksum  # the same vectors and ids: the same file, byte for byte
    assert [h.pmid for h in library.search(QUESTION, k=3)] == local_hits
