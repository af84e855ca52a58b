from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import psutil
import pytest
from typer.testing import CliRunner

from outrider import Orchestrator, Task
from outrider._cli import app
from outrider._collector import settle_collector
from outrider.testing import wait_until
from tests.fakellm import FakeLLM, Reply

PY = sys.executable


def outrider(*args: str, cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own (`run` makes its process a subreaper)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    if home is not None:
        env["OUTRIDER_HOME"] = str(home)
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
        ('[[task]]\nlabel = "a"\ncommand = ""\n', "task.0.command: the command is empty"),
        ('[[task]]\nlabel = "a"\ncommand = []\n', "task.0.command: the argv list is empty"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\ntimeout = inf\n', "task.0.timeout"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\npriority = true\n', "task.0.priority"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\nkeys = []\n', "task.0.keys"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\nenv = {A = "x\\u0000"}\n', "task.0.env"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\ncwd = "x\\u0000"\n', "task.0.cwd"),
        (f'[[task]]\nlabel = "a"\ncommand = "{"x" * 200_000}"\n', "write it to a file"),
        (f'[[task]]\nlabel = "a"\ncommand = "true"\ndescription = "{"d" * 20_000}"\n',
         "task.0.description"),
        ('[limits]\nshell = true\n[[task]]\nlabel = "a"\ncommand = "true"\n', "limits.shell"),
        ('[limits]\n"" = 2\n[[task]]\nlabel = "a"\ncommand = "true"\n', "limits"),
        ("task = 5\n", "task"),
        ('[[task]]\nlabel = "a"\ncommand = "true"\ntimeout = 1979-05-27\n', "task.0.timeout"),
    ],
)  # fmt: skip
def test_bad_batch_files_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = CliRunner().invoke(app, ["run", str(path)], env={"OUTRIDER_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line, no traceback


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
        done = outrider(
            "run", str(batch), "--json", "--config", str(config), "--db", str(tmp_path / "o.db"),
            cwd=tmp_path, home=tmp_path / "home",
        )  # fmt: skip
        assert fake.calls_for("writer")[1].tool_results == ["alpha\n"]
    assert done.returncode == 1, done.stdout + done.stderr
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


def test_a_batch_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[[task]]\nlabel = "\xff"\ncommand = "true"\n')
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "byte 0xff at position 18 is not UTF-8" in result.output


def test_run_on_a_store_held_by_another_process_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "batch.toml").write_text('[[task]]\nlabel = "a"\ncommand = "true"\n')
    holder = subprocess.Popen(  # holds the store's lock while the run tries to take it
        [PY, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242'); print('held', flush=True);"
         "sys.stdin.read()", str(tmp_path / "o.db.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        done = outrider("run", "batch.toml", "--db", "o.db", cwd=tmp_path)
    finally:
        holder.communicate(timeout=10)
    assert done.returncode == 2
    assert "error: The store" in done.stderr
    assert "is in use by another outrider process (pid 4242)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_demo_runs_offline_in_the_daemon_and_ends_with_the_dashboard(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
           "OUTRIDER_HOME": str(tmp_path), "OUTRIDER_PORT": "0"}  # fmt: skip
    env.pop("OUTRIDER_URL", None)
    env.pop("OUTRIDER_TOKEN", None)
    try:
        done = subprocess.run(
            [PY, "-m", "outrider._cli", "demo"], capture_output=True, text=True, cwd=tmp_path,
            env=env, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        out = " ".join(done.stdout.split())
        assert "package" in out
        assert "✗" not in out
        assert "The agent team (scripted model) succeeded" in out
        assert "- demo-reader: The file has 13 lines and defines add, mean." in out
        assert "- demo-tester: The command ended with exit code 0; it printed:" in out
        assert "at the scripted model's made-up price, over 3 agents and 20 tasks" in out
        (url,) = [w for w in out.split() if "/ui/login?code=" in w]
        with httpx.Client() as browser:
            first = browser.get(url)
            assert first.status_code == 200
            assert "outrider_ui" in first.cookies
            assert browser.get(url).status_code == 401  # it works once
            page = browser.get(url.split("/ui/")[0] + "/ui/s/demo/tree")
            assert page.status_code == 200
            assert "team review (scripted model)" in page.text
            assert "demo-tester$ ls calc checks" in page.text
    finally:
        subprocess.run([PY, "-m", "outrider._cli", "stop"], env=env, timeout=60, check=False)


def start_run(tmp_path: Path, body: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "batch.toml").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    return subprocess.Popen(
        [PY, "-m", "outrider._cli", "run", "batch.toml", "--json", "--db", "store.db", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def sleeping(seconds: str) -> list[int]:
    procs = psutil.process_iter(["cmdline", "status"])
    return [p.pid for p in procs if p.info["cmdline"] == ["sleep", seconds]
            and p.info["status"] != psutil.STATUS_ZOMBIE]  # fmt: skip


async def wait_begun(tmp_path: Path) -> None:
    log_dir = tmp_path / "store.db.logs"

    def begun() -> bool:
        files = log_dir.rglob("*.log") if log_dir.exists() else []
        return any(f.is_file() and b"begun" in f.read_bytes() for f in files)

    await wait_until(begun, timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_or_a_closed_terminal_stops_every_task_and_exits_130(
    tmp_path: Path, signum: int
) -> None:
    process = start_run(
        tmp_path,
        '[[task]]\nlabel = "long"\ncommand = "echo begun; sleep 61"\n'
        '[[task]]\nlabel = "after"\ncommand = "true"\ndepends_on = ["long"]\n',
    )
    try:
        anyio.run(wait_begun, tmp_path)
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "interrupted" in err
    assert sleeping("61") == []


@pytest.mark.slow
def test_after_kill_9_nothing_run_started_survives_and_a_rerun_recovers(tmp_path: Path) -> None:
    process = start_run(tmp_path, '[[task]]\nlabel = "long"\ncommand = "echo begun; sleep 62"\n')
    try:
        anyio.run(wait_begun, tmp_path)
        assert sleeping("62")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        anyio.run(lambda: wait_until(lambda: not sleeping("62"), timeout=20))  # the guardian
    finally:
        process.kill()
    (tmp_path / "again.toml").write_text('[[task]]\nlabel = "again"\ncommand = "echo again"\n')
    done = outrider("run", "again.toml", "--json", "--db", "store.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["label"] for t in json.loads(done.stdout)["tasks"]] == ["again"]
    old = anyio.run(_tasks_of, tmp_path / "store.db")
    assert [(t.label, t.state, t.error and t.error.type) for t in old] == [
        ("long", "failed", "interrupted"),
        ("again", "succeeded", None),
    ]


async def _tasks_of(db: Path) -> list[Task]:
    async with Orchestrator(db) as orch:
        return await orch.session("cli").list()


def test_an_orphan_that_left_its_session_and_environment_is_stopped_on_exit(
    tmp_path: Path,
) -> None:
    (tmp_path / "batch.toml").write_text(
        '[[task]]\nlabel = "escape"\ncommand = "( env -i setsid sleep 63 & ); echo ok"\n'
    )
    done = outrider("run", "batch.toml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "store " in done.stderr  # a temporary store is named, so a rerun can --db it
    assert sleeping("63") == []


def test_the_daemon_freezes_its_start_up_objects_and_collects_young_garbage_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (5_000, 20, 20)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
