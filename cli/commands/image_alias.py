"""`mc image alias create|delete|list|rename`, on any remote (simplestreams: list only)."""

from __future__ import annotations

import click

from cli.context import Env, format_option, pass_env
from cli.lazy import LazyGroup
from cli.output import render
from cli.params import url_part


@click.group("alias", cls=LazyGroup, aliases={"ls": "list", "mv": "rename", "rm": "delete"})
def alias() -> None:
    """Manage image aliases."""


@alias.command("create")
@click.argument("name", metavar="[<remote>:]<alias>")
@click.argument("target", metavar="<fingerprint>")
@click.option("--description", default="", help="Alias description.")
@pass_env
def create(env: Env, name: str, target: str, description: str) -> None:
    """Create an alias for an image fingerprint."""
    from cli.commands.image import image_remote, resolve_image

    remote, alias_name = env.split(name)
    client = env.client(image_remote(env, remote, writable=True))
    fingerprint = resolve_image(client, target)
    client.post(
        "/1.0/images/aliases",
        {"name": alias_name, "target": fingerprint, "description": description},
    )


@alias.command("delete")
@click.argument("name", metavar="[<remote>:]<alias>")
@pass_env
def delete(env: Env, name: str) -> None:
    """Delete an alias."""
    from cli.commands.image import image_remote

    remote, alias_name = env.split(name)
    env.client(image_remote(env, remote, writable=True)).delete(
        f"/1.0/images/aliases/{url_part(alias_name)}"
    )


@alias.command("rename")
@click.argument("old", metavar="[<remote>:]<alias>")
@click.argument("new", metavar="<new-name>")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename an alias."""
    from cli.commands.image import image_remote

    remote, old_name = env.split(old)
    env.client(image_remote(env, remote, writable=True)).post(
        f"/1.0/images/aliases/{url_part(old_name)}", {"name": new}
    )


@alias.command("list")
@click.argument("args", nargs=-1, metavar="[<remote>:] [<filter>...]")
@format_option
@pass_env
def list_cmd(env: Env, args: tuple[str, ...], fmt: str) -> None:
    """List aliases; a filter matches part of an alias name."""
    from cli.commands.image import image_remote
    from cli.commands.list import remote_filters

    remote, filters = remote_filters(env, args)
    aliases = sorted(
        (
            a
            for a in remote_aliases(env, image_remote(env, remote))
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


def remote_aliases(env: Env, remote: str) -> list[dict[str, str]]:
    """The aliases of a remote as GET /1.0/images/aliases?recursion=1 gives them."""
    from cli.commands.image import is_stream

    if is_stream(env, remote):
        from cli.streams import catalog

        conf = env.config()
        table = catalog(conf, conf.get(remote)).aliases()
        return [{"name": n, "target": fp, "type": "container", "description": ""}
                for n, fp in table.items()]
    return list(env.client(remote).get("/1.0/images/aliases?recursion=1") or [])


