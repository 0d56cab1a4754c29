"""A fake NCBI E-utilities server (esearch, efetch) on 127.0.0.1 for the client's tests.

It simulates a PubMed of N records with publication dates: esearch honours mindate/maxdate (pdat), Count,
retstart/retmax (refusing retstart > 9,998 with NCBI's own message, clamping retstart + retmax to 9,999)
and the history server (WebEnv/query_key); efetch answers PubmedArticleSet XML for ids or a history entry,
using the real records of the Biopython fixtures (pubmed1.xml, pubmed2.xml) where it has them and synthetic
records otherwise. Faults are queued per endpoint and consumed one per request; every request is recorded
(endpoint, method, parameters, arrival time, status) for assertions.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from tests.local_server import FakeHTTPServer, LocalServer

SHARED_DATA = Path(
    os.environ.get("MEDLIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
FIXTURES = SHARED_DATA / "fixtures" / "entrez"

MAX_RETSTART = 9998
MAX_RETRIEVABLE = 9999
RETSTART_ERROR = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, ESearch can only "
    "retrieve the first 9,999 records matching the query. To obtain more than 9,999 PubMed records, consider "
    "using EDirect that contains additional logic to batch PubMed search results automatically so that an "
    "arbitrary number can be retrieved."
)
EXPIRED_ERROR = "Unable to obtain query #1"
UNKNOWN_PHRASE = "abcXYZ"  # answered with the real esearch8.xml (PhraseNotFound)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_XML_DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'
_PUBMED_DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
_ESEARCH_DOCTYPE = (
    b'<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)


# ------------------------------------------------------------------------------------------------ faults


@dataclass
class Fault:
    """One scripted misbehaviour, consumed by one request to its endpoint."""

    kind: str
    status: int = 200
    body: bytes | None = None
    content_type: str = "text/xml; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    drop: int = 0
    message: str = ""

    @classmethod
    def ok(cls) -> Fault:
        """No fault: lets a queued fault wait for a later request."""
        return cls("ok")

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1") -> Fault:
        """429 with NCBI's JSON body, which echoes the request's api_key."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls("rate_limited", status=429, content_type="application/json", headers=headers)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        body = (
            f"<html><head><title>NCBI/eutils - WWW Error {status} Diagnostic</title></head><body>"
            "<h1>Server Error</h1><p>Your request could not be processed due to a problem on our Web server."
            "</p></body></html>"
        ).encode()
        return cls("status", status=status, body=body, content_type="text/html")

    @classmethod
    def html(cls) -> Fault:
        """200 with an HTML page (pubmed3.html) where XML was expected."""
        return cls("html", body=(FIXTURES / "pubmed3.html").read_bytes(), content_type="text/html")

    @classmethod
    def error(cls, message: str = "Search Backend failed: Database is not supported") -> Fault:
        """200 whose body is ``<eSearchResult>``/``<eFetchResult>`` holding an ``<ERROR>``."""
        return cls("error", message=message)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (longer than the client's read timeout)."""
        return cls("stall", seconds=seconds)

    @classmethod
    def truncated(cls) -> Fault:
        """A body cut mid-XML, with a Content-Length that matches the cut (HTTP-valid, XML not)."""
        return cls("truncated")

    @classmethod
    def disconnect(cls) -> Fault:
        """Half the body of a promised Content-Length, then the connection closes."""
        return cls("disconnect")

    @classmethod
    def fewer(cls, drop: int = 1) -> Fault:
        """efetch leaves out the last ``drop`` records it was asked for."""
        return cls("fewer", drop=drop)

    @classmethod
    def expire(cls) -> Fault:
        """The history server forgets every WebEnv before answering."""
        return cls("expire")

    @classmethod
    def bad_request(
        cls, message: str = "Invalid query: unbalanced parentheses", as_json: bool = False
    ) -> Fault:
        """400 with NCBI's message (XML ``<ERROR>`` or a JSON ``error``)."""
        return cls("bad_request", status=400, message=message, content_type="json" if as_json else "xml")


@dataclass
class RecordedRequest:
    """What the server saw: endpoint ('esearch'), method, raw query string, parameters, arrival time."""

    endpoint: str
    method: str
    query_string: str
    params: dict[str, str]
    time: float
    status: int = 0
    fault: str | None = None

    @property
    def api_key_sent(self) -> bool:
        return bool(self.params.get("api_key"))

    @property
    def retstart(self) -> int:
        return int(self.params.get("retstart") or 0)

    @property
    def ids(self) -> list[int]:
        return [int(x) for x in self.params.get("id", "").split(",") if x.strip()]


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "text/xml; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "normal"  # "normal", "truncated" or "disconnect"


# ------------------------------------------------------------------------------------------------ corpus


def synthetic_corpus(
    n: int,
    *,
    start: date = date(1990, 1, 1),
    end: date = date(2024, 12, 31),
    first_pmid: int = 30_000_000,
    seed: int = 7,
) -> list[tuple[int, date]]:
    """``n`` PMIDs with publication dates spread (reproducibly) over [start, end]."""
    rng = random.Random(seed)
    days = (end - start).days
    return [(first_pmid + i, start + timedelta(days=rng.randint(0, days))) for i in range(n)]


def fixture_records() -> dict[int, tuple[date, bytes]]:
    """The real PubmedArticle records of pubmed1.xml and pubmed2.xml: pmid -> (pub date, XML)."""
    found: dict[int, tuple[date, bytes]] = {}
    for name in ("pubmed1.xml", "pubmed2.xml"):
        root = etree.parse(str(FIXTURES / name)).getroot()
        for article in root.iterfind("PubmedArticle"):
            pmid = int(article.findtext("MedlineCitation/PMID") or 0)
            year = article.findtext("MedlineCitation/Article/Journal/JournalIssue/PubDate/Year") or "2000"
            article.tail = "\n"
            found[pmid] = (date(int(year), 1, 1), etree.tostring(article))
    return found


def synthetic_record(pmid: int, day: date) -> bytes:
    """A PubmedArticle shaped like efetch's: PMID, title, structured abstract, journal, date, author."""
    month = _MONTHS[day.month - 1]
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM" IndexingMethod="Automated">'
        f'<PMID Version="1">{pmid}</PMID>'
        f"<DateRevised><Year>{day.year}</Year><Month>{day.month:02d}</Month><Day>{day.day:02d}</Day>"
        f'</DateRevised><Article PubModel="Print"><Journal><ISSN IssnType="Electronic">1234-5678</ISSN>'
        f'<JournalIssue CitedMedium="Internet"><Volume>{day.year - 1900}</Volume><Issue>{day.month}</Issue>'
        f"<PubDate><Year>{day.year}</Year><Month>{month}</Month><Day>{day.day:02d}</Day></PubDate>"
        f"</JournalIssue><Title>Journal of Synthetic Medicine</Title><ISOAbbreviation>J Synth Med"
        f"</ISOAbbreviation></Journal><ArticleTitle>Synthetic study number {pmid} of outcomes in "
        f"adults.</ArticleTitle><Pagination><MedlinePgn>1-10</MedlinePgn></Pagination><Abstract>"
        f'<AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Record {pmid} exists for testing.'
        f'</AbstractText><AbstractText Label="RESULTS" NlmCategory="RESULTS">Nothing was found '
        f"(p &lt; 0.05).</AbstractText></Abstract>"
        f'<AuthorList CompleteYN="Y"><Author ValidYN="Y"><LastName>Tester</LastName>'
        f"<ForeName>Ada</ForeName><Initials>A</Initials></Author></AuthorList><Language>eng</Language>"
        f'<PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType>'
        f"</PublicationTypeList></Article><MedlineJournalInfo><Country>England</Country>"
        f"<MedlineTA>J Synth Med</MedlineTA><NlmUniqueID>000000001</NlmUniqueID></MedlineJournalInfo>"
        f"</MedlineCitation><PubmedData><PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
        f'<ArticleId IdType="pubmed">{pmid}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>\n'
    ).encode()


