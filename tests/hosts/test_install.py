"""`outrider install HOST`: merges into the host's files, idempotent, backed up, undone."""

from __future__ import annotations

import json
import tomllib
from typing import TYPE_CHECKING

import pytest

from outrider._hosts._install import HOSTS, apply, plan
from outrider._types._errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

EXE = "/opt/outrider bin/outrider"


def install(tmp_path: Path, host: str, *, user: bool = False, **kw: bool) -> list[str]:
    scope = "user" if user else "project"
    edits = plan(host, exe=EXE, root=tmp_path / "proj", home=tmp_path / "home", scope=scope,
                 uninstall=kw.pop("uninstall", False))  # fmt: skip
    return apply(edits, dry_run=kw.pop("dry_run", False))


def test_claude_keeps_other_servers_and_hooks_and_is_idempotent(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / ".claude").mkdir(parents=True)
    (proj / ".mcp.json").write_text('{"mcpServers": {"mine": {"command": "x"}}, // note\n}')
    mine = {"type": "command", "command": "echo mine"}
    settings = {"hooks": {"Stop": [{"hooks": [mine]}]}, "model": "opus"}
    (proj / ".claude" / "settings.json").write_text(json.dumps(settings))
    said = install(tmp_path, "claude")
    assert said[0].startswith("update")
    assert "backup: .mcp.json.bak" in said[0]
    servers = json.loads((proj / ".mcp.json").read_text())["mcpServers"]
    assert servers["mine"] == {"command": "x"}
    assert servers["outrider"]["command"] == EXE
    assert servers["outrider"]["args"] == ["mcp"]
    hooks = json.loads((proj / ".claude" / "settings.json").read_text())
    assert hooks["model"] == "opus"
    stop = [h for group in hooks["hooks"]["Stop"] for h in group["hooks"]]
    assert mine in stop
    rewake = next(h for h in stop if "claude-rewake" in h["command"])
    assert rewake["asyncRewake"] is True
    assert rewake["command"].startswith("'/opt/outrider bin/")
    assert {"SessionStart", "UserPromptSubmit"} <= set(hooks["hooks"])
    assert (proj / ".mcp.json.bak").read_text().startswith('{"mcpServers": {"mine"')
    assert all(line.startswith("unchanged") for line in install(tmp_path, "claude"))
    install(tmp_path, "claude", uninstall=True)
    assert json.loads((proj / ".mcp.json").read_text()) == {
        "mcpServers": {"mine": {"command": "x"}}
    }
    assert json.loads((proj / ".claude" / "settings.json").read_text()) == settings


def test_user_scope_writes_the_home_files(tmp_path: Path) -> None:
    install(tmp_path, "claude", user=True)
    home = tmp_path / "home"
    assert "outrider" in json.loads((home / ".claude.json").read_text())["mcpServers"]
    assert (home / ".claude" / "settings.json").is_file()
    assert not (tmp_path / "proj").exists()


def test_opencode_gets_its_entry_and_plugin(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "opencode.jsonc").write_text('{\n  // mine\n  "theme": "dark",\n}\n')
    install(tmp_path, "opencode")
    config = json.loads((proj / "opencode.jsonc").read_text())
    assert config["theme"] == "dark"
    assert config["mcp"]["outrider"] == {"type": "local", "command": [EXE, "mcp"], "enabled": True}
    plugin = (proj / ".opencode" / "plugin" / "outrider.ts").read_text()
    assert f"const OUTRIDER: string = {json.dumps(EXE)}" in plugin
    assert "promptAsync" in plugin
    assert "session.idle" in plugin
    install(tmp_path, "opencode", uninstall=True)
    assert not (proj / ".opencode" / "plugin" / "outrider.ts").exists()
    assert json.loads((proj / "opencode.jsonc").read_text()) == {"theme": "dark"}


def test_codex_toml_is_edited_as_text_keeping_comments(tmp_path: Path) -> None:
    folder = tmp_path / "proj" / ".codex"
    folder.mkdir(parents=True)
    original = '# my settings\nmodel = "o4"\n\n[mcp_servers.other]\ncommand = "x"\n'
    (folder / "config.toml").write_text(original)
    install(tmp_path, "codex")
    install(tmp_path, "codex")
    text = (folder / "config.toml").read_text()
    assert text.startswith("# my settings")
    parsed = tomllib.loads(text)
    assert parsed["mcp_servers"]["outrider"] == {"command": EXE, "args": ["mcp"]}
    assert parsed["mcp_servers"]["other"] == {"command": "x"}
    assert "hook stop" in (folder / "hooks.json").read_text()
    install(tmp_path, "codex", uninstall=True)
    assert (folder / "config.toml").read_text() == original


@pytest.mark.parametrize("host", ["gemini", "cursor"])
def test_gemini_and_cursor_get_their_entry(tmp_path: Path, host: str) -> None:
    install(tmp_path, host)
    name = "settings.json" if host == "gemini" else "mcp.json"
    doc = json.loads((tmp_path / "proj" / f".{host}" / name).read_text())
    assert doc["mcpServers"]["outrider"] == {"command": EXE, "args": ["mcp"]}
    assert ("AfterAgent" in doc.get("hooks", {})) is (host == "gemini")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    for host in HOSTS:
        said = install(tmp_path, host, dry_run=True)
        assert said
        assert all(line.startswith("would write") for line in said)
    assert not (tmp_path / "proj").exists()


def test_an_unreadable_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".mcp.json").write_text("{not json")
    with pytest.raises(UserError, match=r"Cannot read .*\.mcp\.json as JSON"):
        install(tmp_path, "claude")
    assert (proj / ".mcp.json").read_text() == "{not json"
    assert not (proj / ".claude").exists()
    (proj / ".codex").mkdir()
    (proj / ".codex" / "config.toml").write_text("a = [")
    with pytest.raises(UserError, match="as TOML"):
        install(tmp_path, "codex")
    with pytest.raises(UserError, match="Unknown host 'vim': give one of claude, opencode"):
        install(tmp_path, "vim")
