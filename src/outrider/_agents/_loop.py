"""The built-in agent's loop on pydantic-ai: model turns, tools, reports, guards, fallback.

Imported on the first agent task (pydantic-ai and the provider SDKs take seconds to import),
so `import outrider` and the daemon's start stay fast. See `outrider.runners._agent` for what a
run does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from pydantic_ai import Agent, Tool
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
)
from pydantic_ai.usage import RunUsage, UsageLimits

from .._text import clip
from .._types._task import AgentSpec, ShellSpec, TaskState, Usage
from ..runners._protocol import RunFailure, RunOutcome
from ._budget import BudgetExceeded, BudgetGuard, Tree
from ._metered import BudgetedModel
from ._providers import ModelRef, ProviderError, Providers
from ._run import AgentRun
from ._runner import TOOL_NAMES
from ._sandbox import SandboxStatus, bwrap_argv
from ._tools import TOOLS
from ._workspace import Workspace

if TYPE_CHECKING:
    from pydantic_ai import AgentRun as PydanticAgentRun
    from pydantic_ai import ModelRequestNode
    from pydantic_ai._agent_graph import AgentNode  # what `AgentRun.next` returns
    from pydantic_ai.models import Model
    from pydantic_ai.result import FinalResult
    from pydantic_graph import End

    from ..runners._protocol import RunContext
    from ._definitions import AgentDefinition
    from ._runner import AgentRunner

__all__ = ["AgentLoop"]

_WRITING = frozenset({"write_file", "edit_file", "run_command"})
_RESULT_CHARS = 20_000


class _Stop(Exception):
    """A guard stopped the run."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class AgentLoop:
    """Runs one agent task for an `AgentRunner` (whose settings and trees it uses)."""

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner

    async def _start(self, spec: AgentSpec, ctx: RunContext) -> tuple[AgentRun, list[ModelRef]]:
        known = await self.runner.visible(spec.workspace)
        definition = known.agents.get(spec.agent)
        if definition is None:
            names = ", ".join(sorted(known.agents)) or "none are defined (.outrider/agents/*.md)"
            where = spec.workspace or str(Path.cwd())
            raise RunFailure(
                f"Unknown agent {spec.agent!r} (looked in {where} and the user folders); "
                f"known: {names}.",
                type="config",
            )
        try:
            refs = [self.runner.providers.resolve(spec.model or definition.model)]
            refs += [self.runner.providers.resolve(m) for m in definition.fallback_models]
        except ProviderError as exc:
            raise RunFailure(str(exc), type="config") from None
        raw = spec.workspace or definition.workspace
        # expanduser reads the environment only; no I/O to keep off the loop
        root = Path(raw).expanduser() if raw else Path(await anyio.Path.cwd())  # noqa: ASYNC240
        if not await anyio.Path(root).is_dir():
            raise RunFailure(f"The workspace {str(root)!r} is not a directory.", type="config")
        tree_id = spec.tree or ctx.task_id
        tokens = spec.budget_tokens or definition.budget_tokens
        cost = spec.budget_cost or definition.budget_cost
        price = self.runner.providers.prices.get(refs[0].name)
        if cost is not None and any(r.name not in self.runner.providers.prices for r in refs):
            unpriced = next(r.name for r in refs if r.name not in self.runner.providers.prices)
            raise RunFailure(
                f'A cost budget needs the model\'s price: add [prices."{unpriced}"] (input '
                "and output USD per million tokens) to outrider.toml, or drop `budget_cost`.",
                type="config",
            )
        tree = self.runner.trees.get(tree_id)
        if tree is None:
            tree = self.runner.trees[tree_id] = Tree(tokens, cost)
        run = AgentRun(
            spec=spec, definition=definition, ctx=ctx,
            workspace=Workspace(
                root, definition.policy, search_timeout=self.runner.search_timeout,
                hidden=self.runner.sandbox_hide,
            ),
            tree=tree, tree_id=tree_id,
            max_turns=definition.max_turns or self.runner.default_max_turns,
            budget_tokens=tokens, budget_cost=cost,
            guard=BudgetGuard(tree, tokens, cost, price), known=known,
            sandbox=await self._sandbox(definition, ctx), loop=self,
        )  # fmt: skip
        return run, refs

    async def _sandbox(self, definition: AgentDefinition, ctx: RunContext) -> SandboxStatus | None:
        """How commands will be sandboxed; the first output line says when they are not."""
        if "run_command" not in self._allowed(definition):
            return None
        mode = self.runner.sandbox
        if mode == "off":
            ctx.output('[outrider] commands run without a sandbox (sandbox = "off")\n')
            return None
        status = await self.runner.sandbox_status()
        if status.available:
            return status
        if mode == "required":
            raise RunFailure(
                f'The sandbox is required (sandbox = "required") but {status.reason}; fix: '
                f"{status.fix}.",
                type="sandbox",
            )
        ctx.output(
            f"[outrider] commands run WITHOUT a sandbox: {status.reason}; fix: {status.fix}\n"
        )
        return None

    async def run(self, spec: AgentSpec, ctx: RunContext) -> RunOutcome:
        """Run the agent until it answers, a guard stops it, or its models all fail.

        An attempt after an interrupted one continues the stored conversation: the model calls
        and tool calls it holds are not made again.
        """
        run, refs = await self._start(spec, ctx)
        history = await self._resume(run) if ctx.resuming else []
        try:
            return await self._run_models(run, refs, history)
        finally:
            with anyio.CancelScope(shield=True):
                await self._save(run, history)
                if run.tree_id == ctx.task_id:
                    self.runner.trees.pop(run.tree_id, None)

    @staticmethod
    async def _resume(run: AgentRun) -> list[ModelMessage]:
        """The conversation the interrupted attempt stored, ready to continue (or none)."""
        raw = await run.ctx.load_transcript()
        try:
            doc = json.loads(raw) if raw is not None else {}
            history = list(ModelMessagesTypeAdapter.validate_python(doc.get("messages", [])))
        except (ValueError, AttributeError):
            return []
        _trim(history)  # an answer whose tool calls did not all run is asked for again
        if history:
            run.attempts = [a for a in doc.get("attempts", []) if isinstance(a, dict)]
            run.resumed = True
            run.ctx.output(f"[resumed from the stored transcript: {len(history)} messages]\n")
        return history

    async def _run_models(
        self, run: AgentRun, refs: list[ModelRef], history: list[ModelMessage]
    ) -> RunOutcome:
        index, drops = 0, 0
        while True:
            ref = refs[index]
            try:
                model = self.runner.providers.model(ref)
            except ProviderError as exc:
                raise RunFailure(str(exc), type="config") from None
            run.attempts.append({"model": ref.name, "error": None})
            if run.resumed:
                run.attempts[-1]["resumed"], run.resumed = True, False
            try:
                answer = await self._attempt(run, ref, model, history)
            except (ModelAPIError, httpx2.TransportError) as exc:
                reason = _describe(exc, ref, self.runner.providers)
                run.attempts[-1]["error"] = reason
                run.ctx.output(f"\n[model {ref.name} failed: {reason}]\n")
                _trim(history)
                if not isinstance(exc, ModelHTTPError) and drops < 1:  # a dropped stream
                    drops += 1
                    continue
                if index + 1 < len(refs):
                    index, drops = index + 1, 0
                    run.ctx.output(f"[continuing on {refs[index].name}]\n")
                    continue
                tried = ", ".join(a["model"] for a in run.attempts)
                raise RunFailure(
                    f"The model call failed: {reason}" + (f" (tried {tried})" if index else ""),
                    type="provider",
                ) from None
            except _Stop as exc:
                raise RunFailure(str(exc), type=exc.kind) from None
            except BudgetExceeded as exc:
                raise RunFailure(str(exc), type="budget") from None
            except UsageLimitExceeded:
                raise RunFailure(
                    f"The agent reached its maximum of {run.max_turns} turns.", type="max_turns"
                ) from None
            except UnexpectedModelBehavior as exc:
                raise RunFailure(f"The model misbehaved: {exc}", type="model") from None
            if not answer.strip():
                raise RunFailure("The agent produced no output.", type="empty_output")
            return RunOutcome(result=answer)

    async def _attempt(
        self, run: AgentRun, ref: ModelRef, model: Model, history: list[ModelMessage]
    ) -> str:
        definition = run.definition
        settings: dict[str, Any] = {}
        if definition.temperature is not None:
            settings["temperature"] = definition.temperature
        if definition.top_p is not None:
            settings["top_p"] = definition.top_p
        agent = Agent(
            BudgetedModel(model, run.guard, before=lambda messages: self._save(run, messages)),
            instructions=definition.prompt or None,
            tools=self._tools(run),
            deps_type=AgentRun,
            model_settings=settings or None,  # type: ignore[arg-type]
            name=definition.name,
        )
        usage_before = RunUsage(
            input_tokens=run.usage.input_tokens, output_tokens=run.usage.output_tokens,
            requests=run.usage.requests,
        )  # fmt: skip
        prompt = None if history else run.spec.prompt
        async with agent.iter(
            prompt,
            message_history=list(history),
            usage_limits=UsageLimits(request_limit=run.max_turns),
            usage=usage_before,
            deps=run,
        ) as agent_run:
            try:
                node = agent_run.next_node
                while not Agent.is_end_node(node):
                    if Agent.is_model_request_node(node):
                        node = await self._model_turn(run, ref, agent_run, node, history)
                    elif Agent.is_call_tools_node(node):
                        async with node.stream(agent_run.ctx) as tool_stream:
                            async for event in tool_stream:
                                self._show_tool(run, event)
                        node = await agent_run.next(node)
                        history[:] = agent_run.all_messages()
                    else:
                        node = await agent_run.next(node)
            finally:
                history[:] = agent_run.all_messages()
            result = agent_run.result
        assert result is not None
        return str(result.output)

    async def _model_turn(
        self,
        run: AgentRun,
        ref: ModelRef,
        agent_run: PydanticAgentRun[AgentRun, str],
        node: ModelRequestNode[AgentRun, str],
        history: list[ModelMessage],
    ) -> AgentNode[AgentRun, str] | End[FinalResult[str]]:
        """One model call and its answer; the node after it.

        The request (a prompt, or tool results) is stored before the answer comes (the
        model's `before`): after a crash, finished tool calls are not redone.
        """
        run.turn += 1
        run.ctx.progress(run.turn, run.max_turns, f"turn {run.turn}")
        watched = run.ctx.watched
        if self.runner.streaming == "always" or watched:
            async with node.stream(agent_run.ctx) as stream:
                async for event in stream:
                    _show_text(run, event)
            following = await agent_run.next(node)
        else:  # nobody follows it: the whole answer at once costs a fraction of a stream
            following = await agent_run.next(node)
            _show_answer(run, agent_run.all_messages()[-1])
        self._account(run, ref, agent_run.usage)
        history[:] = agent_run.all_messages()
        if watched:  # shown at once; else stored with the next request or at the run's end
            await self._save(run, history)
        if _empty(history[-1]):
            raise _Stop("The agent produced no output.", "empty_output")
        return following

    def _account(self, run: AgentRun, ref: ModelRef, total: RunUsage) -> None:
        """Record usage after a model turn, charge the tree, and apply the budgets."""
        before = run.usage
        tokens_in = total.input_tokens - before.input_tokens
        tokens_out = total.output_tokens - before.output_tokens
        part_cost = self.runner.providers.cost(ref, tokens_in, tokens_out)
        run.usage = Usage(
            input_tokens=total.input_tokens, output_tokens=total.output_tokens,
            requests=total.requests,
            cost=None if before.cost is None or part_cost is None else before.cost + part_cost,
        )  # fmt: skip
        run.ctx.usage(run.usage)
        spent = run.usage.input_tokens + run.usage.output_tokens
        if run.budget_tokens is not None and spent >= run.budget_tokens:
            raise _Stop(
                f"Token budget exceeded: {spent} of {run.budget_tokens} tokens used.", "budget"
            )
        if run.budget_cost is not None and (run.usage.cost or 0) >= run.budget_cost:
            raise _Stop(
                f"Cost budget exceeded: ${run.usage.cost:.4f} of ${run.budget_cost:.4f} used.",
                "budget",
            )
        if reason := run.tree.exhausted():
            raise _Stop(f"Stopped: {reason}.", "budget")

    def _show_tool(self, run: AgentRun, event: object) -> None:
        if isinstance(event, FunctionToolCallEvent):
            part = event.part
            args = part.args_as_json_str()
            run.ctx.output(f"\n→ {part.tool_name} {clip(args, 300)}\n")
            run.ctx.progress(run.turn, run.max_turns, f"turn {run.turn}: {part.tool_name}")
            call = (part.tool_name, args)
            run.repeats = run.repeats + 1 if call == run.last_call else 1
            run.last_call = call
            if run.repeats >= self.runner.loop_limit:
                raise _Stop(
                    f"Loop detected: {part.tool_name} was called {run.repeats} times in a row "
                    "with the same arguments.",
                    "loop",
                )
        elif isinstance(event, FunctionToolResultEvent):
            content = getattr(event.part, "content", "")
            first = str(content).strip().splitlines()[:1]
            run.ctx.output(f"← {clip(first[0], 200) if first else '(empty)'}\n")

    async def _save(self, run: AgentRun, history: list[ModelMessage]) -> None:
        doc = {
            "agent": run.definition.name, "attempts": run.attempts, "tree": run.tree_id,
            "budget": {"tokens": run.budget_tokens, "cost": run.budget_cost},
        }  # fmt: skip
        # The history's JSON goes in as pydantic-ai wrote it, not parsed and written again.
        head = json.dumps(doc, separators=(",", ":"))[:-1].encode()
        messages = ModelMessagesTypeAdapter.dump_json(history)
        await run.ctx.save_transcript(head + b',"messages":' + messages + b"}")

    # -- tools ---------------------------------------------------------------------------

    def _allowed(self, definition: AgentDefinition) -> set[str]:
        """The tools it gets: None means all of them, empty means none."""
        allowed = set(TOOL_NAMES if definition.tools is None else definition.tools)
        if definition.policy.read_only:
            allowed -= _WRITING
        return allowed

    def _tools(self, run: AgentRun) -> list[Tool[AgentRun]]:
        allowed = self._allowed(run.definition)
        return [tool for name, tool in TOOLS.items() if name in allowed]

    def delegation_refusal(self, run: AgentRun, agent: str) -> str | None:
        """Why `run` may not delegate to `agent` now, for the model; None if it may."""
        settings = self.runner
        only = run.definition.delegates
        if only is not None and agent not in only:
            return f"refused: this agent may delegate only to {', '.join(only) or 'no agent'}"
        if agent not in run.known.agents:
            return f"error: no agent {agent!r}; available: {', '.join(sorted(run.known.agents))}"
        if run.spec.depth + 1 > settings.max_depth:
            return (
                f"refused: delegation depth limit ({settings.max_depth}) reached; do this "
                "sub-task yourself"
            )
        if run.tree.live >= settings.max_descendants:
            return (
                f"refused: this delegation tree already has {run.tree.live} live sub-agents "
                f"(limit {settings.max_descendants}); wait for them or do it yourself"
            )
        if reason := run.tree.exhausted():
            return f"refused: {reason}"
        return None

    def command_argv(self, run: AgentRun, command: str) -> list[str]:
        """The argv that runs `command` for `run`, sandboxed when it can be; blocking.

        Raises:
            ToolRefused: The policy refuses the command.
        """
        ws = run.workspace
        ws.check_command(command)
        if run.sandbox is None or run.sandbox.bwrap is None:
            return ["/bin/sh", "-c", command]
        hidden = [*self.runner.sandbox_hide, *ws.denied()]
        return bwrap_argv(
            run.sandbox.bwrap, command, workspace=ws.root, hidden=hidden,
            network=ws.policy.network,
        )  # fmt: skip

    async def child(self, run: AgentRun, spec: AgentSpec | ShellSpec, label: str) -> str:
        """Run a child task of this run and wait for it; returns its answer for the model."""
        timeout = self.runner.command_timeout if isinstance(spec, ShellSpec) else None
        done = await run.ctx.spawn(spec, label=label, timeout=timeout)
        if isinstance(spec, ShellSpec):
            tail = await run.ctx.tail(done.id, lines=200)
            code = done.exit_code
            state = "timed out" if done.state == TaskState.TIMED_OUT else f"exit code {code}"
            return clip(f"[{state}]\n{tail}", _RESULT_CHARS)
        if done.state == TaskState.SUCCEEDED:
            return clip(str(done.result), _RESULT_CHARS)
        message = done.error.message if done.error else done.state.value
        return f"The sub-agent {spec.agent!r} ended {done.state.value}: {message}"


