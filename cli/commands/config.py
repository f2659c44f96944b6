"""`mc config get|set|unset|show|edit [<instance>] ...` as lxc; without an instance they act on
the server's keys. `mc config device ...` lives in cli/commands/device.py.

Which argument is the instance (as lxc): a first argument holding a '.' or '=' is a key (instance
names have neither), one ending in ':' is a remote (server keys), anything else an instance,
or a snapshot (`c01/snap0`): `show`/`get` read the configuration it captured, `edit` changes its
expiry and description (all a snapshot lets change).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import render_yaml
from cli.params import local_name, parse_key_value, parse_remote, split_snapshot, url_part
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

SERVER = "/1.0"
EDIT_HELP = """\
### This is a YAML representation of the configuration.
### Any line starting with a '#' will be ignored.
###
### A sample configuration looks like:
### config:
###   limits.cpu: "2"
###   limits.memory: 512MiB
### devices:
###   root:
###     path: /
###     pool: default
###     type: disk
### profiles:
### - default
### ephemeral: false
### description: ""
"""
SNAPSHOT_EDIT_HELP = """\
### This is a YAML representation of a snapshot.
### Any line starting with a '#' will be ignored.
### Only expires_at (RFC 3339, or empty for never) and description can be changed.
"""


def split_target(args: list[str] | tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(instance or None for the server, the remaining arguments)."""
    if not args:
        return None, []
    first = args[0]
    # A snapshot's name may hold a '.' (c01/v1.2); keys hold no '/'.
    if "=" in first or ("." in first and "/" not in first):
        return None, list(args)
    if first.endswith(":"):
        parse_remote(first)  # an unknown remote is an error
        return None, list(args[1:])
    return local_name(first), list(args[1:])


def parse_set_args(rest: list[str]) -> dict[str, str]:
    """`k=v [k2=v2...]`, or the legacy `k v` (the value may then hold '=')."""
    if not rest:
        raise click.UsageError("Missing <key>=<value>")
    if len(rest) == 2 and "=" not in rest[0]:
        return {rest[0]: rest[1]}
    if all("=" in a for a in rest):
        return dict(parse_key_value(a) for a in rest)
    raise click.UsageError("Expected <key> <value> or <key>=<value>...: "
                     + " ".join(repr(a) for a in rest))


def check_unset(inst: dict[str, Any], name: str, keys: list[str]) -> None:
    """Every key must be the instance's own (lxc's message), and a key a profile sets says so."""
    own = inst.get("config") or {}
    expanded = inst.get("expanded_config") or {}
    for key in keys:
        if key in own:
            continue
        if key in expanded:
            raise CliError(f"Can't unset key '{key}', it's set by a profile of {name}: change "
                           "the profile (mc profile unset), or override it here with mc "
                           "config set")
        raise CliError(f"Can't unset key '{key}', it's not currently set")


def instance_yaml(inst: dict[str, Any], expanded: bool = False) -> str:
    """`config show <instance>` as lxc prints it (the instance's writable fields)."""
    shown = {
        "architecture": inst.get("architecture", ""),
        "config": sorted_map(inst.get("expanded_config" if expanded else "config") or {}),
        "devices": sorted_map(inst.get("expanded_devices" if expanded else "devices") or {}),
        "ephemeral": bool(inst.get("ephemeral")),
        "profiles": inst.get("profiles") or [],
        "stateful": bool(inst.get("stateful")),
        "description": inst.get("description") or "",
    }
    return render_yaml(shown)


def parse_instance_yaml(text: str) -> dict[str, Any]:
    """The PUT body from `config show`-style YAML (architecture and stateful are ignored).
    Fields the document leaves out stay as they are (lxc would clear them)."""
    data = load_mapping(text)
    body: dict[str, Any] = {}
    if "config" in data:
        body["config"] = string_map(data["config"], "config")
    if "devices" in data:
        body["devices"] = {str(name): string_map(dev, f"Device {name!r}")
                           for name, dev in mapping(data["devices"], "devices").items()}
    if "profiles" in data:
        profiles = data["profiles"] or []
        if not isinstance(profiles, list):
            raise CliError("profiles must be a list of profile names")
        body["profiles"] = [str(p) for p in profiles]
    if "description" in data:
        body["description"] = stringify(data["description"])
    if "ephemeral" in data:
        body["ephemeral"] = bool(data["ephemeral"])
    return body


def parse_server_yaml(text: str) -> dict[str, Any]:
    """The PUT body; {} (nothing to change) when the document has no config."""
    data = load_mapping(text)
    return {"config": string_map(data["config"], "config")} if "config" in data else {}


