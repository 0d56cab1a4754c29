"""The report of a batch job: Markdown or HTML, from a RESULTS.jsonl (or its records).

A per-question table (question, abstained?, number of citations, best evidence level, newest cited year),
the counts across questions (answered, abstained, failed), the evidence levels cited, the most cited
articles, and a histogram of the cited articles' years as a PNG picture: a file beside a Markdown report,
a ``data:`` URI inside an HTML one. matplotlib draws it on its Agg canvas without touching pyplot's state.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.durable import write_atomically
from foundation.errors import InputError
from medlit.results import read_results
from rag.answer import DISCLAIMER


def report_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix in (".html", ".htm"):
        return "html"
    raise InputError(f"{path}: the report is Markdown (.md) or HTML (.html)")


@dataclass(slots=True)
class _Row:
    id: str
    question: str
    status: str
    abstained: bool | None
    citations: int
    best_level: str
    newest_year: int | None


@dataclass(slots=True)
class _Summary:
    rows: list[_Row] = field(default_factory=list)
    answered: int = 0
    abstained: int = 0
    errors: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    level_rank: dict[str, int] = field(default_factory=dict)
    cited: Counter[int] = field(default_factory=Counter)
    articles: dict[int, dict[str, Any]] = field(default_factory=dict)
    years: list[int] = field(default_factory=list)


def _summarise(records: list[dict[str, Any]]) -> _Summary:
    summary = _Summary()
    for record in records:
        answer = record.get("answer") or {}
        citations = answer.get("citations") or []
        if record.get("status") != "ok":
            summary.errors += 1
        elif answer.get("abstained"):
            summary.abstained += 1
        else:
            summary.answered += 1
        best = min(citations, key=lambda c: c.get("evidence_rank", 99), default=None)
        years = [c["year"] for c in citations if isinstance(c.get("year"), int)]
        summary.rows.append(
            _Row(
                id=str(record.get("id")),
                question=str(record.get("question", "")),
                status=str(record.get("status")),
                abstained=bool(answer.get("abstained")) if record.get("status") == "ok" else None,
                citations=len(citations),
                best_level=best.get("evidence_level", "") if best else "",
                newest_year=max(years, default=None),
            )
        )
        for citation in citations:
            level = str(citation.get("evidence_level", "other"))
            summary.levels[level] += 1
            summary.level_rank[level] = int(citation.get("evidence_rank", 99))
            summary.cited[int(citation["pmid"])] += 1
            summary.articles.setdefault(int(citation["pmid"]), citation)
        summary.years.extend(years)
    return summary


def _years_png(years: list[int]) -> bytes | None:
    """A histogram of cited publication years as PNG bytes (matplotlib's Agg canvas; no pyplot state)."""
    if not years:
        return None
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise InputError(
            "the batch report's histogram needs matplotlib: pip install 'medlit[notebook]'"
        ) from None
    counts = Counter(years)
    span = range(min(counts), max(counts) + 1)
    figure = Figure(figsize=(7, 3), dpi=100)
    axes = figure.subplots()
    axes.bar(list(span), [counts.get(y, 0) for y in span], width=0.9, color="#4c72b0")
    axes.set_xlabel("publication year of cited article")
    axes.set_ylabel("citations")
    axes.set_title("Cited articles by year")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(results: str | Path | list[dict[str, Any]], path: str | Path) -> Path:
    """A Markdown (``.md``) or HTML (``.html``) report of a results file (or its records); returns ``path``.

    A Markdown report links its histogram as ``<stem>-cited-years.png`` beside it; HTML embeds it."""
    path = Path(path)
    fmt = report_format(path)
    records = read_results(results) if isinstance(results, str | Path) else list(results)
    source = Path(results).name if isinstance(results, str | Path) else "the batch"
    summary = _summarise(records)
    png = _years_png(summary.years)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "markdown":
        image = None
        if png is not None:
            image = path.with_name(f"{path.stem}-cited-years.png")
            write_atomically(image, png)
        text = _markdown(summary, source, image.name if image else None)
    else:
        text = _html(summary, source, png)
    write_atomically(path, text.encode())
    return path


def _ordered_levels(summary: _Summary) -> list[tuple[str, int]]:
    return sorted(summary.levels.items(), key=lambda item: (summary.level_rank.get(item[0], 99), item[0]))


def _most_cited(summary: _Summary, n: int = 10) -> list[tuple[int, int, dict[str, Any]]]:
    ranked = sorted(summary.cited.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [(pmid, times, summary.articles[pmid]) for pmid, times in ranked]


def _md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _yes_no(row: _Row) -> str:
    return "error" if row.abstained is None else "yes" if row.abstained else "no"


def _markdown(summary: _Summary, source: str, image: str | None) -> str:
    total = len(summary.rows)
    lines = [
        "# Batch literature review",
        "",
        f"Results: `{source}`, {total} questions: {summary.answered} answered, {summary.abstained} abstained "
        f"(the evidence found was insufficient), {summary.errors} failed.",
        "",
        "## Questions",
        "",
        "| id | question | abstained? | citations | best evidence level | newest year |",
        "|---|---|---|---:|---|---:|",
    ]
    for row in summary.rows:
        cells = (row.id, row.question, _yes_no(row), row.citations, row.best_level, row.newest_year)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += ["", "## Evidence levels cited", ""]
    if summary.levels:
        lines += ["| evidence level | citations |", "|---|---:|"]
        lines += [f"| {_md_cell(level)} | {n} |" for level, n in _ordered_levels(summary)]
    else:
        lines.append("No citations.")
    lines += ["", "## Most cited articles", ""]
    if summary.cited:
        lines += ["| PMID | title | year | evidence level | cited by |", "|---|---|---:|---|---:|"]
        for pmid, times, article in _most_cited(summary):
            link = f"[{pmid}](https://pubmed.ncbi.nlm.nih.gov/{pmid}/)"
            flag = "RETRACTED: " if article.get("retracted") else ""
            title = flag + str(article.get("title") or "(untitled)")
            described = (title, article.get("year"), article.get("evidence_level"))
            lines.append(f"| {link} | " + " | ".join(_md_cell(c) for c in described) + f" | {times} |")
    else:
        lines.append("No citations.")
    lines += ["", "## Cited years", ""]
    lines.append(
        f"![Cited articles by publication year]({image})" if image else "No cited article has a year."
    )
    lines += ["", f"_{DISCLAIMER}_", ""]
    return "\n".join(lines)


def _html(summary: _Summary, source: str, png: bytes | None) -> str:
    esc = html.escape
    total = len(summary.rows)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Batch literature review</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}td.n{text-align:right}.retracted{color:#b00;font-weight:bold}"
        "</style></head><body>",
        "<h1>Batch literature review</h1>",
        f"<p>Results: <code>{esc(source)}</code>, {total} questions: {summary.answered} answered, "
        f"{summary.abstained} abstained (the evidence found was insufficient), {summary.errors} failed.</p>",
        "<h2>Questions</h2>",
        "<table><tr><th>id</th><th>question</th><th>abstained?</th><th>citations</th>"
        "<th>best evidence level</th><th>newest year</th></tr>",
    ]
    for row in summary.rows:
        parts.append(
            f"<tr><td>{esc(row.id)}</td><td>{esc(row.question)}</td><td>{_yes_no(row)}</td>"
            f'<td class="n">{row.citations}</td><td>{esc(row.best_level)}</td>'
            f'<td class="n">{row.newest_year or ""}</td></tr>'
        )
    parts.append("</table><h2>Evidence levels cited</h2>")
    if summary.levels:
        parts.append("<table><tr><th>evidence level</th><th>citations</th></tr>")
        parts += [
            f'<tr><td>{esc(level)}</td><td class="n">{n}</td></tr>' for level, n in _ordered_levels(summary)
        ]
        parts.append("</table>")
    else:
        parts.append("<p>No citations.</p>")
    parts.append("<h2>Most cited articles</h2>")
    if summary.cited:
        parts.append(
            "<table><tr><th>PMID</th><th>title</th><th>year</th><th>evidence level</th><th>cited by</th></tr>"
        )
        for pmid, times, article in _most_cited(summary):
            flag = '<span class="retracted">RETRACTED</span> ' if article.get("retracted") else ""
            parts.append(
                f'<tr><td><a href="https://pubmed.ncbi.nlm.nih.gov/{pmid}/">{pmid}</a></td>'
                f"<td>{flag}{esc(str(article.get('title') or '(untitled)'))}</td>"
                f'<td class="n">{article.get("year") or ""}</td>'
                f"<td>{esc(str(article.get('evidence_level')))}</td>"
                f'<td class="n">{times}</td></tr>'
            )
        parts.append("</table>")
    else:
        parts.append("<p>No citations.</p>")
    parts.append("<h2>Cited years</h2>")
    if png is not None:
        data = base64.b64encode(png).decode()
        parts.append(f'<img alt="Cited articles by publication year" src="data:image/png;base64,{data}">')
    else:
        parts.append("<p>No cited article has a year.</p>")
    parts.append(f"<p><small><i>{esc(DISCLAIMER)}</i></small></p></body></html>\n")
    return "\n".join(parts)
