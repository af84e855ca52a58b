"""SQLite access: the only module with SQL. Synchronous; `Store` runs it in worker threads.

Invariants:
- One writer connection; every batch of changes is one `BEGIN IMMEDIATE` transaction, and each
  change inside it is a savepoint, so a bad change rolls back alone and never half-applies.
- WAL mode with `synchronous=NORMAL`: a commit is durable across a crash of this process (the
  WAL is in the OS's hands); only a power loss can lose the last commits. The writer never
  checkpoints on commit (that costs milliseconds); `Store` checkpoints from a connection of its own.
- Event `seq` is an AUTOINCREMENT key: it only grows, also after a sweep, so readers resume by it.
- Rows are mapped to typed records here; timestamps are UTC epoch seconds in the database.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

from pydantic import BaseModel
from pydantic_core import to_json

from outrider._types._errors import StoreError, StoreUnavailable
from outrider._types._events import (
    NOTICE_TYPES,
    PAYLOAD_OF,
    Event,
    EventData,
    EventType,
    GroupCompleted,
    GroupMember,
    TaskRetrying,
)
from outrider._types._task import (
    TASK_SPEC_ADAPTER,
    ErrorInfo,
    Progress,
    SessionSummary,
    Task,
    TaskState,
    Usage,
)
from outrider._types._worktrees import Worktree

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from importlib.resources.abc import Traversable

    from outrider._core._lifecycle import Transition

__all__ = [
    "AddEvent",
    "AddGroupSummary",
    "Change",
    "Committed",
    "EndAttempt",
    "InsertTask",
    "Op",
    "SQLiteBackend",
    "DeleteWorktree",
    "PutWorktree",
    "PlaceAttempt",
    "SetNoticeCursor",
    "StartAttempt",
    "UnfinishedTask",
    "UpdateTask",
    "write_error",
]


@dataclass(frozen=True, slots=True)
class InsertTask:
    """Store a new task."""

    task: Task
    seq: int
    spec_json: str | None = None
    """The spec as JSON when the caller made it already (else it is serialised here)."""


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Change some fields of a task (`Task` field names, plus `pid`, `pid_created`, `ready_at`)."""

    task_id: str
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Record that an attempt started."""

    task_id: str
    attempt: int
    started_at: float


@dataclass(frozen=True, slots=True)
class PlaceAttempt:
    """Record the node of the cluster an attempt runs on."""

    task_id: str
    attempt: int
    node: str


@dataclass(frozen=True, slots=True)
class EndAttempt:
    """Record how an attempt ended."""

    task_id: str
    attempt: int
    finished_at: float
    state: str
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class AddEvent:
    """Append an event; its `seq` is assigned on insert."""

    type: EventType
    session: str
    at: float
    task_id: str | None
    group: str | None
    data: EventData


@dataclass(frozen=True, slots=True)
class AddGroupSummary:
    """Append a group's `group.completed` event, its counts read in the same transaction."""

    session: str
    group: str
    at: float


@dataclass(frozen=True, slots=True)
class SetNoticeCursor:
    """Acknowledge a session's notices up to `seq` (the cursor never moves back)."""

    session: str
    seq: int


@dataclass(frozen=True, slots=True)
class PutWorktree:
    """Store a task's worktree record (replacing the previous one)."""

    worktree: Worktree


@dataclass(frozen=True, slots=True)
class DeleteWorktree:
    """Forget a task's worktree record (one long merged, discarded or removed)."""

    task_id: str


Op = (
    InsertTask | UpdateTask | StartAttempt | PlaceAttempt | EndAttempt | AddEvent | AddGroupSummary
    | SetNoticeCursor | PutWorktree | DeleteWorktree
)  # fmt: skip
Change = list[Op]
"""Ops applied atomically together."""


