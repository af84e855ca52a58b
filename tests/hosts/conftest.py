"""The real agent hosts (Claude Code, opencode) from npm, pinned; the `hosts` tests use them.

They are found in `$OUTRIDER_HOSTS_DIR` (CI's `.ci/run` installs them there), else in the
checkout's `.cache/hosts`, installed there with npm on first use. The tests skip, saying why,
only when they cannot be installed (no npm, or no registry).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PINNED = {"claude": "@anthropic-ai/claude-code@2.1.332", "opencode": "opencode-ai@1.18.33"}
_ROOT = Path(__file__).resolve().parents[2]


def _hosts_dir() -> Path:
    return Path(os.environ.get("OUTRIDER_HOSTS_DIR") or _ROOT / ".cache" / "hosts")


def host_binary(name: str) -> Path:
    """The host's command, installed with npm if it is not there yet; skips if it cannot be."""
    folder = _hosts_dir()
    binary = folder / "node_modules" / ".bin" / name
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"{name}: npm is not installed, so {PINNED[name]} cannot be installed")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
         *PINNED.values()],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not binary.exists():
        pytest.skip(f"{name}: `npm install {PINNED[name]}` failed: {done.stderr.strip()[-300:]}")
    return binary


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    return host_binary("claude")


@pytest.fixture(scope="session")
def opencode_bin() -> Path:
    return host_binary("opencode")
