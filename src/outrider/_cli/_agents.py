"""`outrider agents`: the sub-agents defined for this project, and where they come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from .._agents._definitions import AgentSet

__all__ = ["agents_app"]

agents_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None,
    help="List the sub-agents (from .outrider/agents, .opencode/agent(s), .claude/agents).",
)  # fmt: skip
ProjectOpt = Annotated[Path | None, typer.Option("--project", help="Project dir (default: here).")]


def _consoles() -> tuple[Console, Console]:
    """Stdout and stderr, for rich output (imported when a command prints)."""
    from rich.console import Console

    return Console(highlight=False), Console(stderr=True, highlight=False)


def _problems(found: AgentSet) -> None:
    _, _err = _consoles()
    for warning in found.warnings:
        _err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    for error in found.errors:
        _err.print(f"[red]error:[/] {error}", soft_wrap=True)


@agents_app.callback()
def agents(ctx: typer.Context, project: ProjectOpt = None) -> None:
    """List the sub-agents: name, model, limit, tools, source file."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from .._agents._definitions import load_agents

    _out, _err = _consoles()
    found = load_agents(project)
    _problems(found)
    for name in found.disabled:
        _err.print(f"{name}: disabled in its file (`disable: true`)", soft_wrap=True)
    if not found.agents:
        _err.print("no agents defined; add markdown files to .outrider/agents/")
        return
    root = (project or Path.cwd()).resolve()
    table = Table("NAME", "MODEL", "LIMIT", "TOOLS", "SOURCE", box=None, pad_edge=False)
    table.columns[4].no_wrap = True
    for agent in found.agents.values():
        tools = "all" if agent.tools is None else ", ".join(agent.tools) or "none"
        model = agent.model or "(default)"
        if agent.cli:
            model = f"{model} via {agent.cli}"
        source = agent.source.resolve()
        shown = source.relative_to(root) if source.is_relative_to(root) else source
        table.add_row(agent.name, model, str(agent.limit), tools, str(shown))
    _out.print(table)


@agents_app.command()
def show(
    name: Annotated[str, typer.Argument(help="The agent's name.")], project: ProjectOpt = None
) -> None:
    """Show one agent's settings and system prompt."""
    from rich.markup import escape

    from .._agents._definitions import load_agents

    _out, _err = _consoles()
    found = load_agents(project)
    _problems(found)
    agent = found.agents.get(name)
    if agent is None:
        known = ", ".join(found.agents) or "none"
        _err.print(f"[red]error:[/] no agent {name!r}; defined: {known}", soft_wrap=True)
        raise typer.Exit(1)
    for key, value in agent.model_dump(exclude={"prompt", "name", "notes"}).items():
        if value not in (None, (), False, ""):
            _out.print(f"[bold]{key:>16}[/]  {value}", soft_wrap=True)
    for note in agent.notes:
        _out.print(f"[bold]{'not used here':>16}[/]  {escape(note)}", soft_wrap=True)
    _out.print(f"[bold]{'prompt':>16}[/]")
    _out.print(agent.prompt or "(empty)", markup=False)
