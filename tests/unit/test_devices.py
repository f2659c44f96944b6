"""Device validation (machined/config/devices.py) and the runtime's view of devices."""

from __future__ import annotations

import pytest

from machined.config.devices import (
    runtime_devices,
    validate_device,
    validate_devices,
    validate_expanded,
)
from machined.errors import BadRequest
from machined.runtime.spec import device_rules, map_id


@pytest.mark.parametrize("config", [
    {"type": "disk", "path": "/", "pool": "default"},
    {"type": "disk", "path": "/"},
    {"type": "disk", "source": "/srv/data", "path": "/mnt/data"},
    {"type": "disk", "source": "/srv/data", "path": "/mnt/data", "readonly": "YES",
     "required": "false", "shift": "on", "recursive": "0"},
    {"type": "disk", "source": "/srv", "path": "/srv", "optional": "true"},
    {"type": "disk", "source": "/srv", "path": "/srv", "optional": "true", "required": "false"},
    {"type": "unix-char", "source": "/dev/zero"},
    {"type": "unix-char", "path": "/dev/myzero", "major": "1", "minor": "5", "uid": "1000",
     "gid": "100", "mode": "0666", "required": "false"},
    {"type": "unix-block", "source": "/dev/loop0", "path": "/dev/loop0", "mode": "660"},
    {"type": "nic", "network": "mcbr0"},
    {"type": "nic", "network": "mcbr0", "name": "eth0", "hwaddr": "00:16:3e:aa:bb:cc",
     "ipv4.address": "10.0.3.5", "ipv6.address": "fd42::5", "mtu": "1500",
     "security.mac_filtering": "true", "limits.max": "100Mbit"},
    {"type": "nic", "nictype": "bridged", "parent": "br0", "vlan": "10",
     "ipv4.routes": "10.1.0.0/24,10.2.0.0/16"},
    {"type": "nic", "nictype": "p2p"},
    {"type": "nic", "nictype": "routed", "ipv4.gateway": "auto"},
    {"type": "none"},
])
def test_accepts_valid_devices(config):
    validate_device("dev0", config)


