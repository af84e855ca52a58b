"""Hundreds of tasks at once need more open files than most systems give a process at first.

Each test runs a child process under a low limit of open files (as `ulimit -n` sets it), since
raising the limit is for the whole process.
"""

from __future__ import annotations

import errno
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from outrider.runners._open_files import OPEN_FILES
from outrider.runners._protocol import RunFailure, failure_of

SCRIPT = Path(__file__).with_name("open_files_script.py")
_UNDER = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[3:]])"
)
"""Runs the rest of its arguments under the open-files limit (soft, hard) its first two give."""


def _under(soft: int, hard: int, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _UNDER, str(soft), str(hard), *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
"""This process's hard limit: a child's may not be set above it (without privilege)."""
_LOW = min(4096, _HARD)


@pytest.mark.parametrize(
    ("soft", "hard", "wanted", "raised"),
    [
        pytest.param(256, _LOW, 10 * _LOW, _LOW, id="to the hard limit"),
        pytest.param(256, _LOW, _LOW // 2, _LOW // 2, id="to the limit wanted"),
        pytest.param(_LOW // 2, _LOW, _LOW // 4, _LOW // 2, id="never lowered"),
        pytest.param(_HARD, _HARD, OPEN_FILES, _HARD, id="already there"),
    ],
)
def test_the_soft_limit_is_raised_within_the_hard_one_and_never_lowered(
    soft: int, hard: int, wanted: int, raised: int
) -> None:
    line = _under(soft, hard, "-c", (
        "import resource; from outrider.runners._open_files import allow_open_files; "
        f"print(allow_open_files({wanted}), *resource.getrlimit(resource.RLIMIT_NOFILE))"
    ))  # fmt: skip
    assert line.split() == [str(raised), str(raised), str(hard)]


def _ends(tmp_path: Path, soft: int, hard: int, count: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        _under(soft, hard, str(SCRIPT), str(tmp_path / "o.db"), str(count))
    )
    return result


def test_three_hundred_commands_at_once_under_a_soft_limit_of_256(tmp_path: Path) -> None:
    """Each holds a pipe, a pidfd and a log: about 900 files, where 256 were allowed."""
    ran = _ends(tmp_path, 256, _LOW, 300)
    assert ran["limit"] == [_LOW, _LOW]
    assert [state for state, _, _ in ran["ends"]] == ["succeeded"] * 300, ran["ends"]


def test_a_task_short_of_open_files_says_which_limit_and_how_to_raise_it(
    tmp_path: Path,
) -> None:
    """A hard limit of 64 cannot be raised: some of 60 commands at once cannot start."""
    ran = _ends(tmp_path, 64, 64, 60)
    failed = [(kind, message) for state, kind, message in ran["ends"] if state == "failed"]
    assert failed
    for kind, message in failed:
        assert kind == "OSError"
        assert message.startswith("Too many open files: outrider may hold 64 at once"), message
        assert "`ulimit -n`" in message
        assert "`max_running`" in message


def test_a_run_failure_tells_a_want_of_open_files_and_may_be_retried() -> None:
    full = failure_of(OSError(errno.EMFILE, "Too many open files"))
    assert full.message.startswith("Too many open files: outrider may hold ")
    assert (full.type, full.retryable) == ("OSError", True)
    assert full.detail is not None
    assert "OSError" in full.detail
    machine = failure_of(OSError(errno.ENFILE, "Too many open files in system"))
    assert "`fs.file-max`" in machine.message
    assert machine.retryable
    other = failure_of(FileNotFoundError(errno.ENOENT, "No such file", "x"))
    assert (other.type, other.message, other.retryable) == (
        "FileNotFoundError",
        "[Errno 2] No such file: 'x'",
        False,
    )
    understood = RunFailure("exited 3", type="exit", exit_code=3, retryable=True)
    assert failure_of(understood) is understood
    assert failure_of(ValueError("bad")).type == "ValueError"
