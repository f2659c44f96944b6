"""`mc profile ...`: list, show, create, copy, rename, delete, edit, get/set/unset, add/remove/
assign (an instance's profiles) and `device`, as lxc."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cli.commands.device import parse_settings, profile_device
from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import parse_format, render, render_yaml
from cli.params import url_part
from cli.yamledit import (
    edit_until_accepted,
    load_mapping,
    mapping,
    sorted_map,
    string_map,
    stringify,
)

if TYPE_CHECKING:
    from cli.client import Client

Profile = dict[str, Any]


def _url(name: str) -> str:
    return f"/1.0/profiles/{url_part(name)}"


def _target(env: Env, arg: str) -> tuple[Client, str]:
    """The client of the remote a `[<remote>:]<profile>` names, and the profile's name."""
    return env.target(arg, "profile")


def _instance_url(name: str) -> str:
    return f"/1.0/instances/{url_part(name)}"


def parse_profile_yaml(text: str) -> Profile:
    """The writable fields a `show`-style document gives (name and used_by are ignored);
    fields it leaves out are not in the result, so they stay as they are."""
    data = load_mapping(text)
    out: Profile = {}
    if "description" in data:
        out["description"] = stringify(data["description"])
    if "config" in data:
        out["config"] = string_map(data["config"], "config")
    if "devices" in data:
        out["devices"] = {str(name): string_map(dev, f"Device {name!r}")
                          for name, dev in mapping(data["devices"], "devices").items()}
    return out


def profile_yaml(profile: Profile) -> str:
    shown = {
        "name": profile.get("name", ""),
        "description": profile.get("description", ""),
        "config": sorted_map(profile.get("config") or {}),
        "devices": sorted_map(profile.get("devices") or {}),
        "used_by": profile.get("used_by") or [],
    }
    return render_yaml(shown)


def _writable(profile: Profile) -> Profile:
    return {
        "config": profile.get("config") or {},
        "description": profile.get("description") or "",
        "devices": profile.get("devices") or {},
    }


def _used_by(profile: Profile) -> int:
    return len(profile.get("used_by") or [])


@click.group("profile", cls=LazyGroup,
             aliases={"cp": "copy", "ls": "list", "mv": "rename", "rm": "delete"})
def profile() -> None:
    """Manage profiles.

    \b
      mc profile create small ; mc profile set small limits.memory=256MiB
      mc profile device add small data disk source=/srv/data path=/mnt/data
      mc launch busybox c1 -p default -p small ; mc profile remove c1 small

    An instance's effective config is its profiles in order, then its own keys
    (mc config show c1 --expanded); changing a profile changes every instance using it.
    """


profile.add_command(profile_device, "device")


@profile.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option
@pass_env
def list_cmd(env: Env, remote: str | None, fmt: str) -> None:
    """List profiles."""
    where = None
    if remote is not None:
        where, rest = env.split(remote)
        if rest or ":" not in remote:
            raise click.UsageError(f'Unexpected argument "{remote}": expected [<remote>:]')
    parse_format(fmt)  # a usage error before the daemon is asked anything
    profiles = sorted(
        env.client(where).get("/1.0/profiles?recursion=1") or [],
        key=lambda p: str(p.get("name")),
    )
    rows = [
        [str(p.get("name", "")), str(p.get("description", "")), str(_used_by(p))]
        for p in profiles
    ]
    click.echo(render(fmt, ["NAME", "DESCRIPTION", "USED BY"], rows, profiles), nl=False)


@profile.command("show")
@click.argument("name", metavar="[<remote>:]<profile>")
@pass_env
def show(env: Env, name: str) -> None:
    """Show a profile as YAML."""
    client, name = _target(env, name)
    click.echo(profile_yaml(client.get(_url(name))), nl=False)


@profile.command("create", short_help="Create a profile.")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.option("--description", help="Profile description.")
@pass_env
def create(env: Env, name: str, description: str | None) -> None:
    """Create a profile; YAML on stdin (not a terminal) gives its content.

    \b
      mc profile create small
      mc profile create small < small.yaml
    """
    client, name = _target(env, name)
    body: Profile = {"name": name, "config": {}, "devices": {}}
    if not sys.stdin.isatty():
        body.update(parse_profile_yaml(sys.stdin.read()))
    if description is not None:
        body["description"] = description
    client.post("/1.0/profiles", body)
    env.say(f"Profile {name} created")


@profile.command("copy")
@click.argument("source", metavar="[<remote>:]<profile>")
@click.argument("target", metavar="[<remote>:]<profile>")
@pass_env
def copy(env: Env, source: str, target: str) -> None:
    """Copy a profile."""
    src_client, src_name = _target(env, source)
    dst_client, dst_name = _target(env, target)
    src = src_client.get(_url(src_name))
    dst_client.post("/1.0/profiles", {"name": dst_name, **_writable(src)})