def server_yaml(server: dict[str, Any]) -> str:
    return render_yaml({"config": sorted_map(server.get("config") or {})})


def resolve_target(env: Env, args: list[str] | tuple[str, ...]
                   ) -> tuple[Client, str | None, list[str]]:
    """split_target with this user's remotes: (the client of the remote named, the instance or
    None for the server, the remaining arguments)."""
    remote = None
    rest = list(args)
    if rest and ":" in rest[0] and "=" not in rest[0]:
        remote, obj = env.split(rest[0])
        rest = ([obj] if obj else []) + rest[1:]
        if not obj:
            return env.client(remote), None, rest
    name, rest = split_target(rest)
    return env.client(remote), name, rest


def _instance_url(name: str) -> str:
    """The URL of an instance or of an `inst/snap` snapshot."""
    inst, snap = split_snapshot(name)
    if snap is None:
        return f"/1.0/instances/{url_part(inst)}"
    if not inst or not snap:
        raise CliError(f'Invalid snapshot "{name}": expected <instance>/<snapshot>')
    return f"/1.0/instances/{url_part(inst)}/snapshots/{url_part(snap)}"


def _refuse_snapshot(name: str | None) -> None:
    if name is not None and "/" in name:
        raise CliError(f"A snapshot's configuration can't be changed ({name}); only its "
                       f"expires_at and description can: mc config edit {name}")


NEVER = "0001-01-01T00:00:00Z"


def snapshot_yaml(snap: dict[str, Any], expanded: bool = False) -> str:
    """`config show <inst>/<snap>`: what the snapshot captured, and when it expires."""
    shown = {
        "name": str(snap.get("name", "")).rpartition("/")[2],
        "architecture": snap.get("architecture", ""),
        "config": sorted_map(snap.get("expanded_config" if expanded else "config") or {}),
        "devices": sorted_map(snap.get("expanded_devices" if expanded else "devices") or {}),
        "ephemeral": bool(snap.get("ephemeral")),
        "profiles": snap.get("profiles") or [],
        "stateful": bool(snap.get("stateful")),
        "description": snap.get("description") or "",
        "created_at": snap.get("created_at") or "",
        "expires_at": snap.get("expires_at") or NEVER,
    }
    return render_yaml(shown)


def normal_expiry(value: Any) -> str:
    """An expires_at from YAML (a string, or a datetime PyYAML made of it) as RFC 3339 UTC;
    "" for never (empty, null or LXD's zero time)."""
    from datetime import UTC, datetime

    from cli.commands.snapshot import parse_date, rfc3339

    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        when: datetime | None = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        text = str(value).strip()
        if text.startswith("0001-01-01"):
            return ""
        when = parse_date(text)
    if when is None:
        raise CliError(f'Invalid expires_at "{value}": expected an RFC 3339 time like '
                       f"2030-01-31T00:00:00Z, or {NEVER} / an empty value for never")
    return "" if when.year <= 1 else rfc3339(when)


def parse_snapshot_yaml(text: str, current: dict[str, Any]) -> dict[str, Any]:
    """The PUT body of `config edit <inst>/<snap>`: expires_at and description (the rest of
    a snapshot is what was captured and cannot change; other fields are ignored). {} when
    nothing changed. A new expiry must lie in the future."""
    from datetime import UTC, datetime

    data = load_mapping(text)
    body: dict[str, Any] = {}
    if "expires_at" in data:
        expiry = normal_expiry(data["expires_at"])
        if expiry != normal_expiry(current.get("expires_at")):
            if expiry and expiry <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"):
                raise CliError(f"The new expires_at ({expiry}) is in the past")
            body["expires_at"] = expiry
    if "description" in data:
        description = stringify(data["description"])
        if description != (current.get("description") or ""):
            body["description"] = description
    if body:
        body.setdefault("expires_at", normal_expiry(current.get("expires_at")))
        body.setdefault("description", current.get("description") or "")
    return body


@click.group("config", cls=LazyGroup,
             lazy={"device": ("cli.commands.device:config_device", "Manage instance devices"),
                   "trust": ("cli.commands.config_trust:trust",
                             "Manage the client certificates the HTTPS API trusts")})
def config() -> None:
    """Manage instance and server configuration.

    \b
      mc config set c01 limits.memory 512MiB     (or limits.memory=512MiB, several at once)
      mc config get c01 limits.memory ; mc config unset c01 limits.memory
      mc config show c01 --expanded ; mc config edit c01 < c01.yaml
      mc config show c01/snap0 ; mc config edit c01/snap0   (its expiry, description)
      mc config set images.auto_update_interval 24   (no instance: server keys)
    """


