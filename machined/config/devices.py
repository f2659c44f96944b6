"""Instance devices: one table of keys per device type, validated as strictly as config keys,
and the runtime's view of the devices that become mounts (pure: no I/O).

Device types as LXD: `disk` (the root disk, or a host path bound into the container), `nic`
(validated here, wired by the networking code), `unix-char` / `unix-block` (a device node
passed into the container) and `none` (hides a profile's device of the same name).
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from machined.config import validate as v
from machined.errors import BadRequest
from machined.network import proxy_model

Devices = Mapping[str, Mapping[str, Any]]

# \Z, not $: `$` also matches before a final newline, and these values end up in
# interface names, ip(8) arguments, volatile keys and dnsmasq's hosts file.
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}\Z")
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\Z")
_MODE = re.compile(r"^0?[0-7]{3}\Z")
_BITRATE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*(bit|[kMGT]bit)\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" to chown


# ---------------------------------------------------------------- value validators


def _clean_path(value: str) -> bool:
    return value.startswith("/") and not any(c in value for c in "\0\n\r")


container_path = v.Validator(
    "an absolute path inside the instance without '..' components, e.g. /mnt/data",
    lambda value: _clean_path(value) and ".." not in value.split("/"))
host_path = v.Validator(
    "an absolute host path, e.g. /srv/data (storage volumes are not supported)", _clean_path)
file_mode = v.Validator("an octal file mode such as 0660", lambda value: bool(_MODE.match(value)))
interface_name = v.Validator(
    "an interface name of 1 to 15 letters, digits, '.', '_', '-' or '@'",
    lambda value: bool(_IFNAME.match(value)))
mac_address = v.Validator("a MAC address such as 00:16:3e:12:34:56",
                          lambda value: bool(_MAC.match(value)))
bit_rate = v.Validator("a bit rate such as 100Mbit or 1Gbit",
                       lambda value: bool(_BITRATE.match(value)))
network_name = v.Validator("a network name of letters, digits, '.', '_' and '-'",
                           lambda value: bool(_NAME.match(value)))
# Whether the pool exists is checked where the instance is made (NotFound).
pool_name = v.Validator("a storage pool name of 1 to 63 letters, digits, '.', '_' and '-'",
                        lambda value: bool(_NAME.match(value)))


def _ip(version: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False
    return check


ipv4_address = v.Validator("an IPv4 address such as 10.0.3.10", _ip(4))
ipv6_address = v.Validator("an IPv6 address such as fd42::10", _ip(6))


def _cidrs(value: str) -> bool:
    try:
        for part in value.split(","):
            ipaddress.ip_network(part.strip(), strict=False)
    except ValueError:
        return False
    return True


cidr_list = v.Validator("a comma-separated list of networks such as 10.1.0.0/24,fd42:1::/64",
                        _cidrs)


def _id(top: int, what: str) -> v.Validator:
    return v.Validator(f"{what} (an integer from 0 to {top})",
                       lambda value: value.isdigit() and int(value) <= top)


# ---------------------------------------------------------------- the tables

DISK_KEYS: dict[str, v.Validator] = {
    "path": container_path,
    "source": host_path,
    "readonly": v.is_bool,
    "required": v.is_bool,
    "optional": v.is_bool,  # the older name of required=false
    "shift": v.is_bool,
    "recursive": v.is_bool,
}
ROOT_DISK_KEYS: dict[str, v.Validator] = {
    "path": container_path,
    "pool": pool_name,
}
UNIX_KEYS: dict[str, v.Validator] = {
    "source": host_path,
    "path": container_path,
    "major": _id(4095, "a major number"),
    "minor": _id(2**20 - 1, "a minor number"),
    "uid": _id(MAX_ID, "a user id"),
    "gid": _id(MAX_ID, "a group id"),
    "mode": file_mode,
    "required": v.is_bool,
}
NICTYPES = ("bridged", "ipvlan", "macvlan", "p2p", "physical", "routed", "sriov")
NIC_KEYS: dict[str, v.Validator] = {
    "network": network_name,
    "nictype": v.one_of(*NICTYPES),
    "parent": interface_name,
    "name": interface_name,
    "host_name": interface_name,
    "hwaddr": mac_address,
    "mtu": v.int_range(68, 65535),
    "vlan": v.int_range(0, 4094),
    "ipv4.address": ipv4_address,
    "ipv6.address": ipv6_address,
    "ipv4.gateway": v.any_of(v.one_of("auto", "none"), ipv4_address),
    "ipv6.gateway": v.any_of(v.one_of("auto", "none"), ipv6_address),
    "ipv4.routes": cidr_list,
    "ipv6.routes": cidr_list,
    "ipv4.routes.external": cidr_list,
    "ipv6.routes.external": cidr_list,
    "security.mac_filtering": v.is_bool,
    "security.ipv4_filtering": v.is_bool,
    "security.ipv6_filtering": v.is_bool,
    "security.port_isolation": v.is_bool,
    "limits.ingress": bit_rate,
    "limits.egress": bit_rate,
    "limits.max": bit_rate,
    "queue.tx.length": v.is_uint,
    "boot.priority": v.is_uint,
}
# nictypes that attach to a host interface named by `parent`.
_NEEDS_PARENT = ("bridged", "ipvlan", "macvlan", "physical", "sriov")

proxy_address = v.Validator(proxy_model.SYNTAX,
                            lambda value: proxy_model.parse_address(value) and None)


# Proxy devices as LXD (non-NAT mode, TCP); udp/unix addresses, nat=true, security.uid/gid
# and unix socket ownership are refused rather than stored and ignored.
PROXY_KEYS: dict[str, v.Validator] = {
    "listen": proxy_address,
    "connect": proxy_address,
    "bind": v.one_of(*proxy_model.BINDS),
    "nat": v.Validator("false (nat=true is not supported: connections are proxied)",
                       lambda value: v.parse_bool(value) is False),
    "proxy_protocol": v.is_bool,
}

TYPES: dict[str, dict[str, v.Validator]] = {
    "disk": DISK_KEYS, "nic": NIC_KEYS, "none": {}, "proxy": PROXY_KEYS,
    "unix-block": UNIX_KEYS, "unix-char": UNIX_KEYS,
}


# ---------------------------------------------------------------- validation


def validate_devices(devices: Any) -> None:
    """Check an instance's or a profile's own devices; raise BadRequest naming the device,
    the key, the value and what is accepted."""
    if not isinstance(devices, Mapping):
        raise BadRequest("Devices must be an object of device name -> {key: value}")
    for name, config in devices.items():
        validate_device(name, config)


def validate_device(name: Any, config: Any) -> None:
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise BadRequest(f"Invalid device name {name!r}: use 1 to 64 letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit")
    if not isinstance(config, Mapping):
        raise BadRequest(f"Device {name!r} must be an object of key -> value")
    for key, value in config.items():
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value {value!r} for key {key!r} of device {name!r}: "
                             "values must be strings")
        if not v.is_utf8(f"{key}{value}"):
            raise BadRequest(f"Invalid key or value {key!r}: {value!r} of device {name!r}: "
                             "keys and values must be UTF-8 text")
    kind = config.get("type")
    accepted = ", ".join(sorted(TYPES))
    if kind is None:
        raise BadRequest(f"Device {name!r} has no type: accepted are {accepted}")
    if kind not in TYPES:
        raise BadRequest(f"Unknown type {kind!r} for device {name!r}: accepted are {accepted}")
    table = TYPES[kind]
    if kind == "disk" and config.get("path") == "/":
        table = ROOT_DISK_KEYS
    for key, value in config.items():
        if key == "type":
            continue
        if key not in table:
            what = "root disk" if table is ROOT_DISK_KEYS else kind
            keys = ", ".join(sorted(table)) or "no other keys"
            close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadRequest(f"Unknown key {key!r} for {what} device {name!r}{hint}: accepted "
                             f"are {keys}")
        try:
            table[key](value)
        except ValueError as e:
            raise BadRequest(f"Invalid value {value!r} for key {key!r} of device {name!r}: "
                             f"expected {e}") from None
    _CHECKS.get(kind, _no_check)(name, config)


def _no_check(name: str, config: Mapping[str, str]) -> None:
    return None


def _check_disk(name: str, config: Mapping[str, str]) -> None:
    if "path" not in config:
        raise BadRequest(f"Disk device {name!r} needs key 'path': the mount point inside the "
                         "instance (/ for the root disk)")
    if config["path"] == "/":
        return
    if "source" not in config:
        raise BadRequest(f"Disk device {name!r} needs key 'source': the host path to bind "
                         "into the instance")
    if "required" in config and "optional" in config and (
            v.parse_bool(config["required"]) == v.parse_bool(config["optional"])):
        raise BadRequest(f"Disk device {name!r} sets both 'required' and 'optional' and they "
                         "disagree: use only 'required'")


def _check_unix(name: str, config: Mapping[str, str]) -> None:
    if "source" not in config and "path" not in config:
        raise BadRequest(f"{config['type']} device {name!r} needs 'source' (host device node) "
                         "or 'path' (where it appears inside the instance), or both")
    if posixpath.normpath(config.get("path") or config.get("source") or "/") == "/":
        raise BadRequest(f"{config['type']} device {name!r} cannot be placed at '/'")
    if ("major" in config) != ("minor" in config):
        raise BadRequest(f"{config['type']} device {name!r} needs both 'major' and 'minor', "
                         "or neither (then the host node's numbers are used)")


def _check_nic(name: str, config: Mapping[str, str]) -> None:
    if "network" in config:
        # nictype=bridged is redundant but harmless (managed networks are bridges).
        if "parent" in config or config.get("nictype", "bridged") != "bridged":
            key = "parent" if "parent" in config else "nictype"
            raise BadRequest(f"Nic device {name!r} sets both 'network' and {key!r}: "
                             "a managed network chooses the nictype and parent itself")
        return
    nictype = config.get("nictype")
    if nictype is None:
        raise BadRequest(f"Nic device {name!r} needs 'network' (a managed network) or "
                         f"'nictype' ({', '.join(NICTYPES)})")
    if nictype in _NEEDS_PARENT and "parent" not in config:
        raise BadRequest(f"Nic device {name!r} of nictype {nictype!r} needs 'parent' (the "
                         "host interface it attaches to)")


# What the nic code implements per nictype; other keys are refused at start rather than
# silently ignored (security.mac_filtering=true doing nothing would be a false promise).
NIC_STARTABLE: dict[str, frozenset[str]] = {
    "bridged": frozenset({"type", "network", "nictype", "parent", "name", "hwaddr", "mtu",
                          "host_name", "ipv4.address", "boot.priority"}),
    "macvlan": frozenset({"type", "nictype", "parent", "name", "hwaddr", "mtu",
                          "boot.priority"}),
}


def check_nic_start(name: str, config: Mapping[str, str]) -> None:
    """At start: a (validated) nic whose nictype or keys machined does not implement yet is
    refused with what is accepted."""
    nictype = "bridged" if config.get("network") else config.get("nictype", "")
    if nictype not in NIC_STARTABLE:
        raise BadRequest(f"Device {name!r}: nictype {nictype!r} is not supported yet: accepted "
                         f"are {', '.join(NIC_STARTABLE)}")
    unsupported = sorted(set(config) - NIC_STARTABLE[nictype])
    if unsupported:
        raise BadRequest(f"Device {name!r}: key {unsupported[0]!r} is not supported yet for "
                         f"nictype {nictype}: supported are "
                         f"{', '.join(sorted(NIC_STARTABLE[nictype] - {'type'}))}")


_CHECKS: dict[str, Callable[[str, Mapping[str, str]], None]] = {
    "disk": _check_disk, "unix-char": _check_unix, "unix-block": _check_unix,
    "nic": _check_nic, "proxy": proxy_model.check_device,
}


def validate_expanded(devices: Devices) -> None:
    """Rules across the devices an instance ends up with (profiles, then its own): one root
    disk, one device per mount point, one nic per interface name."""
    roots = [n for n, d in sorted(devices.items()) if is_root_disk(d)]
    if len(roots) > 1:
        raise BadRequest(f"More than one root disk device: {', '.join(roots)}")
    seen: dict[str, str] = {}
    for name, dev in sorted(devices.items()):
        target = _mount_target(dev)
        if target is None:
            continue
        other = seen.get(target)
        if other is not None:
            raise BadRequest(f"Devices {other!r} and {name!r} both use path {target!r} "
                             "inside the instance")
        seen[target] = name
    ifnames: dict[str, str] = {}
    for name, dev in sorted(devices.items()):
        if dev.get("type") != "nic":
            continue
        ifname = dev.get("name")
        if ifname is None:
            continue  # named at start (eth0, eth1, ...)
        if ifname in ifnames:
            raise BadRequest(f"Nic devices {ifnames[ifname]!r} and {name!r} both use interface "
                             f"name {ifname!r}")
        ifnames[ifname] = name
    proxy_model.check_expanded(devices)


def is_root_disk(dev: Mapping[str, Any]) -> bool:
    return dev.get("type") == "disk" and dev.get("path") == "/"


def _mount_target(dev: Mapping[str, Any]) -> str | None:
    kind = dev.get("type")
    if kind == "disk" and dev.get("path") != "/":
        return posixpath.normpath(str(dev.get("path", "")))
    if kind in ("unix-char", "unix-block"):
        return posixpath.normpath(str(dev.get("path") or dev.get("source") or ""))
    return None


# ---------------------------------------------------------------- runtime view


def _flag(dev: Mapping[str, Any], key: str, default: bool) -> bool:
    return v.parse_bool(dev[key]) if key in dev else default


def runtime_devices(devices: Devices) -> list[dict[str, Any]]:
    """The (validated, expanded) devices the runtime mounts at start, in mount order (a
    parent path before what is mounted below it). Plain dicts: they go into the LaunchSpec."""
    out: list[dict[str, Any]] = []
    for name, dev in sorted(devices.items()):
        kind = dev.get("type")
        if kind == "disk" and not is_root_disk(dev):
            required = _flag(dev, "required", not _flag(dev, "optional", False))
            out.append({
                "name": name, "type": "disk", "source": dev["source"],
                "path": posixpath.normpath(dev["path"]), "readonly": _flag(dev, "readonly", False),
                "required": required, "shift": _flag(dev, "shift", False),
                "recursive": _flag(dev, "recursive", False)})
        elif kind in ("unix-char", "unix-block"):
            source = dev.get("source") or dev["path"]
            out.append({
                "name": name, "type": kind, "source": source,
                "path": posixpath.normpath(dev.get("path") or source),
                "major": int(dev["major"]) if "major" in dev else None,
                "minor": int(dev["minor"]) if "minor" in dev else None,
                "uid": int(dev.get("uid", "0")), "gid": int(dev.get("gid", "0")),
                "mode": int(dev.get("mode", "0660"), 8),
                "required": _flag(dev, "required", True)})
    out.sort(key=lambda d: (d["path"].count("/") if d["path"] != "/" else 0, d["path"]))
    return out