def rows_of(step: Transition) -> Change:
    """The ops that store one lifecycle step: its fields, its attempt's row, its event.

    Entering `running` clears the backoff (`ready_at`) and starts the attempt; leaving it
    clears the recorded process and ends the attempt (`retrying`, or the end state); a retry
    is not ready before its delay.
    """
    task = step.task
    fields = dict(step.update)
    ops: Change = []
    if step.starts_attempt:
        fields["ready_at"] = None
    if step.ends_attempt:
        fields["pid"] = None
    if isinstance(step.event, TaskRetrying):
        fields["ready_at"] = step.at + step.event.delay
    if fields:
        ops.append(UpdateTask(task.id, fields))
    if step.starts_attempt:
        ops.append(StartAttempt(task.id, task.attempt, step.at))
    elif step.ends_attempt:
        how = "retrying" if isinstance(step.event, TaskRetrying) else str(task.state)
        ops.append(EndAttempt(task.id, task.attempt, step.at, how, task.error))
    ops.append(AddEvent(step.event_type, task.session, step.at, task.id, task.group, step.event))
    return ops


@dataclass(frozen=True, slots=True)
class UnfinishedTask:
    """A task found queued or running when the store opens."""

    task: Task
    seq: int
    pid: int | None
    pid_created: float | None
    ready_at: float | None


"""The events that make a completion notice."""
_SWEEP_BATCH = 100
"""Tasks (and events) one sweep transaction deletes at most: a few ms, so commits interleave."""
_NOTICE_TYPES_SQL = ", ".join("?" * len(NOTICE_TYPES))

