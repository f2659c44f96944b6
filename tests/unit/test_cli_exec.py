"""mc exec: argument splitting, flag validation, interactivity, request body."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.errors import UsageError
from cli.exec_core import choose_interactive, exec_request, insert_separator
from cli.main import cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["c1", "ls", "-la"], ["c1", "--", "ls", "-la"]),
        (["c1", "-t", "bash"], ["c1", "-t", "--", "bash"]),
        (
            ["c1", "--env", "A=1", "--cwd", "/tmp", "env"],
            ["c1", "--env", "A=1", "--cwd", "/tmp", "--", "env"],
        ),
        (["c1", "--env=A=1", "env"], ["c1", "--env=A=1", "--", "env"]),
        (["c1", "--", "ls", "--", "-x"], ["c1", "--", "ls", "--", "-x"]),
        (["-T", "c1", "--", "true"], ["-T", "c1", "--", "true"]),
        (["c1"], ["c1"]),
    ],
)
def test_insert_separator(args: list[str], expected: list[str]) -> None:
    assert insert_separator(args) == expected


def test_t_and_T_conflict_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["exec", "c1", "-t", "-T", "--", "true"])
    assert result.exit_code == 2
    assert "You can't pass -t and -T at the same time" in result.stderr


def test_mode_with_t_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["exec", "c1", "--mode", "interactive", "-T", "true"])
    assert result.exit_code == 2
    assert "at the same time as --mode" in result.stderr


def test_numeric_user_only() -> None:
    result = CliRunner().invoke(cli, ["exec", "c1", "--user", "root", "--", "id"])
    assert result.exit_code == 2


def test_missing_command_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["exec", "c1"]).exit_code == 2


@pytest.mark.parametrize(
    ("mode", "t", "T", "n", "stdin", "stdout", "expected"),
    [
        ("auto", False, False, False, True, True, True),
        ("auto", False, False, False, True, False, False),
        ("auto", False, False, False, False, True, False),
        ("auto", False, False, True, True, True, False),
        ("auto", True, False, False, False, False, True),
        ("auto", False, True, False, True, True, False),
        ("interactive", False, False, False, False, False, True),
        ("non-interactive", False, False, False, True, True, False),
    ],
)
def test_choose_interactive(
    mode: str, t: bool, T: bool, n: bool, stdin: bool, stdout: bool, expected: bool
) -> None:
    assert choose_interactive(mode, t, T, n, stdin, stdout) is expected


def test_choose_interactive_conflicts() -> None:
    with pytest.raises(UsageError):
        choose_interactive("auto", True, True, False, True, True)
    with pytest.raises(UsageError):
        choose_interactive("interactive", True, False, False, True, True)


def test_exec_request() -> None:
    body = exec_request(
        ["sh", "-c", "x"], ("A=1", "B", "C=x=y"), True, 120, 40, 1000, 1000, "/tmp", "xterm"
    )
    assert body == {
        "command": ["sh", "-c", "x"],
        "environment": {"TERM": "xterm", "A": "1", "B": "", "C": "x=y"},
        "interactive": True,
        "wait-for-websocket": True,
        "record-output": False,
        "width": 120,
        "height": 40,
        "user": 1000,
        "group": 1000,
        "cwd": "/tmp",
    }


def test_term_is_sent_only_when_interactive() -> None:
    body = exec_request(["true"], (), False, 80, 24, 0, 0, "", "xterm")
    assert body["environment"] == {}


PARITY_CASES = [
    ["c1", "--", "true"],
    ["c1", "true"],
    ["c1", "ls", "-la"],
    ["local:c1", "--", "sh", "-c", "echo $A"],
    ["c1", "--env", "A=1", "--env=B=2", "--user", "1000", "--group=10", "--cwd", "/tmp",
     "--", "id"],
    ["c1", "-t", "--", "bash"],
    ["c1", "-T", "-n", "cat"],
    ["c1", "--mode", "non-interactive", "--", "true"],
    ["c1", "--mode=interactive", "bash"],
    ["c1", "--force-interactive", "--disable-stdin", "--", "true", "--env", "X"],
    ["--env", "A=1", "c1", "--", "env"],
    ["c1", "--env", "NOVALUE", "--", "env"],
]


@pytest.mark.parametrize("argv", PARITY_CASES)
def test_fast_exec_parser_agrees_with_click(argv):
    """The click-free path of cli/entry.py must read arguments exactly as click does."""
    from cli.commands.exec import exec_cmd
    from cli.exec_core import parse_fast

    fast = parse_fast(list(argv))
    assert fast is not None, "a plain form fell back to click"
    ctx = exec_cmd.make_context("exec", list(argv))
    assert fast == ctx.params


@pytest.mark.parametrize("argv", [
    ["c1"], ["c1", "--"], ["--help"], ["c1", "-tn", "true"], ["c1", "--user", "root", "id"],
    ["c1", "--mode", "weird", "true"], ["c1", "--bogus", "true"], ["-h"], [],
    ["c1", "--user"],
])
def test_fast_exec_parser_leaves_anything_else_to_click(argv):
    from cli.exec_core import parse_fast

    assert parse_fast(list(argv)) is None


def test_entry_module_imports_nothing_heavy():
    import ast
    from pathlib import Path

    import cli.entry

    tree = ast.parse(Path(cli.entry.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [alias.name for n in top for alias in n.names] == ["sys"]