def _empty(message: ModelMessage) -> bool:
    """A model answer with neither a tool call nor any text."""
    if not isinstance(message, ModelResponse):
        return False
    parts = message.parts
    has_call = any(isinstance(p, ToolCallPart) for p in parts)
    return not has_call and not any(isinstance(p, TextPart) and p.content.strip() for p in parts)


def _show_answer(run: AgentRun, message: ModelMessage) -> None:
    """The text of a whole (unstreamed) answer, as its stream would have shown it."""
    if isinstance(message, ModelResponse):
        for part in message.parts:
            if isinstance(part, TextPart) and part.content:
                run.ctx.output(part.content)


def _show_text(run: AgentRun, event: object) -> None:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        if event.part.content:
            run.ctx.output(event.part.content)
    elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        run.ctx.output(event.delta.content_delta)


def _trim(history: list[ModelMessage]) -> None:
    """Drop trailing responses so the conversation can be continued by a model."""
    while history and not isinstance(history[-1], ModelRequest):
        history.pop()


def _describe(exc: BaseException, ref: ModelRef, providers: Providers) -> str:
    config = providers.providers[ref.provider]
    if isinstance(exc, ModelHTTPError):
        body = exc.body
        detail = ""
        if isinstance(body, dict):
            error = body.get("error", body)
            detail = str(error.get("message", "") if isinstance(error, dict) else error)
        hint = ""
        if exc.status_code in (401, 403):
            hint = f" — check the API key ({config.api_key_env or 'api_key'})"
        elif exc.status_code == 404:
            hint = f" — check the model name {ref.model!r}"
        return f"HTTP {exc.status_code} from {ref.provider}{': ' + detail if detail else ''}{hint}"
    return (
        f"cannot reach {ref.provider} at {config.base_url} ({_root_cause(exc)}) — check "
        f"providers.{ref.provider}.base_url and that the server runs"
    )


def _root_cause(exc: BaseException) -> str:
    seen: BaseException = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    return str(seen) or type(seen).__name__