@config.command("get")
@click.argument("args", nargs=-1, required=True,
                metavar="[[<remote>:]<instance>[/<snapshot>]] <key>")
@click.option("-e", "--expanded", is_flag=True, help="Read the expanded configuration "
              "(profiles applied).")
@pass_env
def get(env: Env, args: tuple[str, ...], expanded: bool) -> None:
    """Print a configuration key's value.

    Empty when the key is unset; --expanded includes keys set by profiles."""
    client, name, rest = resolve_target(env, args)
    if len(rest) != 1:
        raise click.UsageError("Expected [<instance>] <key>")
    key = rest[0]
    if name is None:
        if expanded:
            raise click.UsageError("--expanded cannot be used with a server")
        click.echo((client.get(SERVER).get("config") or {}).get(key, ""))
        return
    inst = client.get(_instance_url(name))
    if key == "expires_at" and "/" in name:  # a snapshot's one changeable setting
        click.echo(normal_expiry(inst.get("expires_at")))
        return
    click.echo((inst.get("expanded_config" if expanded else "config") or {}).get(key, ""))


@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True,
                metavar="[[<remote>:]<instance>] <key>=<value>... | <key> <value>")
@pass_env
def set_cmd(env: Env, args: tuple[str, ...]) -> None:
    """Set instance or server configuration keys.

    \b
      mc config set c01 limits.memory=512MiB limits.cpu=1
      mc config set c01 environment.APP_ENV prod
      mc config set core.https_address=:8443

    Limits apply at once to a running instance; a refused value changes nothing.
    The keys, their values and defaults are listed in docs/config.md.
    """
    client, name, rest = resolve_target(env, args)
    _refuse_snapshot(name)
    values = parse_set_args(rest)
    url = SERVER if name is None else _instance_url(name)
    client.patch(url, {"config": values})


@config.command("unset")
@click.argument("args", nargs=-1, required=True, metavar="[[<remote>:]<instance>] <key>...")
@pass_env
def unset(env: Env, args: tuple[str, ...]) -> None:
    """Unset instance or server configuration keys.

    They go back to their defaults; limits are lifted at once on a running instance."""
    client, name, keys = resolve_target(env, args)
    _refuse_snapshot(name)
    if not keys:
        raise click.UsageError("Missing <key>")
    url = SERVER if name is None else _instance_url(name)
    if name is not None:
        check_unset(client.get(url), name, keys)
    client.patch(url, {"config": {key: "" for key in keys}})


@config.command("show")
@click.argument("target", required=False, metavar="[[<remote>:]<instance>[/<snapshot>]]")
@click.option("-e", "--expanded", is_flag=True, help="Show the expanded configuration "
              "(profiles applied).")
@pass_env
def show(env: Env, target: str | None, expanded: bool) -> None:
    """Show instance or server configuration (YAML)."""
    client, name, _rest = resolve_target(env, [target] if target else [])
    if name is None:
        if expanded:
            raise click.UsageError("--expanded cannot be used with a server")
        click.echo(server_yaml(client.get(SERVER)), nl=False)
        return
    render_doc = snapshot_yaml if "/" in name else instance_yaml
    click.echo(render_doc(client.get(_instance_url(name)), expanded), nl=False)


@config.command("edit")
@click.argument("target", required=False, metavar="[[<remote>:]<instance>[/<snapshot>]]")
@pass_env
def edit(env: Env, target: str | None) -> None:
    """Edit instance or server configuration (YAML).

    In $EDITOR on a terminal, else read from stdin (mc config edit c01 < c01.yaml)."""
    client, name, _rest = resolve_target(env, [target] if target else [])
    if name is not None and "/" in name:
        _edit_snapshot(client, name)
        return
    url = SERVER if name is None else _instance_url(name)
    parse = parse_server_yaml if name is None else parse_instance_yaml

    def apply(text: str) -> None:
        body = parse(text)
        if body:  # an empty document changes nothing (rather than clearing everything)
            client.put(url, body)

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    if name is None:
        text = server_yaml(client.get(SERVER))
    else:
        text = EDIT_HELP + "\n" + instance_yaml(client.get(url))
    edit_until_accepted(text, apply, "the configuration")


def _edit_snapshot(client: Client, name: str) -> None:
    url = _instance_url(name)

    def apply(text: str) -> None:
        body = parse_snapshot_yaml(text, client.get(url) or {})
        if body:
            client.put(url, body)

    if not sys.stdin.isatty():
        apply(sys.stdin.read())
        return
    text = SNAPSHOT_EDIT_HELP + "\n" + snapshot_yaml(client.get(url))
    edit_until_accepted(text, apply, "the snapshot")
