"""The timeline: each task's queued and running time as bars, from its lifecycle events.

A task's bars, in order: queued (from its submission, or a retry's failure, to its next
start), then running (from a start to its retry or end); retries are separate bars. Bars lie
in lanes (by concurrency key, or by delegation tree), and within a lane each task takes the
first row where it overlaps no other, so a lane's height shows how many ran at once. The same
bars become an SVG drawn here (no script) and a Chrome trace that Perfetto opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..._types._events import TaskStarted

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pydantic import JsonValue

    from ..._types._events import Event
    from ..._types._task import Task

__all__ = ["LIFECYCLE", "Bar", "Lane", "Layout", "bars_of", "chrome_trace", "layout"]

LIFECYCLE = (
    "task.queued", "task.started", "task.retrying", "task.succeeded", "task.failed",
    "task.cancelled", "task.timed_out",
)  # fmt: skip
"""The event types a timeline is made of."""
By = Literal["key", "tree"]
ROW = 16
"""Height of one row of bars, in SVG units."""
_GUTTER = 190
_WIDTH = 1200
_AXIS = 28


@dataclass(frozen=True, slots=True)
class Bar:
    """One stretch of a task's life: `queued` (waiting) or `run` (one attempt running)."""

    task: Task
    kind: Literal["queued", "run"]
    start: float
    end: float
    state: str
    """For a run: how the attempt ended (`retrying`, an end state) or `running`."""
    attempt: int


def _bars_of_task(task: Task, events: Sequence[Event], now: float) -> list[Bar]:
    bars: list[Bar] = []
    wait_from: float | None = task.created_at.timestamp()
    run_from: float | None = None
    attempt = 0
    for event in events:
        at = event.at.timestamp()
        if isinstance(event.data, TaskStarted):
            if wait_from is not None:
                bars.append(Bar(task, "queued", wait_from, at, "queued", attempt + 1))
            wait_from, run_from = None, at
            attempt = event.data.attempt
        elif event.type == "task.retrying" and run_from is not None:
            bars.append(Bar(task, "run", run_from, at, "retrying", attempt))
            wait_from, run_from = at, None
        elif event.type in LIFECYCLE[3:]:
            state = event.type.removeprefix("task.")
            if run_from is not None:
                bars.append(Bar(task, "run", run_from, at, state, attempt))
            elif wait_from is not None:
                bars.append(Bar(task, "queued", wait_from, at, state, attempt + 1))
            return bars
    if run_from is not None:
        bars.append(Bar(task, "run", run_from, max(now, run_from), "running", attempt))
    elif wait_from is not None and not task.state.terminal:
        bars.append(Bar(task, "queued", wait_from, max(now, wait_from), "queued", attempt + 1))
    return bars


def bars_of(tasks: Iterable[Task], events: Iterable[Event], *, now: float) -> list[Bar]:
    """Every bar of `tasks`, from their lifecycle `events` (in `seq` order)."""
    by_task: dict[str, list[Event]] = {}
    for event in events:
        if event.task_id is not None:
            by_task.setdefault(event.task_id, []).append(event)
    return [bar for t in tasks for bar in _bars_of_task(t, by_task.get(t.id, []), now)]


def _root(task: Task, by_id: Mapping[str, Task]) -> Task:
    seen = {task.id}
    while task.parent is not None and task.parent in by_id and task.parent not in seen:
        task = by_id[task.parent]
        seen.add(task.id)
    return task


@dataclass(slots=True)
class Lane:
    """One lane of the timeline: its name and its rows of bars."""

    name: str
    rows: list[list[Bar]] = field(default_factory=list)
    _ends: list[float] = field(default_factory=list)

    def place(self, bars: list[Bar]) -> None:
        """Put one task's bars in the first row they do not overlap."""
        start, end = bars[0].start, max(b.end for b in bars)
        for index, row_end in enumerate(self._ends):
            if row_end <= start:
                self.rows[index].extend(bars)
                self._ends[index] = end
                return
        self.rows.append(list(bars))
        self._ends.append(end)


