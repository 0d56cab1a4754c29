"""The stored form of a record's JSON and of its abstract: zstd with a dictionary trained on PubMed records.

``record`` is the faithful copy of an ``Article`` (authors and their affiliations, MeSH, links), read only to
show, export or hydrate a search hit; what filters and search read lives in columns. A record of ~2.6 KB
of JSON is ~650 bytes compressed: records are short and alike, so a shared dictionary (``record.zdict``,
64 KB, dictionary id 1) carries the repeated keys and phrases a record alone cannot. Decompression costs
~5-20 us a record.

The dictionary ships with medlit and never changes under a library: a frame names the id of the dictionary
it was written with, and an unknown id is refused rather than misread. It was trained with
``zstandard.train_dictionary(65536, samples, level=3, dict_id=1)`` on 3,147 records (1 in 16 by PMID) of
the two demo PubMed files (``pubmed20n0014``, 1979-80, and ``pubmed21n1298``, 2020-21); on the other
47,636 records it gives 655 bytes a record against 2,648 of JSON (1,068 without a dictionary).

Older libraries hold ``record`` as text; ``decode`` reads both, and migration 008 compresses them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import zstandard

from foundation.errors import LibraryError

DICTIONARY_ID = 1
LEVEL = 3
_DICTIONARY_PATH = Path(__file__).with_name("record.zdict")
_local = threading.local()  # zstd (de)compressor objects are not safe to share between threads
_dictionary: zstandard.ZstdCompressionDict | None = None
_lock = threading.Lock()


def _dict() -> zstandard.ZstdCompressionDict:
    global _dictionary
    if _dictionary is None:
        with _lock:
            if _dictionary is None:
                loaded = zstandard.ZstdCompressionDict(_DICTIONARY_PATH.read_bytes())
                if loaded.dict_id() != DICTIONARY_ID:
                    raise LibraryError(f"{_DICTIONARY_PATH}: not medlit's record dictionary")
                _dictionary = loaded
    return _dictionary


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=_dict(), write_checksum=True)
        _local.compressor = compressor
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = zstandard.ZstdDecompressor(dict_data=_dict())
        _local.decompressor = decompressor
    return decompressor


def encode(record_json: str) -> bytes:
    """The stored form of a record's canonical JSON."""
    return _compressor().compress(record_json.encode("utf-8"))


def decode(stored: bytes | str) -> str:
    """The record's JSON from its stored form (compressed bytes, or text from a library before 008)."""
    if isinstance(stored, str):
        return stored
    try:
        return _decompressor().decompress(stored).decode("utf-8")
    except zstandard.ZstdError as exc:
        dict_id = _frame_dict_id(stored)
        if dict_id not in (0, DICTIONARY_ID):
            raise LibraryError(
                f"a stored record was compressed with dictionary {dict_id}, which this medlit does not "
                "have: upgrade medlit"
            ) from None
        raise LibraryError(f"a stored record is damaged ({exc})") from None


def _frame_dict_id(stored: bytes) -> int | None:
    try:
        return int(zstandard.get_frame_parameters(stored).dict_id)
    except zstandard.ZstdError:
        return None
