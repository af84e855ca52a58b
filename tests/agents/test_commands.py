"""The command policy: every simple command of a line is checked, what cannot be is refused."""

from __future__ import annotations

import pytest

from outrider._agents._commands import CommandRefused, check_command, simple_commands
from outrider._agents._workspace import Patterns

RULES = Patterns(allow=("pytest*", "echo *"), deny=("rm *",))


def _never(path: str, write: bool) -> str | None:
    return None


def _check(line: str, rules: Patterns = RULES) -> None:
    check_command(line, rules, refuse_path=_never)


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        # The lines that ran under the old one-glob-per-line policy (allow pytest*, echo *).
        ("echo x; rm -f v1", "`rm -f v1` matches the deny rule 'rm *'"),
        ("echo x\nrm -f v2", "`rm -f v2` matches the deny rule 'rm *'"),
        ("echo $(rm -f v3)", "`rm -f v3` matches the deny rule 'rm *'"),
        ("git status && git push origin main", "`git status` matches no allow rule"),
        ("pytest --version; echo `rm -rf v4`", "`rm -rf v4` matches the deny rule"),
        ("pytest || rm -rf x", "`rm -rf x` matches the deny rule"),
        ("echo x | rm y", "`rm y` matches the deny rule"),
        ("(echo x; rm z)", "`rm z` matches the deny rule"),
        ("{ echo x; rm z; }", "`rm z` matches the deny rule"),
        ('echo "$(rm q)"', "`rm q` matches the deny rule"),
        ("echo ${x:-$(rm q)}", "`rm q` matches the deny rule"),
        ("A=$(rm q) pytest", "`rm q` matches the deny rule"),
        ("cat <<EOF\n$(rm h)\nEOF", "`cat` matches no allow rule"),
        ("echo <(rm p)", "`rm p` matches the deny rule"),
        ("if true; then rm c; fi", "`true` matches no allow rule"),
        ("for f in *; do rm $f; done", "`rm $f` matches the deny rule"),
        ("f() { rm -rf x; }; f", "`rm -rf x` matches the deny rule"),
        ('"r"m -rf x', "`rm -rf x` matches the deny rule"),
        ("\\rm -rf x", "`rm -rf x` matches the deny rule"),
        ("/bin/rm -rf x", "`/bin/rm -rf x` matches the deny rule 'rm *'"),
        # What the policy cannot see is refused.
        ("eval 'rm -rf x'", "runs its arguments as a command line"),
        ("source ./evil.sh", "runs a file's commands"),
        (". ./evil.sh", "runs a file's commands"),
        ("sh -c 'rm -rf x'", "runs a string as commands"),
        ("bash -lc 'echo hi'", "runs a string as commands"),
        ("echo rm x | sh", "runs the commands it reads from its input"),
        ("alias pytest='rm -rf x'", "redefines what a command name runs"),
        ("trap 'rm -rf x' EXIT", "runs a command line later"),
        ("echo . | xargs rm", "runs commands built from its input"),
        ("find . -exec rm {} ;", "runs commands for the files it finds"),
        ("$CMD -rf x", "the command name '$CMD' is not a plain word"),
        ("PATH=./bin pytest", "sets PATH, which changes what runs"),
        ("export PATH=./bin; pytest", "the command line sets PATH"),
        ("GIT_PAGER='rm -rf x' pytest", "sets GIT_PAGER"),
        ("echo 'unterminated", "cannot be parsed"),
        ("echo $(", "cannot be parsed"),
    ],
)
def test_a_refused_part_is_named_with_why(line: str, refused: str) -> None:
    with pytest.raises(CommandRefused, match=r"^refused: ") as caught:
        _check(line)
    assert refused in str(caught.value)


def test_wrappers_are_checked_with_what_they_run() -> None:
    rules = Patterns(allow=("timeout *", "env *", "pytest*", "nice *"), deny=("rm *",))
    _check("timeout 60 pytest -q", rules)
    _check("env CI=1 pytest", rules)
    _check("nice -n 5 pytest", rules)
    for line in ("timeout 60 rm -rf x", "env CI=1 rm x", "nice -n 5 rm x", "env PATH=. pytest"):
        with pytest.raises(CommandRefused):
            _check(line, rules)


def test_allowed_lines_pass() -> None:
    for line in ("pytest -q", "pytest -q && echo ok", "echo a | pytest", "CI=1 pytest",
                 "pytest > out.txt 2>&1", "echo 'rm -rf x'", "echo \"$HOME\""):  # fmt: skip
        _check(line)


def test_without_rules_only_redirections_are_checked() -> None:
    for line in ("eval 'anything'", "echo 'unterminated", "rm -rf x"):
        _check(line, Patterns())

    def no_secrets(path: str, write: bool) -> str | None:
        return "denied" if path.startswith("secrets") else None

    check_command("echo hi > ok.txt 2>/dev/null", Patterns(), refuse_path=no_secrets)
    with pytest.raises(CommandRefused, match=r"the redirection `> secrets/k`: denied"):
        check_command("echo hi > secrets/k", Patterns(), refuse_path=no_secrets)
    with pytest.raises(CommandRefused, match=r"the redirection `< secrets/k`: denied"):
        check_command("cat < secrets/k", Patterns(), refuse_path=no_secrets)


def test_simple_commands_remove_quotes_and_mark_expansions() -> None:
    (first, second) = simple_commands("git 'push'  \"origin\" main; echo $X")
    assert first.text == "git push origin main"
    assert first.literal == (True, True, True, True)
    assert second.words == ("echo", "$X")
    assert second.literal == (True, False)
