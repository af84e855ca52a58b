"""`outrider submit` and `outrider retry`: new tasks on the daemon, from the shell.

What `submit` runs, from its words:
- one word (a quoted string) is a shell command for `/bin/sh -c`;
- several words (put them after `--`) are an argv, run as given: `-- sh -c 'exit 4'` stays
  `["sh", "-c", "exit 4"]`;
- with `--agent NAME`, the words are the prompt of that sub-agent (defined here, in
  `.outrider/agents/`, …), delegated as the MCP `delegate_task` tool does it;
- with `--handler NAME`, a call of that registered handler with `--params`.

Nothing is stored unless every option is valid; a bad one ends the command with exit 2. A
shell command without `--wait` goes to the daemon as plain JSON (`_client._light`): the daemon
validates it, and the command loads neither the models nor the HTTP stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .._types._errors import UserError
from ._fast import env_of, post_task, shell_spec
from ._options import JsonOpt, SessionOpt, fail, warn

if TYPE_CHECKING:
    from pydantic import JsonValue

    from .._client import Client
    from .._types._task import Task, TaskSpec

__all__ = ["retry", "submit"]


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
    try:
        return env_of(items)
    except UserError as exc:
        fail(str(exc))


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
    from .._types._task import AgentSpec

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


def _check(agent: str | None, model: str | None, handler: str | None, params: str | None) -> None:
    if agent is not None and handler is not None:
        fail("Give --agent or --handler, not both.")
    if model is not None and agent is None:
        fail("`--model` is for agent tasks: give --agent NAME too.")
    if params is not None and handler is None:
        fail("`--params` are a handler's: give --handler NAME too.")


def _spec(
    words: list[str], *, agent: str | None, handler: str | None, model: str | None,
    params: str | None, where: str, env: dict[str, str],
) -> tuple[TaskSpec, float | None]:  # fmt: skip
    """What to run for an agent or a handler, and its default timeout (an agent's own)."""
    from pydantic import ValidationError

    from .._types._errors import user_error
    from .._types._task import HandlerSpec

    try:
        if agent is not None:
            return _agent_spec(agent, " ".join(words), cwd=where, model=model, env=env)
        assert handler is not None
        return HandlerSpec(handler=handler, params=_params(params)), None
    except ValidationError as exc:
        fail(str(user_error(exc.errors(), prefix="spec.")))


def _finish(daemon: Client, task: Task, *, wait: bool, json_output: bool) -> None:
    """Print the new task's id, or wait for it, print it and exit 0 or 1."""
    from ._output import exit_for, print_detail, print_json

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
    _check(agent, model, handler, params)
    variables = _env(env)
    where = str((cwd or Path.cwd()).resolve())
    options = {
        "label": label, "description": description, "priority": priority, "timeout": timeout,
        "ttl": ttl, "stall_timeout": stall_timeout, "max_attempts": max_attempts, "keys": key,
        "depends_on": depends_on, "group": group,
    }  # fmt: skip
    if agent is None and handler is None:
        try:
            spec = shell_spec(words or [], where=where, env=variables)
        except UserError as exc:
            fail(str(exc))
        if not wait:
            body = {"spec": spec, **{k: v for k, v in options.items() if v is not None}}
            raise typer.Exit(post_task(body, session=session, json_output=json_output))
        from .._types._task import ShellSpec

        task_spec: TaskSpec = ShellSpec.model_validate(spec)
        own_timeout = None
    elif agent is not None and not words:
        fail(f'Give the prompt: `outrider submit --agent {agent} "Fix the tests"`.')
    elif handler is not None and (words or env or cwd):
        fail("A --handler call takes only --params (no command, --env or --cwd).")
    else:
        task_spec, own_timeout = _spec(
            words or [], agent=agent, handler=handler, model=model, params=params, where=where,
            env=variables,
        )  # fmt: skip
    from ._output import answering, client

    if options["timeout"] is None:
        options["timeout"] = own_timeout
    with client(session) as daemon, answering():
        task = daemon.submit(task_spec, **options)  # type: ignore[arg-type]  # the options' types
        _finish(daemon, task, wait=wait, json_output=json_output)


def retry(
    task_id: Annotated[str, typer.Argument(help="An ended task's id.", show_default=False)],
    wait: WaitOpt = False,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Run an ended task again as a new task (same work and options); prints the new id."""
    from ._output import answering, client

    with client(session) as daemon, answering():
        _finish(daemon, daemon.retry(task_id), wait=wait, json_output=json_output)
