"""Worktree benchmark: what a worktree adds to a writing task, on a repository of 5,000 files.

Run: uv run python bench/worktrees.py  [--quick]

A repository of 5,000 small files in 50 folders (one commit), with one uncommitted change and
one new file, so the snapshot has work to do. Measured in one run:

(1) the git steps of one worktree, each timed alone, N times: the snapshot (temporary index,
    `add -A`, `write-tree`, `commit-tree`), `git worktree add` (locked, new branch), and the
    finish (commit what the task left, the changes, the merge preview with `merge-tree`); the
    baseline is a plain `git worktree add` + `git worktree remove` of HEAD;
(2) end to end through an orchestrator: one agent-CLI task (`sh`, writing one file) with
    `isolation="worktree"` against the same task with `isolation="none"`, N times each,
    alternating; submit to end, median and p90;
(3) 8 such tasks at once: the wall time from the first submit to the last end, worktree
    against none, and the baseline of 8 plain `git worktree add` one after another.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import outrider
from outrider._worktrees._git import Repo
from outrider.runners._cli_agent import CliAgentRunner, CliTemplate

QUICK = "--quick" in sys.argv
RUNS = 5 if QUICK else 20
FILES = 5_000
AT_ONCE = 8


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    for d in range(50):
        folder = repo / f"pkg{d:02d}"
        folder.mkdir(parents=True)
        for f in range(FILES // 50):
            (folder / f"mod{f:03d}.py").write_text(f"# module {d}.{f}\nVALUE = {f}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "add", ".")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "start")
    (repo / "pkg00" / "mod000.py").write_text("# changed, not committed\n")
    (repo / "new.py").write_text("# new, not added\n")
    return repo


def _ms(seconds: list[float]) -> str:
    cut = sorted(seconds)
    p90 = cut[min(len(cut) - 1, int(len(cut) * 0.9))]
    return f"{statistics.median(seconds) * 1000:.0f} ({p90 * 1000:.0f})"


def git_steps(repo: Path, scratch: Path) -> dict[str, list[float]]:
    """Each step of one worktree's life, timed alone; and the plain baseline."""
    parent = Repo(repo)
    times: dict[str, list[float]] = {k: [] for k in ("baseline", "snapshot", "add", "finish")}
    for n in range(RUNS):
        plain = scratch / f"plain{n}"
        t0 = time.perf_counter()
        git(repo, "worktree", "add", "-q", "-b", f"plain{n}", str(plain), "HEAD")
        git(repo, "worktree", "remove", str(plain))
        times["baseline"].append(time.perf_counter() - t0)
        path = scratch / f"wt{n}"
        t0 = time.perf_counter()
        base = parent.snapshot()
        t1 = time.perf_counter()
        parent.add_worktree(path, f"outrider/b{n}", base, "bench")
        t2 = time.perf_counter()
        (path / "pkg01" / "mod001.py").write_text("# the task's change\n")
        tree = Repo(path)
        tree.commit_all("bench")
        head = tree.head()
        assert head is not None
        parent.changes(base, head)
        parent.unlock(path)
        parent.merge_preview(head)
        t3 = time.perf_counter()
        times["snapshot"].append(t1 - t0)
        times["add"].append(t2 - t1)
        times["finish"].append(t3 - t2)
        parent.remove_worktree(path)
        parent.delete_branch(f"outrider/b{n}")
    return times


async def tasks(repo: Path, scratch: Path) -> tuple[dict[str, list[float]], dict[str, float]]:
    sh = CliAgentRunner({"sh": CliTemplate(("/bin/sh", "-c", "{prompt}"))})
    settings = outrider.Settings(
        worktrees_dir=str(scratch / "worktrees"), default_limit=AT_ONCE, max_running=64
    )
    one: dict[str, list[float]] = {"worktree": [], "none": []}
    burst: dict[str, float] = {}
    async with outrider.Orchestrator(scratch / "o.db", settings, runners=[sh]) as orch:
        session = orch.session("bench")

        async def timed(isolation: str, n: int) -> float:
            spec = outrider.cli_agent("sh", f"echo {n} > out{n}.txt; echo ok", cwd=str(repo),
                                      isolation=isolation)  # type: ignore[arg-type]  # fmt: skip
            t0 = time.perf_counter()
            task = await session.submit(spec)
            (done,) = await session.wait([task.id], timeout=120)
            assert done.state == "succeeded", done.error
            return time.perf_counter() - t0

        for n in range(RUNS):
            for isolation in ("worktree", "none"):
                one[isolation].append(await timed(isolation, n))
        for isolation in ("worktree", "none"):
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for n in range(AT_ONCE):
                    tg.start_soon(timed, isolation, 1000 + n)
            burst[isolation] = time.perf_counter() - t0
        for worktree in await session.worktrees():
            if worktree.state == "kept":
                await session.discard_task(worktree.task_id)
    return one, burst


def plain_burst(repo: Path, scratch: Path) -> float:
    t0 = time.perf_counter()
    for n in range(AT_ONCE):
        git(repo, "worktree", "add", "-q", "-b", f"burst{n}", str(scratch / f"burst{n}"), "HEAD")
    took = time.perf_counter() - t0
    for n in range(AT_ONCE):
        git(repo, "worktree", "remove", "--force", str(scratch / f"burst{n}"))
    return took


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="outrider-bench-") as tmp:
        root = Path(tmp)
        repo = make_repo(root)
        steps = git_steps(repo, root / "steps")
        one, burst = anyio.run(tasks, repo, root)
        plain = plain_burst(repo, root / "plain")
    table = Table(title=f"one worktree, {FILES:,} files, {RUNS} runs: median ms (p90)")
    table.add_column("step")
    table.add_column("ms")
    rows = [
        ("baseline: plain `git worktree add` + `remove`", steps["baseline"]),
        ("snapshot of the dirty checkout", steps["snapshot"]),
        ("`git worktree add` (locked, new branch)", steps["add"]),
        ("finish: commit, changes, merge preview", steps["finish"]),
        ("task end to end, isolation none (baseline)", one["none"]),
        ("task end to end, isolation worktree", one["worktree"]),
    ]
    for name, values in rows:
        table.add_row(name, _ms(values))
    console.print(table)
    console.print(
        f"{AT_ONCE} tasks at once, first submit to last end: worktree {burst['worktree']:.2f} s, "
        f"none {burst['none']:.2f} s; baseline {AT_ONCE} plain `git worktree add` one after "
        f"another {plain:.2f} s"
    )


if __name__ == "__main__":
    main()
