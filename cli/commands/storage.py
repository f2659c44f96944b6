"""`mc storage list|create|delete|show|info|get|set|unset|edit`: storage pools, as lxc.

    mc storage create fast btrfs size=20GiB ; mc storage create slow dir source=/srv/mc
    mc launch busybox c1 -s fast ; mc storage info fast ; mc move c1 -s slow
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cli.commands.device import parse_settings
from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import format_bytes, parse_format, render, render_yaml
from cli.params import parse_key_values, url_part
from cli.yamledit import (
    edit_object,
    get_value,
    parse_writable_yaml,
    set_values,
    sorted_map,
    unset_value,
    writable,
)

if TYPE_CHECKING:
    from cli.client import Client

Pool = dict[str, Any]
DRIVERS = ("dir", "btrfs")
LIST_HEADER = ["NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"]
EDIT_HELP = """\
### This is a YAML representation of a storage pool.
### Any line starting with a '#' will be ignored.
### Only the description and btrfs.mount_options can be changed.
###
"""


def _url(name: str) -> str:
    return f"/1.0/storage-pools/{url_part(name)}"


def _target(env: Env, arg: str) -> tuple[Client, str]:
    return env.target(arg, "storage pool")


def pool_row(pool: Pool) -> list[str]:
    config = pool.get("config") or {}
    return [
        str(pool.get("name", "")),
        str(pool.get("driver", "")),
        str(config.get("source", "")),
        str(pool.get("description", "")),
        str(len(pool.get("used_by") or [])),
        str(pool.get("status", "")).upper(),
    ]


def create_request(name: str, driver: str, settings: tuple[str, ...],
                   description: str | None) -> Pool:
    """The POST /1.0/storage-pools body. The server validates keys and sizes; the driver is
    checked here first so a typo gets the list of drivers without a round trip."""
    if driver not in DRIVERS:
        raise CliError(f'Unknown storage driver "{driver}": accepted are {", ".join(DRIVERS)}')
    body: Pool = {"name": name, "driver": driver, "config": parse_key_values(settings)}
    if description is not None:
        body["description"] = description
    return body


def pool_yaml(pool: Pool) -> str:
    """`storage show` as lxc prints it."""
    return render_yaml({
        "name": pool.get("name", ""),
        "description": pool.get("description") or "",
        "driver": pool.get("driver", ""),
        "config": sorted_map(pool.get("config") or {}),
        "status": pool.get("status", ""),
        "used_by": pool.get("used_by") or [],
        "locations": pool.get("locations") or ["none"],
    })


parse_pool_yaml = parse_writable_yaml  # the fields an edited document may change


def used_by_kinds(used_by: list[str]) -> dict[str, list[str]]:
    """LXD URLs grouped as `storage info` lists them: instances, snapshots (`c1/snap0`),
    images, profiles (query strings dropped)."""
    kinds: dict[str, list[str]] = {"instances": [], "snapshots": [], "images": [],
                                   "profiles": []}
    from urllib.parse import unquote

    for url in used_by:
        parts = [unquote(p) for p in url.split("?", 1)[0].strip("/").split("/")]
        if len(parts) >= 5 and parts[1] == "instances" and parts[3] == "snapshots":
            kinds["snapshots"].append(f"{parts[2]}/{parts[4]}")
        elif len(parts) >= 3 and parts[1] in kinds:
            kinds[parts[1]].append(parts[2])
    return {k: sorted(set(v)) for k, v in kinds.items()}


def format_pool_info(pool: Pool, resources: Pool, snapshots: list[str] | None = None,
                     raw_bytes: bool = False) -> str:
    """`storage info` (lxc's YAML shape): the pool, its space, and what uses it. `snapshots`
    are those of the instances on the pool (when used_by does not list them)."""
    space = resources.get("space") or {}

    def size(value: Any) -> str | int:
        return int(value) if raw_bytes else format_bytes(int(value))

    info: dict[str, Any] = {
        "name": pool.get("name", ""),
        "driver": pool.get("driver", ""),
        "description": pool.get("description") or "",
        "status": pool.get("status", ""),
    }
    if "used" in space:
        info["space used"] = size(space["used"])
    if "total" in space:
        info["total space"] = size(space["total"])
    used = used_by_kinds(list(pool.get("used_by") or []))
    if snapshots is not None:
        used["snapshots"] = sorted(set(used["snapshots"]) | set(snapshots))
    info["usage"] = {k: len(v) for k, v in used.items()}
    return render_yaml({"info": info, "used by": {k: v for k, v in used.items() if v}})


@click.group("storage", cls=LazyGroup, aliases={"ls": "list", "rm": "delete"})
def storage() -> None:
    """Manage storage pools.

    \b
      mc storage create fast btrfs size=20GiB    (a loop file machined makes and mounts)
      mc storage create fast2 btrfs source=/dev/sdb | source=/mnt/btrfs/dir
      mc storage create slow dir source=/srv/mc
      mc launch busybox c1 -s fast ; mc storage info fast ; mc move c1 -s slow

    The `default` pool (dir) always exists. Instances, their snapshots and the images they
    came from live on the pool of their root disk device.
    """


@storage.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option
@pass_env
def list_cmd(env: Env, remote: str | None, fmt: str) -> None:
    """List storage pools."""
    where = None
    if remote is not None:
        where, rest = env.split(remote)
        if rest or ":" not in remote:
            raise click.UsageError(f'Unexpected argument "{remote}": expected [<remote>:]')
    parse_format(fmt)
    pools = sorted(env.client(where).get("/1.0/storage-pools?recursion=1") or [],
                   key=lambda p: str(p.get("name")))
    click.echo(render(fmt, LIST_HEADER, [pool_row(p) for p in pools], pools), nl=False)


@storage.command("create")
@click.argument("name", metavar="[<remote>:]<pool>")
@click.argument("driver", metavar="<driver>")
@click.argument("settings", nargs=-1, metavar="[<key>=<value>...]")
@click.option("--description", help="Pool description.")
@pass_env
def create(env: Env, name: str, driver: str, settings: tuple[str, ...],
           description: str | None) -> None:
    """Create a storage pool (drivers: dir, btrfs).

    \b
      dir:   source=<directory> (made if missing; must be empty)
      btrfs: size=<size> (a loop file, default 20% of free space, 5GiB..30GiB),
             source=<block device> or source=<directory on a mounted btrfs>,
             btrfs.mount_options=<options>
    """
    client, pool = _target(env, name)
    client.post("/1.0/storage-pools", create_request(pool, driver, settings, description))
    env.say(f"Storage pool {pool} created")


@storage.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<pool>...")
@pass_env
def delete(env: Env, names: tuple[str, ...]) -> None:
    """Delete storage pools (nothing may use them)."""
    for arg in names:
        client, name = _target(env, arg)
        client.delete(_url(name))
        env.say(f"Storage pool {name} deleted")


@storage.command("show")
@click.argument("name", metavar="[<remote>:]<pool>")
@pass_env
def show(env: Env, name: str) -> None:
    """Show a storage pool as YAML."""
    client, name = _target(env, name)
    click.echo(pool_yaml(client.get(_url(name))), nl=False)


def _pool_snapshots(client: Client, used: dict[str, list[str]]) -> list[str]:
    """The snapshots of the pool's instances (they live on their instance's pool)."""
    out: list[str] = []
    for inst in used["instances"]:
        snaps = client.get(f"/1.0/instances/{url_part(inst)}/snapshots") or []
        out += used_by_kinds([str(s) for s in snaps])["snapshots"]  # URL-decoded names
    return out


@storage.command("info")
@click.argument("name", metavar="[<remote>:]<pool>")
@click.option("--bytes", "raw_bytes", is_flag=True, help="Show sizes in bytes.")
@pass_env
def info(env: Env, name: str, raw_bytes: bool) -> None:
    """Show a storage pool's space used and total, and what uses it."""
    client, name = _target(env, name)
    pool = client.get(_url(name)) or {}
    resources = client.get(f"{_url(name)}/resources") or {}
    snapshots = _pool_snapshots(client, used_by_kinds(list(pool.get("used_by") or [])))
    click.echo(format_pool_info(pool, resources, snapshots, raw_bytes), nl=False)


