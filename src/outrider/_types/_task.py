"""Value types: task specs, task records, events and the status snapshot.

Specs are validated at the boundary (pydantic); records and events are frozen and
serialise to JSON as they are (`model_dump(mode="json")`).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    TypeAdapter,
    field_validator,
    model_validator,
)

from ._state import TERMINAL_STATES, TaskState
from ._worktrees import Isolation

__all__ = [
    "TERMINAL_STATES",
    "AgentSpec",
    "CliAgentSpec",
    "ErrorInfo",
    "HandlerSpec",
    "KeyStatus",
    "Notice",
    "NoticeWait",
    "Progress",
    "SessionSummary",
    "ShellSpec",
    "Status",
    "SubmitError",
    "SubmitItem",
    "Task",
    "TaskOptions",
    "TaskSpec",
    "TaskState",
    "Usage",
    "call",
    "agent",
    "cli_agent",
    "shell",
]

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest spec (as JSON) a task may carry."""


_FROZEN = ConfigDict(frozen=True, extra="forbid")
MAX_SECONDS = 10 * 365 * 86_400.0
"""The longest `timeout`, `ttl` or `stall_timeout` (ten years; not infinity)."""
MAX_SEQ = 2**63 - 1
"""The largest event `seq` (SQLite's largest integer)."""
Int = Annotated[int, Strict()]
"""A whole number, given as one: a boolean, a string or `5.0` is refused."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite number, given as one (an integer counts): a boolean or a string is refused."""
MAX_ARG_BYTES = 128 * 1024 - 1
"""The longest single argument Linux passes to a program (`MAX_ARG_STRLEN`, less its NUL)."""
_ARG_ROOM = (os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else 2**21) - 64 * 1024
"""Bytes a command line and its own environment may take (the system's limit, less room for
the inherited environment)."""


def check_argument(value: str, what: str) -> str:
    """`value` if a program can receive it as one argument; else a ValueError naming the fix."""
    if "\0" in value:
        raise ValueError(f"the {what} contains a NUL byte, which no program can receive")
    size = len(value.encode(errors="surrogatepass"))
    if size > MAX_ARG_BYTES:
        raise ValueError(
            f"the {what} is {size} bytes, over the system's limit of {MAX_ARG_BYTES} bytes for "
            "one argument; write it to a file and pass the file (a script to run, a prompt "
            "file to read)"
        )
    return value


def _kind_required(schema: dict[str, JsonValue]) -> None:
    """Mark `kind` required in a spec's JSON schema.

    The tag picks the spec's type, so a request must send it, though Python gives it a default.
    """
    required = schema.setdefault("required", [])
    if isinstance(required, list) and "kind" not in required:
        required.insert(0, "kind")


_SPEC = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_kind_required)


class ShellSpec(BaseModel):
    """A command run by `/bin/sh -c` (a string) or directly (an argv list)."""

    model_config = _SPEC
    kind: Literal["shell"] = "shell"
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    grace_period: Number = Field(default=5.0, ge=0, le=3600)

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("the command is empty; give a shell command string or an argv list")
        if isinstance(value, list) and (not value or not value[0]):
            raise ValueError("the argv list is empty; give the program as its first item")
        for part in [value] if isinstance(value, str) else value:
            check_argument(part, "command")
        return value

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str | None) -> str | None:
        return None if value is None else check_argument(value, "cwd")

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"the variable name {name!r} is empty or holds `=` or NUL")
            check_argument(text, f"value of {name}")
        return value

    @model_validator(mode="after")
    def _fits_the_system(self) -> ShellSpec:
        argv = [self.command] if isinstance(self.command, str) else self.command
        size = sum(len(a.encode()) + 9 for a in argv)
        size += sum(len(k.encode()) + len(v.encode()) + 10 for k, v in self.env.items())
        if size > _ARG_ROOM:
            raise ValueError(
                f"the command and its env take {size} bytes, over the {_ARG_ROOM} the system "
                "allows; write the command to a script file and run that"
            )
        return self


