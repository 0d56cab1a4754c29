"""``medlit ingest files`` and ``medlit index build/update`` killed with SIGKILL at random points, restarted.

The harness is ``tests/crash_harness.py`` (see its docstring for every check). ``make test`` runs a few
trials on a 604-citation file; the full figures of docs/reliability.md come from 20 trials on a whole demo
file, in the ``slow`` test or by hand::

    MEDLIT_CRASH_TRIALS=20 MEDLIT_CRASH_FILE=.cache/demo/pubmed20n0014.xml.gz \\
        pytest tests/test_crash_safety.py
    python -m tests.crash_harness --trials 20 --file .cache/demo/pubmed20n0014.xml.gz
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.crash_harness import Figures, crash_index, crash_ingest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sends SIGKILL")

SMALL = SHARED_DATA / "fixtures" / "pubmed_xml" / "medline16n0902.xml.gz"  # 604 citations, 1 deletion
TRIALS = int(os.environ.get("MEDLIT_CRASH_TRIALS", "3"))
FILE = Path(os.environ.get("MEDLIT_CRASH_FILE", str(SMALL)))
DEMO_DIR = Path(os.environ.get("MEDLIT_DEMO_DIR", Path(__file__).resolve().parents[1] / ".cache" / "demo"))
DEMO_FILE = DEMO_DIR / "pubmed20n0014.xml.gz"


def assert_survived(figures: Figures, trials: int) -> None:
    data = figures.to_dict()
    print(json.dumps(data))  # the figures, with -s
    assert data["failures"] == []
    assert data["trials"] == data["restarts_completed"] == trials
    assert data["kills_sent"] > 0
    assert data["leftover_processes"] == 0


def test_ingest_killed_at_random_points_resumes_to_the_same_library(tmp_path: Path) -> None:
    # batches of 25: 25 commits in the small file, so kills land between and inside them
    figures = crash_ingest(FILE, trials=TRIALS, kills=2, workdir=tmp_path, seed=1, batch_size=25)
    assert_survived(figures, TRIALS)


def test_index_killed_at_random_points_is_never_misaligned(tmp_path: Path) -> None:
    # one trial per kind (first build, rebuild over a complete index, update after changes)
    figures = crash_index(FILE, trials=TRIALS, kills=2, workdir=tmp_path, seed=1, checkpoint_every=100)
    assert_survived(figures, TRIALS)


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_FILE.exists(), reason="needs the demo file (make demo-data)")
def test_twenty_trials_on_a_whole_pubmed_file(tmp_path: Path) -> None:
    ingest = crash_ingest(DEMO_FILE, trials=20, kills=3, workdir=tmp_path / "ingest", batch_size=500)
    assert_survived(ingest, 20)
    index = crash_index(DEMO_FILE, trials=20, kills=3, workdir=tmp_path / "index", checkpoint_every=2000)
    assert_survived(index, 20)
