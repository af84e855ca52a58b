"""Store: the async face of the SQLite database, with group commit.

Invariants and ordering:
- Every change is committed before `commit` returns; callers emit events only after that
  (write-ahead), so nothing is reported that a crash could take back.
- Changes are applied in the order `commit` was called. All changes waiting when the writer
  becomes free go into one transaction (group commit): durability costs one commit per batch,
  not one per change, and a change waits at most for the batch ahead of it.
- One process owns a database at a time: `open` takes an exclusive lock on `<db>.lock`
  (released by the OS if the process dies) and fails with `StoreError` naming the owner's pid.
- SQLite never runs on the event loop: the writer and the reader connection each run in a
  worker thread behind a one-token limiter.
- The WAL is checkpointed by a third connection in its own thread after every
  `_CHECKPOINT_EVERY` changes, never by a commit, so a commit never waits for the copy and fsync
  of the database file (measured: an idle submit's p99 was 3.5-5 ms with checkpoints on commit,
  1.2-1.3 ms without).

Cancellation: a `commit` cancelled while waiting still commits (the change is already queued).
Callers that must keep memory in step with the store pass the update as `then`, which the
writer runs right after the commit whatever happens to the caller (no cancel scope needed).
`run` drains what is queued before it returns after `aclose`; if it is cancelled instead,
what is queued is committed directly (shielded), as is every later commit until `aclose`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

from outrider._asynclib import pin_async_library
from outrider._logging import logger
from outrider._paths import open_private, private_dir, tighten
from outrider._types._errors import Closed, StoreError, StoreUnavailable

from ._sqlite import Change, Committed, SQLiteBackend

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anyio.abc import TaskStatus

    from outrider._types._events import Event
    from outrider._types._task import SessionSummary, Task
    from outrider._types._worktrees import Worktree


__all__ = ["Store"]

_CHECKPOINT_EVERY = 1000

T = TypeVar("T")


Results = list[list[Committed] | Exception]
"""One entry per change: its committed events, or why nothing of it was stored."""
Then = Callable[[Results], None]
"""Runs on the loop right after the changes were committed (or refused), before the events are
published and before the caller resumes, even if the caller was cancelled meanwhile."""


@dataclass(slots=True, eq=False)
class _Batch:
    """Changes committed together; one event wakes all their callers."""

    changes: list[Change] = field(default_factory=list)
    results: Results = field(default_factory=list)
    thens: list[tuple[Then, int, int]] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    def add(self, changes: Sequence[Change], then: Then | None) -> int:
        """Queue changes; returns the index of the first."""
        first = len(self.changes)
        self.changes.extend(changes)
        if then is not None:
            self.thens.append((then, first, len(self.changes)))
        return first

    def finish(self, results: Results) -> None:
        """Run the follow-ups in commit order, then wake the callers."""
        self.results = results
        for then, start, stop in self.thens:
            _follow_up(then, results[start:stop])
        self.done.set()


def _follow_up(then: Then, results: Results) -> None:
    try:
        then(results)
    except Exception:  # one caller's bug must not stop the writer or the others' follow-ups
        logger.exception("a follow-up of a commit raised")


class Store:
    """The task store. `await open()`, start `run` in a task group, then `commit` and `read`."""

    def __init__(
        self, path: str | Path, *, on_commit: Callable[[list[Committed]], None] | None = None
    ) -> None:
        self._on_commit = on_commit
        self.in_memory = str(path) == ":memory:"
        self.path = str(path)
        self.log_dir = (
            Path(tempfile.mkdtemp(prefix="outrider-logs-"))
            if self.in_memory
            else Path(self.path + ".logs")
        )
        self._lock_file: int | None = None
        self._writer: SQLiteBackend | None = None
        self._reader: SQLiteBackend | None = None
        self._checkpointer: SQLiteBackend | None = None
        self._checkpoint_due = anyio.Event()
        self._since_checkpoint = 0
        self._write_limiter = anyio.CapacityLimiter(1)
        self._read_limiter = anyio.CapacityLimiter(1)
        self._filling = _Batch()
        self._wake = anyio.Event()
        self._closing = False
        self._running = False
        self.write_problem: str | None = None
        """Why the last write failed when the disk is to blame (full, read-only); None once
        a write succeeds again."""

    async def open(self) -> None:
        """Lock, connect and migrate the database."""
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        try:
            if self.in_memory:
                uri = f"file:outrider-{uuid.uuid4().hex}?mode=memory&cache=shared"
                self._writer = SQLiteBackend(uri)
                self._reader = self._writer
                self._read_limiter = self._write_limiter
                self._writer.migrate()
            else:
                self._open_file(Path(self.path))
            private_dir(self.log_dir)
        except OSError as exc:
            self._close_sync()
            raise StoreError(
                f"Cannot open the store {self.path!r}: {exc.strerror} ({exc.filename}); make "
                "its folder writable, or give another `db`."
            ) from None
        except BaseException:
            self._close_sync()
            raise

    def _open_file(self, db: Path) -> None:
        if not db.parent.is_dir():
            raise StoreError(
                f"The folder of the store {self.path!r} does not exist; create it or give "
                "another `db` path."
            )
        self._lock(db)
        os.close(open_private(db, os.O_RDWR | os.O_CREAT))  # SQLite gives its WAL these modes
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                tighten(db.with_name(db.name + suffix), 0o600)
        self._writer = SQLiteBackend(self.path)
        self._writer.migrate()
        self._writer.leave_checkpoints_to_others()
        self._reader = SQLiteBackend(self.path)
        self._checkpointer = SQLiteBackend(self.path)

    def _lock(self, db: Path) -> None:
        lock_path = db.with_name(db.name + ".lock")
        fd = open_private(lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"The store {self.path!r} is in use by another outrider process (pid {owner}); "
                "stop that process, talk to it (e.g. `outrider serve`), or give another `db`."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_file = fd

    @property
    def backend(self) -> SQLiteBackend:
        """The writer connection, for start-up work before `run` (recovery)."""
        assert self._writer is not None, "the store is not open"
        return self._writer

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: applies queued changes in batches until `aclose`."""
        pin_async_library()  # follow-ups run here and start tasks (a task's run, for one)
        self._running = True
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                if self._checkpointer is not None:
                    tg.start_soon(self._checkpoint_loop, self._checkpointer)
                await self._write_loop()
                tg.cancel_scope.cancel()
        finally:
            self._running = False
            batch, self._filling = self._filling, _Batch()
            if batch.changes:  # cancelled with changes queued: they are committed all the same
                with anyio.CancelScope(shield=True):
                    results = await anyio.to_thread.run_sync(
                        self.backend.apply, batch.changes, limiter=self._write_limiter
                    )
                batch.finish(results)
                self._publish(results)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._filling.changes:
                batch, self._filling = self._filling, _Batch()
                with anyio.CancelScope(shield=True):
                    results = await anyio.to_thread.run_sync(
                        self.backend.apply, batch.changes, limiter=self._write_limiter
                    )
                batch.finish(results)
                self._publish(results)
                self._since_checkpoint += len(results)
                if self._since_checkpoint >= _CHECKPOINT_EVERY:
                    self._since_checkpoint = 0
                    self._checkpoint_due.set()
            if self._closing:
                return

    async def _checkpoint_loop(self, checkpointer: SQLiteBackend) -> None:
        limiter = anyio.CapacityLimiter(1)
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due = anyio.Event()
            try:
                await anyio.to_thread.run_sync(checkpointer.checkpoint, limiter=limiter)
            except sqlite3.Error as exc:  # the next one will copy what this one could not
                logger.warning("checkpointing the store %s failed: %s", self.path, exc)

    def _publish(self, results: Results) -> None:
        problem = next((r for r in results if isinstance(r, StoreUnavailable)), None)
        if problem is not None:
            if self.write_problem is None:
                logger.error("%s", problem)
            self.write_problem = str(problem)
        elif self.write_problem is not None and any(isinstance(r, list) for r in results):
            logger.warning("the store %s can write again", self.path)
            self.write_problem = None
        if self._on_commit is not None:
            self._on_commit([e for r in results if not isinstance(r, Exception) for e in r])

    async def commit_then(
        self, changes: Sequence[Change], then: Then, *, wait: bool = True
    ) -> None:
        """Commit changes; `then` gets their results on the loop, whatever becomes of the caller.

        Changes that fail, or that the store cannot take because it is closing, reach `then` as
        exceptions. `wait=False` returns as soon as the changes are queued for the writer (when
        it is running; else they are committed first).
        """
        if not wait and self._running and not self._closing:
            self._queue(changes, then)
            return
        try:
            await self.commit_many(changes, then=then)
        except Closed as exc:  # nothing was applied and `then` was not called
            refused: Results = [exc] * len(changes)
            then(refused)

    def _queue(self, changes: Sequence[Change], then: Then | None) -> tuple[_Batch, int]:
        """Add changes to the batch the writer takes next; returns it and their first index."""
        batch = self._filling
        first = batch.add(changes, then)
        self._wake.set()
        return batch, first

    async def commit_many(self, changes: Sequence[Change], *, then: Then | None = None) -> Results:
        """Apply several independent changes in order; each succeeds or fails alone.

        `then` gets the results on the loop as soon as they are known, before anything else
        runs, whether or not this call is cancelled meanwhile: memory that must match the
        store is updated there, without shielding the caller.

        Raises:
            Closed: The store is closing (nothing was applied and `then` is not called).
        """
        if self._closing:
            raise Closed("The store is closed; open an `Orchestrator` to write to it.")
        if not self._running:
            return await self._apply_directly(changes, then)
        batch, first = self._queue(changes, then)
        await batch.done.wait()
        return batch.results[first : first + len(changes)]

    async def commit(self, change: Change) -> list[Committed]:
        """Apply `change` atomically; returns its events with their `seq`.

        Raises:
            StoreError: The change could not be applied; nothing of it was stored.
            Closed: The store is closing.
        """
        (result,) = await self.commit_many([change])
        if isinstance(result, Exception):
            raise result
        return result

    async def _apply_directly(self, changes: Sequence[Change], then: Then | None) -> Results:
        """Commit without the writer loop, which was cancelled with its owner's scope.

        The engine still records how its stopped tasks ended on the way out.
        """
        if self._writer is None:
            raise Closed("The store is closed; open an `Orchestrator` to write to it.")
        with anyio.CancelScope(shield=True):
            results = await anyio.to_thread.run_sync(
                self.backend.apply, list(changes), limiter=self._write_limiter
            )
        if then is not None:
            _follow_up(then, results)
        self._publish(results)
        return results

    async def _read(self, fn: Callable[[SQLiteBackend], T]) -> T:
        """Run `fn` with the reader connection in a worker thread."""
        reader = self._reader
        if reader is None:
            raise Closed("The store is closed; open an `Orchestrator` to read it.")
        return await anyio.to_thread.run_sync(fn, reader, limiter=self._read_limiter)

    async def get(self, task_id: str) -> Task | None:
        """One task, or None."""
        return await self._read(lambda b: b.get(task_id))

    async def get_many(self, task_ids: Iterable[str]) -> dict[str, Task]:
        """Several tasks by id; unknown ids are left out."""
        ids = list(task_ids)
        return await self._read(lambda b: b.get_many(ids))

    async def query(
        self,
        *,
        session: str | None,
        states: Sequence[str] | None = None,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        """Tasks in submission order, filtered (the newest `limit`)."""
        return await self._read(
            lambda b: b.query(session=session, states=states, group=group, limit=limit)
        )

    async def events(
        self,
        *,
        session: str | None,
        after: int,
        limit: int,
        prefix: bool,
        notices: bool,
        task_id: str | None = None,
        types: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events with `seq > after`, oldest first (see `SQLiteBackend.events`)."""
        return await self._read(
            lambda b: b.events(
                session=session,
                after=after,
                limit=limit,
                prefix=prefix,
                notices=notices,
                task_id=task_id,
                types=types,
            )
        )

    async def session_summaries(self, owner: str | None) -> list[SessionSummary]:
        """The sessions of `owner` with their tasks per state (see `SQLiteBackend`)."""
        return await self._read(lambda b: b.session_summaries(owner))

    async def notice_events(self, session: str, limit: int) -> list[Event]:
        """The session's ending events not yet acknowledged, oldest first."""
        return await self._read(lambda b: b.notice_events(session, limit))

    async def notice_cursor(self, session: str) -> int:
        """The highest acknowledged notice `seq` of the session (0 if none)."""
        return await self._read(lambda b: b.notice_cursor(session))

    async def overlap_peers(self, task_id: str) -> set[str]:
        """The tasks a `task.overlap` event of `task_id` names."""
        return await self._read(lambda b: b.overlap_peers(task_id))

    async def worktrees(
        self, *, task_id: str | None = None, session: str | None = None
    ) -> list[Worktree]:
        """Worktree records: one task's, a session's, or all (`SQLiteBackend.worktrees`)."""
        return await self._read(lambda b: b.worktrees(task_id=task_id, session=session))

    async def state_counts(self) -> dict[str, int]:
        """Number of tasks per state."""
        return await self._read(lambda b: b.state_counts())

    async def sweep(self, before: float) -> list[str]:
        """Delete what finished before `before` (UTC epoch); returns the deleted task ids.

        In short transactions, the writer's commits between them: a sweep of many tasks
        never holds a submit back for more than one batch.
        """
        deleted: list[str] = []
        more = True
        while more:
            ids, more = await anyio.to_thread.run_sync(
                self.backend.sweep, before, limiter=self._write_limiter
            )
            deleted += ids
        return deleted

    def stop(self) -> None:
        """Let `run` return once what is queued is committed."""
        self._closing = True
        self._wake.set()

    async def aclose(self) -> None:
        """Close the connections and release the lock. Call after `run` has returned."""
        self._closing = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_sync, limiter=self._write_limiter)

    def _close_sync(self) -> None:
        if self._reader is not None and self._reader is not self._writer:
            self._reader.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None
