"""outrider: run sub-agents and shell jobs in parallel, in the background, durably.

```python
async with outrider.Orchestrator() as orch:
    task = await orch.submit(outrider.shell("pytest -q"), session="me")
    (done,) = await orch.wait([task.id], session="me")
```
"""

from __future__ import annotations

from ._agents._definitions import AgentDefinition as AgentDefinition
from ._agents._definitions import load_agents as load_agents
from ._agents._providers import Price as Price
from ._agents._providers import ProviderConfig as ProviderConfig
from ._agents._providers import Providers as Providers
from ._client import AsyncClient as AsyncClient
from ._client import Client as Client
from ._errors import AuthError as AuthError
from ._errors import Closed as Closed
from ._errors import DaemonError as DaemonError
from ._errors import NotAllowed as NotAllowed
from ._errors import OutriderError as OutriderError
from ._errors import QueueFull as QueueFull
from ._errors import RunnerError as RunnerError
from ._errors import StoreError as StoreError
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import TaskCancelled as TaskCancelled
from ._errors import TaskError as TaskError
from ._errors import TaskFailed as TaskFailed
from ._errors import TaskNotFound as TaskNotFound
from ._errors import TaskTimedOut as TaskTimedOut
from ._errors import UserError as UserError
from ._models import AgentSpec as AgentSpec
from ._models import CliAgentSpec as CliAgentSpec
from ._models import ErrorInfo as ErrorInfo
from ._models import Event as Event
from ._models import EventType as EventType
from ._models import HandlerSpec as HandlerSpec
from ._models import KeyStatus as KeyStatus
from ._models import Notice as Notice
from ._models import Progress as Progress
from ._models import ShellSpec as ShellSpec
from ._models import Status as Status
from ._models import SubmitError as SubmitError
from ._models import SubmitItem as SubmitItem
from ._models import Task as Task
from ._models import TaskSpec as TaskSpec
from ._models import TaskState as TaskState
from ._models import Usage as Usage
from ._models import agent as agent
from ._models import call as call
from ._models import cli_agent as cli_agent
from ._models import shell as shell
from ._orchestrator import Orchestrator as Orchestrator
from ._service._session import Session as Session
from ._types._api import SubmitOptions as SubmitOptions
from ._types._api import Tasks as Tasks
from ._version import __version__ as __version__
from .runners import RunContext as RunContext
from .runners._agent import AgentRunner as AgentRunner

__all__ = (
    "AgentDefinition",
    "AgentRunner",
    "AgentSpec",
    "AsyncClient",
    "AuthError",
    "CliAgentSpec",
    "Client",
    "Closed",
    "DaemonError",
    "ErrorInfo",
    "Event",
    "EventType",
    "HandlerSpec",
    "KeyStatus",
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
    "ShellSpec",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "SubmitError",
    "SubmitItem",
    "SubmitOptions",
    "Task",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskSpec",
    "TaskState",
    "TaskTimedOut",
    "Tasks",
    "Usage",
    "UserError",
    "__version__",
    "agent",
    "call",
    "cli_agent",
    "load_agents",
    "shell",
)
