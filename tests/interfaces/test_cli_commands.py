"""The client commands, in process (typer's runner), against a real daemon process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from outrider import TaskState, shell
from outrider._cli import app
from outrider.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from typer.testing import Result

    from .conftest import Daemon

PY_EXIT = "import sys; sys.exit(int(sys.argv[1]))"


def cli(daemon: Daemon, *args: str, token: str | None = None) -> Result:
    env = {
        "OUTRIDER_URL": daemon.url, "OUTRIDER_HOME": str(daemon.home),
        "OUTRIDER_TOKEN": token or daemon.token, "COLUMNS": "200", "OUTRIDER_SESSION": None,
    }  # fmt: skip
    return CliRunner().invoke(app, list(args), env=env)


def as_json(result: Result) -> Any:
    assert result.stdout, result.output
    return json.loads(result.stdout)


def test_an_argv_after_dashes_is_kept_as_given(daemon: Daemon) -> None:
    done = cli(daemon, "submit", "--wait", "--json", "--session", "argv", "--", "sh", "-c",
               "exit 4")  # fmt: skip
    assert done.exit_code == 1, done.output
    task = as_json(done)
    assert task["spec"]["command"] == ["sh", "-c", "exit 4"]
    assert task["state"] == "failed"
    assert task["exit_code"] == 4
    quoted = as_json(cli(daemon, "submit", "--json", "--session", "argv", "echo one; echo two"))
    assert quoted["spec"]["command"] == "echo one; echo two"


def test_submit_takes_every_scheduling_option(daemon: Daemon, tmp_path: Path) -> None:
    first = cli(daemon, "submit", "--session", "opts", "true").stdout.strip()
    done = cli(
        daemon, "submit", "--session", "opts", "--wait", "--json", "--env", "GREETING=hi there",
        "--env", "EMPTY=", "--cwd", str(tmp_path), "--priority", "8", "--key", "opts-a",
        "--key", "opts-b", "--ttl", "120", "--stall-timeout", "60", "--max-attempts", "2",
        "--timeout", "30", "--depends-on", first, "--label", "[[opts]]", "--description", "why",
        "--", "sh", "-c", 'echo "$GREETING/$EMPTY/$(pwd)"',
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    task = as_json(done)
    assert task["result"] == f"hi there//{tmp_path}\n"
    assert task["spec"]["env"] == {"GREETING": "hi there", "EMPTY": ""}
    assert task["keys"] == ["opts-a", "opts-b"]
    assert task["depends_on"] == [first]
    assert (task["priority"], task["ttl"], task["stall_timeout"]) == (8, 120, 60)
    assert (task["max_attempts"], task["timeout"], task["label"]) == (2, 30, "[[opts]]")
    listed = cli(daemon, "ps", "--all", "--session", "opts")
    assert "[[opts]]" in listed.stdout  # a label is never read as markup
    assert "[[opts]]" in cli(daemon, "show", task["id"], "--session", "opts").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "NOEQUALS", "true"], "Invalid `--env` 'NOEQUALS': give NAME=VALUE"),
        (["--env", "1X=2", "true"], "Invalid `--env` '1X=2'"),
        (["--model", "m", "true"], "`--model` is for agent tasks"),
        (["--params", "{}", "true"], "`--params` are a handler's"),
        (["--handler", "h", "true"], "A --handler call takes only --params"),
        (["--handler", "h", "--params", "[1]"], "give a JSON object"),
        (["--handler", "h", "--params", "{oops"], "Invalid `--params`: not JSON"),
        (["--agent", "a", "--handler", "h"], "Give --agent or --handler, not both."),
        (["--agent", "fixer"], 'Give the prompt: `outrider submit --agent fixer "Fix'),
        ([], "Give the command to run"),
        (["--", ""], "Invalid `spec.command`"),
        (["--timeout", "0", "true"], "Invalid `timeout`"),
        (["--depends-on", "t_nope", "true"], "t_nope"),
    ],
)
def test_bad_submit_options_are_named_and_exit_2(
    daemon: Daemon, args: list[str], message: str
) -> None:
    done = cli(daemon, "submit", "--session", "bad", *args)
    assert done.exit_code == 2, done.output
    assert message in done.stderr
    assert done.stderr.startswith("error: ")


def test_a_handler_call_names_the_handlers_the_daemon_has(daemon: Daemon) -> None:
    done = cli(daemon, "submit", "--session", "handlers", "--handler", "resize",
               "--params", '{"width": 3}')  # fmt: skip
    assert done.exit_code == 2
    assert "unknown handler 'resize'; registered: none are registered" in done.stderr


def test_submit_delegates_to_the_agent_defined_here(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = tmp_path / ".outrider" / "agents"
    agents.mkdir(parents=True)
    (agents / "fixer.md").write_text("---\nmodel: fake/fixer\ntimeout: 90\n---\nYou fix.\n")
    (agents / "outside.md").write_text("---\ncli: not-a-cli\nmodel: big\n---\nYou are out.\n")
    (agents / "broken.md").write_text("---\nlimit: many\n---\n")
    monkeypatch.chdir(tmp_path)
    built_in = as_json(cli(daemon, "submit", "--session", "agents", "--json", "--agent",
                           "fixer", "Fix", "the tests"))  # fmt: skip
    assert built_in["spec"] == {
        "kind": "agent", "agent": "fixer", "prompt": "Fix the tests", "model": None,
        "workspace": str(tmp_path), "depth": 0, "tree": None, "budget_tokens": None,
        "budget_cost": None, "isolation": None, "base": None,
    }  # fmt: skip
    assert built_in["timeout"] == 90
    external = as_json(cli(daemon, "submit", "--session", "agents", "--json", "--agent",
                           "outside", "--model", "small", "--env", "A=1", "Look"))  # fmt: skip
    spec = external["spec"]
    assert (spec["kind"], spec["cli"], spec["agent"]) == ("cli_agent", "not-a-cli", "outside")
    assert (spec["prompt"], spec["model"]) == ("You are out.\n\nLook", "small")
    assert (spec["cwd"], spec["env"]) == (str(tmp_path), {"A": "1"})
    unknown = cli(daemon, "submit", "--session", "agents", "--agent", "nobody", "Hi")
    assert unknown.exit_code == 2
    assert "Unknown agent 'nobody'; available: fixer, outside." in unknown.stderr
    assert "warning: agents: " in unknown.stderr
    assert "broken.md: invalid `limit`" in unknown.stderr
    no_env = cli(daemon, "submit", "--session", "agents", "--agent", "fixer", "--env", "A=1", "X")
    assert no_env.exit_code == 2
    assert "`--env` is for commands and agent CLIs" in no_env.stderr


def test_retry_runs_an_ended_task_again(daemon: Daemon) -> None:
    with daemon.client("retrying") as client:
        failed = client.submit(shell(["sh", "-c", "exit 3"]))
        client.wait([failed.id])
    again = cli(daemon, "retry", failed.id, "--wait", "--json", "--session", "retrying")
    assert again.exit_code == 1
    task = as_json(again)
    assert (task["retry_of"], task["exit_code"]) == (failed.id, 3)
    plain = cli(daemon, "retry", failed.id, "--session", "retrying")
    assert plain.exit_code == 0
    assert plain.stdout.strip().startswith("t_")
    assert plain.stdout.strip() not in (failed.id, task["id"])
    unknown = cli(daemon, "retry", "t_nope", "--session", "retrying")
    assert unknown.exit_code == 1
    assert "No task 't_nope'" in unknown.stderr


def test_cancel_all_stops_the_sessions_unfinished_tasks(daemon: Daemon) -> None:
    with daemon.client("sweep") as client:
        long = [client.submit(shell("sleep 60"), keys=["hold"]).id for _ in range(2)]
        done = client.submit(shell("true"))
        client.wait([done.id])
    listed = cli(daemon, "ps", "--session", "sweep").stdout
    assert re.search(r"queued +sleep 60 +#\d key 'hold'", listed), listed
    with daemon.client("bystander") as client:
        other = client.submit(shell("sleep 60"))
    cancelled = cli(daemon, "cancel", "--all", "--session", "sweep")
    assert cancelled.exit_code == 0, cancelled.output
    assert sorted(line.split()[0] for line in cancelled.stdout.splitlines()) == sorted(long)
    assert cancelled.stdout.count("cancelled") == 2
    again = cli(daemon, "cancel", "--all", "--session", "sweep")
    assert "nothing to cancel" in again.stderr
    for args in (["--all", long[0]], []):
        refused = cli(daemon, "cancel", *args, "--session", "sweep")
        assert refused.exit_code == 2
        assert "Give task ids, or --all" in refused.stderr
    with daemon.client("bystander") as client:
        assert client.get(other.id).state is not TaskState.CANCELLED
        client.cancel(other.id)


def test_ps_filters_by_state_and_names_the_states(daemon: Daemon) -> None:
    with daemon.client("states") as client:
        ok = client.submit(shell("true"))
        bad = client.submit(shell("false"))
        client.wait([ok.id, bad.id])
        queued = client.submit(shell("true"), depends_on=[bad.id])
        client.wait([queued.id])
    shown = cli(daemon, "ps", "--state", "succeeded", "--state", "failed", "--json",
                "--session", "states")  # fmt: skip
    assert [t["id"] for t in as_json(shown)] == [ok.id, bad.id]
    none = cli(daemon, "ps", "--state", "timed_out", "--session", "states")
    assert "no tasks timed_out" in none.stderr
    wrong = cli(daemon, "ps", "--state", "done", "--session", "states")
    assert wrong.exit_code == 2
    assert (
        "'done' is not a task state; give one of queued, running, succeeded, failed, "
        "cancelled, timed_out." in " ".join(wrong.stderr.split())
    )
    both = cli(daemon, "ps", "--all", "--state", "failed", "--session", "states")
    assert both.exit_code == 2


def test_limit_changes_a_key_for_its_owner_only(daemon: Daemon) -> None:
    changed = cli(daemon, "limit", "cli:limit", "4")
    assert changed.exit_code == 0, changed.output
    assert changed.stdout.strip() == "cli:limit: running 0, limit 4, queued 0"
    assert as_json(cli(daemon, "limit", "cli:limit", "2", "--json")) == {
        "running": 0, "limit": 2, "queued": 0,
    }  # fmt: skip
    shown = cli(daemon, "status").stdout
    assert re.search(r"^cli:limit +0 +2 +0 *$", shown, re.M), shown
    refused = cli(daemon, "limit", "cli:limit", "9", token="alice-secret-token")
    assert refused.exit_code == 2
    assert "owner" in refused.stderr
    assert cli(daemon, "limit", "cli:limit", "0").exit_code == 2


def test_notices_are_read_then_acknowledged(daemon: Daemon) -> None:
    with daemon.client("noticing") as client:
        task = client.submit(shell("echo hello"), label="greet")
        client.wait([task.id])
    first = cli(daemon, "notices", "--session", "noticing")
    assert first.exit_code == 0
    assert task.id in first.stdout
    assert "greet" in first.stdout
    lines = cli(daemon, "notices", "--json", "--session", "noticing").stdout.splitlines()
    (notice,) = [json.loads(line) for line in lines]
    assert (notice["task_id"], notice["state"]) == (task.id, "succeeded")
    with daemon.client("noticing") as client:
        later = client.submit(shell("echo later"))
        client.wait([later.id])
    oldest = cli(daemon, "notices", "--limit", "1", "--session", "noticing")
    assert (task.id in oldest.stdout, later.id in oldest.stdout) == (True, False)
    assert "the oldest 1; more may be waiting" in oldest.stderr
    acked = cli(daemon, "notices", "--ack", "--session", "noticing")
    assert later.id in acked.stdout
    assert "no notices" in cli(daemon, "notices", "--session", "noticing").stderr


def test_notices_follow_prints_each_new_one_and_acknowledges_it(daemon: Daemon) -> None:
    command = [sys.executable, "-m", "outrider._cli", "notices", "--follow", "--ack", "--json"]
    env = {**daemon.env, "OUTRIDER_SESSION": "following"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    assert process.stdout is not None
    try:
        with daemon.client("following") as client:
            task = client.submit(shell("echo first"), label="first")
            assert json.loads(process.stdout.readline())["task_id"] == task.id
            anyio.run(lambda: wait_until(lambda: not client.notices(), timeout=30))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130


def test_dashboard_prints_a_login_link_that_works_once(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = cli(daemon, "dashboard")
    assert done.exit_code == 0, done.output
    (url,) = done.stdout.split()
    assert url.startswith(f"{daemon.url}/ui/login?code=")
    with httpx.Client() as browser:
        assert browser.get(url).status_code == 200
        assert browser.get(url).status_code == 401
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda link: opened.append(link) or False)
    shown = cli(daemon, "dashboard", "--open")
    assert shown.exit_code == 0, shown.output
    assert opened == [shown.stdout.strip()] != [url]  # a new link each time
    assert "no browser found here: open the link yourself" in shown.stderr
