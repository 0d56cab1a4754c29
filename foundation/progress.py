"""Progress bars: on stderr (stdout is for results), with an ETA, and only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar; ``enabled=False`` (``--quiet``, ``--json``) or a non-terminal stderr shows nothing."""
    from tqdm import tqdm

    disable = None if enabled else True  # None: tqdm disables itself when stderr is not a TTY
    return tqdm(
        total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True, smoothing=0.1
    )
