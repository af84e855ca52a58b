"""The command line itself: version, help texts, shell completion, `config check`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer.main
from typer.testing import CliRunner

import outrider
from outrider._cli import app

if TYPE_CHECKING:
    from typer._click import Command


def _commands(group: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    found = [(path, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*path, name))
    return found


def test_version() -> None:
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0
    assert done.stdout == f"outrider {outrider.__version__}\n"


def test_no_help_text_loses_its_square_brackets() -> None:
    checked = set()
    for path, command in _commands(typer.main.get_command(app)):
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        brackets = {b for text in texts for b in re.findall(r"\[+[^\[\]]*\]+", text)}
        if not brackets:
            continue
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert shown.exit_code == 0, path
        flat = " ".join(shown.stdout.split())
        for bracket in brackets:
            assert " ".join(bracket.split()) in flat, (path, bracket)
        checked.add(path)
    assert ("run",) in checked


def test_completion_installs_for_bash_and_completes(tmp_path: Path) -> None:
    script = """
    outrider --show-completion > shown.sh
    outrider --install-completion
    source ~/.bash_completions/outrider.sh
    COMP_WORDS=(outrider sub); COMP_CWORD=1; _outrider_completion outrider
    echo "commands: ${COMPREPLY[*]}"
    COMP_WORDS=(outrider ps --state ti); COMP_CWORD=3; _outrider_completion outrider
    echo "states: ${COMPREPLY[*]}"
    """
    env = {
        **os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "bash completion installed" in done.stdout
    assert "commands: submit\n" in done.stdout
    assert "states: timed_out\n" in done.stdout
    installed = tmp_path / ".bash_completions" / "outrider.sh"
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
    assert (tmp_path / "shown.sh").read_text().strip() == installed.read_text().strip()


CONFIG = """
max_running = 7
[limits]
shell = 2
[handlers]
size = "builtins:len"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUTRIDER_HOME", str(tmp_path / "home"))
    return tmp_path


def test_config_check_prints_the_effective_settings(home: Path) -> None:
    (home / "mine.toml").write_text(CONFIG)
    env = {"OUTRIDER_MAX_QUEUED": "5"}
    done = CliRunner().invoke(app, ["config", "check", "--config", "mine.toml", "--json"], env=env)
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert shown["file"] == "mine.toml"
    settings = shown["settings"]
    assert (settings["max_running"], settings["max_queued"]) == (7, 5)
    assert settings["limits"] == {"shell": 2}
    assert settings["db"] == str(home / "home" / "outrider.db")
    assert settings["shutdown_grace"] == 10
    text = CliRunner().invoke(app, ["config", "check", "--config", "mine.toml"], env=env)
    assert text.stderr == "mine.toml: valid\n"
    assert re.search(r"^max_running +=  *7$", text.stdout, re.M)
    assert re.search(r'^limits +=  *\{"shell": 2\}$', text.stdout, re.M)
    (home / "outrider.toml").write_text("")
    found = CliRunner().invoke(app, ["config", "check"])
    assert found.stderr == f"{home / 'outrider.toml'}: valid\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("max_running = 0\n", "invalid `max_running`"),
        ("colour = 'blue'\n", "unknown setting `colour`"),
        ('[handlers]\nmissing = "no_such_module:fn"\n', "Invalid `handlers.missing`"),
        ("max_running = [\n", "not valid TOML"),
    ],
)
def test_config_check_names_what_is_wrong(home: Path, body: str, message: str) -> None:
    (home / "outrider.toml").write_text(body)
    done = CliRunner().invoke(app, ["config", "check"])
    assert done.exit_code == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
