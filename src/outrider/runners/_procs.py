"""Process containment: every process a task starts is found and stopped, also after a crash.

How a task's processes are found (`find_task_processes`):
- **Marker.** Every process-backed task runs with `OUTRIDER_TASK=<task id>.<attempt>` in its
  environment, inherited by every descendant that keeps its environment. The marker follows
  from what the task's start commits (its id and attempt number), so it is in the store before
  the spawn: a later start finds an attempt's processes even if the leader's pid was never
  recorded, or the leader is gone. `OUTRIDER_OWNER` names the outrider process that started
  them (for its guardian).
- **Session.** The leader starts a session of its own, so its pid is the session and process
  group id of every descendant that does not leave them (`setsid`, `setpgid`).
- **Tree.** A descendant of a found process is found, whatever its environment or session.
- **Subreaper.** `outrider serve` and `outrider run` call `become_subreaper()`: an orphaned
  descendant is then re-parented to that process instead of to init, so while it lives every
  process a task started stays in its process tree. Finding a task's processes then walks this
  tree (the leader's subtree and those of orphans) instead of every process on the machine, and
  `reap_orphans` collects the orphans' exit statuses.

- **Nothing left.** Once a leader exited, `none_left` proves cheaply that the task left no
  process (every pid handed out since the leader's is free or another task's leader), so most
  commands end without a search; anything else is searched for as above.

What is not contained: a process that clears its environment, leaves the task's session, and is
orphaned before it is seen (under a subreaper it is re-parented here and stopped when the
process stops; otherwise it runs on under init). After a crash, a leftover is found by its
marker, or by its session while the recorded leader still lives.

Stopping (`stop_processes`): SIGTERM to every found process and group at once, each task's
`grace_period` in parallel (so N stubborn tasks take one grace period, not N), then SIGKILL;
what forked meanwhile is found again and killed until nothing is left (bounded rounds).
Matching never trusts a pid alone: a process older than the task's leader is never a match.

Everything here is synchronous (it reads /proc and sleeps); callers run it in a worker thread.
Linux reads /proc directly; elsewhere psutil scans every process.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    Found = dict[int, int]
    """Processes by pid, each with its start time in clock ticks (to never signal a reused pid)."""

__all__ = [
    "MARKER_ENV",
    "contain_this_process",
    "find_by_owner",
    "guard_main",
    "OWNER",
    "OWNER_ENV",
    "Leftovers",
    "become_subreaper",
    "boot_ticks",
    "find_by_markers",
    "find_task_processes",
    "forget_leader",
    "is_subreaper",
    "leader_created",
    "marker",
    "kill_until_gone",
    "none_left",
    "reap_orphans",
    "register_leader",
    "spawning",
    "stop_leftovers",
    "stop_orphans",
    "stop_processes",
    "task_environment",
]

logger = logging.getLogger("outrider")  # not `outrider._logging`: the guardian runs this alone
MARKER_ENV = "OUTRIDER_TASK"
OWNER_ENV = "OUTRIDER_OWNER"
OWNER = uuid.uuid4().hex
"""This process's id in the environment of the processes its tasks start."""

SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR")
"""The variables a task inherits from outrider's environment, with every `LC_*`."""
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_CHILD_SUBREAPER = 36
_KILL_ROUNDS = 20
_POLL = 0.02
_PROC = "/proc"
_LINUX = os.path.exists(f"{_PROC}/self/stat")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_NS_PER_TICK = 1_000_000_000 // _TICKS
"""Nanoseconds per tick: /proc gives when a process was forked, on `CLOCK_BOOTTIME`, in ticks."""
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)  # Linux only


def marker(task_id: str, attempt: int) -> str:
    """The marker of one attempt of a task: `<task id>.<attempt>`."""
    return f"{task_id}.{attempt}"


