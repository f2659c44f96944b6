"""The object every command receives: global flags and the (lazily opened) API client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cli.client import Client


class Env:
    def __init__(self, debug: bool = False, quiet: bool = False) -> None:
        self.debug = debug
        self.quiet = quiet
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            from cli.client import Client

            self._client = Client(debug=self.debug)
        return self._client

    def say(self, message: str) -> None:
        """Progress chatter (`Creating c1`); silenced by --quiet."""
        if not self.quiet:
            click.echo(message)


pass_env = click.make_pass_decorator(Env, ensure=True)


# -f/--format on every list command, as lxc has it.
format_option = click.option("-f", "--format", "fmt", default="table", show_default=True,
                             help="table, compact, csv, json or yaml.")
