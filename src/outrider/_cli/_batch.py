"""Batch files: a TOML list of tasks (shell commands or sub-agent prompts), validated at once.

```toml
[limits]
shell = 2

[[task]]
label = "build"
command = "make build"

[[task]]
label = "review"
agent = "reviewer"            # a sub-agent defined beside the file (.outrider/agents/…)
prompt = "Review the build"
depends_on = ["build"]
```

Invariants: a file is checked whole before anything runs, and every error names the file, the
field (`task.N.field`) and the fix. Relative `cwd`s are resolved against the file's folder,
which is also where agent tasks work by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._agents._delegation import agent_spec
from .._daemon._config import read_toml
from .._text import clip
from .._types._errors import UserError
from .._types._task import AgentSpec, Int, Number, ShellSpec, SubmitItem, TaskSpec

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from .._agents._definitions import AgentDefinition

__all__ = ["Batch", "BatchError", "BatchTask", "load_batch"]


class BatchError(Exception):
    """A batch file is invalid; the message names the field."""


class BatchTask(BaseModel):
    """One `[[task]]` of a batch file: a shell `command`, or an `agent` and its `prompt`."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=200)
    command: str | list[str] | None = None
    agent: str | None = Field(default=None, min_length=1)
    prompt: str | None = None
    model: str | None = Field(default=None, min_length=1)
    handler: str | None = None
    params: dict[str, object] = Field(default_factory=dict)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    priority: Int = Field(default=5, ge=0, le=10)
    keys: list[Annotated[str, Field(min_length=1)]] | None = None
    timeout: Number | None = Field(default=None, gt=0)
    ttl: Number | None = Field(default=None, gt=0)
    max_attempts: Int = Field(default=1, ge=1, le=100)
    depends_on: list[str] = Field(default_factory=list)
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BatchTask:
        if self.handler is not None:
            raise ValueError(
                "`handler` tasks need a program that registers the handler; the CLI runs "
                "shell commands and agents (give `command`, or `agent` and `prompt`)"
            )
        if self.agent is not None:
            if self.command is not None:
                raise ValueError("give `command` or `agent`, not both")
            if not self.prompt or not self.prompt.strip():
                raise ValueError(f"give `prompt`: the instructions for agent {self.agent!r}")
        elif self.command is None:
            raise ValueError("give `command` (a shell string or an argv list), or `agent`")
        elif self.prompt is not None or self.model is not None:
            raise ValueError("`prompt` and `model` go with `agent`")
        return self

    def spec(self, agents: Mapping[str, AgentDefinition]) -> tuple[TaskSpec, float | None]:
        """What it runs, and its timeout (an agent's own when the task gives none).

        Raises:
            UserError: An unknown agent, or `env` for a built-in agent (which starts no process).
        """
        if self.agent is None:
            assert self.command is not None
            return ShellSpec(command=self.command, cwd=self.cwd, env=self.env), self.timeout
        spec, agent = agent_spec(agents, self.agent, self.prompt, cwd=self.cwd, model=self.model)
        if self.env:
            if isinstance(spec, AgentSpec):
                raise UserError(
                    f"`env` is for commands and agent CLIs; agent {agent.name!r} runs in "
                    "outrider (its commands get the task's environment): remove `env`.",
                    field="env",
                )
            spec = spec.model_copy(update={"env": self.env})
        return spec, self.timeout or agent.timeout

    def check(self) -> None:
        """Check the task as a submit would (an agent's spec is checked by `spec`).

        Raises:
            ValidationError: A field the submit would refuse.
        """
        command = self.command if self.command is not None else "true"
        SubmitItem(
            spec=ShellSpec(command=command, cwd=self.cwd, env=self.env), priority=self.priority,
            keys=tuple(self.keys) if self.keys is not None else None, timeout=self.timeout,
            ttl=self.ttl, max_attempts=self.max_attempts, label=self.label,
            description=self.description,
        )  # fmt: skip


class Batch(BaseModel):
    """A whole batch file."""

    model_config = ConfigDict(extra="forbid")
    limits: dict[Annotated[str, Field(min_length=1, max_length=200)], Int] = Field(
        default_factory=dict
    )
    task: list[BatchTask] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Batch:
        seen: set[str] = set()
        for index, item in enumerate(self.task):
            if item.label in seen:
                raise ValueError(f"task[{index}].label {item.label!r} is used twice")
            for dep in item.depends_on:
                if dep not in seen:
                    raise ValueError(
                        f"task[{index}].depends_on names {dep!r}, which is not the label of an "
                        "earlier task"
                    )
            seen.add(item.label)
        for key, limit in self.limits.items():
            if limit < 1:
                raise ValueError(f"limits.{key} must be at least 1, not {limit}")
        return self

    @property
    def has_agents(self) -> bool:
        """Whether some task is an agent's."""
        return any(item.agent is not None for item in self.task)

    def specs(
        self, agents: Mapping[str, AgentDefinition], *, source: Path | str = "batch"
    ) -> list[tuple[TaskSpec, float | None]]:
        """Each task's spec and timeout, in order (see `BatchTask.spec`).

        Raises:
            BatchError: A task names an unknown agent, or gives `env` to a built-in agent.
        """
        planned: list[tuple[TaskSpec, float | None]] = []
        for index, item in enumerate(self.task):
            try:
                planned.append(item.spec(agents))
            except UserError as exc:
                raise BatchError(f"{source}: task.{index}.{exc.field}: {exc}") from None
        return planned


def load_batch(path: Path) -> Batch:
    """Read and validate a batch file; relative `cwd`s are resolved against its folder.

    Raises:
        BatchError: The file is missing, not TOML, or a field is invalid.
    """
    try:
        data = read_toml(path, "the batch file")
    except UserError as exc:
        raise BatchError(str(exc)) from None
    try:
        batch = Batch.model_validate(data)
    except ValidationError as exc:
        raise BatchError(f"{path}: {_problem(exc)}") from None
    base = path.resolve().parent
    for index, item in enumerate(batch.task):
        item.cwd = str(base / (item.cwd or "."))
        try:
            item.check()
        except ValidationError as exc:
            raise BatchError(f"{path}: {_problem(exc, f'task.{index}.')}") from None
    return batch


def _problem(exc: ValidationError, prefix: str = "") -> str:
    """`where: what.` of a validation error's first problem."""
    first = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {clip(repr(got), 80)})"
    return f"{where.rstrip('.') or 'file'}: {message}{shown}."
