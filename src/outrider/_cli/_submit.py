"""`outrider submit` and `outrider retry`: new tasks on the daemon, from the shell.

What `submit` runs, from its words:
- one word (a quoted string) is a shell command for `/bin/sh -c`;
- several words (put them after `--`) are an argv, run as given: `-- sh -c 'exit 4'` stays
  `["sh", "-c", "exit 4"]`;
- with `--agent NAME`, the words are the prompt of that sub-agent (defined here, in
  `.outrider/agents/`, …), delegated as the MCP `delegate_task` tool does it;
- with `--handler NAME`, a call of that registered handler with `--params`.

Nothing is sent before every option is valid; a bad one ends the command with exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from .._types._errors import UserError, user_error
from .._types._task import AgentSpec, HandlerSpec, ShellSpec, TaskSpec
from ._output import (
    JsonOpt,
    SessionOpt,
    answering,
    client,
    exit_for,
    fail,
    print_detail,
    print_json,
    warn,
)

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .._client import Client
    from .._types._task import Task

__all__ = ["retry", "submit"]

_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)

Words = Annotated[
    list[str] | None,
    typer.Argument(
        help="The command: one quoted string runs in /bin/sh -c; several words (after --) run "
        "as that argv. With --agent: the prompt.",
        metavar="WORDS",
        show_default=False,
    ),
]
AgentOpt = Annotated[
    str | None, typer.Option(help="Delegate to this sub-agent; the words are its prompt.")
]
ModelOpt = Annotated[str | None, typer.Option(help="The agent's model instead of its own.")]
HandlerOpt = Annotated[str | None, typer.Option(help="Call this registered handler.")]
ParamsOpt = Annotated[str | None, typer.Option(help="The handler's params as JSON.")]
LabelOpt = Annotated[str | None, typer.Option(help="A short name.")]
DescriptionOpt = Annotated[str | None, typer.Option(help="What it is for.")]
PriorityOpt = Annotated[int, typer.Option(min=0, max=10, help="0-10, 10 first.")]
TimeoutOpt = Annotated[float | None, typer.Option(help="Seconds it may run (per attempt).")]
TtlOpt = Annotated[
    float | None,
    typer.Option(help="Seconds from now after which it ends timed_out, queued or running."),
]
StallOpt = Annotated[
    float | None, typer.Option(help="Seconds it may run without output or progress.")
]
AttemptsOpt = Annotated[
    int | None, typer.Option(min=1, max=100, help="Runs, counting retries after a failure.")
]
KeyOpt = Annotated[
    list[str] | None, typer.Option(metavar="KEY", help="Concurrency key (repeatable).")
]
DependsOpt = Annotated[
    list[str] | None,
    typer.Option(metavar="ID", help="Start only after this task succeeded (repeatable)."),
]
GroupOpt = Annotated[str | None, typer.Option(help="Batch name.")]
CwdOpt = Annotated[
    Path | None,
    typer.Option(exists=True, file_okay=False, help="Working directory (default: here)."),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(metavar="NAME=VALUE", help="Added to its environment (repeatable)."),
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for it and print its result.")]


def _env(items: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or ():
        match = _ENV_ITEM.match(item)
        if match is None:
            fail(f"Invalid `--env` {item!r}: give NAME=VALUE with a variable name, e.g. CI=1.")
        env[match[1]] = match[2]
    return env


def _params(params: str | None) -> dict[str, JsonValue]:
    try:
        value = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        fail(f"Invalid `--params`: not JSON ({exc.msg}).")
    if not isinstance(value, dict):
        fail(f"Invalid `--params`: give a JSON object, not {params!r}.")
    return value


def _agent_spec(
    name: str, prompt: str, *, cwd: str, model: str | None, env: dict[str, str]
) -> tuple[TaskSpec, float | None]:
    from .._agents._definitions import load_agents
    from .._agents._delegation import agent_spec

    found = load_agents()
    try:
        spec, agent = agent_spec(found.agents, name, prompt, cwd=cwd, model=model)
    except UserError as exc:
        for problem in found.errors:
            warn(f"agents: {problem}")
        fail(str(exc))
    if env:
        if isinstance(spec, AgentSpec):
            fail(f"`--env` is for commands and agent CLIs; agent {name!r} runs in the daemon.")
        spec = spec.model_copy(update={"env": env})
    return spec, agent.timeout


def _spec(
    words: list[str], *, agent: str | None, model: str | None, handler: str | None,
    params: str | None, cwd: Path | None, env: dict[str, str],
) -> tuple[TaskSpec, float | None]:  # fmt: skip
    """What to run, and its default timeout (an agent's own)."""
    if agent is not None and handler is not None:
        fail("Give --agent or --handler, not both.")
    if model is not None and agent is None:
        fail("`--model` is for agent tasks: give --agent NAME too.")
    if params is not None and handler is None:
        fail("`--params` are a handler's: give --handler NAME too.")
    where = str((cwd or Path.cwd()).resolve())
    if agent is not None:
        if not words:
            fail(f'Give the prompt: `outrider submit --agent {agent} "Fix the tests"`.')
        return _agent_spec(agent, " ".join(words), cwd=where, model=model, env=env)
    if handler is not None:
        if words or env or cwd:
            fail("A --handler call takes only --params (no command, --env or --cwd).")
        return HandlerSpec(handler=handler, params=_params(params)), None
    if not words:
        fail("Give the command to run, e.g. `outrider submit -- make test`.")
    command = words[0] if len(words) == 1 else list(words)
    return ShellSpec(command=command, cwd=where, env=env), None


def _finish(daemon: Client, task: Task, *, wait: bool, json_output: bool) -> None:
    """Print the new task's id, or wait for it, print it and exit 0 or 1."""
    output = None
    if wait:
        (task,) = daemon.wait([task.id])
        if not task.state.terminal or task.result is None:
            output = daemon.tail(task.id, lines=20)
    if json_output:
        print_json(task)
    elif wait:
        print_detail(task, output)
    else:
        print(task.id)
    if wait:
        exit_for([task])


def submit(
    words: Words = None, agent: AgentOpt = None, model: ModelOpt = None,
    handler: HandlerOpt = None, params: ParamsOpt = None, label: LabelOpt = None,
    description: DescriptionOpt = None, priority: PriorityOpt = 5, timeout: TimeoutOpt = None,
    ttl: TtlOpt = None, stall_timeout: StallOpt = None, max_attempts: AttemptsOpt = None,
    key: KeyOpt = None, depends_on: DependsOpt = None, group: GroupOpt = None,
    cwd: CwdOpt = None, env: EnvOpt = None, wait: WaitOpt = False,
    session: SessionOpt = "default", json_output: JsonOpt = False,
) -> None:  # fmt: skip
    """Submit a shell command, an agent's prompt or a handler call; prints the task id."""
    try:
        spec, own_timeout = _spec(
            words or [], agent=agent, model=model, handler=handler, params=params, cwd=cwd,
            env=_env(env),
        )  # fmt: skip
    except ValidationError as exc:
        fail(str(user_error(exc.errors(), prefix="spec.")))
    with client(session) as daemon, answering():
        task = daemon.submit(
            spec, label=label, description=description, priority=priority,
            timeout=own_timeout if timeout is None else timeout, ttl=ttl,
            stall_timeout=stall_timeout, max_attempts=max_attempts, keys=key,
            depends_on=depends_on, group=group,
        )  # fmt: skip
        _finish(daemon, task, wait=wait, json_output=json_output)


def retry(
    task_id: Annotated[str, typer.Argument(help="An ended task's id.", show_default=False)],
    wait: WaitOpt = False,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Run an ended task again as a new task (same work and options); prints the new id."""
    with client(session) as daemon, answering():
        _finish(daemon, daemon.retry(task_id), wait=wait, json_output=json_output)
