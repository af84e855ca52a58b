"""The pure worktree rules: who gets one, how git's answers read, what a sweep may remove."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outrider._core._worktrees import (
    branch_of,
    new_overlaps,
    parse_merge_tree,
    parse_numstat,
    parse_status,
    place,
    sweep_action,
    task_of_branch,
)
from outrider._types._worktrees import FileChange, MergePreview, Worktree


@pytest.mark.parametrize(
    ("writes", "in_git", "asked", "agent_default", "configured", "worktree", "noted"),
    [
        (True, True, None, None, "worktree", True, False),  # a writer in git: the default
        (False, True, "worktree", None, "worktree", False, False),  # a reader never
        (True, True, "none", "worktree", "worktree", False, False),  # the submit wins
        (True, True, None, "none", "worktree", False, False),  # then the agent file
        (True, True, None, None, "none", False, False),  # then the config
        (True, True, "worktree", None, "none", True, False),
        (True, False, None, None, "worktree", False, False),  # no git: in place, quietly
        (True, False, "worktree", None, "worktree", False, True),  # asked: said so
        (True, False, None, "worktree", "worktree", False, True),
    ],
)
def test_place(
    writes: bool, in_git: bool, asked: str | None, agent_default: str | None,
    configured: str, worktree: bool, noted: bool,
) -> None:  # fmt: skip
    got = place(
        writes=writes, in_git=in_git, asked=asked, agent_default=agent_default,  # type: ignore[arg-type]
        configured=configured,  # type: ignore[arg-type]
    )  # fmt: skip
    assert got.worktree is worktree
    assert (got.note is not None) is noted


def test_a_task_in_another_tasks_worktree_writes_there() -> None:
    nested = {"writes": True, "in_git": True, "configured": "worktree", "nested": True}
    assert not place(asked=None, agent_default=None, **nested).worktree  # type: ignore[arg-type]
    assert place(asked="worktree", agent_default=None, **nested).worktree  # type: ignore[arg-type]


def test_branch_names_round_trip() -> None:
    assert branch_of("t_1") == "outrider/t_1"
    assert task_of_branch("refs/heads/outrider/t_1") == "t_1"
    assert task_of_branch("outrider/t_1") == "t_1"
    assert task_of_branch("outrider/") is None
    assert task_of_branch("main") is None


def test_parse_numstat_reads_renames_and_binaries() -> None:
    text = "3\t1\ta.py\0-\t-\timg.png\0" + "0\t0\t\0old.py\0new.py\0"
    assert parse_numstat(text) == (
        FileChange(path="a.py", added=3, removed=1),
        FileChange(path="img.png"),
        FileChange(path="new.py", added=0, removed=0),
    )
    assert parse_numstat("") == ()


def test_parse_merge_tree() -> None:
    assert parse_merge_tree(0, "abc\0") == MergePreview(clean=True)
    got = parse_merge_tree(1, "abc\0b.py\0a.py\0b.py\0")
    assert got == MergePreview(clean=False, conflicts=("b.py", "a.py"))
    assert got.text == "conflicts in b.py, a.py"
    many = MergePreview(clean=False, conflicts=tuple(f"{n}.py" for n in range(7)))
    assert many.text == "conflicts in 0.py, 1.py, 2.py, 3.py, 4.py and 2 more"
    with pytest.raises(ValueError, match="exit 128"):
        parse_merge_tree(128, "fatal: bad object\n")


def _worktree(state: str, *, changed: bool = True) -> Worktree:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Worktree(
        task_id="t_1", session="s", repo="/r", path="/w", branch="outrider/t_1", base="b",
        head="h" if changed else "b", state=state,  # type: ignore[arg-type]
        files=(FileChange(path="a.py", added=1, removed=0),) if changed else (),
        created_at=at, updated_at=at,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "changed", "dirty", "age", "action"),
    [
        ("active", True, False, 10**9, "keep"),
        ("kept", True, True, 10**9, "keep"),  # uncommitted files: never
        ("kept", True, False, 10, "keep"),  # kept work within retention
        ("kept", True, False, 10**9, "remove_folder"),  # past it: the folder, not the branch
        ("kept", False, False, 10, "remove"),  # nothing changed
        ("merged", True, False, 10, "remove"),
        ("discarded", True, False, 10, "remove"),
        ("removed", False, False, 10**9, "keep"),  # nothing left
    ],
)
def test_sweep_action(state: str, changed: bool, dirty: bool, age: float, action: str) -> None:
    got = sweep_action(_worktree(state, changed=changed), dirty=dirty, age=age, retention=100)
    assert got == action


def test_summary_lines() -> None:
    assert _worktree("kept").summary == "worktree outrider/t_1: 1 file (+1 -0)"
    assert _worktree("removed", changed=False).summary == "worktree outrider/t_1: no changes"
    assert _worktree("kept").changed
    assert not _worktree("removed", changed=False).changed


def test_parse_status_reads_renames_both_ways() -> None:
    text = " M a.py\0?? new/x.py\0R  b.py\0old_b.py\0D  gone.py\0"
    assert parse_status(text) == {"a.py", "new/x.py", "b.py", "old_b.py", "gone.py"}
    assert parse_status("") == frozenset()


def test_new_overlaps_once_per_pair() -> None:
    mine = frozenset({"a.py", "b.py"})
    others = {"t_2": frozenset({"b.py", "a.py"}), "t_3": frozenset({"c.py"}), "t_4": mine}
    assert new_overlaps(mine, others, reported=()) == {
        "t_2": ("a.py", "b.py"), "t_4": ("a.py", "b.py"),
    }  # fmt: skip
    assert new_overlaps(mine, others, reported={"t_2", "t_4"}) == {}
