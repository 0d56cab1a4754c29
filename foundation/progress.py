"""Progress on stderr (stdout is for results): a tqdm bar on a terminal, calm log lines elsewhere.

When stderr is not a terminal (a log file, ``nohup``, a CI job) a bar's redraws are noise, but a long build
should still say where it is: there one line is written every ``LOG_EVERY_S`` seconds at most (and at the
end), e.g. ``lexical index: 250,000/1,000,000 doc (25%), 1,850 doc/s, about 7 min left``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LOG_EVERY_S = 30.0


class LogProgress:
    """The part of tqdm's interface medlit uses (``update``, ``n``, ``total``, ``close``), as log lines."""

    def __init__(
        self, total: int | None, desc: str, unit: str, *, stream: TextIO, every_s: float = LOG_EVERY_S
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.stream = stream
        self.every_s = every_s
        self.started = time.monotonic()
        self.last = self.started
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(now)

    def _line(self, now: float, *, done: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.n / elapsed
        count = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if done:
            parts.append(f"done in {elapsed:,.0f} s")
        elif self.total and rate > 0 and self.n < self.total:
            left = (self.total - self.n) / rate
            parts.append(f"about {left / 60:,.0f} min left" if left >= 90 else f"about {left:,.0f} s left")
        print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        if now - self.started >= self.every_s:  # a short step says nothing; a long one says it finished
            self._line(now, done=True)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar on a terminal, log lines every ``LOG_EVERY_S`` s otherwise; ``enabled=False``
    (``--quiet``, ``--json``) shows nothing."""
    from tqdm import tqdm

    if enabled and not _is_terminal(sys.stderr):
        return LogProgress(total, desc, unit, stream=sys.stderr)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
