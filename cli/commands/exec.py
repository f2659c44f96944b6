"""`mc exec NAME [flags] [--] CMD ARGS...`: run a command in an instance, like `lxc exec`."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import UsageError
from cli.exec_core import insert_separator, run_exec


class ExecCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, insert_separator(args))


@click.command("exec", cls=ExecCommand)
@click.argument("name", metavar="[<remote>:]<instance>")
@click.argument("command", nargs=-1, required=True, metavar="[--] <command> [<args>...]")
@click.option(
    "--env",
    "env_vars",
    multiple=True,
    metavar="KEY=VALUE",
    help="Environment variable to set (repeatable).",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "interactive", "non-interactive"]),
    default="auto",
    show_default=True,
    help="Terminal mode.",
)
@click.option("-t", "--force-interactive", is_flag=True, help="Force pseudo-terminal allocation.")
@click.option(
    "-T", "--force-noninteractive", is_flag=True, help="Disable pseudo-terminal allocation."
)
@click.option("-n", "--disable-stdin", is_flag=True, help="Disable stdin (reads from /dev/null).")
@click.option("--user", type=click.IntRange(min=0), default=0, help="User ID to run as.")
@click.option("--group", type=click.IntRange(min=0), default=0, help="Group ID to run as.")
@click.option("--cwd", default="", help="Directory to run the command in (default: $HOME).")
@pass_env
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    env: Env,
    name: str,
    command: tuple[str, ...],
    env_vars: tuple[str, ...],
    **flags: Any,
) -> None:
    """Run a command in an instance; mc exits with the command's exit status.

    There is no shell: use `sh -c "..."` for one.
    """
    client, instance = env.target(name)
    params = {"name": instance, "command": command, "env_vars": env_vars, **flags}
    try:
        code = run_exec(client, params)
    except UsageError as e:
        raise click.UsageError(e.message) from None
    ctx.exit(code)
