"""Building the daemon's MCP server (Streamable HTTP at `/mcp`) and who calls it.

Who calls (`daemon_resolver`): the principal always comes from the verified bearer token, never
from a header. The session is the `X-Outrider-Session` header; without it, each MCP session
(the `Mcp-Session-Id` the SDK gave the connection) is an outrider session of its own, never
shared; a request with neither (a stateless client) is refused with how to name one. The
reader of the session's notices is `X-Outrider-Reader` (one host window), else the MCP
session; the host's directory is `X-Outrider-Cwd` (percent-encoded UTF-8, absolute), where
work runs unless it names another. The stdio bridge (`outrider mcp`) sends all three.

What a model reads when a call fails is one answer in plain words: bad arguments are one
sentence per argument (what is wrong, what is allowed, an example), and an unexpected failure
says so without a traceback (that goes to the daemon's log).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError

from .._logging import logger
from .._types._api import check_session_name
from .._types._errors import UserError
from .._version import __version__
from ._tools import Caller, Tools

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from mcp.server.mcpserver import Context
    from mcp_types import Tool as MCPTool
    from pydantic_core import ErrorDetails

    from .._agents._definitions import AgentCatalog, AgentDefinition
    from .._types._api import Sessions

__all__ = ["INSTRUCTIONS", "NO_SESSION", "argument_errors", "build_server", "daemon_resolver"]

INSTRUCTIONS = """outrider runs slow or parallel work in the background so you can keep going.
Delegate with delegate_task (or run_background for a command); you get a task id at once.
Keep working. Finished tasks are announced at the end of every outrider tool answer (and, where
the host allows, in a new turn when you are idle); collect details with get_task_result, or
block briefly with wait_tasks. Tasks past a limit are queued, never refused."""

NO_SESSION = (
    "This MCP connection names no outrider session: add the header `X-Outrider-Session: NAME` "
    "(one name per window) to the host's MCP config, or connect through the stdio bridge "
    "`outrider mcp`, which names one for each window."
)

_EXAMPLES = {
    "task_id": '"t_01jd…"', "task_ids": '["t_01jd…"]', "description": '"Run the test suite"',
    "command": '"pytest -q"', "agent": '"reviewer"', "prompt": '"Review the diff"',
    "label": '"tests"', "cwd": '"/path/to/project"', "timeout": "600", "priority": "5",
    "wait": "30", "full": "true", "background": "true", "status": '"active"', "mode": '"all"',
    "limit": "50", "lines": "50", "group": '"release"', "up_to": "12",
    "tasks": '[{"command": "make test", "description": "tests"}]',
}  # fmt: skip


class _Server(MCPServer[Any]):
    """The SDK's server: it lists the configured tools, answers failed calls in plain words."""

    listed: frozenset[str] = frozenset()

    async def list_tools(self) -> list[MCPTool]:
        return [t for t in await super().list_tools() if t.name in self.listed]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            cause = exc.__cause__
            logger.error("MCP tool %s failed", name, exc_info=cause)
            raise ToolError(
                f"{name} failed unexpectedly ({type(cause).__name__}: {cause}); this is a bug in "
                "outrider, and the daemon's log (daemon.log in its data dir) has the details."
            ) from None
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            tool = self._tool_manager.get_tool(name)
            schema = tool.parameters if tool is not None else {}
            raise ToolError(argument_errors(name, exc.__cause__.errors(), schema)) from None


def argument_errors(tool: str, errors: Sequence[ErrorDetails], schema: Mapping[str, Any]) -> str:
    """One sentence per bad argument: what is wrong, what is allowed, an example."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    lines = []
    for error in errors:
        loc = [str(p) for p in error["loc"]]
        name = loc[0] if loc else ""
        where = ".".join(loc) or "the arguments"
        if error["type"] == "missing":
            problem = "is missing"
        else:
            got = error.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {str(got)[:80]!r})"
            problem = f"is invalid: {error['msg'].removeprefix('Value error, ')}{shown}"
        allowed = _allowed(properties.get(name, {}))
        example = f", e.g. {_EXAMPLES[name]}" if name in _EXAMPLES else ""
        lines.append(f"`{where}` {problem}; give {allowed}{example}.")
    head = f"Invalid arguments for {tool}:" if len(lines) > 1 else f"Invalid argument for {tool}:"
    return "\n".join([head, *lines])


def _allowed(prop: Mapping[str, Any]) -> str:
    """What a JSON schema property allows, in words."""
    for option in prop.get("anyOf", ()):
        if option.get("type") != "null":
            prop = {**option, **{k: v for k, v in prop.items() if k != "anyOf"}}
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    kind = prop.get("type")
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum")
    if kind in ("integer", "number"):
        what = "a whole number" if kind == "integer" else "a number"
        if low is not None and high is not None:
            return f"{what} from {low} to {high}"
        if low is not None:
            return f"{what} {'above' if 'exclusiveMinimum' in prop else 'of at least'} {low}"
        return what
    words = {"string": "a string", "boolean": "true or false", "array": "a list",
             "object": "an object"}  # fmt: skip
    return words.get(str(kind), "a value as the tool's schema describes")


def build_server(
    resolve: Callable[[Context], Awaitable[Caller]],
    *,
    tools: Sequence[str],
    listed: Sequence[str],
    max_wait: float,
    agents: Mapping[str, AgentDefinition] | AgentCatalog | None = None,
) -> tuple[MCPServer[Any], Tools]:
    """An MCP server with `tools` for the callers `resolve` finds, and the tools' handlers.

    `tools/list` shows `listed` (the configured set); the others can still be called (the
    stdio bridge lists the set configured where it runs).
    """
    server = _Server("outrider", version=__version__, instructions=INSTRUCTIONS,
                     log_level="WARNING")  # fmt: skip
    server.listed = frozenset(listed)
    handlers = Tools(resolve, max_wait=max_wait, agents=agents)
    handlers.register(server, tools)
    return server, handlers


def daemon_resolver(sessions: Sessions) -> Callable[[Context], Awaitable[Caller]]:
    """Finds who calls from the HTTP request of the tool call (see the module docstring)."""

    async def resolve(ctx: Context) -> Caller:
        request = ctx.request_context.request
        scope: dict[str, Any] = getattr(request, "scope", {})
        principal = scope.get("state", {}).get("principal")
        if not isinstance(principal, str):
            raise UserError("MCP request without an authenticated principal.")
        headers = ctx.headers or {}
        connection = headers.get("mcp-session-id")
        if named := headers.get("x-outrider-session"):
            session = check_session_name(named)
        elif connection:
            session = check_session_name(f"mcp-{connection}"[:64])
        else:
            raise UserError(NO_SESSION)
        reader = headers.get("x-outrider-reader") or connection
        cwd = unquote(headers.get("x-outrider-cwd", "")) or None
        if cwd is not None and not os.path.isabs(cwd):
            raise UserError(f"`X-Outrider-Cwd` must be an absolute path, not {cwd!r}.")
        return Caller(
            sessions(principal, session),
            reader=None if reader is None else check_session_name(reader[:64], field="reader"),
            cwd=cwd,
        )

    return resolve
