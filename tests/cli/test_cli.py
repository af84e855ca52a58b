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
from tests.fakellm import FakeLLM, Reply

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
        ('[[task]]\nlabel = "a"\ncommand = "true"\nagent = "x"\nprompt = "p"\n', "not both"),
        (
            '[[task]]\nlabel = "a"\nagent = "x"\n',
            "task.0: give `prompt`: the instructions for agent 'x'",
        ),
        ('[[task]]\nlabel = "a"\ncommand = "true"\nprompt = "p"\n', "go with `agent`"),
        ('[[task]]\nlabel = "a"\n', "task.0: give `command` (a shell string or an argv list)"),
        (
            '[[task]]\nlabel = "a"\ncommand = "true"\n[[task]]\nlabel = "b"\nagent = "nobody"\n'
            'prompt = "p"\n',
            "task.1.agent: Unknown agent 'nobody'; available: none are defined",
        ),
    ],
)
def test_bad_batch_files_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = CliRunner().invoke(app, ["run", str(path)], env={"OUTRIDER_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_batch_runs_agent_tasks_with_the_configs_providers(tmp_path: Path) -> None:
    agents = tmp_path / "project" / ".outrider" / "agents"
    agents.mkdir(parents=True)
    (agents / "writer.md").write_text("---\nmodel: fake/writer\nlimit: 1\n---\nYou write.\n")
    (agents / "outside.md").write_text("---\ncli: not-a-cli\n---\nYou are out.\n")
    (agents / "broken.md").write_text("---\nlimit: many\n---\n")
    batch = tmp_path / "project" / "batch.toml"
    batch.write_text(
        '[[task]]\nlabel = "notes"\ncommand = "echo alpha > notes.txt"\n'
        '[[task]]\nlabel = "summary"\nagent = "writer"\nprompt = "Summarise notes.txt"\n'
        'depends_on = ["notes"]\nenv = {}\n'
        '[[task]]\nlabel = "elsewhere"\nagent = "outside"\nprompt = "Hi"\nmodel = "big"\n'
        'env = { A = "1" }\n'
    )
    with FakeLLM() as fake:
        fake.script(
            "writer", [Reply.tool("read_file", path="notes.txt"), Reply.say("It says alpha.")]
        )
        config = tmp_path / "providers.toml"
        config.write_text(f'[providers.fake]\nbase_url = "{fake.base_url}"\napi_key = "k"\n')
        done = CliRunner().invoke(
            app, ["run", str(batch), "--json", "--config", str(config), "--db",
                  str(tmp_path / "o.db")],
            env={"OUTRIDER_HOME": str(tmp_path / "home")},
        )  # fmt: skip
        assert fake.calls_for("writer")[1].tool_results == ["alpha\n"]
    assert done.exit_code == 1, done.output
    assert "warning: agents: " in done.stderr
    tasks = {t["label"]: t for t in json.loads(done.stdout)["tasks"]}
    assert tasks["summary"]["state"] == "succeeded"
    assert tasks["summary"]["result"] == "It says alpha."
    assert tasks["summary"]["keys"] == ["agent:writer", "model:fake/writer"]
    assert tasks["summary"]["spec"]["workspace"] == str(batch.parent)
    outside = tasks["elsewhere"]
    assert outside["state"] == "failed"
    assert (outside["spec"]["cli"], outside["spec"]["env"]) == ("not-a-cli", {"A": "1"})
    assert "Unknown agent CLI 'not-a-cli'" in outside["error"]["message"]


def test_a_built_in_agent_task_takes_no_env(tmp_path: Path) -> None:
    agents = tmp_path / ".outrider" / "agents"
    agents.mkdir(parents=True)
    (agents / "writer.md").write_text("---\nmodel: fake/writer\n---\nYou write.\n")
    batch = tmp_path / "batch.toml"
    batch.write_text('[[task]]\nlabel = "w"\nagent = "writer"\nprompt = "p"\nenv = { A = "1" }\n')
    done = CliRunner().invoke(app, ["run", str(batch)], env={"OUTRIDER_HOME": str(tmp_path)})
    assert done.exit_code == 2
    assert "task.0.env: `env` is for commands and agent CLIs" in " ".join(done.output.split())


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
