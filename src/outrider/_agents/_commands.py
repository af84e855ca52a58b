"""The command policy: a command line parsed into its simple commands, each checked.

The line is parsed with tree-sitter's bash grammar (the parser Codex's command checks build on),
so every command the shell would run is seen: those joined by `;`, `&&`, `||`, `|`, `&` and
newlines, inside subshells, `{ …; }` groups, `if`/`for`/`while`/`case`, functions, `$(…)` and
backtick substitutions (in arguments, strings, assignments and here-documents) and `<(…)`.

With any allow or deny rule set:
- every simple command must match an allow rule (when there are allow rules) and no deny rule.
  A command is matched as its words joined by single spaces, quotes removed (`"git" push` is
  `git push`); deny rules also see the program's base name (`/bin/rm -r x` is `rm -r x`);
- what cannot be checked is refused: a line that does not parse, a command name that is not a
  plain word (`$cmd`), commands that run a string or file as commands (`eval`, `source`, `.`,
  `sh -c`, `bash` reading its input, `alias`, `trap`, …), commands that build commands from their
  input (`xargs`, `find -exec`, `parallel`, `watch`, `su -c`), and assignments that change what
  a command name means or runs (`PATH=…`, `LD_PRELOAD=…`, `BASH_ENV=…`, `GIT_SSH_COMMAND=…`);
- wrappers (`env`, `nohup`, `nice`, `timeout`, `time`, `command`, `exec`, `sudo`, …) are
  checked themselves and the command they run is checked too.

Redirection targets are checked against the path policy whatever the rules (`refuse_path`).
A refusal is a `CommandRefused` whose message names the refused part and why, for the model.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._workspace import Patterns

__all__ = ["CommandRefused", "SimpleCommand", "check_command", "simple_commands"]

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
_RUNS_TEXT = {
    "eval": "runs its arguments as a command line",
    "source": "runs a file's commands",
    ".": "runs a file's commands",
    "alias": "redefines what a command name runs",
    "trap": "runs a command line later",
    "fc": "runs commands from the history",
    "bind": "runs commands on key presses",
    "enable": "replaces shell builtins",
}
_BUILDS = {
    "xargs": "runs commands built from its input",
    "parallel": "runs commands built from its input",
    "watch": "runs its arguments as a command line",
}
_WRAPPERS: dict[str, frozenset[str]] = {  # wrapper -> its options that take a value
    "env": frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}),
    "nohup": frozenset(),
    "nice": frozenset({"-n", "--adjustment"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "time": frozenset({"-f", "--format", "-o", "--output"}),
    "command": frozenset(),
    "builtin": frozenset(),
    "exec": frozenset({"-a"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "setsid": frozenset(),
    "sudo": frozenset({"-u", "-g", "-U", "-C", "-h", "-p", "-r", "-t", "-D"}),
    "doas": frozenset({"-u", "-C"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "chrt": frozenset(),
    "taskset": frozenset(),
}
_OPERANDS_BEFORE = {"timeout": 1, "taskset": 1, "chrt": 1}  # a duration, a mask, a priority
_DANGEROUS_VARS = frozenset({
    "PATH", "BASH_ENV", "ENV", "IFS", "PROMPT_COMMAND", "SHELLOPTS", "BASHOPTS", "PS4",
    "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXTERNAL_DIFF", "GIT_PAGER", "GIT_EDITOR", "GIT_ASKPASS",
    "GIT_EXEC_PATH", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL", "PAGER", "EDITOR", "VISUAL",
    "SSH_ASKPASS", "NODE_OPTIONS", "PERL5OPT", "RUBYOPT", "PYTHONSTARTUP", "PYTHONINSPECT",
})  # fmt: skip
_SAFE_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class CommandRefused(Exception):
    """A command line the policy refuses; the message is for the model."""


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One simple command of a line: its words (quotes removed) and where it stands."""

    words: tuple[str, ...]
    literal: tuple[bool, ...]
    """Per word: whether it is plain text (no expansion or substitution)."""
    assignments: tuple[str, ...]
    """Names assigned just for it (`CI=1 pytest`)."""

    @property
    def text(self) -> str:
        """The words joined by single spaces: what rules are matched against."""
        return " ".join(self.words)


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bash.language()))


