"""notebooks/explore.ipynb runs top to bottom in a real kernel, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    if not (shared_data / "pubmedqa" / "corpus.jsonl").exists():
        pytest.skip("the shared PubMedQA corpus is not here")
    home = tmp_path / "home"
    # the kernel inherits this environment: an empty library (so the demo is built) and the fake embedder
    monkeypatch.setenv("MEDLIT_HOME", str(home))
    monkeypatch.setenv("MEDLIT_SHARED_DATA", str(shared_data))
    monkeypatch.setenv("MEDLIT_EMBEDDING__BACKEND", "fake")
    monkeypatch.setenv("MEDLIT_ANSWER__ABSTAIN_THRESHOLD", "0.45")
    monkeypatch.setenv("MEDLIT_ANSWER__SUPPORT_THRESHOLD", "0.6")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # a failing cell raises CellExecutionError naming it

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    assert any("image/png" in d for d in data), "no plot"
    assert any("<table" in d.get("text/html", "") and "evidence_level" in d["text/html"] for d in data)
    answers = [d["text/markdown"] for d in data if "**Question:**" in d.get("text/markdown", "")]
    assert answers and "**Citations**" in answers[0] and "pubmed.ncbi.nlm.nih.gov" in answers[0]
    assert (home / "citations.ris").read_text().startswith("TY  - ")
    assert (home / "notebook-batch.jsonl").read_text().count("\n") == 3