class HandlerSpec(BaseModel):
    """A call of a Python handler registered on the orchestrator by name."""

    model_config = _SPEC
    kind: Literal["handler"] = "handler"
    handler: str = Field(min_length=1, max_length=200)
    params: dict[str, JsonValue] = Field(default_factory=dict)


class CliAgentSpec(BaseModel):
    """A prompt for an external agent CLI (`claude -p`, `opencode run`, `codex exec`, …)."""

    model_config = _SPEC
    kind: Literal["cli_agent"] = "cli_agent"
    cli: str = Field(min_length=1, max_length=100)
    """The CLI template: a built-in (`claude`, `opencode`, `codex`, `gemini`, `aider`) or one
    from config."""
    prompt: str = Field(min_length=1)
    agent: str | None = Field(default=None, max_length=200)
    """The sub-agent it runs as (names the `agent:<name>` key)."""
    model: str | None = Field(default=None, max_length=200)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    grace_period: Number = Field(default=10.0, ge=0, le=3600)
    isolation: Isolation | None = None
    """`worktree`: it works in its own git worktree (the default in a git repository);
    `none`: in `cwd` itself."""
    base: str | None = Field(default=None, min_length=1, max_length=200)
    """What its worktree starts from: `snapshot` (default: the folder as it is now, uncommitted
    and untracked files included), `head`, or a branch, tag or commit."""

    @field_validator("prompt")
    @classmethod
    def _passable(cls, value: str) -> str:
        return check_argument(value, "prompt")  # the CLI gets it as one argument


class AgentSpec(BaseModel):
    """A prompt for a sub-agent run by outrider's built-in agent runner."""

    model_config = _SPEC
    kind: Literal["agent"] = "agent"
    agent: str = Field(min_length=1, max_length=64)
    """The agent definition's name (`.outrider/agents/NAME.md`, …)."""
    prompt: str = Field(min_length=1)
    model: str | None = Field(default=None, max_length=200)
    """`provider/model`, overriding the definition's."""
    workspace: str | None = None
    """The directory its file tools and commands are confined to (default: the definition's
    `workspace`, else the current directory)."""
    depth: Int = Field(default=0, ge=0, le=10)
    """How deep in a delegation tree it is (0: delegated by a caller, not an agent)."""
    tree: str | None = Field(default=None, max_length=64)
    """The root task of its delegation tree (set by `delegate`)."""
    budget_tokens: Int | None = Field(default=None, ge=1)
    """Tokens it may spend (with its delegations); overrides the definition's."""
    budget_cost: Number | None = Field(default=None, gt=0)
    """USD it may spend (with its delegations); overrides the definition's."""
    isolation: Isolation | None = None
    """`worktree`: it works in its own git worktree (the default for an agent that writes, in
    a git repository); `none`: in the workspace itself. Overrides the definition's."""
    base: str | None = Field(default=None, min_length=1, max_length=200)
    """What its worktree starts from: `snapshot` (default), `head`, or a branch, tag or commit."""


TaskSpec: TypeAlias = Annotated[
    ShellSpec | HandlerSpec | CliAgentSpec | AgentSpec, Field(discriminator="kind")
]
TASK_SPEC_ADAPTER: TypeAdapter[ShellSpec | HandlerSpec | CliAgentSpec | AgentSpec] = TypeAdapter(
    TaskSpec
)


def agent(
    name: str,
    prompt: str,
    *,
    model: str | None = None,
    workspace: str | None = None,
    budget_tokens: int | None = None,
    budget_cost: float | None = None,
    isolation: Isolation | None = None,
    base: str | None = None,
) -> AgentSpec:
    """A spec for a sub-agent: `outrider.agent("builder", "Add a --json flag")`."""
    return AgentSpec(
        agent=name, prompt=prompt, model=model, workspace=workspace,
        budget_tokens=budget_tokens, budget_cost=budget_cost, isolation=isolation, base=base,
    )  # fmt: skip


