"""Progress on stderr: a bar on a terminal; elsewhere (a log file) a calm line every so often."""

from __future__ import annotations

import io
import re

import pytest

from foundation import progress
from foundation.progress import LogProgress, progress_bar


def test_a_log_gets_a_line_per_interval_with_the_rate_and_what_is_left() -> None:
    stream = io.StringIO()
    bar = LogProgress(1000, "lexical index", "doc", stream=stream, every_s=0.0)
    bar.update(250)
    bar.update(750)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("lexical index: 250/1,000 doc (25%), ")
    assert re.search(r"doc/s, about [\d,]+ (s|min) left$", lines[0]), lines[0]
    assert lines[1].startswith("lexical index: 1,000/1,000 doc (100%)")
    assert lines[-1].endswith(" s") and "done in" in lines[-1]


def test_a_quiet_interval_writes_nothing_and_a_short_step_says_nothing() -> None:
    stream = io.StringIO()
    with LogProgress(None, "file.xml.gz", "rec", stream=stream, every_s=3600) as bar:
        bar.update(10)
    assert stream.getvalue() == ""


def test_progress_bar_picks_the_log_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(progress_bar(10, "x", "doc"), LogProgress)  # capsys: stderr is not a TTY
    silent = progress_bar(10, "x", "doc", enabled=False)
    assert not isinstance(silent, LogProgress) and silent.disable


def test_a_terminal_gets_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_is_terminal", lambda _stream: True)
    bar = progress_bar(10, "x", "doc")
    assert not isinstance(bar, LogProgress) and not bar.disable
    bar.close()
