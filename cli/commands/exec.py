"""`mc exec NAME [flags] [--] CMD ARGS...`: run a command in an instance, like `lxc exec`."""

from __future__ import annotations

import os
from typing import Any

import click

from cli.context import Env, pass_env
from cli.params import local_name, parse_key_value, url_part

VALUE_OPTIONS = {"--env", "--mode", "--user", "--group", "--cwd"}


def insert_separator(args: list[str]) -> list[str]:
    """Options may follow the instance name, but the command starts at the next word:
    `exec c1 ls -la` is read as `exec c1 -- ls -la`."""
    out: list[str] = []
    positional = 0
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg.startswith("-") and arg != "-":
            out.append(arg)
            if arg in VALUE_OPTIONS and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
            i += 1
            continue
        positional += 1
        if positional == 2:
            return out + ["--"] + args[i:]
        out.append(arg)
        i += 1
    return out


def choose_interactive(
    mode: str,
    force_interactive: bool,
    force_noninteractive: bool,
    disable_stdin: bool,
    stdin_tty: bool,
    stdout_tty: bool,
) -> bool:
    """lxc's rule: -t/-T or --mode decide; otherwise stdin AND stdout must both be TTYs."""
    if force_interactive and force_noninteractive:
        raise click.UsageError("You can't pass -t and -T at the same time")
    if mode != "auto" and (force_interactive or force_noninteractive):
        raise click.UsageError("You can't pass -t or -T at the same time as --mode")
    if force_interactive or mode == "interactive":
        return True
    if force_noninteractive or mode == "non-interactive":
        return False
    return stdin_tty and stdout_tty and not disable_stdin


def exec_request(
    command: list[str],
    env: tuple[str, ...],
    interactive: bool,
    width: int,
    height: int,
    user: int,
    group: int,
    cwd: str,
    term: str | None,
) -> dict[str, Any]:
    environment: dict[str, str] = {}
    if interactive and term:
        environment["TERM"] = term
    environment.update(parse_key_value(e, allow_bare=True) for e in env)
    return {
        "command": command,
        "environment": environment,
        "interactive": interactive,
        "wait-for-websocket": True,
        "record-output": False,
        "width": width,
        "height": height,
        "user": user,
        "group": group,
        "cwd": cwd,
    }


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
    interactive = choose_interactive(
        flags["mode"],
        flags["force_interactive"],
        flags["force_noninteractive"],
        flags["disable_stdin"],
        os.isatty(0),
        os.isatty(1),
    )
    from cli.exec_session import Session, terminal_size

    width, height = terminal_size()
    body = exec_request(
        list(command),
        env_vars,
        interactive,
        width,
        height,
        flags["user"],
        flags["group"],
        flags["cwd"],
        os.environ.get("TERM"),
    )
    client = env.client()
    op = client.post(f"/1.0/instances/{url_part(local_name(name))}/exec", body, wait=False)
    ctx.exit(Session(client, op).run(interactive, flags["disable_stdin"]))
