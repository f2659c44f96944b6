"""`mc copy <src>[/<snap>] [<dst>]` (alias `cp`) and `mc move <src> [<dst>]` (alias `mv`).

A copy is POST /1.0/instances with a `copy` source; the server merges what the request gives
(config keys, devices, profiles) over the source's, as LXD does. `move` renames (POST
{name}) or, with --storage, moves the instance's volumes to another pool (POST {name, pool}).
Both stay within one remote for now."""

from __future__ import annotations

from typing import Any

import click

from cli.commands.create import instance_from_operation
from cli.commands.rename import rename_request
from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import parse_key_value, parse_key_values, split_snapshot, url_part


def root_device(devices: dict[str, Any]) -> str | None:
    """The name of the root disk device (type disk, path /) among `devices`."""
    for name in sorted(devices):
        dev = devices[name] or {}
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return name
    return None


def parse_device_override(item: str) -> tuple[str, str, str]:
    """`root,size=10GiB` -> ("root", "size", "10GiB")."""
    device, sep, setting = item.partition(",")
    if not sep or not device:
        raise CliError(f'Bad device override "{item}": expected <device>,<key>=<value>')
    key, value = parse_key_value(setting)
    return device, key, value


def override_devices(source: dict[str, Any], overrides: tuple[str, ...] = (),
                     pool: str | None = None) -> dict[str, dict[str, str]]:
    """The devices the copy must carry beyond the source's own: each `-d dev,k=v` applied to
    the source's device of that name (a profile's device is copied in first, as lxc does),
    and with `pool` the root disk on that pool. Empty when nothing is overridden."""
    local = source.get("devices") or {}
    expanded = source.get("expanded_devices") or {}
    out: dict[str, dict[str, str]] = {}

    def device(name: str) -> dict[str, str]:
        if name not in out:
            found = local.get(name) or expanded.get(name)
            if found is None:
                raise CliError(f'Cannot override config for device "{name}": the source has '
                               "no such device")
            out[name] = {str(k): str(v) for k, v in found.items()}
        return out[name]

    for item in overrides:
        name, key, value = parse_device_override(item)
        device(name)[key] = value
    if pool:
        root = root_device(local) or root_device(expanded)
        if root is None:
            out["root"] = {"type": "disk", "path": "/", "pool": pool}
        else:
            device(root)["pool"] = pool
    return out


