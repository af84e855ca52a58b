"""`outrider.toml`: the daemon's settings, validated once at start.

Lookup: `--config FILE`, else `./outrider.toml`, else `outrider.toml` in the user config dir,
else the defaults. `OUTRIDER_<FIELD>` environment variables override single fields (JSON for
tables and lists, e.g. `OUTRIDER_LIMITS='{"shell": 4}'`). A bad field stops start-up with one
line naming the field and what is allowed.
"""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._agents._providers import Price, ProviderConfig, Providers
from .._paths import data_dir, find_config_file
from .._service._settings import Settings
from .._types._errors import UserError
from .._types._task import Int, Number, check_argument
from ..runners._cli_agent import OutputFormat

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "MCP_TOOLS",
    "CliAgentConfig",
    "Config",
    "PrincipalConfig",
    "find_config_file",
    "import_handlers",
    "load_config",
]

MCP_TOOLS = (
    "delegate_task", "get_task_result", "list_tasks", "cancel_task", "wait_tasks",
    "retry_task", "run_background", "check_background", "list_background", "kill_background",
    "agents_start", "agents_status", "agents_wait", "ack_notices", "merge_task", "discard_task",
)  # fmt: skip
"""Every MCP tool outrider has."""

DEFAULT_MCP_TOOLS = (
    "delegate_task", "get_task_result", "list_tasks", "cancel_task", "wait_tasks",
    "merge_task", "discard_task",
)  # fmt: skip
"""The default set: one verb per step of the delegate → keep working → collect flow (a
writing task's work is collected by merging or discarding its worktree)."""

_Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class PrincipalConfig(BaseModel):
    """Another caller of the daemon, with its own token and sessions."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    token_file: Path
    """A file holding the principal's bearer token (keep it 0600)."""


class CliAgentConfig(BaseModel):
    """A user-defined agent CLI template (`[cli_agents.NAME]`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command: list[str] = Field(min_length=1)
    """The argv; `{prompt}` is replaced by the prompt."""
    model_args: list[str] = Field(default_factory=list)
    """Appended when a model is given; `{model}` is replaced by it."""
    output: OutputFormat = "text"
    """How the final answer is read from the output."""
    pass_env: list[str] | None = None
    """Variables the CLI gets from the daemon's environment besides the safe base (its API
    keys; `NAME_*` is a prefix); default: the built-in template's, else none."""

    def model_post_init(self, context: Any, /) -> None:
        if not any("{prompt}" in part for part in self.command):
            raise UserError(
                "Invalid `cli_agents.*.command`: it must contain `{prompt}` where the prompt goes.",
                field="cli_agents",
            )


