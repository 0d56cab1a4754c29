"""A small, careful NCBI E-utilities client for PubMed: esearch, efetch, and a whole-query fetch.

Why not ``Bio.Entrez``: it hard-codes the URL, sets no timeout, retries 429 without a pause and limits the
rate per process only. Here:

- every request is a POST (the ``api_key`` travels in the form body, never in a URL that a proxy or the
  ``httpx`` logger could record) and carries ``tool``, ``email`` and ``api_key`` when set;
- every attempt waits on a :class:`~ingest.ratelimit.RateLimiter` shared by all threads and processes;
- 429, 5xx, HTML pages, ``<ERROR>`` bodies, truncated XML, timeouts and connection errors are retried with
  exponential backoff and full jitter (``Retry-After`` honoured, up to 120 s); other 4xx and redirects
  fail at once with NCBI's message;
- every message built here goes through :func:`redact`, so the key never reaches a log, an exception or a
  file (NCBI's 429 body echoes it).

:meth:`EntrezClient.fetch_query` is the ingest path. It gets past PubMed's 9,999-record limit by splitting
the publication-date range ([pdat]) in halves until each slice holds at most 9,999 records, fetches each
slice through the history server (WebEnv/query_key, retstart <= 9,998) and reconciles what came back with
the PMIDs esearch listed: missing ones are asked for once more by ID, and whatever is still missing is
reported as failed. An expired WebEnv is not an error: the slice's IDs are known from esearch, so the rest
of that slice is fetched by ID (exact, where a new search could return a different set).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from lxml import etree

from foundation.errors import EntrezError, InputError
from foundation.redaction import RedactingFilter, redact, register_secret
from foundation.settings import NCBISettings
from ingest.article import Deletion, Record, Rejected
from ingest.ratelimit import RateLimiter

log = logging.getLogger("medlit.entrez")


MAX_RETMAX = 9_999  # PubMed esearch returns at most the first 9,999 records of a query
MAX_RETSTART = 9_998  # ...so retstart beyond 9,998 is refused ("'retstart' cannot be larger than 9998")
DEFAULT_MINDATE = date(1800, 1, 1)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 120.0  # seconds: a longer Retry-After is treated as this
NOT_RETURNED = "not returned by efetch"

_USER_AGENT = "medlit (+https://www.ncbi.nlm.nih.gov/books/NBK25497/)"
_DATE = re.compile(r"^(\d{4})(?:[/-](\d{1,2})(?:[/-](\d{1,2}))?)?$")
_HISTORY_ERROR = re.compile(r"unable to obtain query|query\s*#\s*\d+|history|webenv|query_key", re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")

if not any(isinstance(f, RedactingFilter) for f in log.filters):
    log.addFilter(RedactingFilter())

# ------------------------------------------------------------------------------------------------ results


class WebEnvExpiredError(EntrezError):
    """The history server no longer knows this WebEnv/query_key (it expires after some idle hours)."""


@dataclass(slots=True)
class SearchResult:
    """One esearch answer. ``warnings`` holds ErrorList/WarningList entries ("PhraseNotFound: abcXYZ")."""

    count: int
    ids: list[int]
    webenv: str | None = None
    query_key: str | None = None
    query_translation: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FetchBatch:
    """Records from one efetch (plus the re-request of its missing PMIDs); ``failed``: (pmid, reason)."""

    records: list[Record]
    failed: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class DateSlice:
    """One publication-date slice (None: the whole query): its Count, the PMIDs esearch listed, and the
    ones wanted that PubMed would not list (a single day with more than 9,999 records)."""

    mindate: str | None
    maxdate: str | None
    count: int
    listed: int
    shortfall: int = 0


@dataclass(slots=True)
class FetchReport:
    """What a :class:`QueryFetch` did; the numbers add up: ``fetched + failed == expected``.

    ``count`` is esearch's Count for the query; ``expected`` the distinct PMIDs esearch listed to fetch
    (at most ``max_records``); ``shortfall`` the records Count promised that no slice could list (a single
    day holding more than 9,999, or dates outside the sliced range), so without ``max_records``
    ``expected + shortfall == count``. ``rejected`` counts fetched records the parser rejected (yielded as
    :class:`Rejected`, and counted in ``fetched``). ``failures`` lists each failed PMID with its reason.
    """

    count: int = 0
    expected: int = 0
    fetched: int = 0
    failed: int = 0
    rejected: int = 0
    slices: list[DateSlice] = field(default_factory=list)
    shortfall: int = 0
    query_translation: str | None = None
    warnings: list[str] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    complete: bool = False


# ---------------------------------------------------------------------------------------------- dates


def _parse_date(text: str, *, end: bool) -> date:
    """'YYYY', 'YYYY/MM' or 'YYYY/MM/DD' ('-' accepted) as the first (or, with end, the last) day."""
    match = _DATE.match(text.strip())
    if not match:
        raise InputError(f"date {text!r}: expected YYYY, YYYY/MM or YYYY/MM/DD")
    year, month, day = (int(g) if g else None for g in match.groups())
    assert year is not None
    try:
        if month is None:
            return date(year, 12, 31) if end else date(year, 1, 1)
        if day is None:
            if not end:
                return date(year, month, 1)
            following = date(year + (month == 12), month % 12 + 1, 1)
            return following - timedelta(days=1)
        return date(year, month, day)
    except ValueError:
        raise InputError(f"date {text!r}: no such day") from None


def _fmt(day: date) -> str:
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}"


def _normalise_dates(mindate: str | None, maxdate: str | None) -> tuple[str | None, str | None]:
    """NCBI needs both bounds or neither: a missing one becomes the default range's end."""
    if mindate is None and maxdate is None:
        return None, None
    lo = _parse_date(mindate, end=False) if mindate else DEFAULT_MINDATE
    hi = _parse_date(maxdate, end=True) if maxdate else _default_maxdate()
    if lo > hi:
        raise InputError(f"mindate {_fmt(lo)} is after maxdate {_fmt(hi)}")
    return (mindate.strip().replace("-", "/") if mindate else _fmt(lo)), (
        maxdate.strip().replace("-", "/") if maxdate else _fmt(hi)
    )


