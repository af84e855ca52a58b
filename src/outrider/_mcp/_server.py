"""Building the MCP server: in the daemon (Streamable HTTP at `/mcp`) and for stdio.

Session identity: over HTTP, the `X-Outrider-Session` header names the session; without it,
each MCP connection (its `Mcp-Session-Id`) is a session of its own, and stateless requests
share the session `mcp`. The principal always comes from the verified bearer token, never
from a header. Over stdio (`outrider mcp`), the process is one connection: `--session NAME`,
else a fresh name per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer

from .._types._api import check_session_name
from .._version import __version__
from ._tools import NoticeFeed, Tools

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from mcp.server.mcpserver import Context

    from .._agents._definitions import AgentCatalog, AgentDefinition
    from .._types._api import Sessions, Tasks

__all__ = ["INSTRUCTIONS", "build_server", "daemon_resolver"]

INSTRUCTIONS = """outrider runs slow or parallel work in the background so you can keep going.
Delegate with delegate_task (or run_background for a command); you get a task id at once.
Keep working. Finished tasks are announced at the end of every outrider tool answer; collect
details with get_task_result, or block briefly with wait_tasks. Tasks past a limit are queued,
never refused."""


def build_server(
    resolve: Callable[[Context], Awaitable[Tasks]],
    *,
    tools: Sequence[str],
    max_wait: float,
    agents: Mapping[str, AgentDefinition] | AgentCatalog | None = None,
    feed: NoticeFeed | None = None,
    cwd: str | None = None,
) -> tuple[MCPServer[Any], Tools]:
    """An MCP server offering `tools` over the caller's backend, and the tools' handlers."""
    server: MCPServer[Any] = MCPServer(
        "outrider", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    handlers = Tools(resolve, max_wait=max_wait, agents=agents, feed=feed, cwd=cwd)
    handlers.register(server, tools)
    return server, handlers


def daemon_resolver(sessions: Sessions) -> Callable[[Context], Awaitable[Tasks]]:
    """Resolves the caller's session from the HTTP request of the tool call."""

    async def resolve(ctx: Context) -> Tasks:
        request = ctx.request_context.request
        scope: dict[str, Any] = getattr(request, "scope", {})
        principal = scope.get("state", {}).get("principal")
        if not isinstance(principal, str):
            raise PermissionError("MCP request without an authenticated principal.")
        headers = ctx.headers or {}
        named = headers.get("x-outrider-session")
        if named:
            session = check_session_name(named)
        elif connection := headers.get("mcp-session-id"):
            session = f"mcp-{connection[:16]}"
        else:
            session = "mcp"
        return sessions(principal, session)

    return resolve
