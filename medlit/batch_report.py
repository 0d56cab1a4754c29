"""The report of a batch job: Markdown or HTML, from a RESULTS.jsonl (or its records).

First each question's answer as a reviewer reads it: the verdict (and what it rests on), the stances of the
cited studies and the notes a clinician must see, when the answer has them; the sentences with their
citation numbers; the references with journal, year, evidence level (and stance, design and sample size
when present); an abstention with its reason; a failed question with its error. Then the summary: a
per-question table (abstained?, citations, best evidence level, newest cited year), the counts, the evidence
levels cited, the most cited articles, and a histogram of the cited articles' years as a PNG picture: a file
beside a Markdown report, a ``data:`` URI inside an HTML one. matplotlib draws it on its Agg canvas without
touching pyplot's state. HTML reports escape everything they quote and hold no script.
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
from rag.answer import DISCLAIMER, INSUFFICIENT, with_marks


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
        text = _markdown(records, summary, source, image.name if image else None)
    else:
        text = _html(records, summary, source, png)
    write_atomically(path, text.encode())
    return path


def _ordered_levels(summary: _Summary) -> list[tuple[str, int]]:
    return sorted(summary.levels.items(), key=lambda item: (summary.level_rank.get(item[0], 99), item[0]))


def _most_cited(summary: _Summary, n: int = 10) -> list[tuple[int, int, dict[str, Any]]]:
    ranked = sorted(summary.cited.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [(pmid, times, summary.articles[pmid]) for pmid, times in ranked]


def _md_cell(value: Any) -> str:
    return _md_text("" if value is None else value).replace("|", "\\|")


def _yes_no(row: _Row) -> str:
    return "error" if row.abstained is None else "yes" if row.abstained else "no"


# ----- one answer, as a reviewer reads it --------------------------------------------------------------


def _stance_word(stance: Any) -> str | None:
    return {"supports": "supports", "contradicts": "contradicts", "unclear": "unclear"}.get(str(stance))


def _reference_facts(citation: dict[str, Any]) -> list[str]:
    """journal, year, evidence level; then design, sample size and stance when the answer has them."""
    year = citation.get("year")
    facts = [
        str(citation.get("journal") or "journal unknown"),
        str(year) if isinstance(year, int) else "year unknown",
        str(citation.get("evidence_level") or "evidence level unknown"),
    ]
    if citation.get("design"):
        facts.append(f"design: {citation['design']}")
    size = citation.get("sample_size")
    if isinstance(size, int) and not isinstance(size, bool):
        facts.append(f"n = {size:,}")
    stance = _stance_word(citation.get("stance"))
    if stance:
        facts.append(f"stance: {stance}")
    return facts


def _verdict_line(answer: dict[str, Any]) -> str | None:
    verdict = answer.get("verdict")
    if not verdict:
        return None
    basis = answer.get("verdict_basis")
    return f"{verdict}" + (f" ({basis})" if basis else "")


def _stances_line(answer: dict[str, Any]) -> str | None:
    if answer.get("stance_summary"):
        return str(answer["stance_summary"])
    stances = answer.get("stances")
    if isinstance(stances, dict) and any(stances.values()):
        named = (("supports", "for"), ("contradicts", "against"), ("unclear", "unclear"))
        return ", ".join(f"{int(stances.get(key) or 0)} {word}" for key, word in named)
    return None


def _notes(answer: dict[str, Any]) -> list[str]:
    notes = [str(n) for n in answer.get("notes") or [] if str(n).strip()]
    focus = answer.get("focus")
    if isinstance(focus, dict) and focus.get("missing"):
        missing = ", ".join(str(m) for m in focus["missing"])
        if not any(missing in note for note in notes):
            notes.append(f"No retrieved article studies: {missing}.")
    return notes


def _filters_line(answer: dict[str, Any]) -> str | None:
    """The filters the question was asked with, when it had any: "years 2020-; study types: Review"."""
    filters = (answer.get("trace") or {}).get("filters") or {}
    parts = []
    low, high = filters.get("year_min"), filters.get("year_max")
    if low is not None or high is not None:
        parts.append(f"years {low if low is not None else ''}-{high if high is not None else ''}")
    for key, name in (("publication_types", "study types"), ("mesh", "MeSH"), ("languages", "languages")):
        if filters.get(key):
            parts.append(f"{name}: {', '.join(str(v) for v in filters[key])}")
    if filters.get("include_retracted"):
        parts.append("retracted articles included")
    return "; ".join(parts) or None


def _sentence(sentence: dict[str, Any]) -> tuple[str, bool]:
    """(the sentence with its [n] marks, supported?)"""
    numbers = [int(n) for n in sentence.get("citations") or []]
    inline = [int(n) for n in sentence.get("inline") or []]  # already written inside the sentence
    text = with_marks(str(sentence.get("text", "")), numbers, inline)
    if not sentence.get("supported", True):
        text += f" (unsupported: {sentence.get('note') or 'no cited abstract supports it'})"
    return text, bool(sentence.get("supported", True))


def _failure(record: dict[str, Any]) -> str:
    error = record.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "failed")
    return str(error or "failed")


def _md_text(value: Any) -> str:
    """Text quoted into Markdown: one line, with no HTML nor link a Markdown viewer would render."""
    return html.escape(" ".join(str(value).split()), quote=False).replace("](", "\\](")


def _md_link_text(value: Any) -> str:
    return _md_text(value).replace("[", "\\[").replace("]", "\\]")


def _answer_markdown(number: int, record: dict[str, Any]) -> list[str]:
    answer = record.get("answer") or {}
    lines = [f"### {number}. {_md_text(record.get('id'))}: {_md_text(record.get('question', ''))}", ""]
    if record.get("status") != "ok":
        return [*lines, f"**Failed:** {_md_text(_failure(record))}", ""]
    filters = _filters_line(answer)
    if filters:
        lines += [f"_Filters: {_md_text(filters)}_", ""]
    if answer.get("abstained"):
        lines += [f"**{INSUFFICIENT}**", "", f"_Reason:_ {_md_text(answer.get('reason') or 'not given')}", ""]
    verdict = _verdict_line(answer)
    if verdict:
        lines += [f"**Verdict:** {_md_text(verdict)}", ""]
    stances = _stances_line(answer)
    if stances:
        lines += [f"**The cited studies:** {_md_text(stances)}", ""]
    notes = _notes(answer)
    if notes:
        lines += ["**Notes:**", ""] + [f"- {_md_text(note)}" for note in notes] + [""]
    sentences = [_sentence(s) for s in answer.get("sentences") or []]
    if sentences and not answer.get("abstained"):
        lines += [" ".join(_md_text(text) for text, _ok in sentences), ""]
    citations = answer.get("citations") or []
    if citations:
        lines += ["References:", ""]
        for citation in citations:
            flag = "**RETRACTED** " if citation.get("retracted") else ""
            title = _md_link_text(citation.get("title") or "(untitled)")
            url = f"https://pubmed.ncbi.nlm.nih.gov/{int(citation['pmid'])}/"
            facts = "; ".join(_md_text(f) for f in _reference_facts(citation))
            number_shown = int(citation.get("number", 0))
            lines.append(f"{number_shown}. {flag}[{title}]({url}). {facts}. PMID {int(citation['pmid'])}")
        lines.append("")
    if answer.get("generator"):
        lines += [f"_Generator: {_md_text(answer['generator'])}_", ""]
    return lines


def _answer_html(number: int, record: dict[str, Any]) -> list[str]:
    esc = html.escape
    answer = record.get("answer") or {}
    parts = [
        f'<section class="answer" id="answer-{number}">',
        f"<h3>{number}. {esc(str(record.get('id')))}: {esc(str(record.get('question', '')))}</h3>",
    ]
    if record.get("status") != "ok":
        return [*parts, f'<p class="failed"><b>Failed:</b> {esc(_failure(record))}</p>', "</section>"]
    filters = _filters_line(answer)
    if filters:
        parts.append(f'<p class="small">Filters: {esc(filters)}</p>')
    if answer.get("abstained"):
        parts.append(
            f'<div class="insufficient"><b>{esc(INSUFFICIENT)}</b><br>'
            f"<i>Reason:</i> {esc(str(answer.get('reason') or 'not given'))}</div>"
        )
    verdict = _verdict_line(answer)
    if verdict:
        parts.append(f'<p class="verdict"><b>Verdict:</b> {esc(verdict)}</p>')
    stances = _stances_line(answer)
    if stances:
        parts.append(f"<p><b>The cited studies:</b> {esc(stances)}</p>")
    notes = _notes(answer)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    sentences = [_sentence(s) for s in answer.get("sentences") or []]
    if sentences and not answer.get("abstained"):
        shown = [
            esc(text) if ok else f'<span class="unsupported">{esc(text)}</span>' for text, ok in sentences
        ]
        parts.append('<p class="answer-text">' + " ".join(shown) + "</p>")
    citations = answer.get("citations") or []
    if citations:
        parts.append('<ol class="references">')
        for citation in citations:
            pmid = int(citation["pmid"])
            flag = '<span class="retracted">RETRACTED</span> ' if citation.get("retracted") else ""
            title = esc(str(citation.get("title") or "(untitled)"))
            facts = "; ".join(esc(f) for f in _reference_facts(citation))
            parts.append(
                f'<li value="{int(citation.get("number", 0))}">{flag}'
                f'<a href="https://pubmed.ncbi.nlm.nih.gov/{pmid}/">{title}</a>. {facts}. PMID {pmid}</li>'
            )
        parts.append("</ol>")
    if answer.get("generator"):
        parts.append(f'<p class="small">Generator: {esc(str(answer["generator"]))}</p>')
    parts.append("</section>")
    return parts


def _markdown(records: list[dict[str, Any]], summary: _Summary, source: str, image: str | None) -> str:
    total = len(summary.rows)
    lines = [
        "# Batch literature review",
        "",
        f"Results: `{source}`, {total} questions: {summary.answered} answered, {summary.abstained} abstained "
        f"(the evidence found was insufficient), {summary.errors} failed.",
        "",
        "## Answers",
        "",
    ]
    for number, record in enumerate(records, start=1):
        lines += _answer_markdown(number, record)
    lines += [
        "## Questions",
        "",
        "| id | question | abstained? | citations | best evidence level | newest year |",
        "|---|---|---|---:|---|---:|",
    ]
    for row in summary.rows:
        cells = (row.id, row.question, _yes_no(row), row.citations, row.best_level, row.newest_year)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += ["", "## Counts", "", "| answered | abstained | failed | questions |", "|---:|---:|---:|---:|"]
    lines.append(f"| {summary.answered} | {summary.abstained} | {summary.errors} | {total} |")
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


def _html(records: list[dict[str, Any]], summary: _Summary, source: str, png: bytes | None) -> str:
    esc = html.escape
    total = len(summary.rows)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Batch literature review</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}td.n{text-align:right}.retracted{color:#b00;font-weight:bold}"
        "section.answer{border-top:1px solid #ccc;margin:1.5em 0}.unsupported{background:#fde8e8}"
        ".insufficient{background:#fff6e0;padding:.5em}.failed{color:#b00}.notes{background:#fff6e0}"
        ".small{color:#555;font-size:.9em}ol.references li{margin-bottom:.4em}"
        "</style></head><body>",
        "<h1>Batch literature review</h1>",
        f"<p>Results: <code>{esc(source)}</code>, {total} questions: {summary.answered} answered, "
        f"{summary.abstained} abstained (the evidence found was insufficient), {summary.errors} failed.</p>",
        "<h2>Answers</h2>",
    ]
    for number, record in enumerate(records, start=1):
        parts += _answer_html(number, record)
    parts += [
        "<h2>Questions</h2>",
        "<table><tr><th>id</th><th>question</th><th>abstained?</th><th>citations</th>"
        "<th>best evidence level</th><th>newest year</th></tr>",
    ]
    for number, row in enumerate(summary.rows, start=1):
        parts.append(
            f'<tr><td><a href="#answer-{number}">{esc(row.id)}</a></td><td>{esc(row.question)}</td>'
            f"<td>{_yes_no(row)}</td>"
            f'<td class="n">{row.citations}</td><td>{esc(row.best_level)}</td>'
            f'<td class="n">{row.newest_year or ""}</td></tr>'
        )
    parts.append("</table><h2>Counts</h2>")
    parts.append(
        "<table><tr><th>answered</th><th>abstained</th><th>failed</th><th>questions</th></tr>"
        f'<tr><td class="n">{summary.answered}</td><td class="n">{summary.abstained}</td>'
        f'<td class="n">{summary.errors}</td><td class="n">{total}</td></tr></table>'
    )
    parts.append("<h2>Evidence levels cited</h2>")
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
