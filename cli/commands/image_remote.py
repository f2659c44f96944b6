"""`mc image copy|refresh|edit`: images between remotes, and what auto-update acts on.

How `image copy <src>:<image> <dst>:` moves the bytes (LXD's modes):
- pull: the target daemon downloads from the source itself (POST /1.0/images with a `source`
  object). Possible from a simplestreams server, and from a machined reached over https
  whose image is public. An alias is passed unresolved, which is what lets `--auto-update`
  follow it later.
- relay: mc exports the image from the source (GET /1.0/images/<fp>/export) into a
  temporary directory and uploads it to the target, as `mc image export` + `mc image import`
  would. That is the way from a unix-socket remote (`local:`) or for a private image. The
  fingerprint cannot change on the way: the target hashes what it receives.
`--mode push` is accepted as a relay (mc has no daemon-to-daemon push).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.context import Env, pass_env
from cli.errors import ApiError, CliError
from cli.params import url_part

if TYPE_CHECKING:
    from cli.client import Client
    from cli.remotes import ClientConfig, Remote

HEX = frozenset("0123456789abcdef")


def looks_like_fingerprint(name: str) -> bool:
    """Hex only: a fingerprint (prefix). Anything else is an alias (`debian/12`, `22.04`)."""
    return bool(name) and set(name) <= HEX


def pull_source(conf: ClientConfig, remote: Remote, name: str, *,
                by_fingerprint: bool = False) -> dict[str, Any]:
    """The `source` object that makes a daemon fetch `name` from `remote` itself. A name is
    passed as an `alias` unless the caller knows it is a fingerprint: the daemon resolves an
    alias first and a fingerprint prefix after, and records the alias only when it was one.
    Guessing from the characters would make hex-only aliases (`bb`, `deb12`) fingerprints
    and lose their auto-update."""
    source: dict[str, Any] = {
        "type": "image", "mode": "pull", "server": remote.addr, "protocol": remote.protocol,
        "certificate": conf.pinned_pem(remote.name), "image_type": "container",
    }
    source["fingerprint" if by_fingerprint else "alias"] = name
    return source


def copy_request(source: dict[str, Any], *, public: bool, auto_update: bool) -> dict[str, Any]:
    """The POST /1.0/images body of a pull copy (aliases are made afterwards by mc)."""
    return {"source": source, "public": public, "auto_update": auto_update}


def check_aliases(client: Client, aliases: list[str], reuse: bool, remote: str,
                  fingerprint: str = "") -> None:
    """Refuse an alias the target already has for another image (unless --reuse); before
    the copy, when the image is not known yet, any existing alias."""
    if reuse:
        return
    for alias in aliases:
        try:
            current = client.get(f"/1.0/images/aliases/{url_part(alias)}")
        except ApiError as e:
            if e.status == 404:
                continue
            raise
        if fingerprint and current.get("target") == fingerprint:
            continue
        raise CliError(f'Alias "{alias}" already exists on "{remote}" (image '
                       f"{str(current.get('target', ''))[:12]}): delete it, choose another "
                       "name, or pass --reuse to move it")


def apply_aliases(client: Client, aliases: list[str], fingerprint: str) -> None:
    from cli.commands.image import set_alias

    for alias in aliases:
        set_alias(client, alias, fingerprint)


# -- relay ----------------------------------------------------------------------------------
def relay(src: Client, dst: Client, fingerprint: str, public: bool) -> str:
    """Export from src into a temporary directory (verified against the fingerprint while it
    streams), import into dst; the fingerprint dst computed."""
    import tempfile

    from cli.commands.image import import_files
    from cli.commands.image_export import discard, fetch

    with tempfile.TemporaryDirectory(prefix="mc-image-copy-") as tmp:
        parts = fetch(src, fingerprint, Path(tmp), label="Exporting image")
        try:
            return import_files(dst, [p.temp for p in parts], public)
        finally:
            discard(parts)


# -- copy -----------------------------------------------------------------------------------
@click.command("copy")
@click.argument("source", metavar="[<remote>:]<image>")
@click.argument("target", metavar="<remote>:")
@click.option("--alias", "aliases", multiple=True, help="New alias on the target (repeatable).")
@click.option("--copy-aliases", is_flag=True, help="Copy the source image's aliases too.")
@click.option("--auto-update", is_flag=True,
              help="Keep the image up to date (a pull copy of an alias).")
@click.option("--public", is_flag=True, help="Make the image public on the target.")
@click.option("--reuse", is_flag=True, help="Move target aliases that already exist.")
@click.option("--mode", type=click.Choice(["pull", "push", "relay"]), default="pull",
              show_default=True, help="How the image travels (push is done as relay).")
@pass_env
def copy(env: Env, source: str, target: str, aliases: tuple[str, ...], copy_aliases: bool,
         auto_update: bool, public: bool, reuse: bool, mode: str) -> None:
    """Copy an image to another remote.

    \b
      mc image copy images:debian/12 local: --alias deb12 --auto-update
      mc image copy local:myimage lab2: --copy-aliases
    """
    from cli.commands.image import image_remote

    src_remote, name = env.split(source)
    if not name:
        raise click.UsageError(f'Missing image name in "{source}"')
    dst_remote, rest = env.split(target)
    if rest or ":" not in target:
        raise CliError(f'The target must be a remote, like "local:" (got "{target}")')
    if auto_update and mode != "pull":
        raise click.UsageError("--auto-update needs --mode pull (the target follows the alias)")
    dst_remote = image_remote(env, dst_remote, writable=True)
    conf = env.config()
    src = conf.get(src_remote)
    dst = env.client(dst_remote)
    check_aliases(dst, list(aliases), reuse, dst_remote)
    if src.protocol == "simplestreams":
        fingerprint, names = _from_stream(env, conf, src, name, copy_aliases, public,
                                          auto_update, dst)
    else:
        fingerprint, names = _from_machined(env, src_remote, dst_remote, name, copy_aliases,
                                            public, auto_update, mode)
    apply_flags(dst, fingerprint, public, auto_update)
    new = [a for a in [*aliases, *names] if a]
    if copy_aliases:
        check_aliases(dst, names, reuse, dst_remote, fingerprint)
    apply_aliases(dst, list(dict.fromkeys(new)), fingerprint)
    env.say("Image copied successfully!")


def _from_stream(env: Env, conf: ClientConfig, src: Remote, name: str, copy_aliases: bool,
                 public: bool, auto_update: bool, dst: Client) -> tuple[str, list[str]]:
    names: list[str] = []
    by_fingerprint = False
    # The aliases are the server's: read its catalog here when they are wanted, or when
    # --auto-update must know that a hex-only name is an alias and not a fingerprint.
    if copy_aliases or (auto_update and looks_like_fingerprint(name)):
        from cli.streams import catalog, resolve

        cat = catalog(conf, src)
        image = resolve(cat, src, name)
        names = list(image.aliases) if copy_aliases else []
        by_fingerprint = name not in cat.aliases()
        if auto_update and by_fingerprint:
            raise CliError(no_alias_to_follow(src.name, name, list(image.aliases)))
    body = copy_request(pull_source(conf, src, name, by_fingerprint=by_fingerprint),
                        public=public, auto_update=auto_update)
    return _pull(env, dst, body), names


def _from_machined(env: Env, src_remote: str, dst_remote: str, name: str, copy_aliases: bool,
                   public: bool, auto_update: bool, mode: str) -> tuple[str, list[str]]:
    from cli.commands.image import resolve_image

    conf = env.config()
    src_client = env.client(src_remote)
    dst = env.client(dst_remote)
    fingerprint = resolve_image(src_client, name)
    info = src_client.get(f"/1.0/images/{fingerprint}") or {}
    aliases = [str(a.get("name", "")) for a in info.get("aliases") or []]
    names = aliases if copy_aliases else []
    by_alias = name in aliases  # resolve_image tries the alias first, as the daemon will
    if auto_update and src_remote == dst_remote:
        raise CliError("--auto-update needs an image from another remote (the target "
                       "follows the source's alias)")
    if auto_update and not by_alias:
        raise CliError(no_alias_to_follow(src_remote, name, aliases))
    if src_remote == dst_remote:
        return fingerprint, names
    src = conf.get(src_remote)
    pullable = src.scheme == "https" and bool(info.get("public"))
    if mode == "pull" and pullable:
        body = copy_request(pull_source(conf, src, name if by_alias else fingerprint,
                                        by_fingerprint=not by_alias),
                            public=public, auto_update=auto_update)
        return _pull(env, dst, body), names
    if auto_update:
        why = "it is private there" if src.scheme == "https" else "it is reached over a " \
            "unix socket the target cannot use"
        raise CliError(f'--auto-update needs the target to pull the image from "{src_remote}", '
                       f"but {why}; copy without --auto-update")
    if dst.exists(f"/1.0/images/{fingerprint}"):
        return fingerprint, names
    copied = relay(src_client, dst, fingerprint, public)
    if copied != fingerprint:
        raise CliError(f"The copy's fingerprint {copied} differs from the source's "
                       f"{fingerprint}")
    return copied, names


def no_alias_to_follow(remote: str, name: str, aliases: list[str]) -> str:
    """The --auto-update refusal for an image named by fingerprint (nothing to re-resolve)."""
    hint = f" (e.g. {remote}:{aliases[0]})" if aliases else ""
    return (f'--auto-update follows an alias, but "{name}" is a fingerprint on "{remote}": '
            f"copy it by alias{hint}, or without --auto-update")


def _pull(env: Env, dst: Client, body: dict[str, Any]) -> str:
    from cli.progress import wait_with_progress

    op = dst.post("/1.0/images", body, wait=False)
    done = wait_with_progress(dst, op, env.quiet)
    fingerprint = (done.get("metadata") or {}).get("fingerprint")
    if not fingerprint:
        raise CliError("The target daemon did not report the copied image's fingerprint")
    return str(fingerprint)


def apply_flags(dst: Client, fingerprint: str, public: bool, auto_update: bool) -> None:
    """The target may have had the image already (cached by a launch, copied before): the
    flags asked for still apply to it."""
    wanted = {k: True for k, v in (("public", public), ("auto_update", auto_update)) if v}
    if wanted:
        image = dst.get(f"/1.0/images/{fingerprint}") or {}
        if any(not image.get(k) for k in wanted):
            dst.patch(f"/1.0/images/{fingerprint}", wanted)


# -- refresh --------------------------------------------------------------------------------
@click.command("refresh", short_help="Refresh images from their source now.")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<image>...")
@pass_env
def refresh(env: Env, names: tuple[str, ...]) -> None:
    """Refresh images from their source now (images copied or cached from a remote alias)."""
    from cli.commands.image import image_remote, resolve_image
    from cli.progress import wait_with_progress

    for arg in names:
        remote, name = env.split(arg)
        client = env.client(image_remote(env, remote, writable=True))
        fingerprint = resolve_image(client, name)
        op = client.post(f"/1.0/images/{fingerprint}/refresh", {}, wait=False)
        done = wait_with_progress(client, op, env.quiet)
        if (done.get("metadata") or {}).get("refreshed"):
            click.echo("Image refreshed successfully!")
        else:
            click.echo("Image already up to date.")


# -- edit -----------------------------------------------------------------------------------
EDITABLE = ("auto_update", "properties", "public", "expires_at")
# What `mc image show` prints besides the editable fields: accepted and ignored, so that
# `mc image show x | (edit) | mc image edit x` works as with lxc.
READ_ONLY = ("aliases", "architecture", "cached", "created_at", "filename", "fingerprint",
             "last_used_at", "profiles", "project", "size", "type", "update_source",
             "uploaded_at")
EDIT_HELP = """\
### This is a YAML representation of the image properties.
### Any line starting with a '#' will be ignored.
###
### Each property is represented by a single line:
### An example would be:
###  description: My custom image
###
### Editable: auto_update, properties, public, expires_at.
"""


def image_yaml(image: dict[str, Any]) -> str:
    from cli.output import render_yaml

    return render_yaml({k: image.get(k) for k in EDITABLE if k in image})


def parse_image_yaml(text: str) -> dict[str, Any]:
    """The PUT /1.0/images/<fp> body an edited document means; one-line errors."""
    import datetime

    from cli.yamledit import load_mapping, string_map

    data = load_mapping(text)
    unknown = sorted(set(data) - set(EDITABLE) - set(READ_ONLY))
    if unknown:
        raise CliError(f"Unknown image field{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(unknown)} (editable: {', '.join(EDITABLE)})")
    body: dict[str, Any] = {}
    for key in ("auto_update", "public"):
        value = data.get(key, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            raise CliError(f"{key} must be true or false, not {value!r}")
        body[key] = value
    body["properties"] = string_map(data.get("properties"), "properties")
    expires = data.get("expires_at")
    if isinstance(expires, datetime.datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)
        expires = expires.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(expires, datetime.date):
        expires = f"{expires.isoformat()}T00:00:00Z"
    if expires is not None and not isinstance(expires, str):
        raise CliError(f"expires_at must be a date and time (2030-01-31T00:00:00Z), not "
                       f"{expires!r}")
    if expires is not None:
        body["expires_at"] = expires
    return body


@click.command("edit", short_help="Edit an image's properties as YAML.")
@click.argument("name", metavar="[<remote>:]<image>")
@pass_env
def edit(env: Env, name: str) -> None:
    """Edit an image's properties (YAML) in $EDITOR, or from stdin when it is not a terminal.

    \b
      mc image edit deb12 < image.yaml
    """
    from cli.commands.image import image_remote, resolve_image
    from cli.yamledit import edit_until_accepted

    remote, image_name = env.split(name)
    client = env.client(image_remote(env, remote, writable=True))
    url = f"/1.0/images/{resolve_image(client, image_name)}"

    def apply(text: str) -> None:
        client.put(url, parse_image_yaml(text))

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    edit_until_accepted(EDIT_HELP + "\n" + image_yaml(client.get(url)), apply, "the image")
