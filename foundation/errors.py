"""The few errors medlit raises on purpose. The CLI and the API translate them once, at the edge."""

from __future__ import annotations


class MedlitError(Exception):
    """Base class: a problem the user can understand and act on (printed as one line, no traceback)."""

    exit_code = 1


class InputError(MedlitError):
    """Bad input: a missing path, a file that is not what it claims to be, a malformed record."""


class EntrezError(MedlitError):
    """NCBI E-utilities refused or failed after retries (the message never holds the api_key)."""


class LibraryError(MedlitError):
    """The library database is unusable: a newer schema, a corrupt file, a checksum mismatch."""
