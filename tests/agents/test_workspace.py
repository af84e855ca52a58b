"""The built-in agent's file tools: confinement to the workspace and the permission policy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from outrider._agents._workspace import Patterns, Policy, ToolRefused, Workspace

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "src").mkdir(parents=True)
    (tmp_path / "ws" / "src" / "app.py").write_text("def main():\n    return 1\n# main\n")
    (tmp_path / "ws" / "secrets").mkdir()
    (tmp_path / "ws" / "secrets" / "key.txt").write_text("hunter2\n")
    (tmp_path / "ws" / ".git").mkdir()
    (tmp_path / "ws" / ".git" / "HEAD").write_text("ref: main\n")
    (tmp_path / "ws" / "blob.bin").write_bytes(b"\xff\xfe\x00main")
    (tmp_path / "outside.txt").write_text("main\n")
    (tmp_path / "ws" / "link.txt").symlink_to(tmp_path / "outside.txt")
    return tmp_path / "ws"


def test_paths_outside_and_symlinks_out_are_refused(root: Path) -> None:
    ws = Workspace(root, Policy())
    for raw in ("../outside.txt", "/etc/passwd", "link.txt", "src/../../outside.txt"):
        with pytest.raises(ToolRefused, match="outside the workspace"):
            ws.path(raw)
    assert ws.path(".") == root.resolve()
    for pattern in ("/etc/*", "../*"):
        with pytest.raises(ToolRefused, match="reaches outside"):
            ws.list(pattern)
        with pytest.raises(ToolRefused, match="reaches outside"):
            ws.grep("x", pattern)


def test_listing_and_grep_skip_tool_folders_links_out_and_denied_paths(root: Path) -> None:
    ws = Workspace(root, Policy(paths=Patterns(deny=("secrets/**",))))
    listing = ws.list().splitlines()
    assert "src/" in listing
    assert "src/app.py" in listing
    assert not any(line.startswith((".git", "secrets/", "link")) for line in listing)
    assert ws.list("*.none") == "(nothing matches)"
    hits = ws.grep("main")
    assert "src/app.py:1: def main():" in hits
    assert "src/app.py:3: # main" in hits
    assert "key.txt" not in hits
    assert "outside" not in hits
    assert ws.grep("nothing-like-this") == "(no matches)"
    with pytest.raises(ToolRefused, match="invalid regular expression"):
        ws.grep("(")
    with pytest.raises(ToolRefused, match=r"does not allow 'secrets/key\.txt'"):
        ws.read("secrets/key.txt")


def test_allow_lists_and_deny_wins() -> None:
    patterns = Patterns(allow=("pytest*", "git status"), deny=("pytest --pdb*",))
    assert patterns.permits("pytest -q")
    assert patterns.permits("git status")
    assert not patterns.permits("pytest --pdb tests")
    assert not patterns.permits("rm -rf /")
    assert Patterns().permits("anything")


def test_read_write_edit(root: Path) -> None:
    ws = Workspace(root, Policy())
    assert ws.read("src/app.py", offset=1, limit=1) == "    return 1\n"
    with pytest.raises(ToolRefused, match="is not a file"):
        ws.read("src")
    assert ws.write("new/deep/file.txt", "hello") == "wrote 5 bytes to new/deep/file.txt"
    assert (root / "new" / "deep" / "file.txt").read_text() == "hello"
    assert ws.edit("src/app.py", "return 1", "return 2") == "edited src/app.py"
    assert "return 2" in (root / "src" / "app.py").read_text()
    with pytest.raises(ToolRefused, match="occurs 2 times"):
        ws.edit("src/app.py", "main", "start")
    with pytest.raises(ToolRefused, match="occurs 0 times"):
        ws.edit("src/app.py", "", "x")
    with pytest.raises(ToolRefused, match="is not a file"):
        ws.edit("missing.py", "a", "b")


def test_a_long_file_is_cut_and_says_how_to_read_on(root: Path) -> None:
    (root / "big.txt").write_text("x" * 99 + "\n" + "y" * 200_000)
    text = Workspace(root, Policy()).read("big.txt")
    assert text.endswith("characters; read with offset]")
    assert len(text) < 100_100


def test_read_only_refuses_writes_edits_and_commands(root: Path) -> None:
    ws = Workspace(root, Policy(read_only=True))
    with pytest.raises(ToolRefused, match="read-only"):
        ws.write("a.txt", "x")
    with pytest.raises(ToolRefused, match="read-only"):
        ws.edit("src/app.py", "main", "x")
    with pytest.raises(ToolRefused, match="may not run commands"):
        ws.check_command("ls")
    assert ws.read("src/app.py").startswith("def main")


def test_command_policy(root: Path) -> None:
    ws = Workspace(root, Policy(commands=Patterns(allow=("pytest*",), deny=("*sudo*",))))
    ws.check_command("  pytest -q  ")
    with pytest.raises(ToolRefused, match="matches no allow rule"):
        ws.check_command("git push")
    with pytest.raises(ToolRefused, match=r"`sudo rm -rf /` matches the deny rule '\*sudo\*'"):
        ws.check_command("pytest; sudo rm -rf /")
