"""`mc image alias create|delete|list|rename`."""

from __future__ import annotations

import click

from cli.context import Env, format_option, pass_env
from cli.output import render
from cli.params import parse_remote, url_part


@click.group("alias")
def alias() -> None:
    """Manage image aliases."""


@alias.command("create")
@click.argument("name", metavar="[<remote>:]<alias>")
@click.argument("target", metavar="<fingerprint>")
@click.option("--description", default="", help="Alias description.")
@pass_env
def create(env: Env, name: str, target: str, description: str) -> None:
    """Create an alias for an image fingerprint."""
    from cli.commands.image import resolve_image

    client = env.client()
    fingerprint = resolve_image(client, target)
    _, alias_name = parse_remote(name)
    client.post(
        "/1.0/images/aliases",
        {"name": alias_name, "target": fingerprint, "description": description},
    )


@alias.command("delete")
@click.argument("name", metavar="[<remote>:]<alias>")
@pass_env
def delete(env: Env, name: str) -> None:
    """Delete an alias."""
    _, alias_name = parse_remote(name)
    env.client().delete(f"/1.0/images/aliases/{url_part(alias_name)}")


@alias.command("rename")
@click.argument("old", metavar="[<remote>:]<alias>")
@click.argument("new", metavar="<new-name>")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename an alias."""
    _, old_name = parse_remote(old)
    env.client().post(f"/1.0/images/aliases/{url_part(old_name)}", {"name": new})


@alias.command("list")
@click.argument("args", nargs=-1, metavar="[<remote>:] [<filter>...]")
@format_option
@pass_env
def list_cmd(env: Env, args: tuple[str, ...], fmt: str) -> None:
    """List aliases; a filter matches part of an alias name."""
    from cli.commands.list import split_args

    filters = split_args(args)
    aliases = sorted(
        (
            a
            for a in env.client().get("/1.0/images/aliases?recursion=1") or []
            if all(f in str(a.get("name", "")) for f in filters)
        ),
        key=lambda a: str(a.get("name", "")),
    )
    rows = [
        [
            str(a.get("name", "")),
            str(a.get("target", ""))[:12],
            str(a.get("type") or "container").upper(),
            str(a.get("description", "")),
        ]
        for a in aliases
    ]
    click.echo(
        render(fmt, ["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"], rows, aliases), nl=False
    )


alias.add_command(delete, "rm")
alias.add_command(list_cmd, "ls")
alias.add_command(rename, "mv")
