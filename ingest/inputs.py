"""Opening the files users hand to medlit: one clear InputError for each way that can fail."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import BinaryIO

from foundation.errors import InputError


def require_regular_file(path: Path, what: str) -> None:
    """InputError unless ``path`` is a regular file (a symlink to one counts).

    Checked before opening: opening a FIFO waits for a writer, and a device such as /dev/zero reads for
    ever, so either would hang the command instead of failing it.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, not a {what} file")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise InputError(f"{path}: is {kind}, not a {what} file (only regular files can be ingested)")


def open_input(path: Path, what: str) -> BinaryIO:
    """``path`` opened for binary reading; ``what`` names the expected format in messages."""
    require_regular_file(path, what)
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a {what} file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
