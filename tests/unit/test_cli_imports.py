"""Start-up hygiene: `mc --help`, `mc list` and `mc exec` must not import the world. Checked on
the AST of module-level imports (imports inside functions are lazy and allowed)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from cli.main import ALIASES, COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {
    "yaml",
    "websockets",
    "aiohttp",
    "machined",
    "http",
    "email",
    "requests",
    "urllib3",
    "asyncio",
    "sqlite_utils",
    "dataclasses",
    "subprocess",
    "logging",
    "ssl",
}


def module_imports(module: str) -> set[str]:
    """Modules imported at module level (TYPE_CHECKING blocks excluded)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                found.add(sub.module)
                found.update(
                    f"{sub.module}.{a.name}"
                    for a in sub.names
                    if (ROOT / sub.module.replace(".", "/") / f"{a.name}.py").exists()
                )
    return found


def closure(module: str) -> set[str]:
    """Everything imported at start-up by `module`, following cli.* modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in module_imports(current):
            if name == "cli" or name.startswith("cli."):
                todo.append(name)
            else:
                seen.add(name)
    return seen


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize(
    "module",
    [
        "cli.main",
        "cli.commands.list",
        "cli.commands.exec",
        "cli.exec_session",
        "cli.client",
        "cli.commands.action",
        "cli.commands.create",
    ],
)
def test_no_heavy_imports_at_startup(module: str) -> None:
    assert heavy(closure(module)) == set()


def test_main_imports_no_command_module() -> None:
    assert not {m for m in closure("cli.main") if m.startswith("cli.commands")}


def test_every_registered_command_loads_and_has_help() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command), name
        assert command.name == name
        assert (command.help or "").strip(), name
    for alias, target in ALIASES.items():
        command = cli.get_command(ctx, alias)
        assert command is not None and command.name == target


def test_subcommands_have_help() -> None:
    ctx = click.Context(cli)
    for name in ("image", "operation"):
        group = cli.get_command(ctx, name)
        assert isinstance(group, click.Group)
        for sub in group.commands.values():
            assert (sub.help or "").strip(), f"{name} {sub.name}"