@pytest.mark.parametrize("name,config,message", [
    ("d", {}, "Device 'd' has no type: accepted are disk, nic, none, proxy, unix-block, "
     "unix-char"),
    ("d", {"type": "usb"},
     "Unknown type 'usb' for device 'd': accepted are disk, nic, none, proxy, unix-block, "
     "unix-char"),
    ("d", {"type": "disk", "source": "/a", "path": "/b", "size": "10GiB"},
     "Unknown key 'size' for disk device 'd': accepted are optional, path, readonly, recursive, "
     "required, shift, source"),
    ("root", {"type": "disk", "path": "/", "size": "10GiB"},
     "Unknown key 'size' for root disk device 'root': accepted are path, pool"),
    ("root", {"type": "disk", "path": "/", "pool": "fa/st"},
     "Invalid value 'fa/st' for key 'pool' of device 'root': expected a storage pool name of "
     "1 to 63 letters, digits, '.', '_' and '-'"),
    ("d", {"type": "disk", "source": "/a"},
     "Disk device 'd' needs key 'path': the mount point inside the instance (/ for the root "
     "disk)"),
    ("d", {"type": "disk", "path": "/mnt"},
     "Disk device 'd' needs key 'source': the host path to bind into the instance"),
    ("d", {"type": "disk", "source": "/a", "path": "mnt"},
     "Invalid value 'mnt' for key 'path' of device 'd': expected an absolute path inside the "
     "instance without '..' components, e.g. /mnt/data"),
    ("d", {"type": "disk", "source": "/a", "path": "/mnt/../etc"},
     "Invalid value '/mnt/../etc' for key 'path' of device 'd': expected an absolute path "
     "inside the instance without '..' components, e.g. /mnt/data"),
    ("d", {"type": "disk", "source": "vol1", "path": "/mnt"},
     "Invalid value 'vol1' for key 'source' of device 'd': expected an absolute host path, "
     "e.g. /srv/data (storage volumes are not supported)"),
    ("d", {"type": "disk", "source": "/a\nb", "path": "/mnt"},
     "Invalid value '/a\\nb' for key 'source' of device 'd'"),
    ("d", {"type": "disk", "source": "/a", "path": "/mnt", "readonly": "maybe"},
     "Invalid value 'maybe' for key 'readonly' of device 'd': expected a boolean (true/false, "
     "yes/no, on/off, 1/0)"),
    ("d", {"type": "disk", "source": "/a", "path": "/mnt", "required": "true",
           "optional": "true"},
     "Disk device 'd' sets both 'required' and 'optional' and they disagree: use only "
     "'required'"),
    ("d", {"type": "disk", "source": "/a", "path": "/mnt", "readonly": True},
     "Invalid value True for key 'readonly' of device 'd': values must be strings"),
    ("d", {"type": "unix-char"},
     "unix-char device 'd' needs 'source' (host device node) or 'path' (where it appears "
     "inside the instance), or both"),
    ("d", {"type": "unix-char", "path": "/"}, "unix-char device 'd' cannot be placed at '/'"),
    ("d", {"type": "unix-block", "path": "/dev/x", "minor": "1"},
     "unix-block device 'd' needs both 'major' and 'minor', or neither"),
    ("d", {"type": "unix-char", "path": "/dev/x", "major": "-1", "minor": "1"},
     "Invalid value '-1' for key 'major' of device 'd': expected a major number (an integer "
     "from 0 to 4095)"),
    ("d", {"type": "unix-char", "path": "/dev/x", "uid": "4294967295"},
     "Invalid value '4294967295' for key 'uid' of device 'd': expected a user id"),
    ("d", {"type": "unix-char", "path": "/dev/x", "mode": "rw"},
     "Invalid value 'rw' for key 'mode' of device 'd': expected an octal file mode such as "
     "0660"),
    ("d", {"type": "unix-char", "path": "/dev/x", "readonly": "true"},
     "Unknown key 'readonly' for unix-char device 'd': accepted are gid, major, minor, mode, "
     "path, required, source, uid"),
    ("eth0", {"type": "nic"},
     "Nic device 'eth0' needs 'network' (a managed network) or 'nictype' (bridged, ipvlan, "
     "macvlan, p2p, physical, routed, sriov)"),
    ("eth0", {"type": "nic", "nictype": "veth"},
     "Invalid value 'veth' for key 'nictype' of device 'eth0': expected one of: bridged, "
     "ipvlan, macvlan, p2p, physical, routed, sriov"),
    ("eth0", {"type": "nic", "nictype": "macvlan"},
     "Nic device 'eth0' of nictype 'macvlan' needs 'parent' (the host interface it attaches "
     "to)"),
    ("eth0", {"type": "nic", "network": "br0", "parent": "eth1"},
     "Nic device 'eth0' sets both 'network' and 'parent'"),
    ("eth0", {"type": "nic", "network": "br0", "name": "a-very-long-interface"},
     "Invalid value 'a-very-long-interface' for key 'name' of device 'eth0': expected an "
     "interface name of 1 to 15"),
    ("eth0", {"type": "nic", "network": "br0", "hwaddr": "00:16:3e:aa:bb"},
     "expected a MAC address such as 00:16:3e:12:34:56"),
    ("eth0", {"type": "nic", "network": "br0", "ipv4.address": "fd42::1"},
     "Invalid value 'fd42::1' for key 'ipv4.address' of device 'eth0': expected an IPv4 "
     "address such as 10.0.3.10"),
    ("eth0", {"type": "nic", "network": "br0", "mtu": "20"},
     "Invalid value '20' for key 'mtu' of device 'eth0': expected an integer from 68 to 65535"),
    ("eth0", {"type": "nic", "network": "br0", "ipv4.routes": "10.0.0.0/33"},
     "expected a comma-separated list of networks"),
    ("eth0", {"type": "nic", "network": "br0", "limits.max": "fast"},
     "expected a bit rate such as 100Mbit or 1Gbit"),
    ("eth0", {"type": "nic", "network": "br0", "source": "/x"},
     "Unknown key 'source' for nic device 'eth0': accepted are boot.priority, host_name, "),
    ("hide", {"type": "none", "path": "/x"},
     "Unknown key 'path' for none device 'hide': accepted are no other keys"),
    ("bad/name", {"type": "none"}, "Invalid device name 'bad/name'"),
    ("", {"type": "none"}, "Invalid device name ''"),
    ("d", "disk", "Device 'd' must be an object of key -> value"),
])
def test_rejects_bad_devices_naming_device_key_value_and_what_is_accepted(name, config,
                                                                           message):
    with pytest.raises(BadRequest) as e:
        validate_device(name, config)
    assert message in e.value.message
    assert "\n" not in e.value.message.replace("\\n", "")


