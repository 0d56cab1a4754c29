// The medlit page: sends the question to POST /ask as a stream of server-sent events and shows each
// sentence as soon as the server has verified its citations, then the whole answer (citations, verdict,
// the stances of the cited studies, notes). A stream that stops before its `answer` (or `error`) event is
// shown as an error, never as a shorter answer.
// Everything that comes from the server is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "medlit-token";
  const CUT =
    "The answer stopped before it was complete (the connection dropped or the server stopped): " +
    "nothing partial is shown. Ask again.";
  const STANCES = { supports: "supports", contradicts: "contradicts", unclear: "unclear" };

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
    return { question: question, filters: filters, stream: true };
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
    clearResult();
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
    if (c.design) meta.append(el("span", "badge badge-design", c.design));
    const size = Number(c.sample_size);
    if (c.sample_size !== null && c.sample_size !== undefined && Number.isSafeInteger(size) && size > 0) {
      meta.append(el("span", "sample-size", "n = " + size.toLocaleString("en")));
    }
    const stance = STANCES[c.stance];
    if (stance) {
      const badge = el("span", "badge badge-stance", stance);
      badge.dataset.stance = stance;
      meta.append(badge);
    }
    meta.append(el("span", "pmid", "PMID " + c.pmid));
    li.append(meta);
    if (c.quote) li.append(el("blockquote", "quote", c.quote));
    return li;
  }

  function sentenceNode(s) {
    const span = el("span", s.supported ? "sentence" : "sentence unsupported");
    span.append(document.createTextNode(s.text));
    const inline = new Set((s.inline || []).map(Number)); // already written inside the sentence
    for (const n of s.citations || []) {
      if (inline.has(Number(n))) continue;
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

  function stanceCounts(stances) {
    if (!stances || typeof stances !== "object") return null;
    const count = (key) => (Number.isSafeInteger(Number(stances[key])) ? Number(stances[key]) : 0);
    const counts = { supports: count("supports"), contradicts: count("contradicts"), unclear: count("unclear") };
    return counts.supports + counts.contradicts + counts.unclear > 0 ? counts : null;
  }

  function notesOf(answer) {
    const notes = (Array.isArray(answer.notes) ? answer.notes : []).map(String).filter((n) => n.trim());
    const focus = answer.focus;
    if (focus && Array.isArray(focus.missing) && focus.missing.length) {
      const missing = focus.missing.map(String).join(", ");
      if (!notes.some((n) => n.includes(missing))) notes.push("No retrieved article studies: " + missing + ".");
    }
    return notes;
  }

  function clearResult() {
    $("answer-text").replaceChildren();
    $("citations").replaceChildren();
    $("notes").replaceChildren();
    for (const id of ["insufficient", "verdict", "stances", "notes-box", "citations-box", "retracted-warning", "removed"]) {
      $(id).hidden = true;
    }
    $("generator").textContent = "";
    $("searched").textContent = "";
    $("answer-disclaimer").textContent = "";
    $("result").removeAttribute("aria-busy");
  }

  function showSearched(trace) {
    trace = trace || {};
    $("searched").textContent =
      "Searched " + (trace.hits ?? 0) + " articles (" + (trace.mode || "hybrid") + ", k=" + (trace.k ?? "") + ").";
  }

  function showAnswer(answer) {
    hideAll();
    clearResult();
    if (answer.abstained) {
      $("insufficient-title").textContent = answer.answer;
      $("insufficient-reason").textContent = answer.reason || "";
      $("insufficient").hidden = false;
    }
    if (answer.verdict) {
      $("verdict-value").textContent = answer.verdict;
      $("verdict-basis").textContent = answer.verdict_basis ? " (" + answer.verdict_basis + ")" : "";
      $("verdict").dataset.verdict = String(answer.verdict);
      $("verdict").hidden = false;
    }
    const counts = stanceCounts(answer.stances);
    if (counts || answer.stance_summary) {
      $("stance-for").textContent = counts ? String(counts.supports) : "–";
      $("stance-against").textContent = counts ? String(counts.contradicts) : "–";
      $("stance-unclear").textContent = counts ? String(counts.unclear) : "–";
      $("stance-summary").textContent = answer.stance_summary || "";
      $("stances").hidden = false;
    }
    const notes = notesOf(answer);
    for (const note of notes) $("notes").append(el("li", "", note));
    $("notes-box").hidden = notes.length === 0;
    if (!answer.abstained) {
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
    if (answer.generator) $("generator").textContent = "Written by: " + answer.generator;
    showSearched(answer.trace);
    $("answer-disclaimer").textContent = answer.disclaimer || $("disclaimer").textContent;
    $("result").hidden = false;
  }

  // ----- the stream ---------------------------------------------------------------------------------

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // a comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    return { event: name, data: JSON.parse(data.join("\n")) };
  }

  // Reads server-sent events from a fetch response and hands each to onEvent; resolves when the stream
  // ends, rejects when the connection drops or an event cannot be read.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event && onEvent(event) === false) {
          await reader.cancel();
          return;
        }
      }
      if (done) return;
    }
  }

  function onEventFor(state) {
    return (event) => {
      const data = event.data || {};
      if (event.event === "retrieved") {
        showStatus(
          "Found " + (data.hits ?? 0) + " articles. Writing the answer: each sentence appears once its " +
            "citations are checked…",
        );
        showSearched(data);
      } else if (event.event === "sentence") {
        $("answer-disclaimer").textContent = $("disclaimer").textContent;
        $("answer-text").append(sentenceNode(data));
        $("result").setAttribute("aria-busy", "true");
        $("result").hidden = false;
      } else if (event.event === "answer") {
        if (typeof data.answer !== "string" || typeof data.abstained !== "boolean") {
          state.failed = { message: "The server sent an answer this page cannot read." };
        } else {
          state.answer = data;
        }
        return false;
      } else if (event.event === "error") {
        state.failed = { message: data.message || "The answer failed.", requestId: data.request_id };
        return false;
      }
      return true;
    };
  }

  async function showFailure(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    let message = (data && data.message) || "The server answered " + response.status + ".";
    if (response.status === 401) {
      $("token-box").open = true;
      message = "This server needs an access token: enter it under \u201cAccess token\u201d and ask again.";
    } else if (response.status === 429) {
      message = "Too many requests: try again in " + (response.headers.get("Retry-After") || "a few") + " s.";
    }
    showError(message, data && data.request_id);
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
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
    const token = $("token").value.trim();
    if (token) {
      headers.Authorization = "Bearer " + token;
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    hideAll();
    clearResult();
    showStatus("Searching the library…");
    $("submit").disabled = true;
    let response;
    try {
      try {
        response = await fetch("/ask", { method: "POST", headers: headers, body: JSON.stringify(body) });
      } catch (err) {
        showError("The server could not be reached (" + err.message + ").");
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (response.ok && type.startsWith("application/json")) {
        const answer = await response.json(); // a server that answers in one piece
        showAnswer(answer);
        return;
      }
      if (!response.ok || !type.startsWith("text/event-stream")) {
        await showFailure(response);
        return;
      }
      const state = { answer: null, failed: null };
      try {
        await readEvents(response, onEventFor(state));
      } catch (_) {
        state.failed = state.failed || { message: CUT };
      }
      if (state.answer) showAnswer(state.answer);
      else if (state.failed) showError(state.failed.message, state.failed.requestId);
      else showError(CUT); // the stream ended without its answer
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
