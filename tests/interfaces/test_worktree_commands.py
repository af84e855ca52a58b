"""Worktrees through the daemon: `outrider worktrees`, `merge`, `discard`, and the MCP tools."""

from __future__ import annotations

from typing import TYPE_CHECKING

import outrider
from tests.gitrepo import new_repo

from .test_cli_commands import as_json, cli
from .test_mcp import call, http, text

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Daemon


def _writers(daemon: Daemon, session: str, repo: Path, *scripts: str) -> list[str]:
    with daemon.client(session) as client:
        ids = [client.submit(outrider.cli_agent("sh", f"{s}; echo ok", cwd=str(repo))).id
               for s in scripts]  # fmt: skip
        done = client.wait(ids, timeout=30)
    assert [t.state for t in done] == ["succeeded"] * len(ids), [t.error for t in done]
    return ids


def test_the_commands_list_merge_and_discard(daemon: Daemon, tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    one, two, three = _writers(daemon, "wt-cli", repo, "echo 1 > x.txt", "echo 2 > x.txt",
                               "echo 3 > y.txt")  # fmt: skip
    listed = cli(daemon, "worktrees", "--session", "wt-cli")
    assert listed.exit_code == 0, listed.output
    assert one in listed.stdout
    assert "kept" in listed.stdout
    assert "1 files +1 -0" in listed.stdout
    merged = cli(daemon, "merge", one, "--session", "wt-cli")
    assert merged.exit_code == 0, merged.output
    assert "Merged (apply)" in merged.stdout
    assert (repo / "x.txt").read_text() == "1\n"
    refused = cli(daemon, "merge", two, "--how", "squash", "--session", "wt-cli", "--json")
    assert refused.exit_code == 1
    assert as_json(refused)["conflicts"] == ["x.txt"]
    bad = cli(daemon, "merge", two, "--how", "rebase", "--session", "wt-cli")
    assert bad.exit_code == 2
    assert "give one of apply, squash, cherry-pick, patch" in bad.output
    dropped = cli(daemon, "discard", three, "--session", "wt-cli")
    assert dropped.exit_code == 0, dropped.output
    assert f"discarded outrider/{three}" in dropped.stdout
    unknown = cli(daemon, "discard", "t_nope", "--session", "wt-cli")
    assert unknown.exit_code == 1
    assert as_json(cli(daemon, "worktrees", "--session", "wt-cli", "--json"))[0]["state"] == (
        "merged"
    )
    empty = cli(daemon, "worktrees", "--session", "wt-none")
    assert empty.exit_code == 0
    assert "no worktrees" in empty.output


async def test_the_mcp_tools_merge_and_discard(daemon: Daemon, tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    one, two, three = _writers(daemon, "wt-mcp", repo, "echo 1 > x.txt", "echo 2 > x.txt",
                               "echo 3 > y.txt")  # fmt: skip
    async with http(daemon, session="wt-mcp") as client:
        merged = await call(client, "merge_task", task_id=one)
        assert "Merged (apply)" in text(merged)
        assert merged.structured_content["merge"]["merged"] is True
        refused = await client.call_tool("merge_task", {"task_id": two})
        assert refused.is_error
        assert "Not merged: it conflicts" in text(refused)
        assert "x.txt" in text(refused)
        patch = await call(client, "merge_task", task_id=two, how="patch")
        assert ".patch" in text(patch)
        dropped = await call(client, "discard_task", task_id=three)
        assert f"Discarded outrider/{three}" in text(dropped)