def _default_maxdate() -> date:
    return date.today() + timedelta(days=366)


# ------------------------------------------------------------------------------------------ body checks


def _parse_xml(body: bytes) -> Any:
    """The root of an XML body: no DTD, no entities, no network (a parser per call: lxml's are not
    thread-safe)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    return etree.fromstring(body, parser)


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return "html" in content_type.lower() or head.startswith((b"<html", b"<!doctype html"))


def _text(node: etree._Element) -> str:
    """All the text inside an element, whitespace runs collapsed."""
    return _SPACE.sub(" ", "".join(str(t) for t in node.itertext())).strip()


def _error_texts(root: etree._Element) -> list[str]:
    """Non-empty ``<ERROR>`` children of the root (espell's empty ``<ERROR/>`` is not an error)."""
    texts = []
    for node in root.iterchildren("ERROR"):
        text = _text(node)
        if text:
            texts.append(text)
    return texts


def _ncbi_message(body: bytes, content_type: str) -> str:
    """NCBI's own words from an error body (XML ERROR, JSON "error", or the text), short and redacted."""
    text = body.decode("utf-8", "replace").strip()
    message = ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            message = str(data.get("error") or data.get("message") or data.get("ERROR") or "")
    if not message and text.startswith("<") and not _looks_like_html(body, content_type):
        try:
            message = "; ".join(_error_texts(_parse_xml(body)))
        except etree.XMLSyntaxError:
            message = ""
    if not message:
        message = _TAG.sub(" ", text)
    message = _SPACE.sub(" ", message).strip()
    if len(message) > 300:
        message = message[:297] + "..."
    return redact(message) or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None when absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _record_pmids(record: Record) -> list[int]:
    if isinstance(record, Deletion):
        return list(record.pmids)
    return [record.pmid] if record.pmid is not None else []


class _Retry(Exception):
    """One failed attempt worth retrying: a redacted reason and an optional Retry-After."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


# -------------------------------------------------------------------------------------------- the client


class EntrezClient:
    """PubMed through E-utilities: esearch, efetch and fetch_query. Thread-safe; close it after use."""

    def __init__(
        self,
        settings: NCBISettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        register_secret(self._key)
        self._base = settings.base_url.rstrip("/") + "/"
        self._limiter = RateLimiter(settings.rate, settings.lock_path())
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            transport=transport,
            headers={"User-Agent": _USER_AGENT},
            follow_redirects=False,  # a redirected POST would lose its form data: say so instead
        )

    def __repr__(self) -> str:
        return (
            f"EntrezClient(base_url={redact(self._base)!r}, tool={self.settings.tool!r}, "
            f"email={self.settings.email!r}, api_key={'set' if self._key else 'none'}, "
            f"rate={self._limiter.rate:g}/s)"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EntrezClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- transport

    def _common(self) -> dict[str, str]:
        params = {"db": "pubmed", "tool": self.settings.tool}
        if self.settings.email:
            params["email"] = self.settings.email
        if self._key:
            params["api_key"] = self._key
        return params

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)], but never less than Retry-After."""
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2**attempt)
        delay = random.uniform(0.0, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    def _call(self, endpoint: str, params: dict[str, str], roots: tuple[str, ...]) -> tuple[bytes, Any]:
        """POST ``endpoint`` with retries; the body and its parsed XML root (one of ``roots``)."""
        url = self._base + endpoint + ".fcgi"
        data = {**self._common(), **params}
        attempts = self.settings.max_retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            self._limiter.wait()
            try:
                return self._attempt(endpoint, url, data, roots)
            except _Retry as retry:
                reason = retry.reason
                if attempt + 1 >= attempts:
                    break
                delay = self._backoff(attempt, retry.retry_after)
                log.warning(
                    "%s",
                    redact(
                        f"{endpoint}: attempt {attempt + 1}/{attempts} failed ({reason}); "
                        f"retrying in {delay:.2f} s"
                    ),
                )
                self._sleep(delay)
        raise EntrezError(redact(f"{endpoint} failed after {attempts} attempts: {reason}"))

    def _attempt(
        self, endpoint: str, url: str, data: dict[str, str], roots: tuple[str, ...]
    ) -> tuple[bytes, Any]:
        try:
            response = self._http.post(url, data=data)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retry(redact(f"connection error ({type(exc).__name__}: {exc})")) from None
        status = response.status_code
        body = response.content
        content_type = response.headers.get("content-type", "")
        log.debug("%s", redact(f"{endpoint}: HTTP {status}, {len(body)} bytes"))
        if status in RETRY_STATUSES:
            message = _ncbi_message(body, content_type)
            raise _Retry(f"HTTP {status}: {message}", _retry_after(response.headers.get("retry-after")))
        if status >= 400:
            message = _ncbi_message(body, content_type)
            if _HISTORY_ERROR.search(message) and "WebEnv" in data:
                raise WebEnvExpiredError(redact(f"{endpoint}: WebEnv expired (HTTP {status}: {message})"))
            raise EntrezError(redact(f"{endpoint}: HTTP {status}: {message}"))
        if status >= 300:
            where = response.headers.get("location", "elsewhere")
            raise EntrezError(redact(f"{endpoint}: HTTP {status}, moved to {where}: check base_url"))
        if not body.strip():
            raise _Retry("empty response body")
        if _looks_like_html(body, content_type):
            raise _Retry("an HTML page instead of XML")
        try:
            root = _parse_xml(body)
        except etree.XMLSyntaxError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "syntax error"
            raise _Retry(redact(f"truncated or malformed XML ({first[:160]})")) from None
        errors = _error_texts(root)
        if errors:
            message = redact("; ".join(errors))[:300]
            if "WebEnv" in data and _HISTORY_ERROR.search(message):
                raise WebEnvExpiredError(f"{endpoint}: WebEnv expired ({message})")
            raise _Retry(f"NCBI error: {message}")
        if root.tag not in roots:
            raise _Retry(f"unexpected XML document <{root.tag}>")
        return body, root

    # ---------------------------------------------------------------------------------------- esearch

    def esearch(
        self,
        term: str,
        *,
        mindate: str | None = None,
        maxdate: str | None = None,
        retstart: int = 0,
        retmax: int = 20,
        usehistory: bool = True,
    ) -> SearchResult:
        """Search PubMed (most recent first); dates are publication dates (pdat) as YYYY[/MM[/DD]]."""
        if not term or not term.strip():
            raise InputError("empty PubMed query")
        if not 0 <= retstart <= MAX_RETSTART:
            raise InputError(f"retstart {retstart}: PubMed allows 0 to {MAX_RETSTART} (only 9,999 records)")
        if not 0 <= retmax <= MAX_RETMAX:
            raise InputError(f"retmax {retmax}: PubMed allows 0 to {MAX_RETMAX}")
        params = {"term": term, "retstart": str(retstart), "retmax": str(retmax)}
        if usehistory:
            params["usehistory"] = "y"
        lo, hi = _normalise_dates(mindate, maxdate)
        if lo is not None and hi is not None:
            params.update(datetype="pdat", mindate=lo, maxdate=hi)
        _, root = self._call("esearch", params, ("eSearchResult",))
        return _search_result(root)

    # ----------------------------------------------------------------------------------------- efetch

    def efetch(
        self,
        ids: Iterable[int] | None = None,
        *,
        webenv: str | None = None,
        query_key: str | int | None = None,
        retstart: int = 0,
        retmax: int | None = None,
    ) -> bytes:
        """PubmedArticleSet XML for ``ids`` or for a history entry (WebEnv/query_key + retstart/retmax).

        The body is checked well-formed (else retried as truncated). Raises :class:`WebEnvExpiredError`
        when the history server no longer knows ``webenv``.
        """
        params = {"retmode": "xml", "rettype": "abstract"}
        if ids is not None:
            id_list = [str(int(i)) for i in ids]
            if not id_list:
                raise InputError("efetch: empty ID list")
            params["id"] = ",".join(id_list)
        elif webenv and query_key is not None:
            if not 0 <= retstart <= MAX_RETSTART:
                raise InputError(f"retstart {retstart}: PubMed allows 0 to {MAX_RETSTART}")
            size = self.settings.fetch_batch_size if retmax is None else retmax
            if size < 1:
                raise InputError(f"retmax {size}: must be at least 1")
            params.update(WebEnv=webenv, query_key=str(query_key), retstart=str(retstart), retmax=str(size))
        else:
            raise InputError("efetch needs ids, or webenv and query_key")
        body, _ = self._call("efetch", params, ("PubmedArticleSet",))
        return body

    # ----------------------------------------------------------------------------------- whole query

    def fetch_query(
        self,
        term: str,
        *,
        mindate: str | None = None,
        maxdate: str | None = None,
        max_records: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> QueryFetch:
        """Every record of a query, in batches; iterate the result, then read its ``report``.

        ``progress(done, total)`` is called after each batch (``done`` counts fetched plus failed PMIDs).
        Iterating raises :class:`EntrezError` if NCBI keeps failing; the batches yielded before are complete.
        """
        if not term or not term.strip():
            raise InputError("empty PubMed query")
        if max_records is not None and max_records < 0:
            raise InputError(f"max_records {max_records}: must be 0 or more")
        _normalise_dates(mindate, maxdate)  # fail early on a bad date
        return QueryFetch(
            self, term, mindate=mindate, maxdate=maxdate, max_records=max_records, progress=progress
        )


def _search_result(root: Any) -> SearchResult:
    def text(path: str) -> str | None:
        node = root.find(path)
        return node.text.strip() if node is not None and node.text else None

    warnings: list[str] = []
    for container in ("ErrorList", "WarningList"):
        node = root.find(container)
        if node is None:
            continue
        for item in node:
            value = _text(item)
            if isinstance(item.tag, str) and value:
                warnings.append(redact(f"{item.tag}: {value}"))
    ids = [int(node.text) for node in root.iterfind("IdList/Id") if node.text and node.text.strip().isdigit()]
    count_text = text("Count")
    return SearchResult(
        count=int(count_text) if count_text and count_text.isdigit() else len(ids),
        ids=ids,
        webenv=text("WebEnv"),
        query_key=text("QueryKey"),
        query_translation=text("QueryTranslation"),
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------- the ingest path


class QueryFetch:
    """One query's records: iterate it for :class:`FetchBatch` objects; ``report`` is final once it ends."""

    def __init__(
        self,
        client: EntrezClient,
        term: str,
        *,
        mindate: str | None = None,
        maxdate: str | None = None,
        max_records: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.client = client
        self.term = term
        self.mindate, self.maxdate = _normalise_dates(mindate, maxdate)
        self.max_records = max_records
        self.progress = progress
        self.report = FetchReport()
        self._started = False
        self._seen: set[int] = set()  # PMIDs listed by esearch so far (across slices)
        self._returned: set[int] = set()  # PMIDs whose record has been yielded
        self._failed: dict[int, str] = {}  # listed PMIDs reported failed
        self._total = 0

    def __iter__(self) -> Iterator[FetchBatch]:
        if self._started:
            raise RuntimeError("a QueryFetch can be iterated once; call fetch_query again")
        self._started = True
        return self._run()

    # -------------------------------------------------------------------------------------- planning

    def _limit(self, count: int) -> int:
        return count if self.max_records is None else min(count, self.max_records)

    def _search(self, mindate: str | None, maxdate: str | None, want: int) -> SearchResult:
        """esearch with history, listing up to ``want`` (<= 9,999) PMIDs, paging if NCBI sends fewer."""
        client = self.client
        first = client.esearch(
            self.term, mindate=mindate, maxdate=maxdate, retmax=min(want, MAX_RETMAX), usehistory=True
        )
        target = min(want, first.count, MAX_RETMAX)
        while len(first.ids) < target:
            page = client.esearch(
                self.term,
                mindate=mindate,
                maxdate=maxdate,
                retstart=len(first.ids),
                retmax=min(target - len(first.ids), MAX_RETMAX),
                usehistory=False,
            )
            if not page.ids:
                break
            first.ids.extend(page.ids)
        return first

    def _note(self, warnings: Iterable[str]) -> None:
        for warning in warnings:
            if warning not in self.report.warnings:
                self.report.warnings.append(warning)

    def _run(self) -> Iterator[FetchBatch]:
        report = self.report
        top = self._search(self.mindate, self.maxdate, self._limit(MAX_RETMAX))
        report.count = top.count
        report.query_translation = top.query_translation
        self._note(top.warnings)
        limit = self._limit(top.count)
        self._total = limit
        log.info("%s", redact(f"esearch: {top.count} records for {top.query_translation or self.term!r}"))
        lo = _parse_date(self.mindate, end=False) if self.mindate else DEFAULT_MINDATE
        hi = _parse_date(self.maxdate, end=True) if self.maxdate else _default_maxdate()
        if top.count <= MAX_RETMAX or limit <= MAX_RETMAX or lo >= hi:
            yield from self._slice(self.mindate, self.maxdate, top, limit)
        else:
            yield from self._sliced(lo, hi, limit)
            covered = sum(s.count for s in report.slices)
            if covered < top.count and len(self._seen) < limit:
                outside = min(top.count - covered, limit - len(self._seen))
                report.shortfall += outside
                where = f"outside {_fmt(lo)}-{_fmt(hi)}" if self.mindate is None else "in no date slice"
                self._note([f"{outside} records have a publication date {where} and were not fetched"])
        report.expected = len(self._seen)
        report.complete = True
        log.info(
            "%s",
            redact(
                f"fetched {report.fetched} of {report.expected} records ({report.failed} failed, "
                f"{report.rejected} rejected, {report.shortfall} beyond NCBI's reach)"
            ),
        )

    def _sliced(self, lo: date, hi: date, limit: int) -> Iterator[FetchBatch]:
        """Bisect [lo, hi], newest half first, until each slice's Count <= 9,999 (or one day); fetch each."""
        stack: list[tuple[date, date]] = []
        _push_halves(stack, lo, hi)
        while stack and len(self._seen) < limit:
            a, b = stack.pop()
            remaining = limit - len(self._seen)
            result = self._search(_fmt(a), _fmt(b), min(MAX_RETMAX, remaining))
            self._note(w for w in result.warnings if not w.startswith("OutputMessage: No items found"))
            if result.count > MAX_RETMAX and a < b:
                _push_halves(stack, a, b)
            elif result.count > 0:
                yield from self._slice(_fmt(a), _fmt(b), result, min(result.count, remaining))

    def _slice(
        self, mindate: str | None, maxdate: str | None, result: SearchResult, take: int
    ) -> Iterator[FetchBatch]:
        """Fetch the first ``take`` PMIDs of one slice's search through its WebEnv, batch by batch."""
        report = self.report
        ids = result.ids[:take]
        report.slices.append(DateSlice(mindate, maxdate, result.count, len(result.ids), take - len(ids)))
        if take > len(ids):
            report.shortfall += take - len(ids)
            label = f"{mindate}-{maxdate}" if mindate else "all dates"
            self._note(
                [
                    f"{label}: {result.count} records, but PubMed lists only the first {len(ids)}; "
                    f"{take - len(ids)} not fetched"
                ]
            )
        ids = [pmid for pmid in ids if pmid not in self._seen]
        self._seen.update(ids)
        report.expected = len(self._seen)
        size = self.client.settings.fetch_batch_size
        webenv, query_key = result.webenv, result.query_key
        position = {pmid: i for i, pmid in enumerate(result.ids[:take])}
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            body = None
            if webenv and query_key is not None:
                # retstart is the chunk's place in the search's own order (<= 9,998: a slice lists <= 9,999)
                first = position[chunk[0]]
                span = position[chunk[-1]] - first + 1
                try:
                    body = self.client.efetch(webenv=webenv, query_key=query_key, retstart=first, retmax=span)
                except WebEnvExpiredError as exc:
                    log.warning("%s", redact(f"{exc}; fetching the rest of this slice by PMID"))
                    self._note(["the search's WebEnv expired: records fetched by PMID instead"])
                    webenv = None
            if body is None:
                body = self.client.efetch(ids=chunk)
            yield self._reconcile(chunk, body)

    # ---------------------------------------------------------------------------------- reconciling

    def _parse(self, body: bytes) -> list[Record]:
        from ingest.pubmed_xml import iter_records

        records: list[Record] = []
        try:
            records.extend(iter_records(body))
        except InputError as exc:  # the body was well-formed XML, so this is rare; missing PMIDs are retried
            log.warning("%s", redact(f"efetch: {exc}"))
        return records

    def _accept(self, records: list[Record], out: list[Record]) -> None:
        """Keep the records not yielded before, counting the listed PMIDs they bring."""
        report = self.report
        for record in records:
            pmids = _record_pmids(record)
            new = [p for p in pmids if p not in self._returned]
            if pmids and not new and not isinstance(record, Deletion):
                continue  # already yielded (efetch's order differed from esearch's)
            out.append(record)
            if isinstance(record, Rejected):
                report.rejected += 1
            for pmid in new:
                self._returned.add(pmid)
                if pmid in self._seen:
                    report.fetched += 1
                if self._failed.pop(pmid, None) is not None:  # reported failed earlier, arrived after all
                    report.failed -= 1
                    report.failures = [f for f in report.failures if f[0] != pmid]

    def _reconcile(self, chunk: list[int], body: bytes) -> FetchBatch:
        """The batch's records; PMIDs missing from it are asked for once by ID, then reported failed."""
        records: list[Record] = []
        self._accept(self._parse(body), records)
        missing = [p for p in chunk if p not in self._returned]
        failed: list[tuple[int, str]] = []
        if missing:
            log.info("efetch: %d of %d PMIDs missing; asking for them by ID", len(missing), len(chunk))
            reason = NOT_RETURNED
            try:
                self._accept(self._parse(self.client.efetch(ids=missing)), records)
            except EntrezError as exc:
                reason = redact(f"{NOT_RETURNED} (re-request failed: {exc})")
            failed = [(p, reason) for p in missing if p not in self._returned]
        report = self.report
        for pmid, reason in failed:
            self._failed[pmid] = reason
        report.failed += len(failed)
        report.failures.extend(failed)
        if self.progress is not None:
            self.progress(report.fetched + report.failed, self._total)
        return FetchBatch(records=records, failed=failed)


def _push_halves(stack: list[tuple[date, date]], lo: date, hi: date) -> None:
    """Push [lo, mid] then [mid+1, hi], so the newer half is popped (searched) first."""
    mid = lo + (hi - lo) // 2
    stack.append((lo, mid))
    stack.append((mid + timedelta(days=1), hi))
