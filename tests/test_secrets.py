"""The NCBI api_key never leaves medlit except in the requests to NCBI: not in an error, a log line (-vv),
the library, or any command's output, on success and on every failure path.

``tests/test_entrez.py`` checks the client in-process; here each run is a fresh ``medlit -vv`` process
(nothing registered as a secret beforehand) against the fake E-utilities server on 127.0.0.1, which
echoes the key back in its error bodies as NCBI does.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash_harness import environment, medlit
from tests.fake_eutils import FakeEutils, Fault

KEY = "5ec12e7ca11ab1e0ddba11c0ffee42f00d99"  # an NCBI key's shape: 36 hex digits


@pytest.fixture
def fake() -> Iterator[FakeEutils]:
    with FakeEutils(40) as server:
        yield server


def run(home: Path, base_url: str, *args: str, key_variable: str = "MEDLIT_NCBI__API_KEY"):
    env = environment(
        home,
        MEDLIT_NCBI__BASE_URL=base_url,
        MEDLIT_NCBI__EMAIL="dev@example.org",
        MEDLIT_NCBI__MAX_RETRIES=2,
        MEDLIT_NCBI__BACKOFF_BASE=0.01,
        MEDLIT_NCBI__BACKOFF_MAX=0.05,
        MEDLIT_NCBI__CONNECT_TIMEOUT=1,
        MEDLIT_NCBI__READ_TIMEOUT=2,
        MEDLIT_NCBI__REQUESTS_PER_SECOND=200,
        MEDLIT_NCBI__RATE_LIMIT_FILE=str(home.parent / "rate"),
        MEDLIT_NCBI__FETCH_BATCH_SIZE=10,
        **{key_variable: KEY},
    )
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        medlit("-vv", *args), env=env, cwd=home, capture_output=True, text=True, timeout=120
    )


def assert_no_key(home: Path, *outputs: str) -> None:
    for text in outputs:
        assert KEY not in text
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("library.db"))
    assert KEY.encode() not in stored


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when this returns: connections are refused


@pytest.mark.parametrize("key_variable", ["MEDLIT_NCBI__API_KEY", "NCBI_API_KEY"])
def test_a_successful_run_with_debug_logs(fake: FakeEutils, tmp_path: Path, key_variable: str) -> None:
    home = tmp_path / "home"
    result = run(
        home, fake.url, "ingest", "pubmed", "asthma", "--max", "20", "--json", key_variable=key_variable
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 20
    assert fake.requests and all(r.api_key_sent for r in fake.requests)  # it was used...
    runs = run(home, fake.url, "runs", "--json")
    assert_no_key(home, result.stdout, result.stderr, runs.stdout, runs.stderr)  # ...and never shown


@pytest.mark.parametrize(
    ("faults", "words"),
    [
        ({"esearch": [Fault.rate_limited(retry_after=None)] * 3}, "HTTP 429"),
        ({"esearch": [Fault.bad_request("Invalid api_key " + KEY, as_json=True)]}, "Invalid api_key"),
        ({"esearch": [Fault.server_error(502)] * 3}, "502"),
        ({"efetch": [Fault.bad_request("API key invalid: " + KEY)]}, "API key invalid"),
        ({"efetch": [Fault.truncated()] * 3}, "efetch"),
    ],
    ids=["429 echoing the key", "400 naming the key", "502", "efetch 400 naming the key", "truncated"],
)
def test_every_failure_is_one_line_without_the_key(
    fake: FakeEutils, tmp_path: Path, faults: dict, words: str
) -> None:
    for endpoint, queued in faults.items():
        fake.fail(endpoint, *queued)
    home = tmp_path / "home"
    result = run(home, fake.url, "ingest", "pubmed", "asthma", "--max", "20")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert all(r.api_key_sent for r in fake.requests)
    runs = run(home, fake.url, "runs", "--json")
    failures = [
        run(home, fake.url, "runs", "--failures", str(r["id"])).stdout for r in json.loads(runs.stdout)
    ]
    assert_no_key(home, result.stdout, result.stderr, runs.stdout, *failures)


def test_an_unreachable_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"http://127.0.0.1:{closed_port()}/entrez/eutils/?api_key={KEY}"  # even a key pasted in the URL
    result = run(home, url, "ingest", "pubmed", "asthma")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert_no_key(home, result.stdout, result.stderr)
