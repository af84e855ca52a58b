"""A small real git repository for tests: one commit of `a.txt` on `main`."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def new_repo(tmp_path: Path) -> Path:
    """`tmp_path/repo`, a git checkout with one commit (`a.txt` holding `a`)."""
    root = tmp_path / "repo"
    root.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.email", "d@example.com"),
                 ("config", "user.name", "D")):  # fmt: skip
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "a"], cwd=root, check=True)
    return root
