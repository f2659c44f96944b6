"""`mc config device ...` (instances) and `mc profile device ...` (profiles), as lxc.

Both edit the object's `devices` with GET then PUT of its writable fields; the daemon
validates every change. Devices take effect at the instance's next start (no hotplug),
except proxy devices, which the daemon applies to a running instance at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import render_yaml
from cli.params import local_name, parse_key_value, url_part
from cli.yamledit import sorted_map

Device = dict[str, str]


@dataclass(frozen=True)
class Target:
    """An instance or a profile whose devices are edited."""

    kind: str  # "instance" or "profile"
    name: str
    remote: str | None = None  # None: the default remote

    @property
    def url(self) -> str:
        return f"/1.0/{self.kind}s/{url_part(self.name)}"

    def load(self, env: Env) -> dict[str, Any]:
        return dict(env.client(self.remote).get(self.url))

    def save(self, env: Env, obj: dict[str, Any], devices: dict[str, Device]) -> None:
        env.client(self.remote).put(self.url, writable(self.kind, obj, devices))


def writable(kind: str, obj: dict[str, Any], devices: dict[str, Device]) -> dict[str, Any]:
    """The PUT body: the object's writable fields with `devices` replaced."""
    body: dict[str, Any] = {
        "config": obj.get("config") or {},
        "description": obj.get("description") or "",
        "devices": devices,
    }
    if kind == "instance":
        body["profiles"] = obj.get("profiles") or []
        body["ephemeral"] = bool(obj.get("ephemeral"))
    return body


def parse_settings(args: tuple[str, ...]) -> dict[str, str]:
    """`k=v k2=v2`, or the legacy `k v` pair."""
    if len(args) == 2 and "=" not in args[0]:
        return {args[0]: args[1]}
    if not args:
        raise CliError("Missing key=value")
    return dict(parse_key_value(a) for a in args)


def add_device(devices: dict[str, Device], name: str, kind: str, args: tuple[str, ...],
               owner: str = "") -> dict[str, Device]:
    if name in devices:
        raise CliError(f"Device {name!r} already exists" + (f" on {owner}" if owner else ""))
    new = {k: v for k, v in (parse_key_value(a) for a in args)}
    return {**devices, name: {"type": kind, **new}}


# Applied to a running instance at once by the daemon (its proxies); other devices wait
# for the next start.
LIVE_TYPES = frozenset({"proxy"})


def note_next_start(target: Target, obj: dict[str, Any], kinds: Collection[str],
                    what: str = "device") -> None:
    """Say so when a running instance's change waits for its next start (not for proxies,
    which the daemon applies at once). `what`: device (added), removal or change."""
    if target.kind != "instance" or str(obj.get("status", "")).lower() != "running":
        return
    if all(kind in LIVE_TYPES for kind in kinds):
        return
    click.echo(f"The {what} takes effect at the next start of {target.name}", err=True)


def _local(target: Target, obj: dict[str, Any], name: str, what: str) -> Device:
    devices = obj.get("devices") or {}
    if name in devices:
        return dict(devices[name])
    if target.kind == "instance" and name in (obj.get("expanded_devices") or {}):
        fix = (f"mask it with a device of type none (mc config device add {target.name} "
               f"{name} none)" if what == "removed" else
               f"override it (mc config device override {target.name} {name})")
        raise CliError(f"Device {name!r} comes from a profile and cannot be {what} for one "
                       f"instance: {fix} or change the profile")
    raise CliError(f"Device {name!r} doesn't exist on {target.name}")


def _target_arg(kind: str) -> Any:
    meta = "[<remote>:]<instance>" if kind == "instance" else "[<remote>:]<profile>"
    return click.argument("target", metavar=meta)


