"""A click Group whose sub-commands are imported only when run. `--help` lists them from the
registry's one-line summaries, so it imports none of them."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(
        self,
        *args: Any,
        lazy: dict[str, tuple[str, str]] | None = None,
        aliases: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}  # name -> ("module:attribute", one-line help)
        self.aliases = aliases or {}  # alias -> name

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.aliases.get(cmd_name, cmd_name)
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, _, attr = self.lazy[name][0].partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}:{attr} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command is not None else name), command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [*self.lazy, *self.commands]
        limit = formatter.width - 6 - max(map(len, names), default=0)  # as click.Group
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [
            (name, cmd.get_short_help_str(limit))
            for name, cmd in sorted(self.commands.items())
            if not cmd.hidden and name not in self.lazy
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
        if self.aliases:
            with formatter.section("Aliases"):
                formatter.write_dl([(a, f"= {n}") for a, n in sorted(self.aliases.items())])