def _lanes(bars: Sequence[Bar], by: By) -> list[Lane]:
    by_id = {b.task.id: b.task for b in bars}
    per_task: dict[str, list[Bar]] = {}
    for bar in bars:
        per_task.setdefault(bar.task.id, []).append(bar)
    lanes: dict[str, Lane] = {}
    for task_bars in sorted(per_task.values(), key=lambda bs: bs[0].start):
        task = task_bars[0].task
        if by == "key":
            name = task.keys[0] if task.keys else task.kind
        else:
            root = _root(task, by_id)
            name = root.label or root.name
        lanes.setdefault(name, Lane(name)).place(task_bars)
    if by == "key":
        return sorted(lanes.values(), key=lambda lane: lane.name)
    return list(lanes.values())  # trees in the order they began


@dataclass(frozen=True, slots=True)
class Tick:
    """A mark on the time axis."""

    x: float
    text: str


@dataclass(frozen=True, slots=True)
class Placed:
    """A bar where it is drawn."""

    bar: Bar
    x: float
    y: float
    width: float


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything the SVG template draws, in its own units."""

    width: int
    height: int
    gutter: int
    lanes: list[tuple[str, float, float]]
    """Each lane's name, top and height."""
    bars: list[Placed]
    ticks: list[Tick]
    start: float
    """The time at x = gutter (epoch seconds)."""


def _step(span: float) -> float:
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for nice in (1, 2, 5, 10):
        if nice * power >= raw:
            return float(nice * power)
    return float(10 * power)  # pragma: no cover  # the loop always returns


def _tick_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600 and seconds % 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:.1f}h"


def layout(bars: Sequence[Bar], *, by: By = "key") -> Layout:
    """Where each lane, bar and tick goes."""
    lanes = _lanes(bars, by)
    start = min((b.start for b in bars), default=0.0)
    end = max((b.end for b in bars), default=start + 1)
    span = max(end - start, 1.0)
    scale = (_WIDTH - _GUTTER - 10) / span
    placed: list[Placed] = []
    spans: list[tuple[str, float, float]] = []
    y = float(_AXIS)
    for lane in lanes:
        top = y
        for row in lane.rows:
            for bar in row:
                x = _GUTTER + (bar.start - start) * scale
                placed.append(Placed(bar, x, y + 2, max(1.5, (bar.end - bar.start) * scale)))
            y += ROW
        spans.append((lane.name, top, y - top))
        y += 6
    step = _step(span)
    ticks = [Tick(_GUTTER + t * scale, _tick_text(t)) for t in _frange(0, span, step)]
    return Layout(_WIDTH, int(y) + 4, _GUTTER, spans, placed, ticks, start)


def _frange(first: float, last: float, step: float) -> list[float]:
    count = int(last // step) + 1
    return [first + i * step for i in range(count)]


def chrome_trace(bars: Sequence[Bar], *, session: str, by: By = "key") -> dict[str, JsonValue]:
    """The bars as a Chrome trace (open it in https://ui.perfetto.dev): a thread per lane."""
    lanes = _lanes(bars, by)
    start = min((b.start for b in bars), default=0.0)
    events: list[JsonValue] = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"outrider {session}"}}
    ]
    for tid, lane in enumerate(lanes, start=1):
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                       "args": {"name": lane.name}})  # fmt: skip
        for bar in (b for row in lane.rows for b in row):
            task = bar.task
            waiting = " (queued)" if bar.kind == "queued" else ""
            events.append({
                "name": f"{task.label or task.name}{waiting}",
                "cat": bar.kind, "ph": "X", "pid": 1, "tid": tid,
                "ts": round((bar.start - start) * 1e6), "dur": round((bar.end - bar.start) * 1e6),
                "args": {"task_id": task.id, "attempt": bar.attempt, "state": bar.state},
            })  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"session": session, "start": start}}  # fmt: skip


def still_running(bars: Iterable[Bar]) -> bool:
    """Whether a bar grows with time (the timeline is redrawn while one does)."""
    return any(b.state in ("running", "queued") for b in bars)