def _parse_day(text: str, *, end: bool) -> date:
    parts = [int(p) for p in text.replace("-", "/").split("/")]
    if len(parts) == 1:
        return date(parts[0], 12, 31) if end else date(parts[0], 1, 1)
    if len(parts) == 2:
        if not end:
            return date(parts[0], parts[1], 1)
        following = date(parts[0] + (parts[1] == 12), parts[1] % 12 + 1, 1)
        return following - timedelta(days=1)
    return date(parts[0], parts[1], parts[2])


# ------------------------------------------------------------------------------------------------ server


class FakeEutils(LocalServer):
    """``with FakeEutils(corpus) as fake: ...``; ``fake.url`` is the E-utilities base URL."""

    path = "/entrez/eutils/"

    def __init__(self, corpus: Iterable[tuple[int, date]] | int = 50, *, real_records: bool = True) -> None:
        super().__init__()
        pairs = synthetic_corpus(corpus) if isinstance(corpus, int) else list(corpus)
        self.real: dict[int, bytes] = {}
        if real_records:
            for pmid, (day, xml) in fixture_records().items():
                self.real[pmid] = xml
                pairs.append((pmid, day))
        self.dates: dict[int, date] = dict(pairs)
        self.sorted_pmids = sorted(self.dates, key=lambda p: (self.dates[p], p), reverse=True)
        self.withheld: set[int] = set()  # PMIDs efetch never returns
        self.requests: list[RecordedRequest] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._history: dict[str, list[list[int]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------- lifecycle

    def _parts(self) -> tuple[type[ThreadingHTTPServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    # ------------------------------------------------------------------------------------- scripting

    def fail(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``endpoint`` ('esearch' or 'efetch'), one each."""
        with self._lock:
            self.faults[endpoint].extend(faults)

    def expire_history(self) -> None:
        with self._lock:
            self._history.clear()

    def to(self, endpoint: str) -> list[RecordedRequest]:
        """The recorded requests to one endpoint, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def matching(self, mindate: str | None = None, maxdate: str | None = None) -> list[int]:
        """The corpus PMIDs published in [mindate, maxdate], newest first (PubMed's 'most recent')."""
        if not mindate and not maxdate:
            return list(self.sorted_pmids)
        lo = _parse_day(mindate or "1800", end=False)
        hi = _parse_day(maxdate or "3000", end=True)
        return [p for p in self.sorted_pmids if lo <= self.dates[p] <= hi]

    # ------------------------------------------------------------------------------------- answering

    def _record(
        self, endpoint: str, method: str, query: str, params: dict[str, str], at: float
    ) -> tuple[RecordedRequest, Fault | None]:
        record = RecordedRequest(endpoint, method, query, params, at)
        with self._lock:
            self.requests.append(record)
            fault = self.faults[endpoint].popleft() if self.faults[endpoint] else None
        record.fault = fault.kind if fault else None
        return record, fault

    def answer(self, endpoint: str, params: dict[str, str], fault: Fault | None) -> _Answer:
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "expire":
            self.expire_history()
        if fault is not None and fault.kind in ("rate_limited", "status", "html", "error", "bad_request"):
            return self._fault_answer(endpoint, params, fault)
        if endpoint == "esearch":
            answer = self._esearch(params)
        elif endpoint == "efetch":
            answer = self._efetch(
                params, drop=fault.drop if fault is not None and fault.kind == "fewer" else 0
            )
        else:
            return _Answer(404, b"<html><body>Not found</body></html>", "text/html")
        if fault is not None and fault.kind in ("truncated", "disconnect"):
            answer.mode = fault.kind
        return answer

    def _fault_answer(self, endpoint: str, params: dict[str, str], fault: Fault) -> _Answer:
        root = "eSearchResult" if endpoint == "esearch" else "eFetchResult"
        if fault.kind == "rate_limited":
            body = json.dumps(
                {
                    "error": "API rate limit exceeded",
                    "api-key": params.get("api_key", ""),
                    "count": "11",
                    "limit": "10",
                }
            ).encode()
            return _Answer(429, body, "application/json", dict(fault.headers))
        if fault.kind == "error":
            return _Answer(200, _error_body(root, fault.message))
        if fault.kind == "bad_request":
            if fault.content_type == "json":
                body = json.dumps({"error": fault.message, "api-key": params.get("api_key", "")}).encode()
                return _Answer(400, body, "application/json")
            return _Answer(400, _error_body(root, fault.message))
        return _Answer(fault.status, fault.body or b"", fault.content_type, dict(fault.headers))

    def _esearch(self, params: dict[str, str]) -> _Answer:
        term = params.get("term", "")
        if UNKNOWN_PHRASE in term:
            return _Answer(200, (FIXTURES / "esearch8.xml").read_bytes())
        if not term.strip():
            return _Answer(200, _error_body("eSearchResult", "Empty term and query_key - nothing todo"))
        retstart = int(params.get("retstart") or 0)
        retmax = int(params.get("retmax") or 20)
        if retstart > MAX_RETSTART:
            return _Answer(200, _error_body("eSearchResult", RETSTART_ERROR))
        mindate, maxdate = params.get("mindate"), params.get("maxdate")
        dated = params.get("datetype", "pdat") == "pdat" and bool(mindate or maxdate)
        ids = self.matching(mindate, maxdate) if dated else self.matching()
        warnings = ""
        if retstart + retmax > MAX_RETRIEVABLE:
            retmax = max(0, MAX_RETRIEVABLE - retstart)
            warnings = (
                f"<WarningList><OutputMessage>Restrictions achieved. start and count adjusted to {retstart}, "
                f"{retmax}</OutputMessage></WarningList>"
            )
        page = ids[retstart : retstart + retmax]
        history = ""
        if params.get("usehistory") == "y":
            with self._lock:
                webenv = params.get("WebEnv") or f"MCID_{random.getrandbits(96):024x}"
                entries = self._history.setdefault(webenv, [])
                entries.append(ids)
                history = f"<QueryKey>{len(entries)}</QueryKey><WebEnv>{webenv}</WebEnv>"
        translation = f"{escape(term)}[All Fields]"
        if dated:
            translation += f" AND {escape(mindate or '1800')}:{escape(maxdate or '3000')}[Date - Publication]"
        id_list = "".join(f"<Id>{p}</Id>\n" for p in page)
        body = (
            f"<eSearchResult><Count>{len(ids)}</Count><RetMax>{len(page)}</RetMax><RetStart>{retstart}</RetStart>"
            f"{history}<IdList>\n{id_list}</IdList><TranslationSet/>"
            f"<QueryTranslation>{translation}</QueryTranslation>{warnings}</eSearchResult>\n"
        ).encode()
        return _Answer(200, _XML_DECL + _ESEARCH_DOCTYPE + body)

    def _efetch(self, params: dict[str, str], *, drop: int = 0) -> _Answer:
        if params.get("id"):
            try:
                wanted = [int(x) for x in params["id"].split(",") if x.strip()]
            except ValueError:
                return _Answer(400, _error_body("eFetchResult", "Some IDs have invalid value"))
        elif params.get("WebEnv"):
            with self._lock:
                entries = self._history.get(params["WebEnv"], [])
            key = int(params.get("query_key") or 0)
            if not 1 <= key <= len(entries):
                return _Answer(200, _error_body("eFetchResult", EXPIRED_ERROR.replace("#1", f"#{key}")))
            retstart = int(params.get("retstart") or 0)
            if retstart > MAX_RETSTART:
                return _Answer(200, _error_body("eFetchResult", RETSTART_ERROR))
            retmax = int(params.get("retmax") or 20)
            wanted = entries[key - 1][retstart : retstart + retmax]
        else:
            return _Answer(400, _error_body("eFetchResult", "Empty id list - nothing todo"))
        served = [p for p in wanted if p in self.dates and p not in self.withheld]
        if drop:
            served = served[: max(0, len(served) - drop)]
        parts = [_XML_DECL, _PUBMED_DOCTYPE, b"<PubmedArticleSet>\n"]
        parts.extend(self.real.get(p) or synthetic_record(p, self.dates[p]) for p in served)
        parts.append(b"</PubmedArticleSet>\n")
        return _Answer(200, b"".join(parts))


def _error_body(root: str, message: str) -> bytes:
    return _XML_DECL + f"<{root}><ERROR>{escape(message)}</ERROR></{root}>\n".encode()


class _Server(FakeHTTPServer):
    fake: FakeEutils

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and leave are expected here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection's thread ends after this
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def _handle(self) -> None:
        arrived = time.time()
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            params.update(parse_qsl(self.rfile.read(length).decode("utf-8"), keep_blank_values=True))
        endpoint = url.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".fcgi")
        fake = self.server.fake
        record, fault = fake._record(endpoint, self.command, url.query, params, arrived)
        answer = fake.answer(endpoint, params, fault)
        record.status = answer.status
        body = answer.body
        sent = body
        if answer.mode == "truncated":
            body = sent = body[: max(1, len(body) * 3 // 5)]
        elif answer.mode == "disconnect":
            sent = body[: len(body) // 2]
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.mode == "disconnect":
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(sent)
            self.wfile.flush()
        except OSError:  # the client gave up (read timeout) and closed the connection
            self.close_connection = True
            return
        if answer.mode == "disconnect":
            self.close_connection = True
