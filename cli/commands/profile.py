"""`mc profile ...`: list, show, create, copy, rename, delete, edit, get/set/unset, add/remove/
assign (an instance's profiles) and `device`, as lxc."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cli.commands.device import parse_settings, profile_device
from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.output import render, render_yaml
from cli.params import local_name, url_part

Profile = dict[str, Any]


def _url(name: str) -> str:
    return f"/1.0/profiles/{url_part(name)}"


def _instance_url(name: str) -> str:
    return f"/1.0/instances/{url_part(name)}"


def stringify(value: Any) -> str:
    """YAML scalars as the API's strings (`limits.cpu: 2` -> "2", `true` -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def parse_profile_yaml(text: str) -> Profile:
    """The writable part of a profile from `show`-style YAML (name and used_by ignored)."""
    import yaml

    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise CliError(f"Invalid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CliError("The profile YAML must be a mapping with config, description, devices")
    config = data.get("config") or {}
    devices = data.get("devices") or {}
    if not isinstance(config, dict) or not isinstance(devices, dict):
        raise CliError("config and devices must be mappings")
    out_devices = {}
    for name, dev in devices.items():
        if not isinstance(dev, dict):
            raise CliError(f"Device {name!r} must be a mapping of key: value")
        out_devices[str(name)] = {str(k): stringify(v) for k, v in dev.items()}
    return {
        "description": stringify(data.get("description")),
        "config": {str(k): stringify(v) for k, v in config.items()},
        "devices": out_devices,
    }


def profile_yaml(profile: Profile) -> str:
    shown = {
        "name": profile.get("name", ""),
        "description": profile.get("description", ""),
        "config": profile.get("config") or {},
        "devices": profile.get("devices") or {},
        "used_by": profile.get("used_by") or [],
    }
    return render_yaml(shown)


def _writable(profile: Profile) -> Profile:
    return {
        "config": profile.get("config") or {},
        "description": profile.get("description") or "",
        "devices": profile.get("devices") or {},
    }


def run_editor(text: str, suffix: str = ".yaml") -> str:
    """Edit `text` in $VISUAL/$EDITOR (vi by default); the edited text."""
    import shlex
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="mc-", suffix=suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if subprocess.call([*shlex.split(editor), path]) != 0:
            raise CliError(f"The editor ({editor}) failed")
        with open(path) as f:
            return f.read()
    finally:
        os.unlink(path)


def edit_interactively(text: str, apply: Any) -> None:
    """Open the editor until `apply(edited)` succeeds or the user gives up (as lxc)."""
    while True:
        text = run_editor(text)
        try:
            apply(text)
            return
        except CliError as e:
            click.echo(f"Config parsing error: {e.message}", err=True)
            click.echo("Press enter to open the editor again or ctrl+c to abort change", err=True)
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                raise CliError("Aborted: the profile was not changed") from None


def _used_by(profile: Profile) -> int:
    return len(profile.get("used_by") or [])


@click.group("profile")
def profile() -> None:
    """Manage profiles."""


profile.add_command(profile_device, "device")


@profile.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option
@pass_env
def list_cmd(env: Env, remote: str | None, fmt: str) -> None:
    """List profiles."""
    profiles = sorted(
        env.client().get("/1.0/profiles?recursion=1") or [], key=lambda p: str(p.get("name"))
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
    click.echo(profile_yaml(env.client().get(_url(local_name(name)))), nl=False)


@profile.command("create")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.option("--description", help="Profile description.")
@pass_env
def create(env: Env, name: str, description: str | None) -> None:
    """Create a profile; YAML on stdin (not a terminal) gives its content.

    \b
      mc profile create small
      mc profile create small < small.yaml
    """
    name = local_name(name)
    body: Profile = {"name": name, "config": {}, "devices": {}}
    if not sys.stdin.isatty():
        body.update(parse_profile_yaml(sys.stdin.read()))
    if description is not None:
        body["description"] = description
    env.client().post("/1.0/profiles", body)
    env.say(f"Profile {name} created")


@profile.command("copy")
@click.argument("source", metavar="[<remote>:]<profile>")
@click.argument("target", metavar="[<remote>:]<profile>")
@pass_env
def copy(env: Env, source: str, target: str) -> None:
    """Copy a profile."""
    client = env.client()
    src = client.get(_url(local_name(source)))
    client.post("/1.0/profiles", {"name": local_name(target), **_writable(src)})


@profile.command("rename")
@click.argument("old", metavar="[<remote>:]<profile>")
@click.argument("new", metavar="<new-name>")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename a profile (instances using it follow)."""
    old = local_name(old)
    env.client().post(_url(old), {"name": new})
    env.say(f"Profile {old} renamed to {new}")


@profile.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<profile>...")
@pass_env
def delete(env: Env, names: tuple[str, ...]) -> None:
    """Delete profiles."""
    for name in map(local_name, names):
        env.client().delete(_url(name))
        env.say(f"Profile {name} deleted")


@profile.command("edit")
@click.argument("name", metavar="[<remote>:]<profile>")
@pass_env
def edit(env: Env, name: str) -> None:
    """Edit a profile as YAML: in $EDITOR on a terminal, else read from stdin."""
    name = local_name(name)
    client = env.client()

    def apply(text: str) -> None:
        client.put(_url(name), parse_profile_yaml(text))

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    edit_interactively(profile_yaml(client.get(_url(name))), apply)


@profile.command("get")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("key")
@click.option("-p", "--property", "prop", is_flag=True, help="Get a property (description).")
@pass_env
def get(env: Env, name: str, key: str, prop: bool) -> None:
    """Print a profile's config key (or property with -p)."""
    data = env.client().get(_url(local_name(name)))
    if prop:
        if key not in ("description", "name"):
            raise CliError(f'The property "{key}" does not exist on the profile')
        click.echo(str(data.get(key, "")))
        return
    click.echo((data.get("config") or {}).get(key, ""))


@profile.command("set")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("settings", nargs=-1, required=True, metavar="<key>=<value>...")
@click.option("-p", "--property", "prop", is_flag=True, help="Set a property (description).")
@pass_env
def set_cmd(env: Env, name: str, settings: tuple[str, ...], prop: bool) -> None:
    """Set profile config keys (`key=value...`, or `key value`)."""
    url = _url(local_name(name))
    client = env.client()
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


@profile.command("unset")
@click.argument("name", metavar="[<remote>:]<profile>")
@click.argument("key")
@click.option("-p", "--property", "prop", is_flag=True, help="Unset a property (description).")
@pass_env
def unset(env: Env, name: str, key: str, prop: bool) -> None:
    """Unset a profile config key (or property with -p)."""
    url = _url(local_name(name))
    client = env.client()
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


def _instance_profiles(env: Env, instance: str) -> list[str]:
    return list(env.client().get(_instance_url(instance)).get("profiles") or [])


@profile.command("add")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("name", metavar="<profile>")
@pass_env
def add(env: Env, instance: str, name: str) -> None:
    """Add a profile to an instance (applied last)."""
    instance = local_name(instance)
    profiles = _instance_profiles(env, instance)
    if name in profiles:
        raise CliError(f"Profile {name} is already applied to {instance}")
    env.client().patch(_instance_url(instance), {"profiles": [*profiles, name]})
    env.say(f"Profile {name} added to {instance}")


@profile.command("remove")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("name", metavar="<profile>")
@pass_env
def remove(env: Env, instance: str, name: str) -> None:
    """Remove a profile from an instance."""
    instance = local_name(instance)
    profiles = _instance_profiles(env, instance)
    if name not in profiles:
        raise CliError(f"Profile {name} isn't currently applied to {instance}")
    env.client().patch(
        _instance_url(instance), {"profiles": [p for p in profiles if p != name]}
    )
    env.say(f"Profile {name} removed from {instance}")


@profile.command("assign")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("names", metavar="<profile>[,<profile>...]")
@pass_env
def assign(env: Env, instance: str, names: str) -> None:
    """Replace an instance's profiles by a comma-separated list ("" for none)."""
    instance = local_name(instance)
    profiles = [p for p in names.split(",") if p] if names else []
    env.client().patch(_instance_url(instance), {"profiles": profiles})
    if profiles:
        env.say(f"Profiles {','.join(profiles)} applied to {instance}")
    else:
        env.say(f"All profiles removed from {instance}")


profile.add_command(delete, "rm")
profile.add_command(list_cmd, "ls")
profile.add_command(rename, "mv")
profile.add_command(copy, "cp")
