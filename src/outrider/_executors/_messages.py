"""The messages between the daemon and an executor's worker: typed, transport-independent.

One declaration for every transport (a local worker's socket now; a remote node later). Each
message is a pydantic model with a `type` tag; `encode` and `decode` turn one into a frame and
back. A frame is the message's JSON; bulk bytes (`Output.data`, a `Call`'s `blob`: a transcript
to save) follow it raw, after a NUL byte, so they are neither base64-encoded nor escaped and
parsed as JSON on either side. Any other bytes travel base64-encoded inside the JSON.

Daemon → worker: `Setup` (once, first), `Start`, `Cancel`, `Watch`, `Reply`, `Sweep`.
Worker → daemon: `Ready` (once, after `Setup`), `Output`, `Progress`, `UsageReport`,
`SetLimit`, `Call`, `Abandon`, `LimitNote`, `Done`, `Failed`, `Cancelled`, `Swept`.

Invariants:
- Per task, the worker sends its reports in the order it made them, and its last message is
  exactly one of `Done`, `Failed` or `Cancelled`, sent once the run really ended.
- A frame's JSON never holds a raw NUL byte (JSON escapes it), so the first NUL of a frame, if
  any, is where its blob starts.
- Every `Call` gets exactly one `Reply`, unless the worker sent `Abandon` for it first (then
  it may get none). What a call asks of the daemon (`CallOp`) is what a `RunContext` awaits.
- Every `Sweep` gets exactly one `Swept`, once its search and its stops are over.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from .._types._task import Usage

__all__ = [
    "Abandon", "Call", "CallError", "CallOp", "Cancel", "Cancelled", "Done", "Failed",
    "FromDaemon", "FromWorker", "LimitNote", "Message", "Output", "Progress", "Ready", "Reply",
    "SetLimit", "Setup", "Start", "Sweep", "Swept", "UsageReport", "Watch", "decode", "encode",
]  # fmt: skip


class _Message(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )
    _blob: ClassVar[str | None] = None
    """The field whose bytes travel raw after the JSON (see the module doc)."""


class Setup(_Message):
    """How the worker builds its runners: `factory` (`module:function`) called with `config`."""

    type: Literal["setup"] = "setup"
    factory: str
    config: JsonValue = None


class Start(_Message):
    """Run one attempt of a task."""

    type: Literal["start"] = "start"
    task_id: str
    attempt: int
    session: str
    resuming: bool
    kind: str
    spec: JsonValue
    guarded: bool = False
    """Its writes claim leases (`claim` calls): it writes in place beside other tasks."""
    folder: str | None = None
    """The folder (its worktree) the runner moves `spec` to before it runs (`Moved`)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Variables the move adds."""
    watched: bool = False
    """Someone follows its output live (`RunContext.watched`), until a `Watch` says otherwise."""


class Cancel(_Message):
    """Stop a task's run; the worker answers `Cancelled` (or its end) once it is over."""

    type: Literal["cancel"] = "cancel"
    task_id: str


class Watch(_Message):
    """Whether someone follows a running task's output live now (it changed since `Start`)."""

    type: Literal["watch"] = "watch"
    task_id: str
    watched: bool


class Sweep(_Message):
    """Stop what these attempts of a dead daemon left on the worker's machine (their markers)."""

    type: Literal["sweep"] = "sweep"
    sweep_id: int
    markers: list[str]
    grace_period: float


class Swept(_Message):
    """A `Sweep` is over: `found` processes were stopped."""

    type: Literal["swept"] = "swept"
    sweep_id: int
    found: int


class CallError(_Message):
    """A call the daemon refused or failed: `user` is a refusal the caller should read."""

    kind: Literal["user", "error"]
    message: str
    field: str | None = None


class Reply(_Message):
    """The answer to a `Call`."""

    type: Literal["reply"] = "reply"
    call_id: int
    value: JsonValue = None
    error: CallError | None = None


class Ready(_Message):
    """The worker built its runners and takes tasks."""

    type: Literal["ready"] = "ready"
    pid: int


class Output(_Message):
    """Output of a task, coalesced over a few milliseconds."""

    type: Literal["output"] = "output"
    task_id: str
    data: bytes = b""
    _blob = "data"