def task_environment(
    task_marker: str,
    extra: Mapping[str, str],
    *,
    passthrough: Iterable[str] = (),
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A task's clean environment: the safe base, the pass-through names, its own, its marker.

    Args:
        task_marker: The attempt's marker (see `marker`).
        extra: The task's own variables; they win over inherited ones.
        passthrough: More names taken from `source` (an entry ending in `*` is a prefix).
        source: Where inherited values come from (default: this process's environment).
    """
    src = os.environ if source is None else source
    names = [*SAFE_ENV, *passthrough]
    exact = {n for n in names if not n.endswith("*")}
    prefixes = ("LC_", *(n[:-1] for n in names if n.endswith("*") and len(n) > 1))
    env = {k: src[k] for k in src if k in exact or k.startswith(prefixes)}  # values read: few
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update(extra)
    env[MARKER_ENV] = task_marker
    env[OWNER_ENV] = OWNER
    return env


# -- this process's children ---------------------------------------------------------------


@dataclass
class _Registry:
    subreaper: bool = False
    leaders: dict[int, int] = field(default_factory=dict)
    """Leader pid -> its start time in clock ticks; they are awaited by their runner."""
    spawning: int = 0
    """Spawns in flight: their leader may exit before it is registered, so no reaping."""
    helpers: set[int] = field(default_factory=set)
    """Children that are not tasks' (the guardian)."""
    guardian: subprocess.Popen[bytes] | None = None
    guardian_fd: int | None = None


_registry = _Registry()


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); whether it worked."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - CI runs on Linux
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:  # pragma: no cover - always allowed
        return False
    _registry.subreaper = True
    return True


def is_subreaper() -> bool:
    """Whether `become_subreaper` made this process its orphans' reaper."""
    return _registry.subreaper


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Around a spawn: orphans are not reaped meanwhile (the new leader is not yet known)."""
    _registry.spawning += 1
    try:
        yield
    finally:
        _registry.spawning -= 1


def boot_ticks() -> int | None:
    """Now, in the clock /proc gives start times in (ticks since boot); None without /proc."""
    if not _LINUX or _BOOTTIME is None:  # pragma: no cover - used where /proc is missing
        return None
    return time.clock_gettime_ns(_BOOTTIME) // _NS_PER_TICK


def register_leader(pid: int, *, spawned_after: int | None = None) -> int:
    """Record a task's leader (its runner awaits it); returns its start time in ticks.

    `spawned_after`: `boot_ticks()` read right before the spawn that just returned. If it is
    still that tick, the leader started in it (the kernel stamps a child as it forks it), and
    /proc is not read: the first read of a child's `stat` waits until its `exec` is complete
    (0.2-0.4 ms here), and the caller is the loop.
    """
    if spawned_after is not None and boot_ticks() == spawned_after:
        started = spawned_after
    else:
        info = _stat(pid)
        started = info.started if info is not None else 0
    _registry.leaders[pid] = started
    return started


def leader_created(pid: int) -> float | None:
    """A process's start time in epoch seconds (as `psutil.Process.create_time`), if it lives.

    A leader registered here is not asked about again (`register_leader` knows it).
    """
    started = _registry.leaders.get(pid)
    if not started:
        info = _stat(pid)
        if info is None:
            return None
        started = info.started
    return (_boot_time() if _LINUX else 0.0) + started / _TICKS


@functools.cache
def _boot_time() -> float:
    return psutil.boot_time()  # on Linux, /proc/stat's `btime`: what create_time() adds to


def forget_leader(pid: int) -> None:
    """The leader was awaited (reaped) by its runner."""
    _registry.leaders.pop(pid, None)


# -- /proc --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    started: int
    """Start time in clock ticks since boot."""


def _stat(pid: int) -> _Stat | None:
    if not _LINUX:
        return _psutil_stat(pid)
    try:
        raw = _read_small(f"{_PROC}/{pid}/stat")
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # the command name may hold spaces and ")"
    return _Stat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]),
                 int(fields[19]))  # fmt: skip


def _read_small(path: str) -> bytes:
    """A /proc file of one short line, in one read (a third of `open().read()`'s cost)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _psutil_stat(pid: int) -> _Stat | None:  # pragma: no cover - used where /proc is missing
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            state = "Z" if proc.status() == psutil.STATUS_ZOMBIE else "S"
            started = int(proc.create_time() * _TICKS)
            return _Stat(pid, state, proc.ppid(), os.getpgid(pid), os.getsid(pid), started)
    except (psutil.Error, OSError):
        return None


def _environ_value(pid: int, name: str) -> str | None:
    """The value of `name` in a process's environment (None if unset or unreadable)."""
    if not _LINUX:  # pragma: no cover - used where /proc is missing
        try:
            return psutil.Process(pid).environ().get(name)
        except psutil.Error:
            return None
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    key = name.encode() + b"="
    if data.startswith(key):
        start = len(key)
    elif (at := data.find(b"\0" + key)) >= 0:
        start = at + 1 + len(key)
    else:
        return None
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode(errors="replace")


def _children(pid: int) -> list[int]:
    if not _LINUX:  # pragma: no cover - used where /proc is missing
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    found: list[int] = []
    try:
        for thread in os.scandir(f"{_PROC}/{pid}/task"):
            with open(os.path.join(thread.path, "children")) as listing:
                found.extend(int(p) for p in listing.read().split())
    except OSError:  # it exited meanwhile
        pass
    return found


def _all_pids() -> list[int]:
    if not _LINUX:  # pragma: no cover - used where /proc is missing
        return psutil.pids()
    return [int(e.name) for e in os.scandir(_PROC) if e.name.isdigit()]


def _subtree(roots: Iterable[int]) -> list[int]:
    """`roots` and all their descendants, walking the children lists."""
    found: list[int] = []
    pending = list(roots)
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        pending.extend(_children(pid))
    return found


# -- finding ------------------------------------------------------------------------------


def _candidates(leader: int | None) -> list[int]:
    """Processes that may belong to a task.

    Under a subreaper, only the leader's subtree and the orphans': every other direct child is
    another task's leader or in this process's own session (a worker). Otherwise every process
    younger than the leader: pids are handed out in increasing order, so those from the
    leader's to the last one given out, unless the numbering wrapped around meanwhile.
    """
    if _registry.subreaper:
        return _subtree([*([] if leader is None else [leader]), *_orphans()])
    pids = _all_pids()
    last = _last_pid()
    if leader is None or last is None or last < leader:
        return pids
    return [p for p in pids if leader <= p <= last]


def _last_pid() -> int | None:
    """The last pid the kernel handed out in this namespace, if it says."""
    try:
        return int(_read_small(f"{_PROC}/sys/kernel/ns_last_pid"))
    except (OSError, ValueError):
        return None


def find_task_processes(task_marker: str, leader: int | None, leader_started: int) -> Found:
    """The live processes of a running task (synchronous; reads /proc).

    Args:
        task_marker: The attempt's marker.
        leader: The leader's pid, if it was spawned (it may have exited).
        leader_started: The leader's start time in ticks (0 if unknown): nothing older matches.

    Returns:
        Non-zombie processes carrying the marker, in the leader's session or group, or
        descending from such a process (the leader itself included while it lives).
    """
    me = os.getpid()
    others = set(_registry.leaders) - {leader}
    stats = {}
    for pid in _candidates(leader):
        info = _stat(pid)
        if info is not None and pid != me and info.started >= leader_started:
            stats[pid] = info
    matched = {
        pid
        for pid, info in stats.items()
        if pid == leader
        or (leader is not None and leader in (info.session, info.pgrp))
        or (info.session not in others and _environ_value(pid, MARKER_ENV) == task_marker)
    }
    return _live(_with_descendants(matched, stats), stats)


def _live(pids: Iterable[int], stats: Mapping[int, _Stat]) -> Found:
    return {p: stats[p].started for p in sorted(pids) if stats[p].state not in ("Z", "X")}


def _with_descendants(matched: set[int], stats: Mapping[int, _Stat]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, info in stats.items():
        children.setdefault(info.ppid, []).append(pid)
    found = set()
    pending = list(matched)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


_PROBE_MAX = 64
"""The most pids `none_left` looks at; beyond, the caller searches (in a worker thread)."""
_SPAWNS_PER_SECOND_PER_CORE = 100_000
"""Far above what a core can fork (a few thousand a second here): bounds how soon pids wrap."""


def none_left(leader: int, lived: float) -> bool:
    """Whether a task whose leader has exited surely left no process running: a quick check.

    Every process of a task was started after its leader, so its pid lies between the leader's
    and the last one handed out, unless the numbering wrapped around meanwhile: that takes
    `pid_max` spawns, more than the machine can make in the leader's short life (`lived`
    seconds). So if each pid in that range is free or another task's leader, nothing of this
    task lives (whatever its session, environment or parent). False means "search": the
    range is too wide, the leader lived too long, or a pid in it is taken by someone else.
    Looks at no more than `_PROBE_MAX` pids (one `stat` each), so it may run on the loop.
    """
    last = _last_pid()
    if last is None or not leader <= last <= leader + _PROBE_MAX or lived > _wrap_time():
        return False
    return all(
        pid in _registry.leaders or not os.path.exists(f"{_PROC}/{pid}")
        for pid in range(leader + 1, last + 1)
    )


@functools.cache
def _wrap_time() -> float:
    """Seconds within which the pid numbering cannot wrap around (0: unknown, never assumed)."""
    try:
        with open(f"{_PROC}/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
    except (OSError, ValueError):
        return 0.0
    return pid_max / (_SPAWNS_PER_SECOND_PER_CORE * (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What a dead outrider's running attempt may have left: its marker and recorded leader."""

    task_marker: str
    pid: int | None = None
    pid_created: float | None = None
    """The leader's start time (epoch seconds), to tell it from a process that reused its pid."""
    grace_period: float = 5.0


def find_by_markers(items: Sequence[Leftovers]) -> list[Found]:
    """For each item, the live processes it left (one scan of every process).

    A process matches by marker; the recorded leader matches if its start time agrees, and
    then its session, group and descendants do too.
    """
    wanted = {item.task_marker: index for index, item in enumerate(items)}
    leaders = {
        item.pid: index
        for index, item in enumerate(items)
        if item.pid is not None and _same_process(item.pid, item.pid_created)
    }
    me = os.getpid()
    stats = {pid: info for pid in _all_pids() if pid != me and (info := _stat(pid)) is not None}
    owner: dict[int, int] = {}
    for pid, info in stats.items():
        hit = leaders.get(pid, leaders.get(info.session, leaders.get(info.pgrp)))
        if hit is None and info.state != "Z":
            hit = wanted.get(_environ_value(pid, MARKER_ENV) or "")
        if hit is not None:
            owner[pid] = hit
    return [
        _live(_with_descendants({p for p, i in owner.items() if i == index}, stats), stats)
        for index in range(len(items))
    ]


def stop_leftovers(items: Sequence[Leftovers]) -> int:
    """Stop what dead outriders' attempts left, all at once; returns how many were found.

    Every leftover gets SIGTERM at once and its task's grace period, in parallel, so stubborn
    leftovers of N tasks take one grace period, not N. Synchronous (a worker thread's job).
    """
    found = find_by_markers(items)
    for item, procs in zip(items, found, strict=True):
        if procs:
            logger.info("%s: stopping %d processes left by a dead outrider: %s",
                        item.task_marker, len(procs), sorted(procs))  # fmt: skip

    def again() -> Found:
        return {pid: t for procs in find_by_markers(items) for pid, t in procs.items()}

    groups = [(procs, item.grace_period) for item, procs in zip(items, found, strict=True)]
    return stop_processes(groups, find_again=again if any(found) else None)


def _same_process(pid: int, created: float | None) -> bool:
    try:
        return created is None or abs(psutil.Process(pid).create_time() - created) < 0.5
    except psutil.Error:
        return False


# -- stopping -----------------------------------------------------------------------------


def _signal(found: Found, sig: int) -> None:
    """Signal each process that is still the one found (same start time)."""
    for pid, started in found.items():
        info = _stat(pid)
        if info is None or info.started != started:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(found: Found) -> Found:
    alive = {}
    for pid, started in found.items():
        info = _stat(pid)
        if info is not None and info.started == started and info.state not in ("Z", "X"):
            alive[pid] = started
    return alive


def stop_processes(
    groups: Sequence[tuple[Found, float]],
    *,
    find_again: Callable[[], Found] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Stop several tasks' processes at once; returns how many were found.

    Each group is `(processes, grace_period)`: every process gets SIGTERM now, and SIGKILL
    once its group's grace period has passed with it still alive; the groups wait in parallel.
    Then `find_again()` lists what is left (forked meanwhile), which is killed until nothing
    is. Synchronous; returns once every found process is gone (or could not be signalled).
    """
    started = clock()
    pending = [(found, started + grace) for found, grace in groups if found]
    total = sum(len(found) for found, _ in pending)
    for found, _ in pending:
        _signal(found, signal.SIGTERM)
    while pending:
        now = clock()
        still = []
        for found, deadline in pending:
            alive = _alive(found)
            if alive and now >= deadline:
                _signal(alive, signal.SIGKILL)
            if alive:
                still.append((alive, deadline))
        pending = still
        if pending:
            time.sleep(_POLL)  # sleep-ok: polling other processes' exit within their grace
    if find_again is not None:
        total += kill_until_gone(find_again)
    return total


def kill_until_gone(find: Callable[[], Found]) -> int:
    """SIGKILL what `find()` lists until it lists nothing (bounded rounds); returns the count."""
    total = 0
    for _ in range(_KILL_ROUNDS):
        found = find()
        if not found:
            break
        total += len(found)
        _signal(found, signal.SIGKILL)
        deadline = time.monotonic() + 1.0
        while _alive(found) and time.monotonic() < deadline:
            time.sleep(_POLL / 4)  # sleep-ok: a killed process is gone within microseconds
    return total


def _orphans() -> list[int]:
    """Direct children re-parented here: not a task's leader, a helper, or in our session."""
    me = os.getpid()
    mine = _stat(me)
    found = []
    for pid in _children(me):
        info = _stat(pid)
        if info is None or pid in _registry.leaders or pid in _registry.helpers:
            continue
        if mine is None or info.session != mine.session:
            found.append(pid)
    return found


def stop_orphans(grace_period: float) -> int:
    """At exit of a subreaper: stop every orphan left in its tree, and reap them.

    These are processes that left their task's session and environment, so no task could
    claim them. Returns how many processes were stopped.
    """
    if not _registry.subreaper:
        return 0

    def find() -> Found:
        stats = {p: i for p in _subtree(_orphans()) if (i := _stat(p)) is not None}
        return _live(stats, stats)

    count = stop_processes([(find(), grace_period)], find_again=find)
    reap_orphans()
    return count


def reap_orphans() -> list[int]:
    """Collect the exit status of orphaned task processes re-parented here (subreaper only).

    Reaped: zombie children outside this process's session that no runner awaits, while no
    spawn is in flight. Returns their pids.
    """
    if not _registry.subreaper or _registry.spawning:
        return []
    waiting = _waiting_child()
    if waiting is None or waiting in _registry.leaders:
        # Nothing to reap; or the longest-waiting child is a leader its runner is about to
        # await: an orphan behind it is reaped at a later end, once that leader is.
        return []
    reaped = []
    for pid in _orphans():  # a worker of ours, or a handler's subprocess, is in our session
        info = _stat(pid)
        if info is None or info.state != "Z":
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    return reaped


def _a_child_exited() -> bool:
    """Whether any child (of any of this process's threads) waits to be reaped; one syscall."""
    return _waiting_child() is not None


def _waiting_child() -> int | None:
    """A child (of any of this process's threads) that waits to be reaped, if any; one syscall.

    The kernel names the first it finds, children in the order they became ours (an orphan
    is ours from when it was re-parented). `WNOWAIT` leaves it waitable.
    """
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # no child at all
        return None
    return None if found is None else found.si_pid


# -- the guardian -------------------------------------------------------------------------

_GUARDIAN = (
    "import sys; sys.path.insert(0, sys.argv[1]); import _procs; _procs.guard_main(sys.argv[2:])"
)
"""The guardian imports this module as a script beside it, not the `outrider` package."""


def contain_this_process(grace_period: float = 5.0) -> bool:
    """For `outrider serve` and `outrider run`: become a subreaper, and start a guardian.

    The guardian is a small process in a session of its own holding the read end of a pipe
    that only this process writes to. When this process dies, however it dies (`kill -9`
    included), the guardian reads end-of-file and stops every process carrying this process's
    `OUTRIDER_OWNER` (TERM, `grace_period`, KILL), then exits. Returns whether it started.
    """
    become_subreaper()
    if _registry.guardian is not None:
        return True
    read_fd, write_fd = os.pipe()  # neither end is inherited by tasks (close-on-exec)
    # Not marked as an owner's process (this one may be one, e.g. a cluster node's worker):
    # should that owner die, its guardian must leave this guardian to stop this one's tasks.
    guardian_env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    try:
        _registry.guardian = subprocess.Popen(
            [sys.executable, "-c", _GUARDIAN, str(Path(__file__).parent), str(read_fd), OWNER,
             str(grace_period)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(read_fd,),
            start_new_session=True, env=guardian_env,
        )  # fmt: skip
    except OSError:  # pragma: no cover - the interpreter that runs us can be run again
        os.close(write_fd)
        return False
    finally:
        os.close(read_fd)
    _registry.helpers.add(_registry.guardian.pid)
    _registry.guardian_fd = write_fd
    return True


def find_by_owner(owner: str) -> Found:
    """Every live process whose environment carries `OUTRIDER_OWNER=owner` (one full scan)."""
    me = os.getpid()
    found = {}
    for pid in _all_pids():
        info = _stat(pid)
        if pid == me or info is None or info.state in ("Z", "X"):
            continue
        if _environ_value(pid, OWNER_ENV) == owner:
            found[pid] = info.started
    return found


def guard_main(args: Sequence[str]) -> None:
    """The guardian's body: `FD OWNER GRACE`; returns once the owner's processes are gone."""
    fd, owner, grace = int(args[0]), args[1], float(args[2])
    while os.read(fd, 4096):
        pass
    found = find_by_owner(owner)
    stop_processes([(found, grace)], find_again=lambda: find_by_owner(owner))
