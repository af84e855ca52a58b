"""outrider: run sub-agents and shell jobs in parallel, in the background, durably.

```python
async with outrider.Orchestrator() as orch:
    me = orch.session("me")
    task = await me.submit(outrider.shell("pytest -q"))
    (done,) = await me.wait([task.id])
```
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # `typing.TYPE_CHECKING` without importing typing: `outrider --help` is fast
if TYPE_CHECKING:
    from typing import Any

    from ._agents._definitions import AgentDefinition as AgentDefinition
    from ._agents._definitions import load_agents as load_agents
    from ._agents._providers import Price as Price
    from ._agents._providers import ProviderConfig as ProviderConfig
    from ._agents._providers import Providers as Providers
    from ._agents._runner import AgentRunner as AgentRunner
    from ._client import AsyncClient as AsyncClient
    from ._client import Client as Client
    from ._service._orchestrator import Orchestrator as Orchestrator
    from ._service._session import Session as Session
    from ._service._settings import Settings as Settings
    from ._types._api import SubmitOptions as SubmitOptions
    from ._types._api import Tasks as Tasks
    from ._types._errors import AuthError as AuthError
    from ._types._errors import Closed as Closed
    from ._types._errors import DaemonError as DaemonError
    from ._types._errors import NotAllowed as NotAllowed
    from ._types._errors import OutriderError as OutriderError
    from ._types._errors import QueueFull as QueueFull
    from ._types._errors import RunnerError as RunnerError
    from ._types._errors import StoreError as StoreError
    from ._types._errors import StoreUnavailable as StoreUnavailable
    from ._types._errors import TaskCancelled as TaskCancelled
    from ._types._errors import TaskError as TaskError
    from ._types._errors import TaskFailed as TaskFailed
    from ._types._errors import TaskNotFound as TaskNotFound
    from ._types._errors import TaskTimedOut as TaskTimedOut
    from ._types._errors import UserError as UserError
    from ._types._events import ErrorSummary as ErrorSummary
    from ._types._events import Event as Event
    from ._types._events import EventData as EventData
    from ._types._events import EventType as EventType
    from ._types._events import GroupCompleted as GroupCompleted
    from ._types._events import GroupMember as GroupMember
    from ._types._events import TaskEnded as TaskEnded
    from ._types._events import TaskOutput as TaskOutput
    from ._types._events import TaskOverlap as TaskOverlap
    from ._types._events import TaskProgress as TaskProgress
    from ._types._events import TaskQueued as TaskQueued
    from ._types._events import TaskRetrying as TaskRetrying
    from ._types._events import TaskStarted as TaskStarted
    from ._types._task import AgentSpec as AgentSpec
    from ._types._task import CliAgentSpec as CliAgentSpec
    from ._types._task import ErrorInfo as ErrorInfo
    from ._types._task import HandlerSpec as HandlerSpec
    from ._types._task import KeyStatus as KeyStatus
    from ._types._task import NodeStatus as NodeStatus
    from ._types._task import Notice as Notice
    from ._types._task import NoticeWait as NoticeWait
    from ._types._task import Progress as Progress
    from ._types._task import SessionSummary as SessionSummary
    from ._types._task import ShellSpec as ShellSpec
    from ._types._task import Status as Status
    from ._types._task import SubmitError as SubmitError
    from ._types._task import SubmitItem as SubmitItem
    from ._types._task import Task as Task
    from ._types._task import TaskSpec as TaskSpec
    from ._types._task import TaskState as TaskState
    from ._types._task import Usage as Usage
    from ._types._task import agent as agent
    from ._types._task import call as call
    from ._types._task import cli_agent as cli_agent
    from ._types._task import shell as shell
    from ._types._worktrees import FileChange as FileChange
    from ._types._worktrees import MergePreview as MergePreview
    from ._types._worktrees import MergeResult as MergeResult
    from ._types._worktrees import Worktree as Worktree
    from ._version import __version__ as __version__
    from .runners import RunContext as RunContext

__all__ = (
    "__version__",
    "agent",
    "AgentDefinition",
    "AgentRunner",
    "AgentSpec",
    "AsyncClient",
    "AuthError",
    "call",
    "cli_agent",
    "CliAgentSpec",
    "Client",
    "Closed",
    "DaemonError",
    "ErrorInfo",
    "ErrorSummary",
    "Event",
    "EventData",
    "EventType",
    "FileChange",
    "GroupCompleted",
    "GroupMember",
    "HandlerSpec",
    "KeyStatus",
    "load_agents",
    "MergePreview",
    "MergeResult",
    "NodeStatus",
    "NotAllowed",
    "Notice",
    "NoticeWait",
    "Orchestrator",
    "OutriderError",
    "Price",
    "Progress",
    "ProviderConfig",
    "Providers",
    "QueueFull",
    "RunContext",
    "RunnerError",
    "Session",
    "SessionSummary",
    "Settings",
    "shell",
    "ShellSpec",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "SubmitError",
    "SubmitItem",
    "SubmitOptions",
    "Task",
    "TaskCancelled",
    "TaskEnded",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskOutput",
    "TaskOverlap",
    "TaskProgress",
    "TaskQueued",
    "TaskRetrying",
    "Tasks",
    "TaskSpec",
    "TaskStarted",
    "TaskState",
    "TaskTimedOut",
    "Usage",
    "UserError",
    "Worktree",
)

_WHERE = {
    "AgentDefinition": "._agents._definitions",
    "load_agents": "._agents._definitions",
    "Price": "._agents._providers",
    "ProviderConfig": "._agents._providers",
    "Providers": "._agents._providers",
    "AgentRunner": "._agents._runner",
    "AsyncClient": "._client",
    "Client": "._client",
    "Orchestrator": "._service._orchestrator",
    "Session": "._service._session",
    "Settings": "._service._settings",
    "SubmitOptions": "._types._api",
    "Tasks": "._types._api",
    "AuthError": "._types._errors",
    "Closed": "._types._errors",
    "DaemonError": "._types._errors",
    "NotAllowed": "._types._errors",
    "OutriderError": "._types._errors",
    "QueueFull": "._types._errors",
    "RunnerError": "._types._errors",
    "StoreError": "._types._errors",
    "StoreUnavailable": "._types._errors",
    "TaskCancelled": "._types._errors",
    "TaskError": "._types._errors",
    "TaskFailed": "._types._errors",
    "TaskNotFound": "._types._errors",
    "TaskTimedOut": "._types._errors",
    "UserError": "._types._errors",
    "ErrorSummary": "._types._events",
    "Event": "._types._events",
    "EventData": "._types._events",
    "EventType": "._types._events",
    "GroupCompleted": "._types._events",
    "GroupMember": "._types._events",
    "TaskEnded": "._types._events",
    "TaskOutput": "._types._events",
    "TaskProgress": "._types._events",
    "TaskQueued": "._types._events",
    "TaskRetrying": "._types._events",
    "TaskStarted": "._types._events",
    "AgentSpec": "._types._task",
    "CliAgentSpec": "._types._task",
    "ErrorInfo": "._types._task",
    "HandlerSpec": "._types._task",
    "KeyStatus": "._types._task",
    "NodeStatus": "._types._task",
    "Notice": "._types._task",
    "NoticeWait": "._types._task",
    "Progress": "._types._task",
    "ShellSpec": "._types._task",
    "Status": "._types._task",
    "SubmitError": "._types._task",
    "SubmitItem": "._types._task",
    "Task": "._types._task",
    "TaskSpec": "._types._task",
    "TaskState": "._types._task",
    "Usage": "._types._task",
    "agent": "._types._task",
    "call": "._types._task",
    "cli_agent": "._types._task",
    "shell": "._types._task",
    "RunContext": ".runners",
    "TaskOverlap": "._types._events",
    "SessionSummary": "._types._task",
    "FileChange": "._types._worktrees",
    "MergePreview": "._types._worktrees",
    "MergeResult": "._types._worktrees",
    "Worktree": "._types._worktrees",
}

from ._version import __version__ as __version__  # noqa: E402  # cheap, and read by `--version`


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
