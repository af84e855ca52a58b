"""One agent task's run: what its loop, its tools and its reports share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._types._task import Usage

if TYPE_CHECKING:
    from .._types._task import AgentSpec
    from ..runners._protocol import RunContext
    from ._budget import BudgetGuard, Tree
    from ._definitions import AgentDefinition, AgentSet
    from ._loop import AgentLoop
    from ._sandbox import SandboxStatus
    from ._workspace import Workspace

__all__ = ["AgentRun"]


@dataclass
class AgentRun:
    """One task's run: what its tools and reports share."""

    spec: AgentSpec
    definition: AgentDefinition
    ctx: RunContext
    workspace: Workspace
    tree: Tree
    tree_id: str
    max_turns: int
    budget_tokens: int | None
    budget_cost: float | None
    guard: BudgetGuard
    known: AgentSet
    sandbox: SandboxStatus | None
    """How its commands are sandboxed; None: they are not."""
    loop: AgentLoop
    """The loop running it (its tools ask it for commands and child tasks)."""
    usage: Usage = field(default_factory=lambda: Usage(cost=0.0))
    turn: int = 0
    last_call: tuple[str, str] | None = None
    repeats: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    """It continues an interrupted attempt's conversation (noted in its attempt record)."""
