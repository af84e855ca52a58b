"""Admission: validated submit items become stored, queued tasks, each on its own.

Every item is checked (size, kind, handler, dependencies and parent in the same session, room
in the queue) before anything is stored; a bad item becomes a `SubmitError` naming its index
and field and never stops the good ones. The good ones are stored in one batch by the engine
(write-ahead: a task is queued only once its row is committed). A task whose dependency has
already failed is stored, then ended `cancelled` naming that dependency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .._engine._live import NewTask
from .._ids import new_task_id
from .._types._errors import QueueFull, user_error
from .._types._task import MAX_PAYLOAD_BYTES, SubmitError, SubmitItem, Task, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from pydantic import JsonValue

    from ._core import Core

__all__ = ["parse_items", "submit_items"]

_NEW_TASK = Task.model_construct(state=TaskState.QUEUED)
"""The defaults of a new task's record; each submit copies it with its own fields (a copy is
several times cheaper than `model_construct`, which works out every default again)."""


def parse_items(
    items: Iterable[SubmitItem | JsonValue], group: str | None
) -> list[SubmitItem | SubmitError]:
    """Each item validated on its own (`group` applied to those that name none)."""
    parsed: list[SubmitItem | SubmitError] = []
    for index, raw in enumerate(items):
        try:
            item = raw if isinstance(raw, SubmitItem) else SubmitItem.model_validate(raw)
        except ValidationError as exc:
            err = user_error(exc.errors(), subject=f"item {index}")
            parsed.append(SubmitError(index=index, field=err.field, message=str(err)))
            continue
        if group is not None and item.group is None:
            item = item.model_copy(update={"group": group})
        parsed.append(item)
    return parsed


async def submit_items(
    core: Core,
    items: Sequence[SubmitItem | SubmitError],
    *,
    session: str,
    on_progress: Callable[[Task], object] | None = None,
    on_done: Callable[[Task], object] | None = None,
    retry_of: Mapping[int, str] | None = None,
) -> list[Task | SubmitError]:
    """Store validated items (errors pass through with their index), in order.

    `retry_of` links the item at an index to the ended task it submits again.
    """
    core.check_open("submit tasks")
    refs = {r for it in items if isinstance(it, SubmitItem)
            for r in (*it.depends_on, *((it.parent,) if it.parent else ()))}  # fmt: skip
    known = await core.visible(refs, session) if refs else {}
    results: list[Task | SubmitError | None] = [None] * len(items)
    new: list[NewTask] = []
    slots: list[int] = []
    doomed: dict[str, str] = {}
    room = core.engine.max_queued - core.engine.queued_count
    created_at = datetime.fromtimestamp(core.clock.wall(), UTC)
    for index, item in enumerate(items):
        if isinstance(item, SubmitError):
            results[index] = item.model_copy(update={"index": index})
            continue
        spec_json = item.spec.model_dump_json()  # stored as it is, serialised once
        problem = _problem(core, item, spec_json, known)
        if problem is None and room <= 0:
            problem = SubmitError(index=index, field=None, type="QueueFull",
                                  message=str(QueueFull(core.engine.max_queued)))  # fmt: skip
        if problem is not None:
            results[index] = problem.model_copy(update={"index": index})
            continue
        room -= 1
        task = _new_task(core, item, session, created_at, (retry_of or {}).get(index))
        if (failed := _failed_dependency(item, known)) is not None:
            doomed[task.id] = f"its dependency {failed} ended {known[failed].state}"
        new.append(NewTask(task, spec_json, on_progress=on_progress, on_done=on_done))
        slots.append(index)
    await _store(core, new, slots, results)
    for task_id, message in doomed.items():
        await core.engine.cancel(task_id, "dependency", message)
    final = [r for r in results if r is not None]
    assert len(final) == len(items)
    if doomed:
        refreshed = await core.store.get_many(doomed)
        final = [refreshed.get(r.id, r) if isinstance(r, Task) else r for r in final]
    placed = iter(core.decorate([r for r in final if isinstance(r, Task)], new=True))
    return [next(placed) if isinstance(r, Task) else r for r in final]


async def _store(
    core: Core, new: list[NewTask], slots: list[int], results: list[Task | SubmitError | None]
) -> None:
    if not new:
        return
    stored = await core.engine.submit(new)
    for index, outcome in zip(slots, stored, strict=True):
        results[index] = (
            outcome
            if isinstance(outcome, Task)
            else SubmitError(
                index=index, field=None, message=str(outcome), type=type(outcome).__name__
            )
        )


def _new_task(
    core: Core, item: SubmitItem, session: str, created_at: datetime, retry_of: str | None
) -> Task:
    settings = core.settings
    runner = core.runners[item.spec.kind]
    keys = item.keys or runner.default_keys(item.spec)
    keys += tuple(k for k in runner.required_keys(item.spec) if k not in keys)
    return _NEW_TASK.model_copy(  # every field was validated in `item`
        update={
            "id": new_task_id(), "session": session, "created_at": created_at,
            "spec": item.spec, "priority": item.priority,
            "keys": keys, "label": item.label,
            "description": item.description, "group": item.group,
            "parent": item.parent, "depends_on": item.depends_on,
            "timeout": item.timeout if item.timeout is not None else settings.default_timeout,
            "ttl": item.ttl if item.ttl is not None else settings.default_ttl,
            "stall_timeout": item.stall_timeout, "max_attempts": item.max_attempts,
            "retry_of": retry_of,
        }
    )  # fmt: skip


def _failed_dependency(item: SubmitItem, known: Mapping[str, Task]) -> str | None:
    return next(
        (d for d in item.depends_on
         if known[d].state.terminal and known[d].state is not TaskState.SUCCEEDED),
        None,
    )  # fmt: skip


def _problem(
    core: Core, item: SubmitItem, spec_json: str, known: Mapping[str, Task]
) -> SubmitError | None:
    """Why the item cannot be stored (index 0; the caller sets it), or None."""
    spec = item.spec
    if len(spec_json.encode()) > MAX_PAYLOAD_BYTES:
        return SubmitError(
            index=0, field="spec",
            message=f"Invalid `spec`: it is larger than {MAX_PAYLOAD_BYTES} bytes as JSON; "
            "pass large inputs as files and their paths.",
        )  # fmt: skip
    if spec.kind not in core.runners:
        return SubmitError(
            index=0, field="spec.kind", message=f"Invalid `spec.kind`: unknown {spec.kind!r}."
        )
    if spec.kind == "handler" and spec.handler not in core.handlers:
        names = ", ".join(sorted(core.handlers)) or "none are registered"
        return SubmitError(
            index=0, field="spec.handler",
            message=f"Invalid `spec.handler`: unknown handler {spec.handler!r}; "
            f"registered: {names}.",
        )  # fmt: skip
    missing = next((d for d in item.depends_on if d not in known), None)
    if missing is not None:
        return SubmitError(
            index=0, field="depends_on",
            message=f"Invalid `depends_on`: no task {missing!r} in this session.",
        )  # fmt: skip
    if item.parent is not None and item.parent not in known:
        return SubmitError(
            index=0, field="parent",
            message=f"Invalid `parent`: no task {item.parent!r} in this session.",
        )  # fmt: skip
    return None
