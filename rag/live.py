"""Fresh evidence on demand: the question's medical terms → PubMed → the library and its index.

Only medical terms leave the machine. Identifiers (record numbers, dates, phone numbers, e-mail addresses,
URLs, anything with a digit), names (capitalised words that are not known medical vocabulary, and words
after "Mr", "Mrs", "patient", "named"...) and ordinary English words are dropped; what is left must be a term
the library's own abstracts or MeSH headings use, or look like a medical word when the library is empty.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation.errors import InputError
from foundation.settings import Settings
from ingest.store import Store

_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each effect effects few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they this
    those through to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves patient patients year years old aged age born dob mr
    mrs ms miss dr doctor name named called my his her should would could might may much many whether
    help helps use used using there best good better worse new newest latest recent recently evidence
    study studies trial trials treat treats treated treatment therapy does did reduce reduces improve
    improves increase increases risk people person man woman men women child children today yesterday
    tomorrow week weeks month months day days phone tel email mrn record number hospital clinic""".split()  # noqa: SIM905
)
# Words kept whatever the library holds: the question's point often lies in them.
_ALWAYS = frozenset("treatment therapy risk mortality incidence prevention diagnosis prognosis".split())  # noqa: SIM905
_NAME_CUES = re.compile(
    r"\b(?:mr|mrs|ms|miss|dr|prof|patient|named|called|name is|i am|i'm)\.?\s+((?:[A-Z][\w'-]+\s*){1,3})",
    re.IGNORECASE,
)
_IDENTIFIERS = re.compile(
    r"""(?:
        [\w.+-]+@[\w-]+\.[\w.-]+                    # e-mail
      | https?://\S+                               # URL
      | \+?\(?\d[\d\s().-]{5,}\d                   # phone numbers, record numbers with separators
      | \b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b         # dates
      | \b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4}\b
      | \b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?\s+\d{2,4}\b
      | \b[A-Za-z]*\d{4,}[A-Za-z\d]*\b              # MRN 00482913, A1234567, years
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*[A-Za-z0-9]|[A-Za-z]")
# A token: a number that is part of a medical term ("type 2 diabetes", "stage 3", "phase II"), or a word.
_TOKEN = re.compile(
    r"\b(?:type|stage|grade|phase|class)\s+(?:\d{1,2}|i{1,3}v?|iv|v)\b|" + _WORD.pattern, re.I
)


@dataclass(slots=True)
class MedicalQuery:
    query: str
    terms: list[str]
    dropped: int  # how many words stayed on this machine (never which)


def medical_query(
    question: str,
    conn: sqlite3.Connection | None = None,
    document_frequency: Callable[[str], int] | None = None,
) -> MedicalQuery:
    """The PubMed query made of the question's medical terms only; ``document_frequency`` (the lexical
    index's) tells the words the library's titles and abstracts use."""
    text = _NAME_CUES.sub(" ", question)
    text = _IDENTIFIERS.sub(" ", text)
    tokens = _TOKEN.findall(text)
    total = len(_WORD.findall(question))
    vocabulary = _Vocabulary(conn, document_frequency)
    terms: list[str] = []
    for position, word in enumerate(tokens):
        if " " in word or "\t" in word:  # "type 2": kept as a phrase, it qualifies the next term
            phrase = '"' + " ".join(word.lower().split()) + '"'
            if phrase not in terms:
                terms.append(phrase)
            continue
        lower = word.lower().strip("'-")
        if len(lower) < 3 or lower.isdigit() or (lower in _STOPWORDS and lower not in _ALWAYS):
            continue  # bare numbers leave nothing useful
        known = vocabulary.knows(lower)
        if not known and any(ch.isdigit() for ch in lower):
            continue  # a code unknown to the literature may identify someone
        capitalised = word[0].isupper() and not word.isupper()
        if capitalised and position > 0 and not known:
            continue  # a name, a place, an institution: stays here
        if not known and not (vocabulary.empty and _medical_looking(lower)):
            continue
        if lower not in terms:
            terms.append(lower)
    while terms and terms[-1].startswith('"'):
        terms.pop()  # a qualifier with nothing after it
    if not [t for t in terms if not t.startswith('"')]:
        raise InputError("the question has no medical terms to search PubMed for")
    query = " AND ".join(terms[:8])
    return MedicalQuery(query=query, terms=terms[:8], dropped=max(0, total - len(terms[:8])))


_MEDICAL_SUFFIXES = (
    "itis",
    "osis",
    "emia",
    "aemia",
    "oma",
    "pathy",
    "ectomy",
    "otomy",
    "plasty",
    "scopy",
    "algia",
    "mab",
    "nib",
    "vir",
    "pril",
    "sartan",
    "olol",
    "statin",
    "azole",
    "mycin",
    "cillin",
    "formin",
    "gliptin",
    "flozin",
    "tide",
    "ase",
    "ine",
    "ide",
    "ate",
    "cyte",
    "trophy",
    "plasia",
    "genic",
    "uria",
    "ism",
    "cardia",
    "tension",
    "betes",
    "cancer",
    "tumor",
    "tumour",
    "virus",
    "infection",
    "syndrome",
    "disease",
    "disorder",
    "therapy",
    "vaccine",
    "vaccination",
    "surgery",
    "dose",
    "insulin",
    "stroke",
    "sepsis",
)


def _medical_looking(word: str) -> bool:
    return word.endswith(_MEDICAL_SUFFIXES) or word in _ALWAYS


class _Vocabulary:
    """Terms the library uses: words of titles + abstracts (the lexical index's, stemmed, in ≥ 2 articles)
    and MeSH descriptors."""

    def __init__(
        self, conn: sqlite3.Connection | None, document_frequency: Callable[[str], int] | None
    ) -> None:
        self.conn = conn
        self.document_frequency = document_frequency
        self.empty = True
        if conn is not None:
            try:
                self.empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM articles)").fetchone()[0] == 1
            except sqlite3.Error:
                self.empty = True

    def knows(self, word: str) -> bool:
        if self.conn is None or self.empty:
            return False
        if self.document_frequency is not None and self.document_frequency(word) >= 2:
            return True
        return (
            self.conn.execute(
                "SELECT 1 FROM article_mesh WHERE descriptor = ? COLLATE NOCASE LIMIT 1", (word,)
            ).fetchone()
            is not None
        )


def refresh_from_pubmed(
    question: str, store: Store, settings: Settings, *, embedder: Any = None, transport: Any = None
) -> dict[str, Any]:
    """Fetch the newest records matching the question's medical terms, store them, update the index."""
    from indexes.dense_index import DenseIndex
    from indexes.lexical_index import LexicalIndex
    from ingest.run import ingest_pubmed

    lexical = LexicalIndex(store, settings)
    lexical.update(progress=False)  # the library's vocabulary, current (it also serves the answer's BM25)
    built = medical_query(question, store.conn, lexical.document_frequency)
    report = ingest_pubmed(
        store,
        settings,
        built.query,
        max_records=settings.answer.live_max,
        progress=False,
        transport=transport,
    )
    lexical.update(progress=False)
    index = DenseIndex(store, settings, embedder=embedder)
    index_report = index.update(progress=False)
    return {
        "pubmed_query": built.query,
        "words_kept_local": built.dropped,
        "fetched": report.counts.seen,
        "inserted": report.counts.inserted,
        "updated": report.counts.updated,
        "indexed": index_report.added,
    }
