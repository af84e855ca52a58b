"""The `cli_agent` runner: an external agent CLI run through the shell runner.

A template says how to call a CLI (the argv, where the prompt and the model go) and how to read
its final answer from the output. The run is an ordinary shell run (own process group, logged,
limited, killable); its output is also captured (up to 1 MiB) so the answer can be parsed. A
missing executable fails the task at once, naming it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._models import CliAgentSpec, ShellSpec, Usage
from ._protocol import RunFailure, RunOutcome
from ._shell import ShellRunner

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._protocol import RunContext

__all__ = ["BUILTIN_TEMPLATES", "CliAgentRunner", "CliTemplate", "parse_answer"]

_CAPTURE_BYTES = 1024 * 1024
OutputFormat = Literal["text", "claude-json", "jsonl-last-text"]


@dataclass(frozen=True, slots=True)
class CliTemplate:
    """How to run one agent CLI.

    `command` is an argv; `{prompt}` is replaced by the prompt. `model_args` is appended, with
    `{model}` replaced, when a model is given. `output` names how the answer is read.
    `pass_env` names the variables the CLI gets from outrider's environment besides the safe
    base every task gets (its provider keys; an entry ending in `*` is a prefix).
    """

    command: tuple[str, ...]
    model_args: tuple[str, ...] = ()
    output: OutputFormat = "text"
    env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()

    def argv(self, prompt: str, model: str | None) -> list[str]:
        """The command line for `prompt`."""
        argv = [part.replace("{prompt}", prompt) for part in self.command]
        if model:
            argv += [part.replace("{model}", model) for part in self.model_args]
        return argv


_ANTHROPIC = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
_OPENAI = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
_GEMINI = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI")
_MANY = (*_ANTHROPIC, *_OPENAI, *_GEMINI, "OPENROUTER_API_KEY")

BUILTIN_TEMPLATES: dict[str, CliTemplate] = {
    "claude": CliTemplate(
        ("claude", "-p", "{prompt}", "--output-format", "json"),
        ("--model", "{model}"),
        "claude-json",
        pass_env=(*_ANTHROPIC, "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_*"),
    ),
    "opencode": CliTemplate(
        ("opencode", "run", "{prompt}"), ("--model", "{model}"), pass_env=(*_MANY, "OPENCODE_*")
    ),
    "codex": CliTemplate(
        ("codex", "exec", "{prompt}"), ("--model", "{model}"), pass_env=(*_OPENAI, "CODEX_HOME")
    ),
    "gemini": CliTemplate(("gemini", "-p", "{prompt}"), ("--model", "{model}"), pass_env=_GEMINI),
    "aider": CliTemplate(
        ("aider", "--yes-always", "--no-pretty", "--message", "{prompt}"),
        ("--model", "{model}"),
        pass_env=(*_MANY, "AIDER_*"),
    ),
}
"""The agent CLIs outrider knows; config adds or overrides templates by name."""


def parse_answer(output: str, fmt: OutputFormat) -> tuple[str, Usage | None]:
    """The final answer (and usage, when the CLI reports it) from a run's output. Pure.

    Raises:
        ValueError: The output is not in the expected format.
    """
    match fmt:
        case "text":
            return output.strip(), None
        case "claude-json":
            doc = _last_json_object(output)
            if doc.get("is_error"):
                raise ValueError(str(doc.get("result") or doc.get("subtype") or "error"))
            raw = doc.get("usage")
            usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
            cost, turns = doc.get("total_cost_usd"), doc.get("num_turns")
            return str(doc.get("result", "")).strip(), Usage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                requests=turns if isinstance(turns, int) else 0,
                cost=float(cost) if isinstance(cost, int | float) else None,
            )
        case "jsonl-last-text":
            texts = [
                str(doc["text"])
                for line in output.splitlines()
                if line.startswith("{") and isinstance(doc := json.loads(line), dict)
                and isinstance(doc.get("text"), str)
            ]  # fmt: skip
            if not texts:
                raise ValueError("no text in the JSON lines")
            return texts[-1].strip(), None


def _last_json_object(output: str) -> dict[str, object]:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            doc = json.loads(line)
            if isinstance(doc, dict):
                return doc
    raise ValueError("no JSON object in the output")


class _Capture:
    """A RunContext that also keeps the output (bounded) for parsing."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.data = bytearray()

    def __getattr__(self, name: str) -> object:
        return getattr(self._ctx, name)

    def output(self, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        if len(self.data) < _CAPTURE_BYTES:
            self.data += chunk[: _CAPTURE_BYTES - len(self.data)]
        self._ctx.output(chunk)


class CliAgentRunner:
    """Runs `cli_agent` tasks.

    Args:
        templates: Extra or overriding templates by CLI name (from config).
        shell: The shell runner that runs the CLIs (its environment and sandbox settings).
    """

    kind = "cli_agent"
    uses_processes = True

    def __init__(
        self,
        templates: Mapping[str, CliTemplate] | None = None,
        *,
        shell: ShellRunner | None = None,
    ) -> None:
        self.templates = {**BUILTIN_TEMPLATES, **(templates or {})}
        self._shell = shell or ShellRunner()

    def default_keys(self, spec: object) -> tuple[str, ...]:
        """`agent:<name>` (or `cli:<cli>`), and `model:<model>` when one is named."""
        assert isinstance(spec, CliAgentSpec)
        keys = [f"agent:{spec.agent}" if spec.agent else f"cli:{spec.cli}"]
        if spec.model:
            keys.append(f"model:{spec.model}")
        return tuple(keys)

    async def run(self, spec: object, ctx: RunContext) -> RunOutcome:
        """Run the CLI; its answer is the result (usage too, when it reports it)."""
        assert isinstance(spec, CliAgentSpec)
        template = self.templates.get(spec.cli)
        if template is None:
            known = ", ".join(sorted(self.templates))
            raise RunFailure(f"Unknown agent CLI {spec.cli!r}; known: {known}.", type="config")
        argv = template.argv(spec.prompt, spec.model)
        if shutil.which(argv[0], path=spec.env.get("PATH")) is None:
            raise RunFailure(
                f"The agent CLI executable {argv[0]!r} is not on PATH; install it, or point the "
                f"`cli_agents.{spec.cli}` template at it.",
                type="missing_executable",
            )
        capture = _Capture(ctx)
        shell = ShellSpec(
            command=argv, cwd=spec.cwd, env={**template.env, **spec.env},
            grace_period=spec.grace_period,
        )  # fmt: skip
        outcome = await self._shell.execute(shell, capture, pass_env=template.pass_env)  # type: ignore[arg-type]  # _Capture forwards every RunContext member
        try:
            answer, usage = parse_answer(capture.data.decode(errors="replace"), template.output)
        except (ValueError, json.JSONDecodeError) as exc:
            raise RunFailure(f"The {spec.cli} CLI's answer could not be read: {exc}.") from None
        if usage is not None:
            ctx.usage(usage)
        if not answer:
            raise RunFailure("The agent produced no output.", type="empty_output")
        return RunOutcome(result=answer, exit_code=outcome.exit_code)