class Progress(_Message):
    """A task's latest progress."""

    type: Literal["progress"] = "progress"
    task_id: str
    completed: float
    total: float | None = None
    message: str | None = None


class UsageReport(_Message):
    """A task's tokens and cost so far."""

    type: Literal["usage"] = "usage"
    task_id: str
    usage: Usage


class SetLimit(_Message):
    """Ask for a concurrency key's limit (`RunnerHost.suggest_limit`)."""

    type: Literal["set_limit"] = "set_limit"
    key: str
    limit: int


CallOp: TypeAlias = Literal[
    "spawn", "tail", "save_transcript", "load_transcript", "track_process", "claim", "acquire"
]
"""`acquire` waits for a model's call slot in the daemon's limiter (`LimitNote` releases it)."""


class Call(_Message):
    """Ask the daemon for something a run awaits; answered by a `Reply` with the same id."""

    type: Literal["call"] = "call"
    call_id: int
    task_id: str
    op: CallOp
    args: dict[str, JsonValue] = Field(default_factory=dict)
    blob: bytes | None = None
    """Bytes the call carries (a transcript to save)."""
    _blob = "blob"


class Abandon(_Message):
    """The worker no longer waits for a call (its run was stopped): undo or stop it."""

    type: Literal["abandon"] = "abandon"
    call_id: int


class LimitNote(_Message):
    """What a model call learned, for the daemon's limiter of `model` (`ModelLimiter`)."""

    type: Literal["limit_note"] = "limit_note"
    model: str
    event: Literal["release", "succeeded", "throttled", "stated"]
    retry_after: float | None = None
    rpm: float | None = None
    tpm: float | None = None


class Done(_Message):
    """The run succeeded."""

    type: Literal["done"] = "done"
    task_id: str
    result: JsonValue = None
    exit_code: int | None = None


class Failed(_Message):
    """The run failed (`RunFailure`'s fields; an unexpected error has its traceback)."""

    type: Literal["failed"] = "failed"
    task_id: str
    message: str
    kind: str = "error"
    detail: str | None = None
    exit_code: int | None = None
    retryable: bool = False


class Cancelled(_Message):
    """The run was stopped by a `Cancel` and is over."""

    type: Literal["cancelled"] = "cancelled"
    task_id: str


FromDaemon: TypeAlias = Annotated[
    Setup | Start | Cancel | Watch | Reply | Sweep, Field(discriminator="type")
]
FromWorker: TypeAlias = Annotated[
    Ready | Output | Progress | UsageReport | SetLimit | Call | Abandon | LimitNote | Done
    | Failed | Cancelled | Swept,
    Field(discriminator="type"),
]  # fmt: skip
Message: TypeAlias = (
    Setup | Start | Cancel | Watch | Reply | Sweep | Ready | Output | Progress | UsageReport
    | SetLimit | Call | Abandon | LimitNote | Done | Failed | Cancelled | Swept
)  # fmt: skip

_FROM_DAEMON: TypeAdapter[Setup | Start | Cancel | Watch | Reply | Sweep] = TypeAdapter(FromDaemon)
_FROM_WORKER: TypeAdapter[
    Ready | Output | Progress | UsageReport | SetLimit | Call | Abandon | LimitNote | Done
    | Failed | Cancelled | Swept
] = TypeAdapter(FromWorker)  # fmt: skip


_NUL = b"\x00"


def encode(message: Message) -> bytes:
    """One message as a frame: its JSON, then its blob's raw bytes if it has one."""
    name = message._blob
    blob: bytes | None = None if name is None else getattr(message, name)
    if name is None or not blob:
        return message.model_dump_json().encode()
    return message.model_dump_json(exclude={name}).encode() + _NUL + blob


def decode(data: bytes, *, from_worker: bool) -> Message:
    """The message in frame `data`, sent by a worker (or by the daemon).

    Raises:
        pydantic.ValidationError: `data` is not such a message.
        ValueError: `data` has a blob, but its message takes none.
    """
    adapter = _FROM_WORKER if from_worker else _FROM_DAEMON
    head, nul, blob = data.partition(_NUL)
    message = adapter.validate_json(head)
    if not nul:
        return message
    if message._blob is None:
        raise ValueError(f"a {message.type!r} message carries no bytes after its JSON")
    return message.model_copy(update={message._blob: blob})