@storage.command("get")
@click.argument("name", metavar="[<remote>:]<pool>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Get a property (description).")
@pass_env
def get(env: Env, name: str, key: str, prop: bool) -> None:
    """Print a storage pool config key (or property with -p)."""
    client, name = _target(env, name)
    click.echo(get_value(client.get(_url(name)) or {}, key, prop,
                         ("description", "name", "driver", "status"), "storage pool"))


@storage.command("set")
@click.argument("name", metavar="[<remote>:]<pool>")
@click.argument("settings", nargs=-1, required=True, metavar="<key>=<value>...")
@click.option("-p", "--property", "prop", is_flag=True, help="Set a property (description).")
@pass_env
def set_cmd(env: Env, name: str, settings: tuple[str, ...], prop: bool) -> None:
    """Set storage pool config keys (`key=value...` or `key value`).

    Only btrfs.mount_options (and the description, with -p) can change after creation."""
    client, name = _target(env, name)
    values = parse_settings(settings)
    body = writable(client.get(_url(name)) or {})
    set_values(body, values, prop, "storage pool")
    client.put(_url(name), body)


@storage.command("unset")
@click.argument("name", metavar="[<remote>:]<pool>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Unset a property (description).")
@pass_env
def unset(env: Env, name: str, key: str, prop: bool) -> None:
    """Unset a storage pool config key (or property with -p)."""
    client, name = _target(env, name)
    body = writable(client.get(_url(name)) or {})
    unset_value(body, key, prop, "storage pool")
    client.put(_url(name), body)


@storage.command("edit", short_help="Edit a storage pool as YAML.")
@click.argument("name", metavar="[<remote>:]<pool>")
@pass_env
def edit(env: Env, name: str) -> None:
    """Edit a storage pool as YAML: in $EDITOR on a terminal, else read from stdin."""
    client, name = _target(env, name)
    edit_object(client, _url(name), pool_yaml, EDIT_HELP, "the storage pool")
