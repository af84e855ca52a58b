"""The commands that read and steer a session's tasks on the daemon.

`ps`, `show`, `logs`, `wait`, `cancel` and `notices`. Each acts in one session (`--session`,
`$OUTRIDER_SESSION`); a foreign or unknown id is exit 1, any other error exit 2.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from .._types._errors import TaskNotFound
from .._types._state import TaskState
from ._options import JsonOpt, SessionOpt, error, fail

if TYPE_CHECKING:
    from .._types._task import Notice, Task

__all__ = ["cancel", "logs", "notices", "ps", "show", "wait"]

TaskIds = Annotated[list[str], typer.Argument(help="Task ids.", show_default=False)]
_STATES = ", ".join(TaskState)


def _states(given: list[str] | None) -> list[TaskState] | None:
    known = {str(state) for state in TaskState}
    for value in given or ():
        if value not in known:
            raise typer.BadParameter(f"{value!r} is not a task state; give one of {_STATES}.")
    return [TaskState(value) for value in given] if given else None


def _complete_state(incomplete: str) -> list[str]:
    return [str(state) for state in TaskState if state.startswith(incomplete)]


def ps(
    all_tasks: Annotated[bool, typer.Option("--all", "-a", help="Include finished tasks.")] = False,
    state: Annotated[
        list[str] | None,
        typer.Option(
            metavar="STATE",
            callback=_states,
            autocompletion=_complete_state,
            help=f"Only tasks in this state (repeatable): {_STATES}.",
        ),
    ] = None,
    group: Annotated[str | None, typer.Option(help="Only this batch.")] = None,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """List the session's tasks: unfinished ones, every one with --all, or by --state."""
    from ._output import answering, client, err, out, print_json, tasks_table

    if all_tasks and state:
        fail("Give --all or --state, not both.")
    states = state or (None if all_tasks else [TaskState.QUEUED, TaskState.RUNNING])
    with client(session) as daemon, answering():
        tasks = daemon.list(states=states, group=group)
    if json_output:
        print_json(tasks)
    elif tasks:
        out.print(tasks_table(tasks))
    elif state:
        err.print(f"no tasks {' or '.join(state)}")
    else:
        err.print("no tasks" + ("" if all_tasks else " running or queued (--all for every one)"))


def show(
    task_id: Annotated[str, typer.Argument(help="The task id.", show_default=False)],
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
    transcript: Annotated[
        bool, typer.Option("--transcript", help="An agent task's whole conversation.")
    ] = False,
) -> None:
    """Show one task: state, timings, result or error, and the end of its output."""
    from .._agents._transcript import render_transcript
    from ._output import answering, client, print_detail

    with client(session) as daemon, answering():
        task = daemon.get(task_id)
        output = daemon.tail(task_id, lines=20) if task.state is not TaskState.SUCCEEDED else None
        doc = daemon.transcript(task_id) if transcript else None
    if json_output:
        data = task.model_dump(mode="json")
        if transcript:
            data["transcript"] = doc
        print(json.dumps(data, indent=2))
        return
    print_detail(task, output)
    if transcript:
        if isinstance(doc, dict):
            print(render_transcript(doc, clip=None))
        else:
            print("(no transcript: only agent tasks have one)")


def logs(
    task_id: Annotated[str, typer.Argument(help="The task id.", show_default=False)],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow live output.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Lines to show.")] = 100,
    session: SessionOpt = "default",
) -> None:
    """Print the end of a task's output; with -f, follow it until the task ends."""
    from rich.text import Text

    from .._types._events import TaskEnded, TaskOutput
    from ._output import answering, client, err

    with client(session) as daemon, answering():
        task = daemon.get(task_id)
        if not follow or task.state.terminal:
            sys.stdout.write(daemon.tail(task_id, lines=lines))
            return
        for event in daemon.events(task_id=task_id):  # following one task watches only it
            if isinstance(event.data, TaskOutput):
                sys.stdout.write(event.data.text)
                sys.stdout.flush()
            elif isinstance(event.data, TaskEnded):
                err.print(Text(f"{task_id} {event.data.state}", style="dim"))
                return


def wait(
    task_ids: TaskIds,
    any_: Annotated[bool, typer.Option("--any", help="Return when any has finished.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    session: SessionOpt = "default",
    json_output: JsonOpt = False,
) -> None:
    """Wait for tasks to finish; exit 0 if all succeeded, 1 otherwise."""
    from ._output import answering, client, exit_for, out, print_json, tasks_table

    with client(session) as daemon, answering():
        tasks = daemon.wait(task_ids, timeout=timeout, return_when="any" if any_ else "all")
    if json_output:
        print_json(tasks)
    else:
        out.print(tasks_table(tasks))
    if any_:
        raise typer.Exit(0 if any(t.state is TaskState.SUCCEEDED for t in tasks) else 1)
    exit_for(tasks)


def _cancelled(task: Task) -> None:
    from rich.text import Text

    from ._output import out, state_text

    out.print(Text.assemble(task.id, " ", state_text(task)))


def cancel(
    task_ids: Annotated[
        list[str] | None, typer.Argument(help="Task ids.", show_default=False)
    ] = None,
    all_tasks: Annotated[
        bool, typer.Option("--all", help="Every unfinished task of the session.")
    ] = False,
    session: SessionOpt = "default",
) -> None:
    """Cancel tasks (their process trees are stopped); idempotent. Exit 1 if an id is unknown."""
    from ._output import answering, client, err

    if all_tasks == bool(task_ids):
        fail("Give task ids, or --all for every unfinished task of the session.")
    with client(session) as daemon, answering():
        if all_tasks:
            ended = daemon.cancel_all()
            for task in ended:
                _cancelled(task)
            if not ended:
                err.print("nothing to cancel: no task is queued or running")
            return
        code = 0
        for task_id in task_ids or ():
            try:
                _cancelled(daemon.cancel(task_id))
            except TaskNotFound as exc:
                error(str(exc))
                code = 1
    raise typer.Exit(code)


def _show_notice(notice: Notice, *, json_output: bool) -> None:
    from ._output import out

    if json_output:
        print(notice.model_dump_json(), flush=True)
    else:
        out.print(notice.text, markup=False, soft_wrap=True)
        sys.stdout.flush()


def notices(
    ack: Annotated[bool, typer.Option("--ack", help="Acknowledge what was printed.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print each new one (Ctrl-C ends).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    session: SessionOpt = "default",
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Print the session's completion notices not yet acknowledged, oldest first."""
    from ._output import answering, client, err

    with client(session) as daemon, answering():
        if follow:
            for notice in daemon.follow_notices():
                _show_notice(notice, json_output=json_output)
                if ack:
                    daemon.ack_notices(notice.seq)
            return
        found = daemon.notices(limit=limit)
        for notice in found:
            _show_notice(notice, json_output=json_output)
        if ack and found:
            daemon.ack_notices(found[-1].seq)
    if not found:
        err.print("no notices")
    elif len(found) == limit:
        err.print(f"(the oldest {limit}; more may be waiting: --ack these, or raise --limit)")
