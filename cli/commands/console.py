"""`mc console NAME --show-log`."""

from __future__ import annotations

import sys

import click

from cli.context import Env, pass_env
from cli.errors import CliError


@click.command("console")
@click.argument("name", metavar="[<remote>:]<instance>")
@click.option("--show-log", is_flag=True, help="Retrieve the instance's console log.")
@pass_env
def console(env: Env, name: str, show_log: bool) -> None:
    """Show an instance's console log (attaching is not supported yet)."""
    if not show_log:
        raise CliError("Attaching to the console is not supported yet; use --show-log")
    from cli.commands.info import console_log

    client, instance = env.target(name)
    sys.stdout.buffer.write(console_log(client, instance))
    sys.stdout.flush()
