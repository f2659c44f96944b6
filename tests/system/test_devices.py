"""Devices in real busybox containers: disk binds (rw, read-only and locked, shift), unix-char
nodes, hostile symlinks at the target path, missing sources, validation errors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def hostdir():
    base = Path(tempfile.mkdtemp(prefix="p-devices-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def created(daemon):
    made: list[str] = []
    yield made
    for name in made:
        daemon.mc("delete", "--force", name)


def _new(daemon, image, created, name, *devices, start=True, config=()):
    args = ["init", image, name]
    for c in config:
        args += ["-c", c]
    daemon.ok(*args)
    created.append(name)
    for dev in devices:
        daemon.ok("config", "device", "add", name, *dev)
    if start:
        daemon.ok("start", name)
    return name


def _sh(daemon, name, script):
    return daemon.mc("exec", name, "--", "sh", "-c", script)


def test_disk_bind_read_write(daemon, busybox_image, created, hostdir):
    src = hostdir / "rw"
    src.mkdir()
    src.chmod(0o777)
    (src / "hello").write_text("from the host\n")
    name = _new(daemon, busybox_image, created, "p-disk-rw",
                ("data", "disk", f"source={src}", "path=/mnt/data"))
    assert daemon.ok("exec", name, "--", "cat", "/mnt/data/hello") == "from the host\n"
    assert _sh(daemon, name, "echo inside > /mnt/data/new").code == 0
    assert (src / "new").read_text() == "inside\n"
    # Written by container root: the mapped host uid, not host root.
    assert (src / "new").stat().st_uid != 0


def test_disk_read_only_cannot_be_remounted_read_write(daemon, busybox_image, created, hostdir):
    src = hostdir / "ro"
    src.mkdir()
    src.chmod(0o777)
    (src / "file").write_text("keep\n")
    name = _new(daemon, busybox_image, created, "p-disk-ro",
                ("ro", "disk", f"source={src}", "path=/mnt/ro", "readonly=true"))
    assert daemon.ok("exec", name, "--", "cat", "/mnt/ro/file") == "keep\n"
    res = _sh(daemon, name, "echo x > /mnt/ro/new")
    assert res.code != 0 and "Read-only file system" in res.err
    # Container root may not lift the flag: it was locked when the mount namespace moved to
    # the container's user namespace.
    res = _sh(daemon, name, "mount -o remount,bind,rw /mnt/ro")
    assert res.code != 0 and "permission denied" in res.err  # EPERM
    # Control: the same command works on a mount the container made itself.
    assert _sh(daemon, name, "mount -o remount,bind,ro /dev/shm && "
                             "mount -o remount,bind,rw /dev/shm").code == 0
    assert _sh(daemon, name, "echo x > /mnt/ro/new").code != 0
    assert not (src / "new").exists()


def test_disk_shift_shows_host_owner_as_container_root(daemon, busybox_image, created,
                                                       hostdir):
    src = hostdir / "shift"
    src.mkdir()
    secret = src / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    name = _new(daemon, busybox_image, created, "p-disk-shift",
                ("plain", "disk", f"source={src}", "path=/mnt/plain"),
                ("shifted", "disk", f"source={src}", "path=/mnt/shifted", "shift=true"))
    assert daemon.ok("exec", name, "--", "stat", "-c", "%u", "/mnt/plain/secret").strip() \
        == "65534"
    assert _sh(daemon, name, "cat /mnt/plain/secret").code != 0
    assert daemon.ok("exec", name, "--", "stat", "-c", "%u", "/mnt/shifted/secret").strip() \
        == "0"
    assert daemon.ok("exec", name, "--", "cat", "/mnt/shifted/secret") == "root only\n"


def test_symlink_at_target_stays_inside_the_container(daemon, busybox_image, created, hostdir):
    canary = hostdir / "canary"
    canary.mkdir()
    (canary / "canary").write_text("host\n")
    src = hostdir / "evil-src"
    src.mkdir()
    (src / "payload").write_text("payload\n")
    name = _new(daemon, busybox_image, created, "p-symlink", start=False)
    # Symlinks inside the container at the device paths, pointing at the host canary (by
    # absolute path and by climbing with ..) and at /etc.
    daemon.ok("start", name)
    script = (f"mkdir -p /mnt && ln -s {canary} /mnt/abs && "
              f"ln -s ../../../../../../../..{canary} /mnt/rel && ln -s /etc /mnt/etc")
    assert _sh(daemon, name, script).code == 0
    daemon.ok("stop", name, "--force")
    for dev, path in (("abs", "/mnt/abs/sub"), ("rel", "/mnt/rel/sub"),
                      ("etc", "/mnt/etc/sub")):
        daemon.ok("config", "device", "add", name, dev, "disk", f"source={src}",
                  f"path={path}")
    daemon.ok("config", "device", "add", name, "node", "unix-char", "source=/dev/zero",
              "path=/mnt/abs/node")
    # The links dangle inside the container (it has no such directory): the start fails and
    # nothing is created on the host.
    res = daemon.mc("start", name)
    assert res.code == 1
    assert ("path /mnt/abs/node cannot be made inside the container: No such file or "
            "directory (symlinks on the way are resolved inside the container)") in res.err
    assert sorted(os.listdir(canary)) == ["canary"]
    # Give the container its own directory of that name: the devices land there.
    daemon.ok("config", "device", "remove", name, "abs", "rel", "node")
    daemon.ok("start", name)
    assert _sh(daemon, name, f"mkdir -p {canary}").code == 0
    daemon.ok("stop", name, "--force")
    for dev, path in (("abs", "/mnt/abs/sub"), ("rel", "/mnt/rel/sub2")):
        daemon.ok("config", "device", "add", name, dev, "disk", f"source={src}",
                  f"path={path}")
    daemon.ok("config", "device", "add", name, "node", "unix-char", "source=/dev/zero",
              "path=/mnt/abs/node")
    daemon.ok("start", name)
    # The host canary directory is untouched: no directory or node created in it.
    assert sorted(os.listdir(canary)) == ["canary"]
    assert (canary / "canary").read_text() == "host\n"
    # Inside, the links resolved within the container's root.
    inside = daemon.ok("exec", name, "--", "cat", f"{canary}/sub/payload",
                       f"{canary}/sub2/payload", "/etc/sub/payload")
    assert inside == "payload\n" * 3
    assert _sh(daemon, name, f"test -c {canary}/node").code == 0


def test_unix_char_device(daemon, busybox_image, created):
    name = _new(daemon, busybox_image, created, "p-unix",
                ("myzero", "unix-char", "source=/dev/zero", "path=/dev/myzero"),
                ("mynull", "unix-char", "path=/dev/mynull", "major=1", "minor=3",
                 "mode=0666", "uid=1000", "gid=100"))
    out = _sh(daemon, name, "head -c 8 /dev/myzero | od -An -tx1")
    assert out.code == 0 and out.out.split() == ["00"] * 8
    assert daemon.ok("exec", name, "--", "stat", "-c", "%F %a %u %g %t:%T",
                     "/dev/myzero").strip() == "character special file 660 0 0 1:5"
    assert daemon.ok("exec", name, "--", "stat", "-c", "%a %u %g %t:%T",
                     "/dev/mynull").strip() == "666 1000 100 1:3"
    assert _sh(daemon, name, "echo gone > /dev/mynull").code == 0


def test_privileged_unix_char_gets_a_devices_cgroup_rule(daemon, busybox_image, created):
    name = _new(daemon, busybox_image, created, "p-unix-priv",
                ("kmsg", "unix-char", "source=/dev/kmsg", "path=/dev/kmsg2"),
                config=("security.privileged=true",))
    # /dev/kmsg (1:11) is outside the default whitelist: readable only thanks to the rule.
    assert _sh(daemon, name, "dd if=/dev/kmsg2 bs=8192 count=1 2>/dev/null | wc -c").out \
        .strip() != "0"
    state = json.loads(daemon.ok("list", "--format", "json"))
    pid = next(i for i in state if i["name"] == name)["state"]["pid"]
    cg = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text()
              .splitlines() if ":devices:" in line)
    rules = Path(f"/sys/fs/cgroup/devices{cg}/devices.list").read_text().split("\n")
    assert "c 1:11 rwm" in rules


def test_missing_source_fails_the_start_unless_not_required(daemon, busybox_image, created,
                                                            hostdir):
    name = _new(daemon, busybox_image, created, "p-missing",
                ("gone", "disk", f"source={hostdir}/nope", "path=/mnt/gone"), start=False)
    res = daemon.mc("start", name)
    assert res.code == 1
    assert (f"Disk device 'gone': source {hostdir}/nope does not exist (set required=false "
            "to start without it)") in res.err
    daemon.ok("config", "device", "set", name, "gone", "required=false")
    daemon.ok("start", name)
    assert _sh(daemon, name, "test -e /mnt/gone").code != 0


def test_devices_apply_at_next_start(daemon, busybox_image, created, hostdir):
    src = hostdir / "later"
    src.mkdir()
    (src / "f").write_text("later\n")
    name = _new(daemon, busybox_image, created, "p-later")
    res = daemon.mc("config", "device", "add", name, "later", "disk", f"source={src}",
                    "path=/mnt/later")
    assert res.code == 0 and "takes effect at the next start" in res.err
    assert _sh(daemon, name, "test -e /mnt/later/f").code != 0
    daemon.ok("restart", name, "--force")
    assert daemon.ok("exec", name, "--", "cat", "/mnt/later/f") == "later\n"


def test_device_commands_and_override(daemon, busybox_image, created, hostdir):
    name = _new(daemon, busybox_image, created, "p-devcmd", start=False)
    daemon.ok("config", "device", "add", name, "d", "disk", f"source={hostdir}", "path=/mnt/d")
    assert daemon.ok("config", "device", "list", name).split() == ["d"]
    assert daemon.ok("config", "device", "get", name, "d", "path").strip() == "/mnt/d"
    daemon.ok("config", "device", "set", name, "d", "readonly", "true")
    daemon.ok("config", "device", "unset", name, "d", "readonly")
    shown = daemon.ok("config", "device", "show", name)
    assert "readonly" not in shown and "path: /mnt/d" in shown
    res = daemon.mc("config", "device", "add", name, "d", "disk", "source=/x", "path=/y")
    assert res.code == 1 and f"Device 'd' already exists on {name}" in res.err
    # root comes from the default profile: it cannot be edited here, only overridden.
    res = daemon.mc("config", "device", "set", name, "root", "pool=default")
    assert res.code == 1 and f"override it (mc config device override {name} root)" in res.err
    daemon.ok("config", "device", "override", name, "root")
    inst = json.loads(daemon.ok("list", "--format", "json"))
    mine = next(i for i in inst if i["name"] == name)
    assert mine["devices"]["root"] == {"type": "disk", "path": "/", "pool": "default"}
    daemon.ok("config", "device", "remove", name, "d", "root")
    assert daemon.ok("config", "device", "list", name).split() == []


@pytest.mark.parametrize("device,message", [
    (("x", "floppy"), "Unknown type 'floppy' for device 'x': accepted are disk, nic, none, "
                      "proxy, unix-block, unix-char"),
    (("x", "disk", "path=/mnt/x"), "Disk device 'x' needs key 'source': the host path to bind "
                                   "into the instance"),
    (("x", "disk", "source=/srv", "path=/mnt/x", "readonly=maybe"),
     "Invalid value 'maybe' for key 'readonly' of device 'x': expected a boolean (true/false, "
     "yes/no, on/off, 1/0)"),
    (("x", "disk", "source=/srv", "path=/mnt/x", "colour=red"),
     "Unknown key 'colour' for disk device 'x': accepted are optional, path, readonly, "
     "recursive, required, shift, source"),
    (("x", "disk", "source=srv", "path=/mnt/x"),
     "Invalid value 'srv' for key 'source' of device 'x': expected an absolute host path, "
     "e.g. /srv/data (storage volumes are not supported)"),
    (("x", "unix-char", "path=/dev/x", "major=1"),
     "unix-char device 'x' needs both 'major' and 'minor', or neither (then the host node's "
     "numbers are used)"),
    (("x", "nic", "nictype=bridged"),
     "Nic device 'x' of nictype 'bridged' needs 'parent' (the host interface it attaches to)"),
    (("x", "nic", "network=lxdbr0", "hwaddr=zz"),
     "Invalid value 'zz' for key 'hwaddr' of device 'x': expected a MAC address such as "
     "00:16:3e:12:34:56"),
    (("x", "disk", "source=/srv", "path=/dev/zero2"), None),
])
def test_device_validation_errors(daemon, busybox_image, created, device, message):
    name = "p-validate"
    if name not in created:
        _new(daemon, busybox_image, created, name, start=False)
    before = daemon.ok("config", "device", "show", name)
    res = daemon.mc("config", "device", "add", name, *device)
    if message is None:
        assert res.code == 0, res.err
        daemon.ok("config", "device", "remove", name, device[0])
        return
    assert res.code == 1
    assert res.err.strip() == f"Error: {message}"
    assert daemon.ok("config", "device", "show", name) == before


def test_two_devices_on_one_path_are_refused(daemon, busybox_image, created, hostdir):
    name = _new(daemon, busybox_image, created, "p-dup", start=False)
    daemon.ok("config", "device", "add", name, "a", "disk", f"source={hostdir}", "path=/mnt/x")
    res = daemon.mc("config", "device", "add", name, "b", "unix-char", "source=/dev/null",
                    "path=/mnt/x/")
    assert res.code == 1
    assert "Devices 'a' and 'b' both use path '/mnt/x' inside the instance" in res.err


def test_disk_source_inside_the_state_directory_is_refused(daemon, busybox_image, created,
                                                          hostdir):
    """A rootfs is container-writable: a source below it could be swapped for a link to /."""
    name = _new(daemon, busybox_image, created, "p-statesrc", start=False)
    inside = daemon.instance_dir(name) / "rootfs/tmp"
    res = daemon.mc("config", "device", "add", name, "s", "disk", f"source={inside}",
                    "path=/mnt/s")
    assert res.code == 1 and "is inside machined's state directory" in res.err
    # A link on the host pointing into the state directory is seen through as well.
    link = hostdir / "to-state"
    link.symlink_to(daemon.root)
    res = daemon.mc("config", "device", "add", name, "s", "disk", f"source={link}",
                    "path=/mnt/s")
    assert res.code == 1 and "is inside machined's state directory" in res.err
    assert "s" not in next(i for i in daemon.instances() if i["name"] == name)["devices"]


def test_device_nodes_in_the_rootfs_are_dead_in_an_unprivileged_container(daemon, busybox_image,
                                                                          created):
    """Device nodes that end up in the rootfs (made while the container was privileged, or by
    any other path) must not open once it is unprivileged: the rootfs is a host filesystem
    whose on-disk uid 0 is container root, and unprivileged containers get no devices cgroup,
    so a node like `b 8:0` would be the host's raw disk."""
    name = _new(daemon, busybox_image, created, "s-nodes",
                ("zero", "unix-char", "source=/dev/zero", "path=/mnt/zero"),
                config=("security.privileged=true",))
    assert _sh(daemon, name, "mknod -m 600 /evilnull c 1 3 && mknod -m 600 /evilblk b 7 0"
               ).code == 0
    daemon.ok("stop", name, "--force")
    daemon.ok("config", "set", name, "security.privileged=false")
    daemon.ok("start", name)
    assert daemon.ok("exec", name, "--", "stat", "-c", "%u %t:%T", "/evilnull").strip() \
        == "0 1:3"  # container root owns it ...
    res = _sh(daemon, name, "echo x > /evilnull")
    assert res.code != 0 and "Permission denied" in res.err  # ... but cannot open it
    res = _sh(daemon, name, "dd if=/evilblk of=/dev/null count=0")  # open only
    assert res.code != 0 and "Permission denied" in res.err
    # The flag is locked: container root cannot lift it.
    res = _sh(daemon, name, "mount -o remount,bind,dev / && echo x > /evilnull")
    assert res.code != 0 and "permission denied" in res.err.lower()
    # Control: nodes the runtime binds in (its own /dev, unix-char devices placed anywhere,
    # even on the rootfs) still work.
    assert _sh(daemon, name, "echo x > /dev/null && head -c 4 /mnt/zero | od -An -tx1"
               ).out.split() == ["00"] * 4


def test_a_fifo_at_etc_hostname_does_not_hang_the_start(daemon, busybox_image, created):
    """init writes /etc/hostname at boot; the container may have made it a FIFO, whose
    open for writing would block until a reader comes (never: init has not exec'd yet)."""
    name = _new(daemon, busybox_image, created, "s-fifo")
    assert _sh(daemon, name, "rm -f /etc/hostname && mkfifo /etc/hostname").code == 0
    daemon.ok("stop", name, "--force")
    start = time.monotonic()
    daemon.ok("start", name)
    assert time.monotonic() - start < 10
    assert daemon.ok("exec", name, "--", "hostname").strip() == name
