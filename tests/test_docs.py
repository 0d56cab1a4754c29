"""Docs cannot drift: every command has help text and a README section, every setting a README row."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from foundation.settings import NCBISettings, Settings
from medlit.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "medlit") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
        else:
            found.append((path, command))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(cli), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_is_documented(path: str, command: click.Command) -> None:
    assert command.help and len(command.help.strip()) > 20, f"{path} has no help text"
    assert f"`{path}" in README, f"{path} is not documented in README.md"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in {"as_json", "quiet"}:
            assert param.help, f"{path} {param.opts[0]} has no help"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize("name", ["home", "ingest_batch_size"])
def test_settings_are_documented(name: str) -> None:
    assert f"MEDLIT_{name.upper()}" in README
    assert Settings.model_fields[name].description


@pytest.mark.parametrize("name", sorted(NCBISettings.model_fields))
def test_ncbi_settings_have_descriptions(name: str) -> None:
    assert NCBISettings.model_fields[name].description
