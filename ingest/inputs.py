"""Opening the files users hand to medlit: one clear InputError for each way that can fail."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from foundation.errors import InputError


def open_input(path: Path, what: str) -> BinaryIO:
    """``path`` opened for binary reading; ``what`` names the expected format in messages."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a {what} file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
