"""The built-in agent's file tools: confinement to the workspace and the permission policy."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider._agents import _workspace
from outrider._agents._workspace import Patterns, Policy, ToolRefused, Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "src").mkdir(parents=True)
    (tmp_path / "ws" / "src" / "app.py").write_text("def main():\n    return 1\n# main\n")
    (tmp_path / "ws" / "secrets").mkdir()
    (tmp_path / "ws" / "secrets" / "key.txt").write_text("hunter2\n")
    (tmp_path / "ws" / ".git").mkdir()
    (tmp_path / "ws" / ".git" / "HEAD").write_text("ref: main\n")
    (tmp_path / "ws" / "blob.bin").write_bytes(b"\xff\xfe\x00main")
    (tmp_path / "outside.txt").write_text("main\n")
    (tmp_path / "ws" / "link.txt").symlink_to(tmp_path / "outside.txt")
    return tmp_path / "ws"


def test_paths_outside_and_symlinks_out_are_refused(root: Path) -> None:
    ws = Workspace(root, Policy())
    for raw in ("../outside.txt", "/etc/passwd", "link.txt", "src/../../outside.txt"):
        with pytest.raises(ToolRefused, match="outside the workspace"):
            ws.path(raw)
    assert ws.path(".") == root.resolve()
    for pattern in ("/etc/*", "../*"):
        with pytest.raises(ToolRefused, match="reaches outside"):
            ws.list(pattern)
        with pytest.raises(ToolRefused, match="reaches outside"):
            ws.grep("x", pattern)


def test_listing_and_grep_skip_tool_folders_links_out_and_denied_paths(root: Path) -> None:
    ws = Workspace(root, Policy(paths=Patterns(deny=("secrets/**",))))
    listing = ws.list().splitlines()
    assert "src/" in listing
    assert "src/app.py" in listing
    assert not any(line.startswith((".git", "secrets/", "link")) for line in listing)
    assert ws.list("*.none") == "(nothing matches)"
    hits = ws.grep("main")
    assert "src/app.py:1: def main():" in hits
    assert "src/app.py:3: # main" in hits
    assert "key.txt" not in hits
    assert "outside" not in hits
    assert ws.grep("nothing-like-this") == "(no matches)"
    with pytest.raises(ToolRefused, match="invalid regular expression"):
        ws.grep("(")
    with pytest.raises(ToolRefused, match=r"does not allow 'secrets/key\.txt'"):
        ws.read("secrets/key.txt")


def test_allow_lists_and_deny_wins() -> None:
    patterns = Patterns(allow=("pytest*", "git status"), deny=("pytest --pdb*",))
    assert patterns.permits("pytest -q")
    assert patterns.permits("git status")
    assert not patterns.permits("pytest --pdb tests")
    assert not patterns.permits("rm -rf /")
    assert Patterns().permits("anything")


def test_read_write_edit(root: Path) -> None:
    ws = Workspace(root, Policy())
    assert ws.read("src/app.py", offset=1, limit=1) == "    return 1\n"
    with pytest.raises(ToolRefused, match="is not a file"):
        ws.read("src")
    assert ws.write("new/deep/file.txt", "hello") == "wrote 5 bytes to new/deep/file.txt"
    assert (root / "new" / "deep" / "file.txt").read_text() == "hello"
    assert ws.edit("src/app.py", "return 1", "return 2") == "edited src/app.py"
    assert "return 2" in (root / "src" / "app.py").read_text()
    with pytest.raises(ToolRefused, match="occurs 2 times"):
        ws.edit("src/app.py", "main", "start")
    with pytest.raises(ToolRefused, match="occurs 0 times"):
        ws.edit("src/app.py", "", "x")
    with pytest.raises(ToolRefused, match="is not a file"):
        ws.edit("missing.py", "a", "b")


def test_a_long_file_is_cut_and_says_how_to_read_on(root: Path) -> None:
    (root / "big.txt").write_text("x" * 99 + "\n" + "y" * 200_000)
    text = Workspace(root, Policy()).read("big.txt")
    assert text.endswith("characters; read with offset]")
    assert len(text) < 100_100


def test_read_only_refuses_writes_edits_and_commands(root: Path) -> None:
    ws = Workspace(root, Policy(read_only=True))
    with pytest.raises(ToolRefused, match="read-only"):
        ws.write("a.txt", "x")
    with pytest.raises(ToolRefused, match="read-only"):
        ws.edit("src/app.py", "main", "x")
    with pytest.raises(ToolRefused, match="may not run commands"):
        ws.check_command("ls")
    assert ws.read("src/app.py").startswith("def main")


def test_command_policy(root: Path) -> None:
    ws = Workspace(root, Policy(commands=Patterns(allow=("pytest*",), deny=("*sudo*",))))
    ws.check_command("  pytest -q  ")
    with pytest.raises(ToolRefused, match="matches no allow rule"):
        ws.check_command("git push")
    with pytest.raises(ToolRefused, match=r"`sudo rm -rf /` matches the deny rule '\*sudo\*'"):
        ws.check_command("pytest; sudo rm -rf /")


def test_deny_lists_are_checked_where_links_lead(root: Path) -> None:
    (root / "link").symlink_to(root / "secrets")  # a folder link into a denied folder
    (root / "alias.txt").symlink_to(root / "secrets" / "key.txt")  # a file link to a denied file
    (root / "src" / "ok.py").symlink_to(root / "src" / "app.py")  # a link that stays allowed
    ws = Workspace(root, Policy(paths=Patterns(deny=("secrets/**",))))
    for pattern in ("link/*", "**/*", "*", "alias.txt", "link/key.txt"):
        assert "hunter2" not in ws.grep("hunter", pattern), pattern
        listing = ws.list(pattern)
        assert "key.txt" not in listing, pattern
        assert "alias.txt" not in listing, pattern
    for raw in ("link/key.txt", "alias.txt"):
        with pytest.raises(ToolRefused, match=r"does not allow 'secrets/key\.txt'"):
            ws.read(raw)
        with pytest.raises(ToolRefused, match="does not allow"):
            ws.write(raw, "x")
    assert "src/ok.py:1: def main():" in ws.grep("main", "src/*")
    assert ws.denied() == [root.resolve() / "secrets"]


def test_listing_never_follows_a_link_out_of_the_workspace(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "far.txt").write_text("main\n")
    (root / "out").symlink_to(tmp_path / "elsewhere")
    ws = Workspace(root, Policy())
    assert "far" not in ws.list()
    assert "far" not in ws.grep("main")
    assert "out" not in ws.list()


def test_a_catastrophic_pattern_is_bounded_in_time(root: Path) -> None:
    (root / "evil.txt").write_text(("a" * 40 + "!\n") * 3)
    ws = Workspace(root, Policy(), search_timeout=0.5)
    answer = ws.grep("(a|a)+$", "evil.txt")
    assert answer.endswith("[… search stopped after 0.5 s in evil.txt]")


def test_globs_match_like_the_shell(root: Path) -> None:
    ws = Workspace(root, Policy())
    assert ws.list("src/*.py") == "src/app.py"
    assert ws.list("*.py") == "(nothing matches)"
    assert ws.list("**/*.py") == "src/app.py"
    assert ws.list("src/[a-b]pp.py") == "src/app.py"
    assert ws.list("src/[!a]pp.py") == "(nothing matches)"
    assert ws.list("sr?/app.py") == "src/app.py"


_NAMES = ("a", "b", "ab", "x.py", "a.py")
_TREES = st.recursive(
    st.none(),  # a file
    lambda children: st.dictionaries(st.sampled_from(_NAMES), children, max_size=4),
    max_leaves=40,
).filter(lambda tree: isinstance(tree, dict))
_COMPONENTS = ("a", "b", "*", "?", "a*", "*.py", "**", "[ab]", "[!a]*", "x.py", "a**")


def _build(folder: Path, tree: dict[str, object]) -> None:
    folder.mkdir(exist_ok=True)
    for name, child in tree.items():
        if isinstance(child, dict):
            _build(folder / name, child)
        else:
            (folder / name).write_text("x\n")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tree=_TREES,
    components=st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=4),
    hide=st.sampled_from(_NAMES),
    dot=st.booleans(),
)
def test_a_listing_walks_only_where_its_pattern_can_match_and_finds_the_same(
    tree: dict[str, object], components: list[str], hide: str, dot: bool
) -> None:
    """A pattern's listing equals the whole walk's entries that match it, whatever it prunes."""
    pattern = ("./" if dot else "") + "/".join(components)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        _build(root, tree)
        ws = Workspace(root, Policy(), hidden=[root / hide / "a"])  # hidden, if it exists
        everything = ws.list("**").splitlines()
        glob = _workspace._glob(pattern.removeprefix("./"))
        expected = [line for line in everything if glob.match(line.removesuffix("/"))]
        assert ws.list(pattern).splitlines() == (expected or ["(nothing matches)"])


def test_a_listing_enters_only_the_folders_its_pattern_reaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for top in ("src", "docs", "build"):
        for sub in range(30):
            (tmp_path / top / f"d{sub}").mkdir(parents=True)
            (tmp_path / top / f"d{sub}" / "f.py").write_text("x\n")
    entered: list[str] = []
    scandir = _workspace.os.scandir

    def counting(folder: str) -> object:
        entered.append(Path(folder).relative_to(tmp_path).as_posix())
        return scandir(folder)

    monkeypatch.setattr(_workspace.os, "scandir", counting)
    ws = Workspace(tmp_path, Policy())
    assert ws.list("*") == "build/\ndocs/\nsrc/"
    assert entered == ["."]
    entered.clear()
    assert ws.list("src/d1?/f.py").count("\n") == 9
    assert entered == [".", "src", *(f"src/d{i}" for i in range(19, 9, -1))]
    entered.clear()
    assert ws.list("src/**/f.py").count("\n") == 29
    assert len(entered) == 32  # the root, src and its 30 folders


def test_outriders_own_files_are_never_read_listed_or_written(root: Path) -> None:
    home = root / "home" / "outrider"
    home.mkdir(parents=True)
    (home / "token").write_text("the-token\n")
    (home / "outrider.db").write_text("tasks\n")
    (root / "token-link").symlink_to(home / "token")
    ws = Workspace(root, Policy(), hidden=[home])
    for raw in ("home/outrider/token", "home/outrider", "token-link", "home/outrider/new"):
        with pytest.raises(ToolRefused, match="outrider's own"):
            ws.path(raw, write=raw.endswith("new"))
    assert not any("outrider/" in line for line in ws.list().splitlines())
    assert "the-token" not in ws.grep("token")
    assert "home/" in ws.list().splitlines()
    inside = Workspace(root / "src", Policy(), hidden=[root, home / "token"])
    assert inside.read("app.py").startswith("def main")  # a folder holding it hides nothing
