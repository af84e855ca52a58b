"""The built-in scripted model `scripted/<script>`: an agent run with no provider and no network.

It is not a language model. Each script answers by rules over the conversation so far: which
turn it is, what the prompt names, what the tools answered. It streams its text word by word,
calls the agent's real tools (so files are really read, commands and sub-agents really run as
tasks), and reports usage as pydantic-ai's `FunctionModel` estimates it. `outrider demo` runs
on it, so a new user sees sub-agents, a delegation tree, tool calls, usage and cost without a
provider or a key; every place that shows a model shows `scripted/…`.

Scripts:
- `lead`: lists the workspace's Python files; then delegates, in parallel, each line
  `- AGENT: PROMPT` of its prompt; then sums up what came back.
- `reader`: reads the file its prompt names (else the first Python file it finds) and names
  the functions and classes the file defines.
- `tester`: runs the command its prompt names in backticks (else `ls`) and reports the result.

Imported with the agent loop (pydantic-ai takes seconds to import), never by `import outrider`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import anyio
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import DeltaToolCall, FunctionModel

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models.function import AgentInfo, DeltaToolCalls

__all__ = ["SCRIPTS", "scripted_model"]

WORD_DELAY = 0.03
"""Seconds between two streamed words, so the output visibly grows."""
_PLAN = re.compile(r"^\s*-\s*([A-Za-z0-9._-]+):\s*(.+?)\s*$", re.MULTILINE)
_PATH = re.compile(r"[\w./-]+\.py\b")
_COMMAND = re.compile(r"`([^`]+)`")
_DEFINES = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", re.MULTILINE)


class _Step:
    """One answer: text to stream, then tool calls (name, arguments)."""

    def __init__(self, text: str, calls: Sequence[tuple[str, dict[str, str]]] = ()) -> None:
        self.text = text
        self.calls = list(calls)


def _prompt(messages: Sequence[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _turn(messages: Sequence[ModelMessage]) -> int:
    return sum(isinstance(m, ModelResponse) for m in messages)


def _returns(messages: Sequence[ModelMessage]) -> list[ToolReturnPart]:
    """What the tools answered to the last turn's calls."""
    last = messages[-1] if messages else None
    if not isinstance(last, ModelRequest):
        return []
    return [p for p in last.parts if isinstance(p, ToolReturnPart)]


def _first_line(text: object) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0][:160] if lines else "(nothing)"


def _lead(messages: Sequence[ModelMessage]) -> _Step:
    plan = _PLAN.findall(_prompt(messages))
    turn = _turn(messages)
    if turn == 0:
        return _Step("Let me look at the project first.", [("list_files", {"pattern": "**/*.py"})])
    if turn == 1 and plan:
        names = " and ".join(agent for agent, _ in plan)
        return _Step(
            f"I will hand the work to {names}, in parallel.",
            [("delegate", {"agent": agent, "prompt": prompt}) for agent, prompt in plan],
        )
    asked = {
        part.tool_call_id: part.args_as_dict().get("agent", part.tool_name)
        for message in messages
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    }
    lines = [f"- {asked.get(r.tool_call_id, r.tool_name)}: {_first_line(r.content)}"
             for r in _returns(messages)]  # fmt: skip
    return _Step("Summary of the team's findings:\n" + "\n".join(lines or ["- nothing came back"]))


def _reader(messages: Sequence[ModelMessage]) -> _Step:
    turn = _turn(messages)
    named = _PATH.findall(_prompt(messages))
    if turn == 0 and named:
        return _Step(f"Reading {named[0]}.", [("read_file", {"path": named[0]})])
    if turn == 0:
        return _Step("Looking for Python files.", [("list_files", {"pattern": "**/*.py"})])
    returns = _returns(messages)
    content = str(returns[0].content) if returns else ""
    if turn == 1 and not named:
        found = _PATH.findall(content)
        if found:
            return _Step(f"Reading {found[0]}.", [("read_file", {"path": found[0]})])
    defined = _DEFINES.findall(content)
    what = ", ".join(defined) if defined else "no functions or classes"
    lines = len(content.splitlines())
    return _Step(f"The file has {lines} lines and defines {what}.")


def _tester(messages: Sequence[ModelMessage]) -> _Step:
    if _turn(messages) == 0:
        named = _COMMAND.findall(_prompt(messages))
        command = named[0] if named else "ls"
        return _Step(f"Running `{command}`.", [("run_command", {"command": command})])
    returns = _returns(messages)
    lines = str(returns[0].content).strip().splitlines() if returns else []
    status = lines[0].strip("[]") if lines else "no answer"
    printed = " ".join(line.strip() for line in lines[1:] if line.strip())
    said = f"; it printed: {printed}" if printed else "."
    return _Step(f"The command ended with {status}{said}")


SCRIPTS: dict[str, Callable[[Sequence[ModelMessage]], _Step]] = {
    "lead": _lead, "reader": _reader, "tester": _tester,
}  # fmt: skip
"""The scripts by name: `scripted/<name>`."""


def scripted_model(script: str) -> FunctionModel:
    """The model `scripted/<script>`.

    Raises:
        KeyError: No such script.
    """
    plan = SCRIPTS[script]

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        step = plan(messages)
        tools = {t.name for t in info.function_tools}
        calls = [(name, args) for name, args in step.calls if name in tools]
        words = step.text.split(" ")
        for index, word in enumerate(words):
            yield word if index == len(words) - 1 else word + " "
            await anyio.sleep(WORD_DELAY)
        if calls:
            turn = _turn(messages)
            yield {
                i: DeltaToolCall(name, json.dumps(args), tool_call_id=f"{script}-{turn}-{i}")
                for i, (name, args) in enumerate(calls)
            }

    async def whole(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        """The same answer unstreamed, after as long as its stream would take."""
        step = plan(messages)
        tools = {t.name for t in info.function_tools}
        words = step.text.split(" ")
        await anyio.sleep(WORD_DELAY * len(words))
        turn = _turn(messages)
        parts: list[TextPart | ToolCallPart] = [TextPart(step.text)] if step.text else []
        parts += [
            ToolCallPart(name, json.dumps(args), tool_call_id=f"{script}-{turn}-{i}")
            for i, (name, args) in enumerate(step.calls)
            if name in tools
        ]
        return ModelResponse(parts=parts, model_name=f"scripted/{script}")

    return FunctionModel(whole, stream_function=stream, model_name=f"scripted/{script}")
