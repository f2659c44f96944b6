"""`mc version`."""

from __future__ import annotations

import click

from cli import __version__
from cli.context import Env, pass_env
from cli.errors import CliError


@click.command("version")
@pass_env
def version(env: Env) -> None:
    """Show client and server versions."""
    click.echo(f"Client version: {__version__}")
    try:
        server = env.client().get("/1.0") or {}
        value = (server.get("environment") or {}).get("server_version") or "unknown"
    except CliError:
        value = "unreachable"
    click.echo(f"Server version: {value}")
