"""The local model server: llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``).

``start_server`` runs it on 127.0.0.1 and waits until ``GET /v1/models`` answers and one token of a
completion comes back (a build for instructions the host does not run dies there); a small state file,
``$MEDLIT_HOME/llm-server.json`` (pid, host, port, model, base_url, ...), tells other medlit commands that
it is there: the ``auto`` generator uses it when it is alive, the extractive generator otherwise.

The server is started with ``--interrupt_requests False``: by default llama-cpp-python ends a streaming
answer early (with a regular ``[DONE]``) as soon as another request arrives, which would cut answers short
whenever two are written at once (``medlit serve``, ``medlit batch --workers 2``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from foundation.durable import write_atomically
from foundation.errors import InputError, MedlitError

log = logging.getLogger("medlit.llm")

STATE_FILE = "llm-server.json"
LOG_FILE = "llm-server.log"
DEFAULT_PORT = 8080  # the default answer.base_url, so `--generator openai` finds it too
# What the server process inherits: llama-cpp-python's settings also read bare environment variables
# (MODEL, PORT, API_KEY, N_CTX, ...), so anything else in the caller's environment could change it.
_ENV_KEPT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
)


class ServerError(MedlitError):
    """The local model server could not be started, reached or stopped."""


@dataclass(slots=True)
class ServerState:
    """What ``$MEDLIT_HOME/llm-server.json`` records about a running server."""

    pid: int
    host: str
    port: int
    model: str  # the alias the server answers to (and reports in /v1/models)
    model_path: str
    n_ctx: int
    threads: int
    started_at: float
    log: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def label(self) -> str:
        """How answers name it: the model and where it runs (no secrets: there are none)."""
        return f"openai:{self.model} (llama.cpp at {self.host}:{self.port})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "base_url": self.base_url}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerState:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**fields)


def state_path(home: Path) -> Path:
    return Path(home) / STATE_FILE


def read_state(home: Path) -> ServerState | None:
    """The state file's server, whether or not it still runs (None: no file, or one that cannot be read)."""
    path = state_path(home)
    try:
        return ServerState.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s cannot be read (%s): ignored", path, exc)
        return None


def write_state(home: Path, state: ServerState) -> None:
    Path(home).mkdir(parents=True, exist_ok=True)
    write_atomically(state_path(home), json.dumps(state.to_dict(), indent=1).encode())


def remove_state(home: Path, pid: int | None = None) -> None:
    """Remove the state file (only if it still describes ``pid``, when given)."""
    state = read_state(home)
    if pid is None or state is None or state.pid == pid:
        state_path(home).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """``pid`` runs and is a llama-cpp-python server (checked in /proc where there is one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.exists():
        try:
            text = cmdline.read_bytes()
        except OSError:
            return False
        if b"llama_cpp.server" not in text:
            return False  # the pid was reused by something else
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # exited, not yet reaped
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def running_server(home: Path | None) -> ServerState | None:
    """The server of ``home``'s state file when it is alive and listening (cheap: no model call).

    ``GET /v1/models`` is not asked here: llama-cpp-python serves it only between answers, so a busy server
    would look absent."""
    if home is None:
        return None
    state = read_state(home)
    if state is None:
        return None
    if process_alive(state.pid) and port_open(state.host, state.port):
        return state
    log.info("the model server of %s (pid %d) is not running", state_path(home), state.pid)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerError(
                f"cannot listen on {host}:{port} ({exc.strerror}): another server has it; choose a port "
                "with --port"
            ) from None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def server_command(
    model_path: Path, alias: str, *, host: str, port: int, n_ctx: int, threads: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--interrupt_requests",
        "False",
    ]


def require_llama_server() -> None:
    """llama-cpp-python with its server extra is importable, or one clear error with the install hint."""
    import importlib.util

    missing = [
        m
        for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
        if not importlib.util.find_spec(m)
    ]
    if missing:
        raise InputError(
            f"the local model server needs llama-cpp-python[server] ({', '.join(missing)} missing): "
            "make llm, or CMAKE_ARGS='-DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON "
            "-DGGML_FMA=ON -DGGML_F16C=ON' pip install 'medlit[llama]'"
        )


@dataclass(slots=True)
class StartedServer:
    state: ServerState
    process: subprocess.Popen[bytes]
    seconds: float  # from start to the first answer of /v1/models


def start_server(
    model_path: Path,
    alias: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    n_ctx: int = 8192,
    threads: int | None = None,
    log_path: Path,
    ready_timeout: float = 120.0,
    detach: bool = True,
) -> StartedServer:
    """Start the server, wait until it answers ``/v1/models``, and return it (not yet in a state file).

    ``detach``: in its own session, so that it outlives the command that started it (and its Ctrl-C).
    If it exits or does not answer within ``ready_timeout``, it is stopped and the end of its log is in
    the error."""
    require_llama_server()
    if not Path(model_path).is_file():
        raise InputError(f"model {model_path}: no such file")
    check_port_free(host, port)
    threads = threads or usable_cpus()
    command = server_command(model_path, alias, host=host, port=port, n_ctx=n_ctx, threads=threads)
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, arguments we built
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detach,
        )
    state = ServerState(
        pid=process.pid,
        host=host,
        port=port,
        model=alias,
        model_path=str(model_path),
        n_ctx=n_ctx,
        threads=threads,
        started_at=time.time(),
        log=str(log_path),
    )
    try:
        wait_ready(state, process, ready_timeout, log_path)
    except BaseException:
        terminate(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        raise
    return StartedServer(state=state, process=process, seconds=time.monotonic() - started)


def wait_ready(state: ServerState, process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    url = f"{state.base_url}/models"
    while True:
        code = process.poll()
        if code is not None:
            raise ServerError(
                f"the model server exited (status {code}) before it answered: {_log_tail(log_path)}"
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                first_completion(state, process, max(5.0, deadline - time.monotonic()), log_path)
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(
                f"the model server did not answer {url} within {timeout:g} s: {_log_tail(log_path)}"
            )
        time.sleep(0.2)


def first_completion(
    state: ServerState, process: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> None:
    """One token of a completion, so that a server that loads but cannot compute is an error now, not in
    the user's first answer (a llama.cpp built for instructions the host does not run dies on it)."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{state.base_url}/completions",
            json={"prompt": "Hello", "max_tokens": 1, "temperature": 0.0},
            timeout=timeout,
        )
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(0.3)  # a crash is reaped at once
    code = process.poll()
    if code is not None:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        raise ServerError(
            f"the model server died on its first completion ({how}): llama-cpp-python was built for "
            "instructions this machine does not run; rebuild it with the Makefile's CMAKE_ARGS (the CPU "
            "features /proc/cpuinfo reports, not GGML_NATIVE): rm -rf .cache/wheels && make llm. "
            f"Log: {_log_tail(log_path)}"
        )


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def terminate(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` s. True when the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)  # our own child: reap it
                if done:
                    return True
            if not process_alive(pid):
                return True
            time.sleep(0.1)
    return not process_alive(pid)
