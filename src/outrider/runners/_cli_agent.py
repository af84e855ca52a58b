"""The `cli_agent` runner: an external agent CLI run through the shell runner.

A template says how to call a CLI (the argv, where the prompt and the model go) and how to read
its final answer from the output. Each built-in template uses the CLI's structured mode
(`claude -p --output-format json`, `codex exec --json`, `gemini --output-format json`,
`opencode run --format json`; aider has none), so the result is the final answer only, and
tokens and cost are read where the CLI reports them. stdout is parsed; stderr (banners,
warnings, progress) goes to the task's log only. The prompt is passed after `--` (or as
`--option=PROMPT`), so a prompt that starts with `-` is never read as an option.

The run is an ordinary shell run (own process group, logged, limited, killable); stdout is also
captured (up to 1 MiB) for parsing. A missing executable fails the task at once, naming it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._types._task import CliAgentSpec, ShellSpec, Usage
from ._protocol import RunFailure, RunOutcome
from ._shell import ShellRunner

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from ._protocol import RunContext, RunnerHost

__all__ = ["BUILTIN_TEMPLATES", "OUTPUT_FORMATS", "CliAgentRunner", "CliTemplate", "parse_answer"]

_CAPTURE_BYTES = 1024 * 1024
OutputFormat = Literal[
    "text", "claude-json", "jsonl-last-text", "codex-jsonl", "gemini-json", "opencode-jsonl",
    "aider-text",
]  # fmt: skip
OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    "text", "claude-json", "jsonl-last-text", "codex-jsonl", "gemini-json", "opencode-jsonl",
    "aider-text",
)  # fmt: skip
_MODEL_ARGS = "{model_args}"


@dataclass(frozen=True, slots=True)
class CliTemplate:
    """How to run one agent CLI.

    `command` is an argv; `{prompt}` is replaced by the prompt. `model_args` (with `{model}`
    replaced) go where `command` has `{model_args}`, else at the end, when a model is given.
    `output` names how the answer is read from stdout. `pass_env` names the variables the CLI
    gets from outrider's environment besides the safe base every task gets (its provider
    keys; an entry ending in `*` is a prefix).
    """

    command: tuple[str, ...]
    model_args: tuple[str, ...] = ()
    output: OutputFormat = "text"
    env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()

    def argv(self, prompt: str, model: str | None) -> list[str]:
        """The command line for `prompt`."""
        extra = [part.replace("{model}", model) for part in self.model_args] if model else []
        argv: list[str] = []
        for part in self.command:
            if part == _MODEL_ARGS:
                argv += extra
                extra = []
            else:
                argv.append(part.replace("{prompt}", prompt))
        return argv + extra


_ANTHROPIC = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
_OPENAI = ("OPENAI_API_KEY", "OPENAI_BASE_URL")
_GEMINI = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI")
_MANY = (*_ANTHROPIC, *_OPENAI, *_GEMINI, "OPENROUTER_API_KEY")

BUILTIN_TEMPLATES: dict[str, CliTemplate] = {
    "claude": CliTemplate(
        ("claude", "-p", "--output-format", "json", _MODEL_ARGS, "--", "{prompt}"),
        ("--model", "{model}"), "claude-json",
        pass_env=(*_ANTHROPIC, "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_*"),
    ),
    "codex": CliTemplate(
        ("codex", "exec", "--json", _MODEL_ARGS, "--", "{prompt}"), ("--model", "{model}"),
        "codex-jsonl", pass_env=(*_OPENAI, "CODEX_HOME"),
    ),
    "gemini": CliTemplate(
        ("gemini", "--output-format", "json", _MODEL_ARGS, "--prompt={prompt}"),
        ("--model", "{model}"), "gemini-json", pass_env=_GEMINI,
    ),
    "opencode": CliTemplate(
        ("opencode", "run", "--format", "json", _MODEL_ARGS, "--", "{prompt}"),
        ("--model", "{model}"), "opencode-jsonl", pass_env=(*_MANY, "OPENCODE_*"),
    ),
    "aider": CliTemplate(
        ("aider", "--yes-always", "--no-pretty", "--no-stream", "--no-check-update",
         "--no-show-release-notes", _MODEL_ARGS, "--message={prompt}"),
        ("--model", "{model}"), "aider-text", pass_env=(*_MANY, "AIDER_*"),
    ),
}  # fmt: skip
"""The agent CLIs outrider knows; config adds or overrides templates by name."""


def _json_lines(output: str) -> Iterator[dict[str, Any]]:
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                yield doc


def _map(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _claude(output: str) -> tuple[str, Usage | None]:
    docs = list(_json_lines(output))
    if not docs:
        raise ValueError("no JSON object in the output")
    doc = docs[-1]
    if doc.get("is_error"):
        raise ValueError(str(doc.get("result") or doc.get("subtype") or "error"))
    raw = doc.get("usage")
    usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
    cost, turns = doc.get("total_cost_usd"), doc.get("num_turns")
    return str(doc.get("result", "")).strip(), Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        requests=_int(turns),
        cost=float(cost) if isinstance(cost, int | float) else None,
    )


def _codex(output: str) -> tuple[str, Usage | None]:
    answer, tokens_in, tokens_out, turns = None, 0, 0, 0
    for doc in _json_lines(output):
        kind = doc.get("type")
        item = doc.get("item")
        if kind == "item.completed" and isinstance(item, dict):
            if item.get("type") in ("agent_message", "assistant_message"):
                answer = str(item.get("text") or "")
        elif kind == "turn.completed" and isinstance(usage := doc.get("usage"), dict):
            tokens_in += _int(usage.get("input_tokens"))
            tokens_out += _int(usage.get("output_tokens"))
            turns += 1
        elif kind in ("turn.failed", "error"):
            error = doc.get("error")
            message = error.get("message") if isinstance(error, dict) else doc.get("message")
            raise ValueError(str(message or kind))
    if answer is None:
        raise ValueError("no agent message in the JSON lines")
    return answer.strip(), Usage(input_tokens=tokens_in, output_tokens=tokens_out, requests=turns)


def _gemini(output: str) -> tuple[str, Usage | None]:
    start = output.find("{")
    if start == -1:
        raise ValueError("no JSON object in the output")
    doc = json.loads(output[start:])
    error = doc.get("error")
    if isinstance(error, dict):
        raise ValueError(str(error.get("message") or error))
    tokens_in = tokens_out = requests = 0
    stats = doc.get("stats")
    models = stats.get("models") if isinstance(stats, dict) else None
    for model in (models or {}).values():
        counted = model.get("tokens", {}) if isinstance(model, dict) else {}
        api = model.get("api", {}) if isinstance(model, dict) else {}
        tokens_in += _int(counted.get("prompt"))
        tokens_out += _int(counted.get("candidates")) + _int(counted.get("thoughts"))
        requests += _int(api.get("totalRequests"))
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out, requests=requests)
    return str(doc.get("response") or "").strip(), usage


def _opencode(output: str) -> tuple[str, Usage | None]:
    step: list[str] = []
    texts: list[str] = []
    tokens_in = tokens_out = requests = 0
    cost = 0.0
    for doc in _json_lines(output):
        part = _map(doc.get("part"))
        match doc.get("type"):
            case "step_start":
                step = []
            case "text":
                step.append(str(part.get("text") or ""))
                texts = step
            case "step_finish":
                tokens = _map(part.get("tokens"))
                tokens_in += _int(tokens.get("input"))
                tokens_out += _int(tokens.get("output")) + _int(tokens.get("reasoning"))
                cost += float(part.get("cost") or 0)
                requests += 1
            case "error":
                error = _map(doc.get("error")) or part
                data = _map(error.get("data")) or error
                raise ValueError(str(data.get("message") or error.get("name") or "error"))
    if not texts:
        raise ValueError("no text in the JSON lines")
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out, requests=requests, cost=cost)
    return "".join(texts).strip(), usage


_AIDER_NOISE = re.compile(
    r"^(Aider v|Main model:|Model:|Weak model:|Editor model:|Git repo:|Repo-map:|Use /help|"
    r"Added .* to the chat|Warning:|https://aider\.chat/|Tokens: )"
)
_AIDER_USAGE = re.compile(
    r"^Tokens: ([\d.]+)(k?) sent.*?, ([\d.]+)(k?) received\.(?: Cost: \$([\d.]+) message)?"
)


def _aider(output: str) -> tuple[str, Usage | None]:
    usage = None
    kept: list[str] = []
    for line in output.splitlines():
        if match := _AIDER_USAGE.match(line):
            sent = float(match.group(1)) * (1000 if match.group(2) else 1)
            received = float(match.group(3)) * (1000 if match.group(4) else 1)
            cost = float(match.group(5)) if match.group(5) else None
            usage = Usage(input_tokens=int(sent), output_tokens=int(received), cost=cost)
        elif not _AIDER_NOISE.match(line):
            kept.append(line)
    return "\n".join(kept).strip(), usage


def parse_answer(output: str, fmt: OutputFormat) -> tuple[str, Usage | None]:
    """The final answer (and usage, when the CLI reports it) from a run's stdout. Pure.

    Raises:
        ValueError: The output is not in the expected format, or reports an error.
    """
    match fmt:
        case "text":
            return output.strip(), None
        case "claude-json":
            return _claude(output)
        case "codex-jsonl":
            return _codex(output)
        case "gemini-json":
            return _gemini(output)
        case "opencode-jsonl":
            return _opencode(output)
        case "aider-text":
            return _aider(output)
        case "jsonl-last-text":
            texts = [str(d["text"]) for d in _json_lines(output) if isinstance(d.get("text"), str)]
            if not texts:
                raise ValueError("no text in the JSON lines")
            return texts[-1].strip(), None


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
        """`agent:<name>` (or `cli:<cli>`)."""
        assert isinstance(spec, CliAgentSpec)
        return (f"agent:{spec.agent}" if spec.agent else f"cli:{spec.cli}",)

    def required_keys(self, spec: object) -> tuple[str, ...]:
        """`model:<model>` when one is named (the model's own limits)."""
        assert isinstance(spec, CliAgentSpec)
        return (f"model:{spec.model}",) if spec.model else ()

    def lifespan(self, host: RunnerHost) -> AbstractAsyncContextManager[None]:
        """Nothing to set up: each CLI runs as its task's process."""
        return contextlib.nullcontext()

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
        stdout = bytearray()

        def capture(chunk: bytes) -> None:
            if len(stdout) < _CAPTURE_BYTES:
                stdout.extend(chunk[: _CAPTURE_BYTES - len(stdout)])

        shell = ShellSpec(
            command=argv, cwd=spec.cwd, env={**template.env, **spec.env},
            grace_period=spec.grace_period,
        )  # fmt: skip
        outcome = await self._shell.execute(shell, ctx, pass_env=template.pass_env, stdout=capture)
        try:
            answer, usage = parse_answer(stdout.decode(errors="replace"), template.output)
        except (ValueError, json.JSONDecodeError) as exc:
            raise RunFailure(f"The {spec.cli} CLI's answer could not be read: {exc}.") from None
        if usage is not None:
            ctx.usage(usage)
        if not answer:
            raise RunFailure("The agent produced no output.", type="empty_output")
        return RunOutcome(result=answer, exit_code=outcome.exit_code)