def copy_request(source: str, target: str | None, *, instance_only: bool = False,
                 config: tuple[str, ...] = (), profiles: tuple[str, ...] = (),
                 no_profiles: bool = False, ephemeral: bool = False,
                 devices: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The POST /1.0/instances body copying `source` ("c1" or "c1/snap", no remote). Only
    what the user overrides is sent: the server takes the rest from the source."""
    if no_profiles and profiles:
        raise CliError("--no-profiles can't be used together with --profile")
    body: dict[str, Any] = {
        "source": {"type": "copy", "source": source, "instance_only": instance_only},
        "config": parse_key_values(config),
        "ephemeral": ephemeral,
        "type": "container",
    }
    if target:
        body["name"] = target
    if no_profiles:
        body["profiles"] = []
    elif profiles:
        body["profiles"] = list(profiles)
    if devices:
        body["devices"] = devices
    return body


def split_pair(env: Env, src: str, dst: str | None, verb: str) -> tuple[str, str, str | None]:
    """(remote, source name, target name or None) for `src [dst]` on one remote; a target on
    another remote is refused (no migration between servers yet)."""
    remote, src_name = env.split(src)
    if not src_name:
        raise CliError(f'Missing instance name in "{src}"')
    if dst is None:
        return remote, src_name, None
    # `c1/snap:x` is a snapshot name with a ':', not a remote (cli.params.parse_remote).
    dst_remote, dst_name = env.split(dst) if ":" in dst.partition("/")[0] else (remote, dst)
    if dst_remote != remote:
        raise CliError(f"{verb} between remotes is not supported yet: {verb.lower()} within "
                       f'"{remote}", or publish and launch an image on "{dst_remote}"')
    return remote, src_name, dst_name or None


def _source_object(client: Any, name: str) -> dict[str, Any]:
    inst, snap = split_snapshot(name)
    url = f"/1.0/instances/{url_part(inst)}"
    if snap is not None:
        url += f"/snapshots/{url_part(snap)}"
    return dict(client.get(url) or {})


@click.command("copy")
@click.argument("source", metavar="[<remote>:]<instance>[/<snapshot>]")
@click.argument("target", required=False, metavar="[[<remote>:]<name>]")
@click.option("-c", "--config", multiple=True, metavar="KEY=VALUE",
              help="Config key/value to apply to the new instance (repeatable).")
@click.option("-d", "--device", "devices", multiple=True, metavar="DEVICE,KEY=VALUE",
              help="Change a device of the copy (repeatable), e.g. -d root,size=10GiB.")
@click.option("-p", "--profile", "profiles", multiple=True, metavar="PROFILE",
              help="Profile to apply to the new instance instead of the source's (repeatable).")
@click.option("--no-profiles", is_flag=True, help="Apply no profiles to the new instance.")
@click.option("-e", "--ephemeral", is_flag=True, help="Make the new instance ephemeral.")
@click.option("-s", "--storage", metavar="POOL", help="Storage pool of the new instance.")
@click.option("--instance-only", is_flag=True,
              help="Copy the instance without its snapshots.")
@pass_env
def copy_cmd(env: Env, source: str, target: str | None, config: tuple[str, ...],
             devices: tuple[str, ...], profiles: tuple[str, ...], no_profiles: bool,
             ephemeral: bool, storage: str | None, instance_only: bool) -> None:
    """Copy an instance or a snapshot into a new instance.

    The copy gets new volatile keys (MAC addresses, UUID) and is not started. A running
    instance can be copied. Without a TARGET the server picks a name. Snapshots are copied
    too, unless --instance-only or the source is a snapshot.

    \b
      mc copy c1 c2 ; mc copy c1/before-upgrade c3 -s fast
      mc copy c1 c4 -c limits.memory=256MiB -p default -p small
    """
    from cli.progress import wait_with_progress

    remote, src_name, dst_name = split_pair(env, source, target, "Copying")
    if dst_name is not None and "/" in dst_name:
        raise CliError(f'The copy must be an instance, not a snapshot: "{target}"')
    for item in devices:  # bad syntax is reported before the source is read
        parse_device_override(item)
    client = env.client(remote)
    overrides: dict[str, dict[str, str]] = {}
    if devices or storage:
        overrides = override_devices(_source_object(client, src_name), devices, storage)
    body = copy_request(src_name, dst_name, instance_only=instance_only, config=config,
                        profiles=profiles, no_profiles=no_profiles, ephemeral=ephemeral,
                        devices=overrides)
    op = client.post("/1.0/instances", body, wait=False)
    if dst_name is None and (made := instance_from_operation(op)):
        click.echo(f"Instance name is: {made}")
    wait_with_progress(client, op, env.quiet, label="", key=None)


@click.command("move")
@click.argument("source", metavar="[<remote>:]<instance>[/<snapshot>]")
@click.argument("target", required=False, metavar="[[<remote>:]<instance>[/<snapshot>]]")
@click.option("-s", "--storage", metavar="POOL",
              help="Move the instance (and its snapshots) to this storage pool.")
@pass_env
def move(env: Env, source: str, target: str | None, storage: str | None) -> None:
    """Rename instances and snapshots, or move an instance to another storage pool.

    \b
      mc move c1 c2                 (= mc rename c1 c2)
      mc move c1/snap0 c1/before    (renames a snapshot)
      mc move c1 --storage fast     (the instance must be stopped)
      mc move c1 c2 -s fast         (both at once)
    """
    from cli.progress import wait_with_progress

    remote, src_name, dst_name = split_pair(env, source, target, "Moving")
    client = env.client(remote)
    if storage is None:
        if dst_name is None:
            raise click.UsageError("Give a new name or a storage pool (--storage POOL)")
        url, body = rename_request(src_name, dst_name)
        client.post(url, body)
        return
    if "/" in src_name or (dst_name is not None and "/" in dst_name):
        raise CliError("A snapshot can't be moved to another pool on its own: move its "
                       "instance (mc move c1 --storage POOL)")
    op = client.post(f"/1.0/instances/{url_part(src_name)}",
                     {"name": dst_name or src_name, "pool": storage}, wait=False)
    if isinstance(op, dict) and op.get("id"):
        wait_with_progress(client, op, env.quiet, label="", key=None)