def cli_agent(
    cli: str,
    prompt: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    isolation: Isolation | None = None,
    base: str | None = None,
) -> CliAgentSpec:
    """A spec for an external agent CLI: `outrider.cli_agent("claude", "Fix the tests")`."""
    return CliAgentSpec(
        cli=cli, prompt=prompt, agent=agent, model=model, cwd=cwd, env=env or {},
        isolation=isolation, base=base,
    )  # fmt: skip


def shell(
    command: str | list[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    grace_period: float = 5.0,
) -> ShellSpec:
    """Describe a shell task.

    Args:
        command: A string run by `/bin/sh -c`, or an argv list run directly.
        cwd: The working directory (default: the orchestrator process's).
        env: The task's own variables, on top of a clean base (`PATH`, `HOME`, `LANG`, … — not
            the whole environment of outrider's process).
        grace_period: Seconds between SIGTERM and SIGKILL when the task is stopped.

    Returns:
        The validated spec, to pass to `Orchestrator.submit`.
    """
    return ShellSpec(command=command, cwd=cwd, env=env or {}, grace_period=grace_period)


def call(handler: str, /, **params: JsonValue) -> HandlerSpec:
    """Describe a call of the handler registered as `handler`, with JSON keyword arguments.

    Returns:
        The validated spec, to pass to `Orchestrator.submit`.
    """
    return HandlerSpec(handler=handler, params=params)


class ErrorInfo(BaseModel):
    """Why a task did not succeed."""

    model_config = _FROZEN
    type: str
    """A short machine-readable kind: an exception name, `exit`, `interrupted`, `timeout`…"""
    message: str
    detail: str | None = None
    """A traceback summary, or the last lines of output."""


class Progress(BaseModel):
    """What a running task reported of its progress."""

    model_config = _FROZEN
    completed: float
    total: float | None = None
    message: str | None = None


class Usage(BaseModel):
    """Tokens and cost a task spent (agent tasks)."""

    model_config = _FROZEN
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost: float | None = None


class Task(BaseModel):
    """A task's record, as stored; `position` and `waiting_for` are live views of the queue."""

    model_config = _FROZEN
    id: str
    session: str
    spec: TaskSpec
    state: TaskState
    priority: int
    keys: tuple[str, ...]
    label: str | None = None
    description: str | None = None
    group: str | None = None
    parent: str | None = None
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    ttl: float | None = None
    stall_timeout: float | None = None
    max_attempts: int = 1
    attempt: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: JsonValue = None
    error: ErrorInfo | None = None
    exit_code: int | None = None
    progress: Progress | None = None
    usage: Usage | None = None
    retry_of: str | None = None
    """The ended task this one submitted again (`retry`)."""
    node: str | None = None
    """The cluster node its current or last attempt ran on (None: the daemon's machine)."""
    position: int | None = None
    """For a queued task: 1 means it is next to start on its most crowded key."""
    waiting_for: str | None = None
    """For a queued task: what it waits for, in words."""

    @property
    def kind(self) -> str:
        """The task's kind (`shell`, `handler`, …)."""
        return self.spec.kind

    @property
    def name(self) -> str:
        """A short human name: the label, else the command or handler."""
        if self.label:
            return self.label
        spec = self.spec
        if isinstance(spec, ShellSpec):
            return spec.command if isinstance(spec.command, str) else " ".join(spec.command)
        if isinstance(spec, CliAgentSpec):
            return f"{spec.agent or spec.cli}: {spec.prompt.splitlines()[0][:60]}"
        if isinstance(spec, AgentSpec):
            return f"{spec.agent}: {spec.prompt.splitlines()[0][:60]}"
        return spec.handler

    @property
    def elapsed(self) -> float | None:
        """Seconds the current or last attempt ran, if it started."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return max(0.0, (end - self.started_at).total_seconds())


class KeyStatus(BaseModel):
    """One concurrency key's load."""

    model_config = _FROZEN
    running: int
    limit: int
    queued: int


class NodeStatus(BaseModel):
    """One node of the cluster the orchestrator runs tasks on."""

    model_config = _FROZEN
    node_id: str
    address: str
    slots: int
    """Attempts it runs at once."""
    running: int
    """Attempts running there now."""
    alive: bool
    labels: dict[str, str] = Field(default_factory=dict)


class Status(BaseModel):
    """A snapshot of the orchestrator's load."""

    model_config = _FROZEN
    states: dict[TaskState, int]
    keys: dict[str, KeyStatus]
    running: int
    max_running: int
    queued: int
    max_queued: int
    held: str | None = None
    """Why process-backed tasks are held back (low memory, high load), if they are."""
    recovering: int = 0
    """Tasks found running at start whose leftover processes are still being stopped."""
    store_error: str | None = None
    """Why the store cannot write, while it cannot (a full or read-only disk)."""
    nodes: list[NodeStatus] = Field(default_factory=list)
    """The cluster's nodes, where tasks run on a cluster (`cluster`)."""


class SessionSummary(BaseModel):
    """One session of an owner at a glance (`Tasks.sessions`)."""

    model_config = _FROZEN
    session: str
    states: dict[TaskState, int]
    """Its tasks per state (every state, zeros included)."""
    unseen_failures: int = 0
    """Tasks that failed or timed out whose completion notices are not acknowledged."""
    last_seq: int = 0
    """The `seq` of its newest event (0: none): a reader of its events that starts after it
    sees only what happens next."""
    last_at: datetime | None = None
    """When a task of it was last submitted, started or ended."""


class Notice(BaseModel):
    """A notice: a task (or a whole group) of the session ended, or two tasks overlap.

    Notices are kept until acknowledged (`Orchestrator.ack_notices`), across restarts; a
    group's summary replaces the notices of its tasks when both are pending.
    """

    model_config = _FROZEN
    seq: int
    """The ending event's `seq`; acknowledge up to it."""
    kind: Literal["task", "group", "overlap"]
    """`overlap`: the task and another one changed the same files in their worktrees."""
    task_id: str | None = None
    group: str | None = None
    state: TaskState | None = None
    """The task's end state (tasks only)."""
    label: str | None = None
    description: str | None = None
    exit_code: int | None = None
    preview: str | None = None
    """The start of the result, or the error message."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Tasks per end state, and `total` (groups only)."""
    text: str
    """One line for a human or a model to read."""


class NoticeWait(BaseModel):
    """What a wait for notices found (`Tasks.next_notices`).

    `notices` is empty when the wait timed out or another waiter of the same reader took over
    (`superseded`). `text` is the notices as a model reads them (`notices_block`), each line
    ending with its marker `⟦outrider seq=N⟧`: every host shows the same words.
    """

    model_config = _FROZEN
    notices: list[Notice]
    text: str = ""
    superseded: bool = False


class TaskOptions(BaseModel):
    """How a task is scheduled; validated at submit."""

    model_config = _FROZEN
    priority: Int = Field(default=5, ge=0, le=10)
    """0-10; 10 starts first. FIFO within a priority."""
    keys: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] | None = Field(
        default=None, min_length=1
    )
    """Concurrency keys; default: one derived from the kind (`shell`, `handler:<name>`)."""
    timeout: Number | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Seconds the task may run (per attempt)."""
    ttl: Number | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Seconds since submission after which the task ends `timed_out`, queued or running."""
    stall_timeout: Number | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Seconds a running task may go without output or progress."""
    max_attempts: Int = Field(default=1, ge=1, le=100)
    label: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    group: str | None = Field(default=None, min_length=1, max_length=200)
    parent: str | None = Field(default=None, min_length=1)
    depends_on: tuple[str, ...] = ()


class SubmitItem(TaskOptions):
    """One item of `Orchestrator.submit_many`: a spec and its options."""

    spec: TaskSpec


class SubmitError(BaseModel):
    """Why one item of `submit_many` was not stored."""

    model_config = _FROZEN
    index: int
    field: str | None
    message: str
    type: str = "UserError"