@profile.command("rename")
@click.argument("old", metavar="[<remote>:]<profile>")
@click.argument("new", metavar="<new-name>")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename a profile (instances using it follow)."""
    client, old = _target(env, old)
    client.post(_url(old), {"name": new})
    env.say(f"Profile {old} renamed to {new}")


@profile.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<profile>...")
@pass_env
def delete(env: Env, names: tuple[str, ...]) -> None:
    """Delete profiles."""
    for arg in names:
        client, name = _target(env, arg)
        client.delete(_url(name))
        env.say(f"Profile {name} deleted")


@profile.command("edit", short_help="Edit a profile as YAML.")
@click.argument("name", metavar="[<remote>:]<profile>")
@pass_env
def edit(env: Env, name: str) -> None:
    """Edit a profile as YAML: in $EDITOR on a terminal, else read from stdin."""
    client, name = _target(env, name)

    def apply(text: str) -> None:
        changes = parse_profile_yaml(text)
        if changes:  # fields left out stay; an empty document changes nothing
            client.put(_url(name), {**_writable(client.get(_url(name))), **changes})

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    edit_until_accepted(profile_yaml(client.get(_url(name))), apply, "the profile")


@profile.command("get", short_help="Print a profile config key.")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Get a property (description).")
@pass_env
def get(env: Env, name: str, key: str, prop: bool) -> None:
    """Print a profile's config key (or property with -p)."""
    client, name = _target(env, name)
    data = client.get(_url(name))
    if prop:
        if key not in ("description", "name"):
            raise CliError(f'The property "{key}" does not exist on the profile')
        click.echo(str(data.get(key, "")))
        return
    click.echo((data.get("config") or {}).get(key, ""))


@profile.command("set", short_help="Set profile config keys.")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("settings", nargs=-1, required=True, metavar="<key>=<value>...")
@click.option("-p", "--property", "prop", is_flag=True, help="Set a property (description).")
@pass_env
def set_cmd(env: Env, name: str, settings: tuple[str, ...], prop: bool) -> None:
    """Set profile config keys (`key=value...`, or `key value`)."""
    client, name = _target(env, name)
    url = _url(name)
    values = parse_settings(settings)
    current = client.get(url)
    body = _writable(current)
    if prop:
        unknown = set(values) - {"description"}
        if unknown:
            raise CliError(f'The property "{sorted(unknown)[0]}" does not exist on the profile')
        body["description"] = values["description"]
    else:
        body["config"] = {**body["config"], **values}
    client.put(url, body)


@profile.command("unset", short_help="Unset a profile config key.")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("key", metavar="<key>")
@click.option("-p", "--property", "prop", is_flag=True, help="Unset a property (description).")
@pass_env
def unset(env: Env, name: str, key: str, prop: bool) -> None:
    """Unset a profile config key (or property with -p)."""
    client, name = _target(env, name)
    url = _url(name)
    body = _writable(client.get(url))
    if prop:
        if key != "description":
            raise CliError(f'The property "{key}" does not exist on the profile')
        body["description"] = ""
    else:
        if key not in body["config"]:
            raise CliError(f'The key "{key}" is not set on the profile')
        body["config"] = {k: v for k, v in body["config"].items() if k != key}
    client.put(url, body)


def _instance_profiles(client: Client, instance: str) -> list[str]:
    return list(client.get(_instance_url(instance)).get("profiles") or [])


@profile.command("add")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("name", metavar="<profile>")
@pass_env
def add(env: Env, instance: str, name: str) -> None:
    """Add a profile to an instance (applied last)."""
    client, instance = env.target(instance)
    profiles = _instance_profiles(client, instance)
    if name in profiles:
        raise CliError(f"Profile {name} is already applied to {instance}")
    client.patch(_instance_url(instance), {"profiles": [*profiles, name]})
    env.say(f"Profile {name} added to {instance}")


@profile.command("remove")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("name", metavar="<profile>")
@pass_env
def remove(env: Env, instance: str, name: str) -> None:
    """Remove a profile from an instance."""
    client, instance = env.target(instance)
    profiles = _instance_profiles(client, instance)
    if name not in profiles:
        raise CliError(f"Profile {name} isn't currently applied to {instance}")
    client.patch(
        _instance_url(instance), {"profiles": [p for p in profiles if p != name]}
    )
    env.say(f"Profile {name} removed from {instance}")


@profile.command("assign", short_help="Set an instance's list of profiles.")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("names", metavar="<profile>[,<profile>...]")
@pass_env
def assign(env: Env, instance: str, names: str) -> None:
    """Replace an instance's profiles by a comma-separated list ("" for none)."""
    client, instance = env.target(instance)
    profiles = [p for p in names.split(",") if p] if names else []
    client.patch(_instance_url(instance), {"profiles": profiles})
    if profiles:
        env.say(f"Profiles {','.join(profiles)} applied to {instance}")
    else:
        env.say(f"All profiles removed from {instance}")
