// The medlit page: sends the question to POST /ask and shows the verified answer.
// Everything that comes from the server is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "medlit-token";

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pubmedUrl(pmid) {
    const n = Number(pmid);
    return Number.isSafeInteger(n) && n > 0 ? "https://pubmed.ncbi.nlm.nih.gov/" + n + "/" : null;
  }

  function yearValue(input) {
    const text = input.value.trim();
    if (!text) return null;
    const year = Number(text);
    return Number.isInteger(year) ? year : NaN;
  }

  function request() {
    const filters = {
      study_types: Array.from(document.querySelectorAll('input[name="study-type"]:checked')).map((c) => c.value),
      include_retracted: $("include-retracted").checked,
    };
    const from = yearValue($("year-from"));
    const to = yearValue($("year-to"));
    if (Number.isNaN(from) || Number.isNaN(to)) throw new Error("Years must be whole numbers, e.g. 2015.");
    if (from !== null && to !== null && from > to) throw new Error("The first year comes after the last year.");
    if (from !== null) filters.year_min = from;
    if (to !== null) filters.year_max = to;
    const question = $("question").value.trim();
    if (!question) throw new Error("Type a question first.");
    return { question: question, filters: filters };
  }

  function hideAll() {
    for (const id of ["status", "error", "result"]) $(id).hidden = true;
  }

  function showStatus(text) {
    $("status").textContent = text;
    $("status").hidden = false;
  }

  function showError(message, requestId) {
    hideAll();
    $("error-message").textContent = message;
    $("error-id").textContent = requestId ? "Request id: " + requestId : "";
    $("error").hidden = false;
  }

  function citationItem(c) {
    const li = el("li", "citation");
    li.id = "cite-" + Number(c.number);
    li.value = Number(c.number);
    if (c.retracted) {
      li.classList.add("is-retracted");
      li.append(el("span", "badge badge-retracted", "RETRACTED"));
    }
    const url = pubmedUrl(c.pmid);
    const title = c.title || "PMID " + c.pmid + " (untitled)";
    if (url) {
      const link = el("a", "citation-title", title);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      li.append(link);
    } else {
      li.append(el("span", "citation-title", title));
    }
    const meta = el("div", "citation-meta");
    const where = [c.journal, c.year ? String(c.year) : "year unknown"].filter(Boolean).join(", ");
    meta.append(el("span", "where", where));
    const level = el("span", "badge badge-level", c.evidence_level);
    const rank = Number(c.evidence_rank);
    if (Number.isInteger(rank)) level.dataset.rank = String(rank);
    meta.append(level);
    meta.append(el("span", "pmid", "PMID " + c.pmid));
    li.append(meta);
    if (c.quote) li.append(el("blockquote", "quote", c.quote));
    return li;
  }

  function sentenceNode(s) {
    const span = el("span", s.supported ? "sentence" : "sentence unsupported");
    span.append(document.createTextNode(s.text));
    for (const n of s.citations || []) {
      const mark = el("a", "mark", "[" + Number(n) + "]");
      mark.href = "#cite-" + Number(n);
      span.append(" ", mark);
    }
    if (!s.supported) {
      span.append(el("em", "note", " (unsupported: " + (s.note || "no cited abstract supports it") + ")"));
    }
    span.append(" ");
    return span;
  }

  function showAnswer(answer) {
    hideAll();
    const trace = answer.trace || {};
    $("insufficient").hidden = !answer.abstained;
    $("answer-text").replaceChildren();
    $("citations").replaceChildren();
    $("verdict").hidden = true;
    $("citations-box").hidden = true;
    $("retracted-warning").hidden = true;
    $("removed").hidden = true;
    if (answer.abstained) {
      $("insufficient-title").textContent = answer.answer;
      $("insufficient-reason").textContent = answer.reason || "";
    } else {
      if (answer.verdict) {
        $("verdict").textContent = "Verdict: " + answer.verdict;
        $("verdict").hidden = false;
      }
      for (const s of answer.sentences || []) $("answer-text").append(sentenceNode(s));
      const citations = answer.citations || [];
      for (const c of citations) $("citations").append(citationItem(c));
      $("citations-box").hidden = citations.length === 0;
      $("retracted-warning").hidden = !citations.some((c) => c.retracted);
      const removed = answer.removed_citations || [];
      if (removed.length) {
        $("removed").textContent = removed.length + " citation(s) failed verification and were removed.";
        $("removed").hidden = false;
      }
    }
    $("searched").textContent =
      "Searched " + (trace.hits ?? 0) + " articles (" + (trace.mode || "hybrid") + ", k=" + (trace.k ?? "") + ").";
    $("answer-disclaimer").textContent = answer.disclaimer || "";
    $("result").hidden = false;
  }

  async function ask(event) {
    event.preventDefault();
    let body;
    try {
      body = request();
    } catch (err) {
      showError(err.message);
      return;
    }
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const token = $("token").value.trim();
    if (token) {
      headers.Authorization = "Bearer " + token;
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    hideAll();
    showStatus("Searching the library and checking every citation…");
    $("submit").disabled = true;
    try {
      const response = await fetch("/ask", { method: "POST", headers: headers, body: JSON.stringify(body) });
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (response.ok && data) {
        showAnswer(data);
        return;
      }
      let message = (data && data.message) || "The server answered " + response.status + ".";
      if (response.status === 401) {
        $("token-box").open = true;
        message = "This server needs an access token: enter it under \u201cAccess token\u201d and ask again.";
      } else if (response.status === 429) {
        message = "Too many requests: try again in " + (response.headers.get("Retry-After") || "a few") + " s.";
      }
      showError(message, data && data.request_id);
    } catch (err) {
      showError("The server could not be reached (" + err.message + ").");
    } finally {
      $("submit").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) $("token").value = saved;
    $("ask-form").addEventListener("submit", ask);
  });
})();