def _text(node: Node) -> str:
    return (node.text or b"").decode(errors="replace")


def _literal(node: Node) -> str | None:
    """The value of a word that involves no expansion; None if it does."""
    match node.type:
        case "word" | "number":
            return _ESCAPE.sub(r"\1", _text(node))
        case "raw_string":
            return _text(node)[1:-1]
        case "string":
            parts = [c for c in node.children if c.type not in ('"',)]
            if any(c.type != "string_content" for c in parts):
                return None
            return _ESCAPE.sub(r"\1", "".join(_text(c) for c in parts))
        case "concatenation":
            values = [_literal(c) for c in node.children]
            return None if any(v is None for v in values) else "".join(v or "" for v in values)
    return None


def _simple(node: Node) -> SimpleCommand:
    words: list[str] = []
    literal: list[bool] = []
    assignments: list[str] = []
    for child in node.children:
        if child.type == "variable_assignment":
            name = child.child_by_field_name("name")
            assignments.append(_text(name) if name is not None else _text(child))
        elif child.type == "command_name" or (child.is_named and "redirect" not in child.type):
            target = child.children[0] if child.type == "command_name" else child
            value = _literal(target)
            words.append(_text(target) if value is None else value)
            literal.append(value is not None)
    return SimpleCommand(tuple(words), tuple(literal), tuple(assignments))


def _first_error(node: Node) -> Node | None:
    if node.type == "ERROR" or node.is_missing:
        return node
    for child in node.children:
        if child.has_error and (found := _first_error(child)) is not None:
            return found
    return None


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def simple_commands(line: str) -> list[SimpleCommand]:
    """Every simple command of `line`, in order, nested ones after their parent.

    Raises:
        CommandRefused: The line does not parse.
    """
    tree = _parser().parse(line.encode())
    if tree.root_node.has_error:
        bad = _first_error(tree.root_node) or tree.root_node
        near = line.encode()[bad.start_byte : bad.start_byte + 40].decode(errors="replace")
        raise CommandRefused(
            f"refused: the command line cannot be parsed near {near or line[-40:]!r}, so the "
            "command policy cannot check it; write it as plain shell commands"
        )
    return [_simple(n) for n in _walk(tree.root_node) if n.type == "command"]


def _assigned(line: str) -> Iterator[str]:
    tree = _parser().parse(line.encode())
    for node in _walk(tree.root_node):
        if node.type == "variable_assignment":
            name = node.child_by_field_name("name")
            yield _text(name) if name is not None else _text(node).split("=", 1)[0]


def _inner(command: SimpleCommand) -> SimpleCommand | None:
    """The command a wrapper runs (`timeout 60 pytest` → `pytest`), if any."""
    takes_value = _WRAPPERS[command.words[0]]
    index, skip = 1, _OPERANDS_BEFORE.get(command.words[0], 0)
    assignments: list[str] = []
    while index < len(command.words):
        word = command.words[index]
        if word == "--":
            index += 1
            break
        if word.startswith("-") and len(word) > 1:
            index += 2 if word in takes_value else 1
        elif command.words[0] == "env" and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
            assignments.append(word.split("=", 1)[0])
            index += 1
        elif skip:
            skip -= 1
            index += 1
        else:
            break
    if index >= len(command.words):
        return None
    return SimpleCommand(command.words[index:], command.literal[index:], tuple(assignments))


