"""`mc image import|list|delete|info|show` (+ `alias` and `build` sub-groups; `copy`,
`refresh` and `edit` are in image_remote.py). `list`, `info` and `show` also browse
simplestreams remotes (cli/streams.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.client import Client
from cli.context import Env, format_option, pass_env
from cli.errors import ApiError, CliError
from cli.lazy import LazyGroup
from cli.output import (
    format_bytes,
    format_mib,
    format_time,
    format_upload_date,
    render,
    render_yaml,
)
from cli.params import url_part

Image = dict[str, Any]
_HEX = frozenset("0123456789abcdef")


def _is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def resolve_image(client: Client, name: str) -> str:
    """An alias, or a unique fingerprint prefix, to the full fingerprint (`name` without its
    remote: `client` is that remote's)."""
    if not name:
        raise CliError("Missing image name")
    try:
        alias = client.get(f"/1.0/images/aliases/{url_part(name)}")
    except ApiError as e:
        if e.status != 404:
            raise
    else:
        # The server's word, and callers name files and URLs after it: a fingerprint only
        target = alias.get("target") if isinstance(alias, dict) else None
        if not _is_fingerprint(target):
            raise CliError(f'The server answered alias "{name}" with {target!r}, not an '
                           "image fingerprint")
        return str(target)
    urls = client.get("/1.0/images") or []
    fingerprints = [fp for fp in (str(u).rstrip("/").rsplit("/", 1)[-1] for u in urls)
                    if _is_fingerprint(fp)]
    found = [fp for fp in fingerprints if fp.startswith(name)]
    if not found:
        raise CliError(f'Image "{name}" not found')
    if len(found) > 1:
        raise CliError(f'More than one image matches "{name}"')
    return found[0]


def import_files(client: Client, paths: list[Path], public: bool) -> str:
    """Upload a unified (one file) or split (metadata, rootfs) image; its fingerprint."""
    from cli.transfer import Progress, file_body, multipart_body

    if len(paths) == 1:
        body = file_body(paths[0])
    else:
        body = multipart_body([("metadata", paths[0]), ("rootfs", paths[1])])
    headers = {"X-LXD-public": "1"} if public else {}
    progress = Progress("Transferring image", body.length)
    envelope = client.query("POST", "/1.0/images", body=body, headers=headers, progress=progress)
    if envelope.get("type") == "async":
        meta = client.wait_operation(str(envelope["operation"])).get("metadata") or {}
    else:
        meta = envelope.get("metadata") or {}
    fingerprint = meta.get("fingerprint")
    if not fingerprint:
        raise CliError("machined did not report the imported image's fingerprint")
    return str(fingerprint)


def set_alias(client: Client, name: str, fingerprint: str, description: str = "") -> None:
    """Create the alias, or re-point it if it exists."""
    path = f"/1.0/images/aliases/{url_part(name)}"
    try:
        current = client.get(path)
    except ApiError as e:
        if e.status != 404:
            raise
        client.post(
            "/1.0/images/aliases", {"name": name, "target": fingerprint, "description": description}
        )
        return
    if current.get("target") != fingerprint:
        client.put(
            path,
            {"target": fingerprint, "description": description or current.get("description", "")},
        )


def shortest_alias(image: Image) -> str:
    names = sorted(
        (str(a.get("name", "")) for a in image.get("aliases") or []), key=lambda n: (len(n), n)
    )
    if not names:
        return ""
    return names[0] if len(names) == 1 else f"{names[0]} ({len(names) - 1} more)"


IMAGE_HEADER = [
    "ALIAS",
    "FINGERPRINT",
    "PUBLIC",
    "DESCRIPTION",
    "ARCHITECTURE",
    "TYPE",
    "SIZE",
    "UPLOAD DATE",
]


def image_row(image: Image) -> list[str]:
    return [
        shortest_alias(image),
        str(image.get("fingerprint", ""))[:12],
        "yes" if image.get("public") else "no",
        str((image.get("properties") or {}).get("description", "")),
        str(image.get("architecture", "")),
        str(image.get("type") or "container").upper().replace("_", "-"),
        format_mib(image.get("size") or 0),
        format_upload_date(image.get("uploaded_at")),
    ]


def image_matches(image: Image, filters: list[str]) -> bool:
    for f in filters:
        key, sep, value = f.partition("=")
        if sep:
            if str((image.get("properties") or {}).get(key, "")) != value:
                return False
            continue
        aliases = [str(a.get("name", "")) for a in image.get("aliases") or []]
        if not (str(image.get("fingerprint", "")).startswith(f) or any(f in a for a in aliases)):
            return False
    return True


def format_image_info(image: Image) -> str:
    props = image.get("properties") or {}
    lines = [
        f"Fingerprint: {image.get('fingerprint', '')}",
        f"Size: {format_bytes(image.get('size') or 0)}",
        f"Architecture: {image.get('architecture', '')}",
        f"Type: {image.get('type') or 'container'}",
        f"Public: {'yes' if image.get('public') else 'no'}",
        "Timestamps:",
        f"    Created: {format_time(image.get('created_at')) or 'unknown'}",
        f"    Uploaded: {format_time(image.get('uploaded_at')) or 'unknown'}",
        f"    Expires: {format_time(image.get('expires_at')) or 'never'}",
        f"    Last used: {format_time(image.get('last_used_at')) or 'never'}",
        "Properties:",
        *(f"    {k}: {v}" for k, v in sorted(props.items())),
        "Aliases:",
        *(f"    - {a.get('name', '')}" for a in image.get("aliases") or []),
        f"Cached: {'yes' if image.get('cached') else 'no'}",
        f"Auto update: {'enabled' if image.get('auto_update') else 'disabled'}",
    ]
    source = image.get("update_source")
    if isinstance(source, dict) and source.get("server"):  # as lxc, before the profiles
        lines += ["Source:", f"    Server: {source['server']}",
                  f"    Protocol: {source.get('protocol', '')}",
                  f"    Alias: {source.get('alias') or '(none: fetched by fingerprint)'}"]
    if image.get("profiles"):
        lines += ["Profiles:", *(f"    - {p}" for p in image["profiles"])]
    return "\n".join(lines) + "\n"


@click.group("image", cls=LazyGroup, aliases={"cp": "copy", "rm": "delete"})
def image() -> None:
    """Manage images."""


@image.command("import", short_help="Import an image from files.")
@click.argument("args", nargs=-1, required=True, metavar="<tarball> [<rootfs>] [<remote>:]")
@click.option("--alias", "aliases", multiple=True, help="New alias for the image (repeatable).")
@click.option("--public", is_flag=True, help="Make the image public.")
@pass_env
def import_cmd(env: Env, args: tuple[str, ...], aliases: tuple[str, ...], public: bool) -> None:
    """Import an image file: one unified tarball, or a metadata tarball and a rootfs."""
    files = list(args)
    remote = None
    if files and files[-1].endswith(":") and len(files) > 1:
        remote = image_remote(env, env.split(files.pop())[0], writable=True)
    if len(files) > 2:
        raise click.UsageError("Too many arguments: expected <tarball> [<rootfs>]")
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise CliError(f"{p} is not a file")
    client = env.client(remote)
    fingerprint = import_files(client, paths, public)
    for alias in aliases:
        client.post(
            "/1.0/images/aliases", {"name": alias, "target": fingerprint, "description": ""}
        )
    env.say(f"Image imported with fingerprint: {fingerprint}")


@image.command("list")
@click.argument("args", nargs=-1, metavar="[<remote>:] [<filter>...]")
@format_option
@pass_env
def list_cmd(env: Env, args: tuple[str, ...], fmt: str) -> None:
    """List images. Filters: key=value on properties, or part of a fingerprint or alias."""
    from cli.commands.list import remote_filters

    remote, filters = remote_filters(env, args)
    images = [
        i for i in remote_images(env, image_remote(env, remote)) if image_matches(i, filters)
    ]
    pairs = sorted(((image_row(i), i) for i in images), key=lambda pair: pair[0])
    text = render(fmt, IMAGE_HEADER, [row for row, _ in pairs], [i for _, i in pairs])
    click.echo(text, nl=False)


@image.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<image>...")
@pass_env
def delete(env: Env, names: tuple[str, ...]) -> None:
    """Delete images by alias or fingerprint."""
    for arg in names:
        remote, name = env.split(arg)
        client = env.client(image_remote(env, remote, writable=True))
        client.delete(f"/1.0/images/{resolve_image(client, name)}")


@image.command("info")
@click.argument("name", metavar="[<remote>:]<image>")
@pass_env
def info(env: Env, name: str) -> None:
    """Show useful information about an image."""
    from cli.output import printable

    click.echo(printable(format_image_info(get_image(env, name))), nl=False)


@image.command("show")
@click.argument("name", metavar="[<remote>:]<image>")
@pass_env
def show(env: Env, name: str) -> None:
    """Show an image's properties as YAML."""
    click.echo(render_yaml(get_image(env, name)), nl=False)


def image_remote(env: Env, remote: str | None, *, writable: bool = False) -> str:
    """`remote` (None: the default remote), checked to exist; with writable, one that can
    take changes (a simplestreams server is read-only)."""
    name = remote or env.default_remote()
    if name == "local":
        return name
    if writable and env.config().get(name).protocol == "simplestreams":
        raise CliError(f'The remote "{name}" is a simplestreams image server: it is '
                       "read-only (`mc simplestreams` writes such trees)")
    return name


def is_stream(env: Env, remote: str) -> bool:
    return remote != "local" and env.config().get(remote).protocol == "simplestreams"


def remote_images(env: Env, remote: str) -> list[Image]:
    """Every image of a remote in the API's JSON shape (simplestreams: container images)."""
    if is_stream(env, remote):
        from cli.streams import catalog, image_json

        conf = env.config()
        return [image_json(i) for i in catalog(conf, conf.get(remote)).list()]
    return list(env.client(remote).get("/1.0/images?recursion=1") or [])


def get_image(env: Env, arg: str) -> Image:
    """The image `[<remote>:]<alias|fingerprint prefix>` names, from any kind of remote."""
    remote, name = env.split(arg)
    if not name:
        raise CliError(f'Missing image name in "{arg}"')
    if is_stream(env, remote):
        from cli.streams import catalog, image_json, resolve

        conf = env.config()
        spec = conf.get(remote)
        return image_json(resolve(catalog(conf, spec), spec, name))
    client = env.client(remote)
    return dict(client.get(f"/1.0/images/{resolve_image(client, name)}"))


def _register() -> None:
    from cli.commands.image_alias import alias
    from cli.commands.image_build import build
    from cli.commands.image_export import export
    from cli.commands.image_remote import copy, edit, refresh

    image.add_command(alias)
    image.add_command(build)
    image.add_command(export)
    image.add_command(copy)
    image.add_command(edit)
    image.add_command(refresh)


_register()
