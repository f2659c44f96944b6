"""`mc init` (alias `create`) and `mc launch`: create instances from images.

The image may live on another remote (`mc launch images:debian/12 c1`): the target daemon
then fetches it itself (a `source` with a `server`), caches it and records where it came from,
so the next launch reuses it and auto-update can follow the alias. From a unix-socket machined
remote (another daemon on this machine) the target reads that daemon's socket; an https target
cannot, so mc asks for `mc image copy` first there."""

from __future__ import annotations

import os
from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import parse_key_values


def create_request(
    image: str,
    name: str | None,
    *,
    source: dict[str, Any] | None = None,
    config: tuple[str, ...] = (),
    profiles: tuple[str, ...] = (),
    no_profiles: bool = False,
    ephemeral: bool = False,
    storage: str | None = None,
    description: str | None = None,
    start: bool = False,
    nic: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The POST /1.0/instances body for image `image` (without its remote); `source` is the
    image source when it is not on the target; `nic` (--network) becomes the instance's own
    eth0, over any eth0 of its profiles. The server resolves alias or fingerprint."""
    body: dict[str, Any] = {
        "source": source or {"type": "image", "alias": image},
        "config": parse_key_values(config),
        "ephemeral": ephemeral,
        "start": start,
        "type": "container",
    }
    if name:
        body["name"] = name
    if no_profiles and profiles:
        raise CliError("--no-profiles can't be used together with --profile")
    if no_profiles:
        body["profiles"] = []
    elif profiles:
        body["profiles"] = list(profiles)
    devices: dict[str, dict[str, str]] = {}
    if storage:
        devices["root"] = {"type": "disk", "path": "/", "pool": storage}
    if nic:
        devices["eth0"] = {**nic, "name": "eth0"}
    if devices:
        body["devices"] = devices
    if description is not None:
        body["description"] = description
    return body


def instance_from_operation(op: dict[str, Any]) -> str:
    urls = (op.get("resources") or {}).get("instances") or []
    return str(urls[0]).rstrip("/").rsplit("/", 1)[-1] if urls else ""


def image_source(env: Env, remote: str, image: str, target_remote: str) -> dict[str, Any] | None:
    """The `source` for an image on `remote` when instances are made on `target_remote`
    (None: the target has the image itself)."""
    if remote == target_remote:
        return None
    from cli.commands.image_remote import pull_source
    from cli.remotes import LOCAL

    conf = env.config()
    spec = conf.get(remote)
    if spec.protocol == "simplestreams":
        return pull_source(conf, spec, image)
    if spec.scheme == "https":
        _check_public(env, remote, image, target_remote)
        return pull_source(conf, spec, image)
    target = conf.get(target_remote)
    if not target.is_unix:
        raise CliError(f'"{target_remote}" cannot read images from "{remote}" (a unix '
                       f"socket on this machine): copy it first with `mc image copy "
                       f"{remote}:{image} {target_remote}:`")
    from cli.client import socket_path

    sock = socket_path() if remote == LOCAL or not spec.socket else spec.socket
    return {**pull_source(conf, spec, image), "server": "unix://" + os.path.abspath(sock)}


def _check_public(env: Env, remote: str, image: str, target_remote: str) -> None:
    """The target fetches from an https remote as an anonymous client: only public images.
    Say so before it tries (we may see private ones, as a trusted client)."""
    from cli.commands.image import resolve_image

    client = env.client(remote)
    fingerprint = resolve_image(client, image)
    if not (client.get(f"/1.0/images/{fingerprint}") or {}).get("public"):
        raise CliError(f'The image "{image}" on "{remote}" is private, so "{target_remote}" '
                       f"cannot fetch it: make it public there, or copy it first (mc image "
                       f"copy {remote}:{image} {target_remote}:)")


def _network_nic(env: Env, remote: str, network: str | None) -> dict[str, str] | None:
    """The nic `--network` asks for: on the network of that name on the target remote."""
    if not network:
        return None
    from cli.commands.network import instance_nic, network_url

    return instance_nic(env.client(remote).get(network_url(network)) or {})


def _create(env: Env, image: str, name: str | None, start: bool, network: str | None,
            **flags: Any) -> None:
    from cli.progress import wait_with_progress

    target_remote, target = env.split(name) if name else (env.default_remote(), None)
    if name and not target:
        raise CliError(f'Missing instance name in "{name}"')
    image_remote, image_name = env.split(image)
    if not image_name:
        raise CliError(f'Missing image name in "{image}"')
    nic = _network_nic(env, target_remote, network)  # a typo fails before any work
    source = image_source(env, image_remote, image_name, target_remote)
    env.say(f"Creating {target}" if target else "Creating the instance")
    body = create_request(image_name, target, source=source, start=start, nic=nic, **flags)
    client = env.client(target_remote)
    op = client.post("/1.0/instances", body, wait=False)
    if not target:
        target = instance_from_operation(op)
        if target:
            env.say(f"Instance name is: {target}")
    # From a remote the operation first downloads the image (or fails to find it): say
    # "Starting" once that is over, not above the progress line or the error.
    later = source is not None
    if start and target and not later:
        env.say(f"Starting {target}")
    wait_with_progress(client, op, env.quiet)
    if start and target and later:
        env.say(f"Starting {target}")


def _options(f: Any) -> Any:
    for option in reversed(
        [
            click.argument("image"),
            click.argument("name", required=False),
            click.option(
                "-c",
                "--config",
                multiple=True,
                metavar="KEY=VALUE",
                help="Config key/value to apply to the new instance (repeatable).",
            ),
            click.option(
                "-p",
                "--profile",
                "profiles",
                multiple=True,
                help="Profile to apply to the new instance (repeatable).",
            ),
            click.option("--no-profiles", is_flag=True, help="Apply no profiles."),
            click.option("-e", "--ephemeral", is_flag=True, help="Ephemeral instance."),
            click.option("-s", "--storage", help="Storage pool name."),
            click.option("-n", "--network",
                         help="Network for the instance's eth0 (instead of its profiles')."),
            click.option("--description", help="Instance description."),
        ]
    ):
        f = option(f)
    return pass_env(f)


@click.command("init")
@_options
def init(env: Env, image: str, name: str | None, **flags: Any) -> None:
    """Create an instance from an image (an alias or a fingerprint prefix).

    With no NAME the server picks one.
    """
    _create(env, image, name, start=False, **flags)


@click.command("launch")
@_options
def launch(env: Env, image: str, name: str | None, **flags: Any) -> None:
    """Create and start an instance from an image (an alias or a fingerprint prefix)."""
    _create(env, image, name, start=True, **flags)
