from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import psutil
import pytest
from typer.testing import CliRunner

from outrider._cli import app
from outrider._cli._daemon import settle_collector
from outrider.testing import wait_until

PY = sys.executable


def outrider(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    return subprocess.run(
        [PY, "-m", "outrider._cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=120, check=False,
    )  # fmt: skip


def test_run_json_reports_every_task(tmp_path: Path) -> None:
    (tmp_path / "batch.toml").write_text(
        f"""
[limits]
shell = 2

[[task]]
label = "build"
command = "echo built > out.txt"

[[task]]
label = "test"
command = "cat out.txt"
depends_on = ["build"]

[[task]]
label = "broken"
command = ["{PY}", "-c", "raise SystemExit(4)"]
priority = 9
"""
    )
    done = outrider("run", "batch.toml", "--json", "--db", str(tmp_path / "o.db"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    tasks = {t["label"]: t for t in json.loads(done.stdout)["tasks"]}
    assert tasks["build"]["state"] == "succeeded"
    assert tasks["test"]["state"] == "succeeded"
    assert tasks["test"]["result"] == "built\n"
    assert tasks["broken"]["state"] == "failed"
    assert tasks["broken"]["exit_code"] == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[task]]\nlabel = "a"\ncommand = "true"\npriority = 12\n', "task.0.priority"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\ndepends_on = ["zzz"]\n', "'zzz'"),
        ('[[task]]\nlabel = "a"\nhandler = "x"\n', "handler"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\ncolour = "red"\n', "task.0.colour"),
        ("[[task]\n", "not valid TOML"),
    ],
)
def test_bad_batch_files_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.slow
def test_demo_runs_offline(tmp_path: Path) -> None:
    done = outrider("demo", "--db", str(tmp_path / "demo.db"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "package" in done.stdout
    assert "succeeded" in done.stdout


def test_ctrl_c_stops_every_task_and_exits_130(tmp_path: Path) -> None:
    (tmp_path / "batch.toml").write_text(
        '[[task]]\nlabel = "long"\ncommand = "echo begun; sleep 61"\n'
        '[[task]]\nlabel = "after"\ncommand = "true"\ndepends_on = ["long"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    log_dir = tmp_path / "store.db.logs"
    process = subprocess.Popen(
        [PY, "-m", "outrider._cli", "run", "batch.toml", "--json", "--db", "store.db"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def begun() -> bool:
        files = log_dir.rglob("*") if log_dir.exists() else []
        return any(f.is_file() and b"begun" in f.read_bytes() for f in files)

    try:
        anyio.run(lambda: wait_until(begun, timeout=30))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "interrupted" in err
    sleeping = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "61"]]
    assert sleeping == []


def test_the_daemon_freezes_its_start_up_objects_and_collects_young_garbage_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (5_000, 20, 20)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