def make_group(kind: str) -> click.Group:
    """The device sub-commands for instances (`kind` "instance") or profiles."""

    def target_of(env: Env, arg: str) -> Target:
        remote, name = env.split(arg)
        if not name:
            raise CliError(f'Missing {kind} name in "{arg}"')
        return Target(kind, local_name(name, kind), remote)

    @click.group("device", cls=LazyGroup, aliases={"ls": "list", "rm": "remove"},
                 help=f"Manage {kind} devices.")
    def group() -> None:
        pass

    @group.command("add")
    @_target_arg(kind)
    @click.argument("device", metavar="<device>")
    @click.argument("type_", metavar="<type>")
    @click.argument("settings", nargs=-1, metavar="[key=value...]")
    @pass_env
    def add(env: Env, target: str, device: str, type_: str, settings: tuple[str, ...]) -> None:
        """Add a device: disk, nic, proxy, unix-char, unix-block or none.

        \b
          mc config device add c1 data disk source=/srv/data path=/mnt/data readonly=true
          mc config device add c1 eth1 nic network=mcbr1
          mc config device add c1 web proxy listen=tcp:127.0.0.1:8080 connect=tcp:127.0.0.1:80
          mc profile device add default root disk path=/ pool=default
        """
        tgt = target_of(env, target)
        obj = tgt.load(env)
        tgt.save(env, obj, add_device(dict(obj.get("devices") or {}), device, type_, settings,
                                      tgt.name))
        env.say(f"Device {device} added to {tgt.name}")
        note_next_start(tgt, obj, [type_])

    @group.command("remove")
    @_target_arg(kind)
    @click.argument("devices", nargs=-1, required=True, metavar="<device>...")
    @pass_env
    def remove(env: Env, target: str, devices: tuple[str, ...]) -> None:
        """Remove devices."""
        tgt = target_of(env, target)
        obj = tgt.load(env)
        current = dict(obj.get("devices") or {})
        devices = tuple(dict.fromkeys(devices))  # `remove c1 x x` removes x once
        for name in devices:
            _local(tgt, obj, name, "removed")
            current.pop(name)
        tgt.save(env, obj, current)
        for name in devices:
            env.say(f"Device {name} removed from {tgt.name}")
        own = obj.get("devices") or {}
        note_next_start(tgt, obj, [str(own[name].get("type", "")) for name in devices],
                        "removal")

    @group.command("list")
    @_target_arg(kind)
    @pass_env
    def list_cmd(env: Env, target: str) -> None:
        """List devices."""
        for name in sorted(target_of(env, target).load(env).get("devices") or {}):
            click.echo(name)

    @group.command("show")
    @_target_arg(kind)
    @pass_env
    def show(env: Env, target: str) -> None:
        """Show the devices as YAML."""
        devices = target_of(env, target).load(env).get("devices") or {}
        click.echo(render_yaml(sorted_map(devices)) if devices else "{}\n", nl=False)

    @group.command("get")
    @_target_arg(kind)
    @click.argument("device", metavar="<device>")
    @click.argument("key", metavar="<key>")
    @pass_env
    def get(env: Env, target: str, device: str, key: str) -> None:
        """Print a device key's value (empty if unset)."""
        tgt = target_of(env, target)
        click.echo(_local(tgt, tgt.load(env), device, "retrieved").get(key, ""))

    @group.command("set")
    @_target_arg(kind)
    @click.argument("device", metavar="<device>")
    @click.argument("settings", nargs=-1, required=True, metavar="<key>=<value>...")
    @pass_env
    def set_cmd(env: Env, target: str, device: str, settings: tuple[str, ...]) -> None:
        """Set device keys (`key=value...`, or `key value`)."""
        tgt = target_of(env, target)
        obj = tgt.load(env)
        dev = _local(tgt, obj, device, "modified")
        dev.update(parse_settings(settings))
        tgt.save(env, obj, {**(obj.get("devices") or {}), device: dev})
        note_next_start(tgt, obj, [str(dev.get("type", ""))], "change")

    @group.command("unset")
    @_target_arg(kind)
    @click.argument("device", metavar="<device>")
    @click.argument("key", metavar="<key>")
    @pass_env
    def unset(env: Env, target: str, device: str, key: str) -> None:
        """Unset a device key."""
        tgt = target_of(env, target)
        obj = tgt.load(env)
        dev = _local(tgt, obj, device, "modified")
        if key not in dev:
            raise CliError(f"The key {key!r} is not set on device {device!r}")
        del dev[key]
        tgt.save(env, obj, {**(obj.get("devices") or {}), device: dev})
        note_next_start(tgt, obj, [str(dev.get("type", ""))], "change")

    if kind == "instance":

        @group.command("override", short_help="Copy a profile's device into the instance.")
        @_target_arg(kind)
        @click.argument("device", metavar="<device>")
        @click.argument("settings", nargs=-1, metavar="[key=value...]")
        @pass_env
        def override(env: Env, target: str, device: str, settings: tuple[str, ...]) -> None:
            """Copy a device inherited from a profile into the instance, with changes."""
            tgt = target_of(env, target)
            obj = tgt.load(env)
            if device in (obj.get("devices") or {}):
                raise CliError(f"Device {device!r} already exists on {tgt.name}")
            inherited = (obj.get("expanded_devices") or {}).get(device)
            if inherited is None:
                raise CliError(f"No profile of {tgt.name} has a device {device!r}")
            dev = {**inherited, **(parse_settings(settings) if settings else {})}
            tgt.save(env, obj, {**(obj.get("devices") or {}), device: dev})
            env.say(f"Device {device} overridden for {tgt.name}")
            note_next_start(tgt, obj, [str(dev.get("type", ""))], "change")

    return group


config_device = make_group("instance")
profile_device = make_group("profile")