def _unprovable(command: SimpleCommand) -> str | None:
    """Why `command` hides what it runs from the policy, or None."""
    name = os.path.basename(command.words[0])
    args = command.words[1:]
    if name in _RUNS_TEXT:
        return _RUNS_TEXT[name]
    if name in _BUILDS:
        return _BUILDS[name]
    if name == "find" and any(a in ("-exec", "-execdir", "-ok", "-okdir") for a in args):
        return "runs commands for the files it finds (-exec)"
    if name in ("su", "script") and any(a == "-c" or a.startswith("--command") for a in args):
        return "runs its argument as a command line"
    if name in _SHELLS:
        options = [a for a in args if a.startswith("-") and not a.startswith("--")]
        if any("c" in a or "s" in a for a in options):
            return "runs a string as commands (`-c`)"
        if not [a for a in args if not a.startswith("-")]:
            return "runs the commands it reads from its input"
    bad = sorted(set(command.assignments) & _DANGEROUS_VARS)
    bad += sorted(a for a in command.assignments if a.startswith("LD_"))
    if bad:
        return f"sets {bad[0]}, which changes what runs"
    return None


def _rule(patterns: tuple[str, ...], *texts: str) -> str | None:
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(text, pattern) for text in texts):
            return pattern
    return None


def _check_one(command: SimpleCommand, rules: Patterns) -> None:
    shown = command.text if len(command.text) <= 80 else command.text[:79] + "…"
    if not command.literal[0]:
        raise CommandRefused(
            f"refused: in `{shown}` the command name {command.words[0]!r} is not a plain word "
            "(it comes from an expansion), so the command policy cannot check it"
        )
    if (why := _unprovable(command)) is not None:
        raise CommandRefused(
            f"refused: `{shown}` {why}, which the command policy cannot check; run the "
            "commands directly"
        )
    base = " ".join((os.path.basename(command.words[0]), *command.words[1:]))
    if (pattern := _rule(rules.deny, command.text, base)) is not None:
        raise CommandRefused(f"refused: `{shown}` matches the deny rule {pattern!r}")
    if rules.allow and _rule(rules.allow, command.text) is None:
        allowed = ", ".join(repr(p) for p in rules.allow)
        raise CommandRefused(f"refused: `{shown}` matches no allow rule (allowed: {allowed})")
    if command.words[0] in _WRAPPERS and (inner := _inner(command)) is not None:
        _check_one(inner, rules)


def _redirects(line: str) -> Iterator[tuple[str, str | None]]:
    tree = _parser().parse(line.encode())
    for node in _walk(tree.root_node):
        if node.type != "file_redirect":
            continue
        op = next((_text(c) for c in node.children if not c.is_named), "")
        target = node.child_by_field_name("destination")
        if target is None or (op in (">&", "<&") and target.type == "number"):
            continue
        yield op, _literal(target)


def check_command(
    line: str, rules: Patterns, *, refuse_path: Callable[[str, bool], str | None]
) -> None:
    """Refuse `line` unless every part of it passes the rules (see the module doc).

    Args:
        line: The command line, as `/bin/sh -c` would run it.
        rules: The allow and deny globs.
        refuse_path: Why a redirection target (path, is-a-write) is refused, or None.

    Raises:
        CommandRefused: The refused part and why.
    """
    has_rules = bool(rules.allow or rules.deny)
    try:
        commands = simple_commands(line)
    except CommandRefused:
        if has_rules:
            raise
        return
    if has_rules:
        for command in commands:
            _check_one(command, rules)
        bad = sorted(n for n in set(_assigned(line)) if n in _DANGEROUS_VARS or n.startswith("LD_"))
        if bad:
            raise CommandRefused(
                f"refused: the command line sets {bad[0]}, which changes what runs; the "
                "command policy cannot check that"
            )
    for op, target in _redirects(line):
        if target is None or target in _SAFE_TARGETS or target.startswith("/dev/fd/"):
            continue
        if (why := refuse_path(target, op in _WRITE_OPS)) is not None:
            raise CommandRefused(f"refused: the redirection `{op} {target}`: {why}")
