"""Property tests of the pure ReadyQueue against a reference model."""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from outrider._core._queue import Entry, ReadyQueue

KEYS = ["a", "b", "c"]
LIMITS = {"a": 1, "b": 2, "c": 3}
MAX_RUNNING = 4


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue = ReadyQueue(max_running=MAX_RUNNING, limits=LIMITS, default_limit=3)
        self.seq = 0
        self.queued: dict[str, Entry] = {}
        self.running: dict[str, Entry] = {}
        self.ended: Counter[str] = Counter()
        self.now = 0.0

    def _can_start(self, entry: Entry, running: dict[str, Entry]) -> bool:
        per_key = Counter(k for e in running.values() for k in e.keys)
        return (
            len(running) < MAX_RUNNING
            and all(per_key[k] < LIMITS[k] for k in entry.keys)
            and (entry.ready_deadline is None or entry.ready_deadline <= self.now)
        )

    @rule(
        priority=st.integers(0, 10),
        keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True),
        delay=st.one_of(st.none(), st.floats(0.5, 3.0)),
        processes=st.booleans(),
    )
    def submit(self, priority: int, keys: list[str], delay: float | None, processes: bool) -> None:
        self.seq += 1
        entry = Entry(
            task_id=f"t{self.seq}",
            priority=priority,
            seq=self.seq,
            keys=tuple(sorted(keys)),
            uses_processes=processes,
            ready_deadline=None if delay is None else self.now + delay,
        )
        self.queued[entry.task_id] = Entry(**{f: getattr(entry, f) for f in entry.__slots__})
        self.queue.push(entry)
        placed = self.queue.position_of_newest(entry.task_id)
        assert placed == self.queue.positions()[entry.task_id]

    @rule()
    def dispatch(self) -> None:
        started = self.queue.pop_ready(self.now)
        # Reference: greedily start the best startable entry, one at a time.
        expected: list[str] = []
        running = dict(self.running)
        candidates = dict(self.queued)
        while True:
            ready = [e for e in candidates.values() if self._can_start(e, running)]
            if not ready:
                break
            best = min(ready, key=lambda e: (-e.priority, e.seq))
            expected.append(best.task_id)
            running[best.task_id] = best
            del candidates[best.task_id]
        assert [e.task_id for e in started] == expected
        for task_id in expected:
            self.running[task_id] = self.queued.pop(task_id)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.running)))
        self.queue.release(task_id)
        del self.running[task_id]
        self.ended[task_id] += 1

    @precondition(lambda self: bool(self.queued))
    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.queued)))
        assert self.queue.remove(task_id) is not None
        assert self.queue.remove(task_id) is None  # idempotent
        del self.queued[task_id]
        self.ended[task_id] += 1

    @rule(seconds=st.floats(0.1, 2.0))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def limits_hold(self) -> None:
        per_key = Counter(k for e in self.running.values() for k in e.keys)
        for key, count in per_key.items():
            assert count <= LIMITS[key]
            assert self.queue.running_on(key) == count
        assert len(self.running) <= MAX_RUNNING
        assert self.queue.running_count == len(self.running)
        assert self.queue.queued_count == len(self.queued)
        assert self.queue.queued_with_processes == sum(
            e.uses_processes for e in self.queued.values()
        )

    @invariant()
    def each_task_ends_once(self) -> None:
        assert all(n == 1 for n in self.ended.values())
        assert not (set(self.ended) & (set(self.queued) | set(self.running)))

    @invariant()
    def membership_and_reasons_agree(self) -> None:
        for task_id, entry in self.queued.items():
            assert task_id in self.queue
            assert self.queue.is_queued(task_id)
            assert not self.queue.is_running(task_id)
            reason = self.queue.blocker(task_id, self.now)
            if entry.ready_deadline is not None and entry.ready_deadline > self.now:
                assert reason is not None
                assert reason.startswith("retry backoff")
            elif len(self.running) >= MAX_RUNNING:
                assert reason is not None
                assert reason.startswith("the global limit")
        for task_id in self.running:
            assert self.queue.is_running(task_id)
            assert not self.queue.is_queued(task_id)
            assert self.queue.blocker(task_id, self.now) is None
        waiting = [e.ready_deadline for e in self.queued.values()
                   if e.ready_deadline is not None and e.ready_deadline > self.now]  # fmt: skip
        deadline = self.queue.next_deadline()
        if waiting:
            assert deadline is not None
            assert deadline <= min(waiting)
        if deadline is not None:
            assert deadline in {e.ready_deadline for e in self.queued.values()}

    @invariant()
    def positions_are_consistent(self) -> None:
        positions = self.queue.positions()
        assert set(positions) == set(self.queued)
        assert all(p >= 1 for p in positions.values())
        ids = sorted(self.queued)
        for some in (ids[:1], ids[:3], ids[::2], [*ids[:2], "t-unknown"]):
            assert self.queue.positions(set(some)) == {i: positions[i] for i in some if i in ids}


QueueMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestQueue = QueueMachine.TestCase


def test_double_release_is_a_bug() -> None:
    queue = ReadyQueue(max_running=2)
    queue.push(Entry("t1", 5, 1, ("k",)))
    (entry,) = queue.pop_ready(0.0)
    queue.release(entry.task_id)
    try:
        queue.release(entry.task_id)
    except AssertionError:
        return
    raise AssertionError("a second release must fail")


def test_blocked_head_does_not_block_other_keys() -> None:
    queue = ReadyQueue(max_running=10, limits={"a": 1})
    queue.push(Entry("t1", 9, 1, ("a",)))
    queue.push(Entry("t2", 9, 2, ("a",)))
    queue.push(Entry("t3", 1, 3, ("b",)))
    assert [e.task_id for e in queue.pop_ready(0.0)] == ["t1", "t3"]
    assert queue.positions() == {"t2": 1}
    assert queue.blocker("t2", 0.0) == "key 'a' (1/1 running)"


def test_processes_can_be_held_back() -> None:
    queue = ReadyQueue(max_running=10)
    queue.push(Entry("p", 9, 1, ("shell",), uses_processes=True))
    queue.push(Entry("h", 1, 2, ("handler:x",)))
    assert queue.queued_with_processes == 1
    assert [e.task_id for e in queue.pop_ready(0.0, allow_processes=False)] == ["h"]
    assert queue.queued_with_processes == 1
    assert [e.task_id for e in queue.pop_ready(0.0)] == ["p"]
    assert queue.queued_with_processes == 0


def test_raising_a_limit_lets_the_next_task_start() -> None:
    queue = ReadyQueue(max_running=10, limits={"a": 1})
    queue.push(Entry("t1", 5, 1, ("a",)))
    queue.push(Entry("t2", 5, 2, ("a",)))
    assert [e.task_id for e in queue.pop_ready(0.0)] == ["t1"]
    queue.set_limit("a", 2)
    assert queue.limit("a") == 2
    assert [e.task_id for e in queue.pop_ready(0.0)] == ["t2"]


def test_a_task_removed_during_its_backoff_never_starts() -> None:
    queue = ReadyQueue(max_running=4)
    queue.push(Entry("t1", priority=5, seq=1, keys=("k",), ready_deadline=10.0))
    assert queue.remove("t1") is not None
    assert queue.pop_ready(now=11.0) == []
    assert queue.next_deadline() is None


def test_a_new_task_is_placed_by_the_counts_of_its_keys() -> None:
    queue = ReadyQueue(max_running=4, limits={"k": 1})
    for seq, (task_id, priority, keys) in enumerate(
        [("a", 5, ("k",)), ("b", 9, ("k", "j")), ("c", 5, ("j",)), ("d", 5, ("k",))]
    ):
        queue.push(Entry(task_id, priority=priority, seq=seq, keys=keys))
    assert queue.position_of_newest("d") == queue.positions()["d"] == 3
    assert queue.position_of_newest("nope") is None