def test_devices_must_be_a_mapping():
    with pytest.raises(BadRequest, match="Devices must be an object"):
        validate_devices(["root"])


def test_undecodable_device_values_are_refused():
    with pytest.raises(BadRequest) as e:
        validate_device("d", {"type": "disk", "source": "/\udcff", "path": "/mnt"})
    assert e.value.message == ("Invalid key or value 'source': '/\\udcff' of device 'd': keys "
                               "and values must be UTF-8 text")


def test_expanded_rules():
    root = {"type": "disk", "path": "/", "pool": "default"}
    validate_expanded({"root": root, "a": {"type": "disk", "source": "/s", "path": "/a"}})
    with pytest.raises(BadRequest, match="More than one root disk device: r1, r2"):
        validate_expanded({"r1": root, "r2": root})
    with pytest.raises(BadRequest) as e:
        validate_expanded({"a": {"type": "disk", "source": "/s", "path": "/mnt/x"},
                           "b": {"type": "unix-char", "source": "/dev/null", "path": "/mnt//x/"}})
    assert e.value.message == "Devices 'a' and 'b' both use path '/mnt/x' inside the instance"
    # A unix device without path appears at its source path.
    with pytest.raises(BadRequest, match="both use path '/dev/null'"):
        validate_expanded({"a": {"type": "unix-char", "source": "/dev/null"},
                           "b": {"type": "unix-char", "path": "/dev/null"}})
    with pytest.raises(BadRequest, match="Nic devices 'n1' and 'n2' both use interface name"):
        validate_expanded({"n1": {"type": "nic", "network": "b", "name": "eth0"},
                           "n2": {"type": "nic", "network": "b", "name": "eth0"}})
    # none hides, nics without a name are named at start.
    validate_expanded({"n1": {"type": "nic", "network": "b"}, "n2": {"type": "nic",
                                                                     "network": "b"},
                       "x": {"type": "none"}})


def test_runtime_devices_are_normalised_and_ordered_parent_first():
    devices = {
        "root": {"type": "disk", "path": "/", "pool": "default"},
        "deep": {"type": "disk", "source": "/s2", "path": "/mnt/a/b/", "readonly": "yes"},
        "top": {"type": "disk", "source": "/s1", "path": "/mnt/a", "optional": "true"},
        "zero": {"type": "unix-char", "source": "/dev/zero"},
        "blk": {"type": "unix-block", "path": "/dev/sdz", "major": "8", "minor": "0",
                "mode": "0600", "uid": "5", "required": "no"},
        "eth0": {"type": "nic", "network": "b"},
        "hidden": {"type": "none"},
    }
    out = runtime_devices(devices)
    assert [d["name"] for d in out] == ["blk", "zero", "top", "deep"]
    assert out[0] == {"name": "blk", "type": "unix-block", "source": "/dev/sdz",
                      "path": "/dev/sdz", "major": 8, "minor": 0, "uid": 5, "gid": 0,
                      "mode": 0o600, "required": False}
    assert out[1]["major"] is None and out[1]["mode"] == 0o660 and out[1]["required"]
    assert out[2] == {"name": "top", "type": "disk", "source": "/s1", "path": "/mnt/a",
                      "readonly": False, "required": False, "shift": False,
                      "recursive": False}
    assert out[3]["path"] == "/mnt/a/b" and out[3]["readonly"] and out[3]["required"]


def test_device_rules_and_id_mapping():
    devs = [{"type": "unix-char", "major": 1, "minor": 11},
            {"type": "unix-block", "major": 8, "minor": 0},
            {"type": "disk"}]
    assert device_rules(devs) == ["c 1:11 rwm", "b 8:0 rwm"]
    idmap = [(0, 1000000, 65536)]
    assert map_id(idmap, 0) == 1000000 and map_id(idmap, 1000) == 1001000
    assert map_id([], 1000) == 1000  # privileged: no map
    with pytest.raises(ValueError, match="outside the container's id map"):
        map_id(idmap, 70000)
