"""outrider: run sub-agents and shell jobs in parallel, in the background, durably.

```python
async with outrider.Orchestrator() as orch:
    me = orch.session("me")
    task = await me.submit(outrider.shell("pytest -q"))
    (done,) = await me.wait([task.id])
```
"""

from __future__ import annotations

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
from ._types._task import Notice as Notice
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
    "NotAllowed",
    "Notice",
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