class Config(Settings):
    """Every setting of `outrider serve`: the orchestrator's `Settings`, and the daemon's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    __init__ = BaseModel.__init__  # `load_config` words the errors itself, naming the file
    host: str = "127.0.0.1"
    port: Int = Field(default=8765, ge=0, le=65535)
    db: Path | None = None
    """The store (default: `outrider.db` in the data dir)."""
    token_file: Path | None = None
    """The local principal's token (default: `token` in the data dir; created if missing)."""
    mcp_wait: Number = Field(default=50.0, gt=0, le=3600)
    """The longest a blocking MCP tool call waits before answering "still running"."""
    mcp_tools: tuple[str, ...] = DEFAULT_MCP_TOOLS
    task_env: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Variables every shell and agent-CLI task gets from the daemon's environment, besides
    the safe base (`PATH`, `HOME`, `LANG`, …); `NAME_*` is a prefix."""
    handlers: dict[_Name, Annotated[str, Field(pattern=r"^[\w.]+:[\w.]+$")]] = Field(
        default_factory=dict
    )
    """Python handlers to import at start: `name = "package.module:function"`."""
    principals: dict[_Name, PrincipalConfig] = Field(default_factory=dict)
    cli_agents: dict[_Name, CliAgentConfig] = Field(default_factory=dict)
    """Agent CLI templates added to (or replacing) the built-in ones."""
    providers: dict[_Name, ProviderConfig] = Field(default_factory=dict)
    """Model providers added to (or replacing) openai, anthropic, openrouter and ollama."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million input/output tokens, by `provider/model`."""
    default_model: str | None = None
    """The model of a built-in agent whose definition names none."""
    model_aliases: dict[str, str] = Field(default_factory=dict)
    """Short model names (`fast = "openai/gpt-4.1-mini"`)."""
    agent_max_depth: Int = Field(default=2, ge=0, le=10)
    """How deep built-in agents may delegate."""
    agent_max_descendants: Int = Field(default=10, ge=0, le=1000)
    """Live delegated tasks per delegation tree."""
    agent_streaming: Literal["watched", "always"] = "watched"
    """When a built-in agent's model answers are streamed chunk by chunk: `watched` while
    someone follows the task's output live (an event subscriber; or it has a
    `stall_timeout`), whole answers otherwise; `always`: every answer."""
    agent_workers: Int | None = Field(default=None, ge=0, le=1024)
    """Worker processes that run built-in agents, each many at once (default: one per CPU;
    0: in the daemon's own process)."""
    # The pool's DEFAULT_NICE, written out: importing the pool would add 75 ms to every start.
    agent_worker_nice: Int = Field(default=10, ge=0, le=19)
    """How much lower the agent workers' CPU priority is than the daemon's (Unix nice, 0 to
    19; 0: the same): the daemon answers its API and relays events first, however busy the
    agents keep the machine."""
    cluster: str | None = None
    """The head (`host:port`) of the Ray cluster the daemon's shell, agent-CLI and built-in
    agent tasks run on (`outrider serve --cluster` sets it); None: on this machine."""
    placement: dict[
        Annotated[str, Field(min_length=1, max_length=200)],
        dict[_Name, Annotated[str, Field(min_length=1, max_length=200)]],
    ] = Field(default_factory=dict)
    """Which cluster nodes may run the tasks holding a key: `[placement."agent:coder"]` with
    `gpu = "a100"` runs them only on nodes started with `--labels gpu=a100`; a task needs the
    labels of every key it holds."""
    sandbox: Literal["required", "auto", "off"] = "auto"
    """How the built-in agent's commands are sandboxed (bubblewrap): `required` fails an
    agent with `run_command` where bubblewrap cannot run; `auto` sandboxes where it can."""

    @field_validator("db", "token_file")
    @classmethod
    def _path(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_argument(str(value), "path")
        return value

    def model_post_init(self, context: Any, /) -> None:
        unknown = [t for t in self.mcp_tools if t not in MCP_TOOLS]
        if unknown:
            raise UserError(
                f"Invalid `mcp_tools`: unknown {', '.join(unknown)}; allowed: "
                f"{', '.join(MCP_TOOLS)}.",
                field="mcp_tools",
            )
        if "local" in self.principals:
            raise UserError(
                "Invalid `principals.local`: `local` is the daemon owner's principal; "
                "pick another name.",
                field="principals.local",
            )

    def model_providers(self) -> Providers:
        """The providers, prices, aliases and default model of the built-in agents."""
        return Providers(
            self.providers, prices=self.prices, aliases=self.model_aliases,
            default_model=self.default_model,
        )  # fmt: skip

    @property
    def db_path(self) -> Path:
        """The store file."""
        return self.db if self.db is not None else data_dir() / "outrider.db"

    @property
    def local_token_file(self) -> Path:
        """The local principal's token file."""
        return self.token_file if self.token_file is not None else data_dir() / "token"

    @property
    def cluster_token_file(self) -> Path:
        """The Ray cluster's token file (`cluster`)."""
        return data_dir() / "cluster.token"


def import_handlers(handlers: Mapping[str, str]) -> dict[str, Callable[..., object]]:
    """Import the `[handlers]` of a config: `name = "package.module:function"`.

    Raises:
        UserError: A module or attribute cannot be imported; the message names the handler.
    """
    found: dict[str, Callable[..., object]] = {}
    for name, target in handlers.items():
        module_name, _, attr = target.partition(":")
        try:
            fn: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                fn = getattr(fn, part)
        except (ImportError, AttributeError) as exc:
            raise UserError(
                f"Invalid `handlers.{name}`: cannot import {target!r} ({exc}).",
                field=f"handlers.{name}",
            ) from None
        found[name] = fn
    return found


def _number(raw: str) -> object:
    """An environment variable's number (its text if it is none, for the error to show)."""
    if raw.lower() in ("", "none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, field in Config.model_fields.items():
        raw = environ.get(f"OUTRIDER_{name.upper()}")
        if raw is None:
            continue
        annotation = str(field.annotation)
        if "dict" in annotation or "tuple" in annotation or "list" in annotation:
            try:
                out[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"Invalid `OUTRIDER_{name.upper()}`: not JSON ({exc.msg}).", field=name
                ) from None
        elif "int" in annotation or "float" in annotation:
            out[name] = _number(raw)
        else:
            out[name] = None if raw.lower() in ("", "none", "null") else raw
    return out


def read_toml(file: Path, what: str) -> dict[str, object]:
    """The table a TOML file holds.

    Raises:
        UserError: The file cannot be read, is not UTF-8 or not TOML; one line naming `what`
            and `file` and the fix.
    """
    try:
        return tomllib.loads(file.read_bytes().decode())
    except OSError as exc:
        raise UserError(f"Cannot read {what} {file}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{file}: byte {exc.object[exc.start]:#04x} at position {exc.start} is not "
            "UTF-8; save the file as UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{file}: not valid TOML: {exc}.") from None


def load_config(
    path: Path | None = None, *, environ: dict[str, str] | None = None, **overrides: object
) -> Config:
    """Read, merge and validate the config: file < `OUTRIDER_*` env < explicit overrides.

    Raises:
        UserError: The file is unreadable or a field is invalid; the message is one line
            naming the file, the field and what is allowed.
    """
    file = find_config_file(path)
    values: dict[str, object] = {}
    where = "defaults"
    if file is not None:
        where = str(file)
        values = read_toml(file, "the config file")
    values.update(_env_overrides(dict(os.environ) if environ is None else environ))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config: Config = Config.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        got = first.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(Config.model_fields)
            message = f"{where}: unknown setting `{field}`; allowed: {allowed}."
        else:
            problem = first["msg"].removeprefix("Value error, ")
            message = f"{where}: invalid `{field}`: {problem}{shown}."
        raise UserError(message, field=field) from None
    except UserError as exc:
        raise UserError(f"{where}: {exc}", field=exc.field) from None
    return config