_TASK_COLUMNS = (
    "task_id, session, grp, parent, label, description, spec, priority, keys, depends_on, "
    "timeout, ttl, stall_timeout, max_attempts, state, attempt, created_at, started_at, "
    "finished_at, result, error, exit_code, progress, usage, retry_of, node"
)
_INSERT_TASK = (
    f"INSERT INTO tasks (seq, kind, {_TASK_COLUMNS}) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_START_ATTEMPT = "INSERT OR REPLACE INTO attempts (task_id, attempt, started_at) VALUES (?, ?, ?)"
_PLACE_ATTEMPT = "UPDATE attempts SET node = ? WHERE task_id = ? AND attempt = ?"
_END_ATTEMPT = (
    "UPDATE attempts SET finished_at = ?, state = ?, error = ? WHERE task_id = ? AND attempt = ?"
)
_INSERT_EVENT = (
    "INSERT INTO events (seq, at, type, session, task_id, grp, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PUT_WORKTREE = (
    "INSERT OR REPLACE INTO worktrees (task_id, session, repo, state, updated_at, record) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_LAST_EVENT_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
_SET_NOTICE_CURSOR = (
    "INSERT INTO notice_cursors (session, seq) VALUES (?, ?) "
    "ON CONFLICT (session) DO UPDATE SET seq = max(seq, excluded.seq)"
)
_COLUMN_OF_FIELD = {"group": "grp", "id": "task_id"}
_UPDATABLE = frozenset(
    {
        "state", "attempt", "started_at", "finished_at", "result", "error", "exit_code",
        "progress", "usage", "pid", "pid_created", "ready_at", "node",
    }
)  # fmt: skip


_CANNOT_WRITE = {
    sqlite3.SQLITE_FULL: ("the disk is full", "free some space there"),
    sqlite3.SQLITE_IOERR: ("a disk I/O error", "check the disk"),
    sqlite3.SQLITE_READONLY: ("it is read-only", "make it writable"),
    sqlite3.SQLITE_CANTOPEN: ("it cannot be opened", "check the folder and its permissions"),
    sqlite3.SQLITE_BUSY: ("it is locked by another connection", "wait for it"),
}


def write_error(exc: sqlite3.Error, path: str) -> StoreError:
    """The error for a failed write: `StoreUnavailable` when the disk, not the data, is to blame."""
    code = getattr(exc, "sqlite_errorcode", None)
    known = None if code is None else _CANNOT_WRITE.get(code & 0xFF)
    if known is None:
        error = StoreError(f"A store write failed: {exc}.")
    else:
        reason, fix = known
        error = StoreUnavailable(f"The store cannot write: {reason} at {path}; {fix}, then retry.")
    error.__cause__ = exc
    return error


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _worktree_row(worktree: Worktree) -> tuple[object, ...]:
    return (
        worktree.task_id, worktree.session, worktree.repo, worktree.state,
        worktree.updated_at.timestamp(), worktree.model_dump_json(),
    )  # fmt: skip


def _json(value: object) -> str:
    """Compact JSON (a fifth of `json.dumps`'s time for the small values stored per task)."""
    return to_json(value).decode()


@functools.lru_cache(maxsize=4096)
def _json_strings(values: tuple[str, ...]) -> str:
    """A JSON array of strings; tasks repeat the same keys and dependencies, so it is cached."""
    return _json(values)


@functools.lru_cache(maxsize=4096)
def _strings_of_json(text: str) -> tuple[str, ...]:
    """The strings of a JSON array (the inverse of `_json_strings`, cached the same way)."""
    return tuple(json.loads(text))


@functools.lru_cache(maxsize=256)
def _update_sql(fields: tuple[str, ...]) -> str:
    names = ", ".join(f"{_COLUMN_OF_FIELD.get(n, n)} = ?" for n in fields)
    return f"UPDATE tasks SET {names} WHERE task_id = ?"


def _json_model(value: BaseModel | None) -> str | None:
    return None if value is None else value.model_dump_json()


def _db_value(name: str, value: object) -> object:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if name == "result":
        return None if value is None else json.dumps(value)
    if isinstance(value, str) or value is None or isinstance(value, int | float):
        return value
    return _json(value)


def _task_values(task: Task, spec_json: str | None = None) -> tuple[object, ...]:
    return (
        task.id,
        task.session,
        task.group,
        task.parent,
        task.label,
        task.description,
        task.spec.model_dump_json() if spec_json is None else spec_json,
        task.priority,
        _json_strings(tuple(task.keys)),  # a tuple already, unless built without validation
        _json_strings(tuple(task.depends_on)),
        task.timeout,
        task.ttl,
        task.stall_timeout,
        task.max_attempts,
        str(task.state),
        task.attempt,
        task.created_at.timestamp(),
        _epoch(task.started_at),
        _epoch(task.finished_at),
        None if task.result is None else json.dumps(task.result),
        _json_model(task.error),
        task.exit_code,
        _json_model(task.progress),
        _json_model(task.usage),
        task.retry_of,
        task.node,
    )


_BLANK_TASK = Task.model_construct()
"""Every row read back is a copy of it with the row's fields."""


def _task_from_row(row: Sequence[object]) -> Task:
    (task_id, session, grp, parent, label, description, spec, priority, keys, depends_on,
     timeout, ttl, stall_timeout, max_attempts, state, attempt, created_at, started_at,
     finished_at, result, error, exit_code, progress, usage, retry_of, node) = row  # fmt: skip
    return _BLANK_TASK.model_copy(  # a copy: `model_construct` works out every default again
        update={
            "id": task_id,
            "session": session,
            "group": grp,
            "parent": parent,
            "label": label,
            "description": description,
            "spec": TASK_SPEC_ADAPTER.validate_json(str(spec)),
            "priority": priority,
            "keys": _strings_of_json(str(keys)),
            "depends_on": _strings_of_json(str(depends_on)),
            "timeout": timeout,
            "ttl": ttl,
            "stall_timeout": stall_timeout,
            "max_attempts": max_attempts,
            "state": TaskState(str(state)),
            "attempt": attempt,
            "created_at": _dt(created_at),  # type: ignore[arg-type]  # a REAL column
            "started_at": _dt(started_at),  # type: ignore[arg-type]  # a REAL column
            "finished_at": _dt(finished_at),  # type: ignore[arg-type]  # a REAL column
            "result": None if result is None else json.loads(str(result)),
            "error": None if error is None else ErrorInfo.model_validate_json(str(error)),
            "exit_code": exit_code,
            "progress": None if progress is None else Progress.model_validate_json(str(progress)),
            "usage": None if usage is None else Usage.model_validate_json(str(usage)),
            "retry_of": retry_of,
            "node": node,
        }
    )


def _event_from_row(row: Sequence[object]) -> Event:
    seq, at, type_, session, task_id, grp, data = row
    return Event.model_construct(
        seq=seq,
        at=_dt(at),  # type: ignore[arg-type]  # NOT NULL column
        type=type_,
        session=session,
        task_id=task_id,
        group=grp,
        data=PAYLOAD_OF[str(type_)].model_validate_json(str(data)),
    )


@dataclass(frozen=True, slots=True)
class Committed:
    """An event as committed: its `seq` and what was added.

    `event()` makes the record, which only live subscribers need (most commits have none).
    """

    seq: int
    op: AddEvent

    def event(self) -> Event:
        """The event record."""
        op = self.op
        return Event.model_construct(
            seq=self.seq, at=_dt(op.at), type=op.type, session=op.session, task_id=op.task_id,
            group=op.group, data=op.data,
        )  # fmt: skip


_GROUP_LISTED = 200
"""A group summary lists this many of its tasks (all are counted)."""


def _group_summary(cur: sqlite3.Cursor, op: AddGroupSummary) -> AddEvent:
    """The `group.completed` event of a group as the transaction sees it."""
    where = "FROM tasks WHERE session = ? AND grp = ?"
    counts = dict(cur.execute(f"SELECT state, count(*) {where} GROUP BY state",
                              (op.session, op.group)).fetchall())  # fmt: skip
    listed = cur.execute(
        f"SELECT task_id, label, state, exit_code {where} ORDER BY seq LIMIT {_GROUP_LISTED}",
        (op.session, op.group),
    ).fetchall()
    data = GroupCompleted.model_construct(
        group=op.group,
        total=sum(counts.values()),
        **{s.value: counts.get(s.value, 0) for s in TaskState if s.terminal},
        tasks=[
            GroupMember.model_construct(
                id=task_id, label=label, state=TaskState(state), exit_code=exit_code
            )
            for task_id, label, state, exit_code in listed
        ],
    )
    return AddEvent("group.completed", op.session, op.at, None, op.group, data)


class _Fallback(Exception):
    """The batch cannot take the fast path; apply it change by change."""


@dataclass(slots=True)
class _BatchRows:
    """A batch of changes as rows, one list per statement.

    A task's updates within the batch merge into one (later fields win), so the order of
    statements between tasks no longer matters; a batch that starts one attempt twice
    cannot be merged and takes the slow path.
    """

    inserts: list[tuple[object, ...]] = field(default_factory=list)
    updates: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    starts: dict[tuple[str, int], float] = field(default_factory=dict)
    places: list[tuple[object, ...]] = field(default_factory=list)
    ends: list[tuple[object, ...]] = field(default_factory=list)
    events: list[AddEvent] = field(default_factory=list)
    event_data: list[str] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    """The index of the change each event belongs to."""
    summaries: list[tuple[int, AddGroupSummary]] = field(default_factory=list)
    """Group summaries: their place in `events`, filled in once the updates are applied."""
    cursors: list[tuple[str, int]] = field(default_factory=list)
    worktrees: list[tuple[object, ...]] = field(default_factory=list)

    @classmethod
    def collect(cls, changes: Sequence[Change]) -> _BatchRows:
        rows = cls()
        merged: dict[str, dict[str, object]] = {}
        try:
            for index, change in enumerate(changes):
                for op in change:
                    rows._add(op, index, merged)
            for task_id, fields in merged.items():
                if not fields.keys() <= _UPDATABLE:
                    raise _Fallback
                rows.updates.setdefault(_update_sql(tuple(fields)), []).append(
                    (*(_db_value(n, v) for n, v in fields.items()), task_id)
                )
        except (ValueError, TypeError) as exc:  # a value that cannot be stored
            raise _Fallback from exc
        return rows

    def _add(self, op: Op, index: int, merged: dict[str, dict[str, object]]) -> None:
        match op:
            case InsertTask(task=task, seq=seq, spec_json=spec_json):
                self.inserts.append((seq, task.spec.kind, *_task_values(task, spec_json)))
            case UpdateTask(task_id=task_id, fields=fields):
                merged.setdefault(task_id, {}).update(fields)
            case StartAttempt(task_id=task_id, attempt=attempt, started_at=at):
                if (task_id, attempt) in self.starts:
                    raise _Fallback
                self.starts[task_id, attempt] = at
            case PlaceAttempt(task_id=task_id, attempt=attempt, node=node):
                merged.setdefault(task_id, {})["node"] = node
                self.places.append((node, task_id, attempt))
            case EndAttempt():
                self.ends.append(
                    (op.finished_at, op.state, _json_model(op.error), op.task_id, op.attempt)
                )
            case AddEvent():
                self.events.append(op)
                self.event_data.append(_json(op.data))
                self.owners.append(index)
            case AddGroupSummary():
                self.summaries.append((len(self.events), op))
                placeholder = GroupCompleted.model_construct(group=op.group, total=0)
                self.events.append(
                    AddEvent("group.completed", op.session, op.at, None, op.group, placeholder)
                )
                self.event_data.append("{}")
                self.owners.append(index)
            case SetNoticeCursor(session=session, seq=seq):
                self.cursors.append((session, seq))
            case PutWorktree(worktree=worktree):
                self.worktrees.append(_worktree_row(worktree))
            case DeleteWorktree():
                raise _Fallback  # rare: one by one

    def fill_summaries(self, cur: sqlite3.Cursor) -> None:
        """Compute the group summaries from the rows as updated by this batch."""
        for place, op in self.summaries:
            event = _group_summary(cur, op)
            self.events[place] = event
            self.event_data[place] = _json(event.data)


class SQLiteBackend:
    """Synchronous access to one outrider database. Not thread-safe: one thread at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        uri = path.startswith("file:")
        try:
            self._conn = sqlite3.connect(
                path, uri=uri, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the store {path!r}: {exc}; check the path.") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def leave_checkpoints_to_others(self) -> None:
        """Never checkpoint the WAL on commit (another connection does it, off the write path)."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting for anyone."""
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply the forward-only migrations not yet applied (versioned in `user_version`)."""
        folder = resources.files(__package__).joinpath("migrations")
        scripts = sorted(
            (p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name
        )
        try:
            self._migrate(scripts)
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise write_error(exc, self.path) from exc

    def _migrate(self, scripts: list[Traversable]) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > len(scripts):
            raise StoreError(
                f"The store {self.path!r} has schema version {version}, newer than this "
                f"outrider understands ({len(scripts)}); upgrade outrider."
            )
        for number, script in enumerate(scripts[version:], start=version + 1):
            self._conn.executescript(
                f"BEGIN IMMEDIATE;\n{script.read_text()}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    # -- writes ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> list[list[Committed] | Exception]:
        """Apply many changes in one transaction; each change succeeds or fails alone.

        The fast path writes the whole batch with one statement per kind of row; if any of it
        fails, the batch is rolled back and applied again one savepoint per change, so a bad
        change fails alone.
        """
        try:
            return self._apply_batched(changes)
        except (sqlite3.Error, _Fallback):
            if self._conn.in_transaction:
                self._conn.rollback()
        return self._apply_one_by_one(changes)

    def _apply_batched(self, changes: Sequence[Change]) -> list[list[Committed] | Exception]:
        rows = _BatchRows.collect(changes)
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(_INSERT_TASK, rows.inserts)
        for sql, params in rows.updates.items():
            cur.executemany(sql, params)
            if cur.rowcount != len(params):
                raise _Fallback  # an update found no task: let that change fail alone
        cur.executemany(_START_ATTEMPT, [(t, a, at) for (t, a), at in rows.starts.items()])
        cur.executemany(_PLACE_ATTEMPT, rows.places)
        cur.executemany(_END_ATTEMPT, rows.ends)
        rows.fill_summaries(cur)
        (last,) = cur.execute(_LAST_EVENT_SEQ).fetchone()
        cur.executemany(
            _INSERT_EVENT,
            [(last + n, op.at, op.type, op.session, op.task_id, op.group, data)
             for n, (op, data) in enumerate(zip(rows.events, rows.event_data, strict=True), 1)],
        )  # fmt: skip
        # An acknowledgement reaches at most the events stored before it: never a later one.
        cur.executemany(_SET_NOTICE_CURSOR, [(sn, min(seq, last)) for sn, seq in rows.cursors])
        cur.executemany(_PUT_WORKTREE, rows.worktrees)
        cur.execute("COMMIT")
        made: list[list[Committed]] = [[] for _ in changes]
        for n, (owner, op) in enumerate(zip(rows.owners, rows.events, strict=True), start=1):
            made[owner].append(Committed(last + n, op))
        return list(made)

    def _apply_one_by_one(self, changes: Sequence[Change]) -> list[list[Committed] | Exception]:
        results: list[list[Committed] | Exception] = []
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            (last,) = cur.execute(_LAST_EVENT_SEQ).fetchone()
            for change in changes:
                cur.execute("SAVEPOINT change")
                try:
                    events = [
                        e for op in change if (e := self._apply_op(cur, op, last)) is not None
                    ]
                except sqlite3.Error as exc:
                    cur.execute("ROLLBACK TO change")
                    results.append(write_error(exc, self.path))
                except (ValueError, TypeError) as exc:
                    cur.execute("ROLLBACK TO change")
                    results.append(StoreError(f"A store write failed: {exc}."))
                else:
                    results.append(events)
                cur.execute("RELEASE change")
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            return [write_error(exc, self.path)] * len(changes)
        return results

    def _apply_op(self, cur: sqlite3.Cursor, op: Op, last_seq: int) -> Committed | None:
        """Apply one op; `last_seq` is the highest event seq stored before this batch."""
        match op:
            case InsertTask(task=task, seq=seq, spec_json=spec_json):
                cur.execute(_INSERT_TASK, (seq, task.spec.kind, *_task_values(task, spec_json)))
            case UpdateTask(task_id=task_id, fields=fields):
                bad = set(fields) - _UPDATABLE
                assert not bad, f"not updatable: {bad}"
                cur.execute(
                    _update_sql(tuple(fields)),
                    (*(_db_value(n, v) for n, v in fields.items()), task_id),
                )
                if cur.rowcount != 1:
                    raise ValueError(f"no task {task_id!r} to update")
            case StartAttempt(task_id=task_id, attempt=attempt, started_at=started_at):
                cur.execute(_START_ATTEMPT, (task_id, attempt, started_at))
            case PlaceAttempt(task_id=task_id, attempt=attempt, node=node):
                cur.execute(_update_sql(("node",)), (node, task_id))
                cur.execute(_PLACE_ATTEMPT, (node, task_id, attempt))
            case EndAttempt():
                cur.execute(
                    _END_ATTEMPT,
                    (op.finished_at, op.state, _json_model(op.error), op.task_id, op.attempt),
                )
            case AddEvent():
                return self._insert_event(cur, op)
            case AddGroupSummary():
                return self._insert_event(cur, _group_summary(cur, op))
            case SetNoticeCursor(session=session, seq=seq):
                cur.execute(_SET_NOTICE_CURSOR, (session, min(seq, last_seq)))
            case PutWorktree(worktree=worktree):
                cur.execute(_PUT_WORKTREE, _worktree_row(worktree))
            case DeleteWorktree(task_id=task_id):
                cur.execute("DELETE FROM worktrees WHERE task_id = ?", (task_id,))
        return None

    @staticmethod
    def _insert_event(cur: sqlite3.Cursor, op: AddEvent) -> Committed:
        data = _json(op.data)
        cur.execute(_INSERT_EVENT, (None, op.at, op.type, op.session, op.task_id, op.group, data))
        assert cur.lastrowid is not None
        return Committed(cur.lastrowid, op)

    def sweep(self, before: float, *, batch: int = _SWEEP_BATCH) -> tuple[list[str], bool]:
        """One short transaction of a sweep: old finished tasks and old events, `batch` at most.

        Deletes up to `batch` tasks that finished before `before` with their attempts, and up to
        `batch` events older than `before` that belong to no unfinished task.

        Returns:
            The ids of the deleted tasks (their logs are the caller's to remove), and whether
            there may be more to delete.
        """
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in cur.execute(
                "SELECT task_id FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? "
                "LIMIT ?", (before, batch),
            )]  # fmt: skip
            cur.executemany("DELETE FROM attempts WHERE task_id = ?", [(i,) for i in ids])
            cur.executemany("DELETE FROM tasks WHERE task_id = ?", [(i,) for i in ids])
            cur.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at < ? AND "
                "(task_id IS NULL OR task_id NOT IN (SELECT task_id FROM tasks "
                "WHERE finished_at IS NULL)) LIMIT ?)",
                (before, batch),
            )
            events = cur.rowcount
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.rollback()
            raise StoreError(f"Sweeping the store {self.path!r} failed: {exc}.") from exc
        return ids, len(ids) == batch or events == batch

    # -- reads ----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        """One task, or None."""
        row = self._conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        return None if row is None else _task_from_row(row)

    def get_many(self, task_ids: Iterable[str]) -> dict[str, Task]:
        """Several tasks by id; unknown ids are left out."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, Task] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id IN ({marks})", chunk
            ):
                task = _task_from_row(row)
                found[task.id] = task
        return found

    def query(
        self,
        *,
        session: str | None,
        states: Sequence[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        """Tasks in submission order, filtered; with `limit`, the newest `limit` of them."""
        where: list[str] = []
        params: list[object] = []
        if session is not None:
            where.append("session = ?")
            params.append(session)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        if group is not None:
            where.append("grp = ?")
            params.append(group)
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is None:
            rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        else:
            newest = self._conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))
            rows = newest.fetchall()[::-1]
        return [_task_from_row(row) for row in rows]

    def events(
        self,
        *,
        session: str | None,
        after: int,
        limit: int,
        prefix: bool = False,
        notices: bool = False,
        task_id: str | None = None,
        types: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events with `seq > after`, oldest first (`prefix`: of every session starting so).

        `notices`: only the session's ending events, the ones that make completion notices.
        `task_id`: only that task's events; `types`: only events of these types.
        """
        where = ["seq > ?"]
        params: list[object] = [after]
        if notices:
            assert session is not None, "notices are read for one session"
            assert not prefix, "notices are read for one session"
            where.append(f"type IN ({_NOTICE_TYPES_SQL})")
            params.extend(NOTICE_TYPES)
        if session is not None and prefix:
            where.append("substr(session, 1, ?) = ?")
            params += [len(session), session]
        elif session is not None:
            where.append("session = ?")
            params.append(session)
        if task_id is not None:
            where.append("task_id = ?")
            params.append(task_id)
        if types is not None:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        rows = self._conn.execute(
            "SELECT seq, at, type, session, task_id, grp, data FROM events "
            f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        return [_event_from_row(row) for row in rows]

    def session_summaries(self, owner: str | None) -> list[SessionSummary]:
        """The sessions of `owner` (stored as `owner/name`; None: the names without a `/`).

        Each with its tasks per state, its failures not yet acknowledged, its newest event's
        seq and when a task of it last changed; ordered by name.
        """
        params: tuple[str, ...] = ()
        if owner is None:
            where = "instr(session, '/') = 0"
        else:  # a range on the name, so the session index is used
            low = f"{owner}/"
            where, params = "session >= ? AND session < ?", (low, f"{owner}0")
        states: dict[str, dict[TaskState, int]] = {}
        last_at: dict[str, float] = {}
        for session, state, count, at in self._conn.execute(
            "SELECT session, state, count(*), max(max(created_at, coalesce(started_at, 0), "
            f"coalesce(finished_at, 0))) FROM tasks WHERE {where} GROUP BY session, state",
            params,
        ):
            states.setdefault(session, dict.fromkeys(TaskState, 0))[TaskState(state)] = count
            last_at[session] = max(at, last_at.get(session, at))
        failures = dict(
            self._conn.execute(
                f"SELECT session, count(*) FROM events e WHERE {where} "
                f"AND type IN ({_NOTICE_TYPES_SQL}) AND type IN ('task.failed', "
                "'task.timed_out') AND seq > coalesce((SELECT c.seq FROM notice_cursors c "
                "WHERE c.session = e.session), 0) GROUP BY session",
                (*params, *NOTICE_TYPES),
            )
        )
        last_seq = "SELECT coalesce(max(seq), 0) FROM events WHERE session = ?"
        return [
            SessionSummary(
                session=name,
                states=counts,
                unseen_failures=failures.get(name, 0),
                last_seq=self._conn.execute(last_seq, (name,)).fetchone()[0],
                last_at=_dt(last_at[name]),
            )
            for name, counts in sorted(states.items())
        ]

    def notice_events(self, session: str, limit: int) -> list[Event]:
        """The session's ending events (tasks and groups) not yet acknowledged, oldest first."""
        after = self.notice_cursor(session)
        return self.events(session=session, after=after, limit=limit, notices=True)

    def overlap_peers(self, task_id: str) -> set[str]:
        """The tasks a `task.overlap` event of `task_id` names."""
        rows = self._conn.execute(
            "SELECT json_extract(data, '$.other') FROM events "
            "WHERE task_id = ? AND type = 'task.overlap'",
            (task_id,),
        ).fetchall()
        return {r[0] for r in rows}

    def worktrees(
        self, *, task_id: str | None = None, session: str | None = None
    ) -> list[Worktree]:
        """Worktree records, oldest first: one task's, a session's, or all."""
        sql, args = "SELECT record FROM worktrees", []
        if task_id is not None:
            sql, args = sql + " WHERE task_id = ?", [task_id]
        elif session is not None:
            sql, args = sql + " WHERE session = ?", [session]
        rows = self._conn.execute(sql + " ORDER BY updated_at, task_id", args).fetchall()
        return [Worktree.model_validate_json(r[0]) for r in rows]

    def notice_cursor(self, session: str) -> int:
        """The highest acknowledged notice `seq` of the session (0 if none)."""
        row = self._conn.execute(
            "SELECT seq FROM notice_cursors WHERE session = ?", (session,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def unfinished(self) -> list[UnfinishedTask]:
        """Every queued or running task, in submission order."""
        rows = self._conn.execute(
            f"SELECT seq, pid, pid_created, ready_at, {_TASK_COLUMNS} FROM tasks "
            "WHERE state IN ('queued', 'running') ORDER BY seq"
        )
        return [
            UnfinishedTask(task=_task_from_row(r[4:]), seq=r[0], pid=r[1], pid_created=r[2],
                           ready_at=r[3])
            for r in rows
        ]  # fmt: skip

    def state_counts(self) -> dict[str, int]:
        """Number of tasks per state."""
        return dict(self._conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"))

    def max_seq(self) -> int:
        """The highest task `seq` so far (0 if none)."""
        (value,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        return int(value)
