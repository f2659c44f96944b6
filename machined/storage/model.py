"""Storage pool rules (pure): names, driver config, volume names, loop file sizes.

Errors are one-line BadRequests naming the key and what is accepted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import PurePath

from machined.config.validate import parse_size
from machined.errors import BadRequest

GiB = 1 << 30
MiB = 1 << 20
DRIVERS = ("dir", "btrfs")
# Keys each driver accepts; `source` and `size` are fixed at creation (LXD).
DRIVER_KEYS: dict[str, tuple[str, ...]] = {
    "dir": ("source",),
    "btrfs": ("source", "size", "btrfs.mount_options"),
}
UPDATABLE_KEYS: dict[str, frozenset[str]] = {
    "dir": frozenset(),
    "btrfs": frozenset({"btrfs.mount_options"}),
}
# LXD's default: lets a container's root (in its user namespace) delete subvolumes it made.
DEFAULT_BTRFS_MOUNT_OPTIONS = "user_subvol_rm_allowed"
# mkfs.btrfs refuses much less than ~110 MiB; a pool smaller than this holds nothing useful.
MIN_LOOP_SIZE = 256 * MiB
MAX_LOOP_SIZE = 1 << 50  # 1 PiB: a sparse file can be that large, a typo usually is larger

_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Mount options a pool may set: plain btrfs options. Those that pick another device or
# loop setup (loop=, offset=, sizelimit=), or would make the pool read-only, are refused, as
# are mount(8)'s own: helper=/uhelper= run /sbin/mount.<value> (a path, once '/' is in it),
# user/users/owner/group imply noexec,nosuid,nodev (no container would start).
_MOUNT_OPTION = re.compile(r"^[a-z0-9_]+(=[A-Za-z0-9_.:/+-]+)?$")
_REFUSED_MOUNT_OPTIONS = {"loop", "offset", "sizelimit", "encryption", "ro", "remount",
                          "bind", "rbind", "move", "subvol", "subvolid", "device", "helper",
                          "uhelper", "user", "users", "owner", "group"}


def check_pool_name(name: object) -> str:
    if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
        raise BadRequest(f"Invalid storage pool name {name!r}: use 1 to 63 letters, digits, "
                         "'-', '_' or '.', starting with a letter or digit")
    return name


def check_driver(driver: object) -> str:
    if driver not in DRIVERS:
        raise BadRequest(f"Unknown storage driver {driver!r}: use one of "
                         f"{', '.join(DRIVERS)}")
    return str(driver)


def validate_pool(driver: str, config: Mapping[str, object]) -> None:
    """The whole config a new pool asks for; raises the first problem found."""
    check_driver(driver)
    for key, value in config.items():
        if key not in DRIVER_KEYS[driver]:
            raise BadRequest(f"Invalid storage pool config key {key!r} for driver {driver}: "
                             f"use {', '.join(DRIVER_KEYS[driver])}")
        if not isinstance(value, str):
            raise BadRequest(f"Storage pool config key {key!r} must be a string")
    source = str(config.get("source") or "")
    if source:
        check_source(source)
    if config.get("size"):
        if driver != "btrfs":
            raise BadRequest("size applies only to btrfs pools")
        if source:
            raise BadRequest("size applies only to pools on a loop file machined makes; "
                             "leave it out with source=")
        loop_size(str(config["size"]))
    if config.get("btrfs.mount_options"):
        check_mount_options(str(config["btrfs.mount_options"]))


def check_source(source: str) -> None:
    if not source.startswith("/") or "\n" in source or "\0" in source:
        raise BadRequest(f"Invalid source {source!r}: use an absolute path (a directory or "
                         "a block device under /dev)")
    parts = source.split("/")
    if ".." in parts or "." in parts:
        raise BadRequest(f"Invalid source {source!r}: use a path without '.' or '..'")


def loop_size(value: str) -> int:
    """size= of a loop-file pool, in bytes."""
    try:
        size = parse_size(value)
    except ValueError as e:
        raise BadRequest(f"Invalid size {value!r}: use {e}") from None
    if not MIN_LOOP_SIZE <= size <= MAX_LOOP_SIZE:
        raise BadRequest(f"Invalid size {value!r}: use a size from 256MiB to 1PiB")
    return size


def check_mount_options(value: str) -> list[str]:
    options = value.split(",")
    for opt in options:
        if not _MOUNT_OPTION.fullmatch(opt) or opt.split("=")[0] in _REFUSED_MOUNT_OPTIONS:
            raise BadRequest(f"Invalid btrfs.mount_options {value!r}: use comma-separated "
                             f"btrfs mount options such as {DEFAULT_BTRFS_MOUNT_OPTIONS},"
                             "compress=zstd (not loop, ro or subvol options)")
    return options


def check_update(driver: str, old: Mapping[str, str], new: Mapping[str, object]) -> None:
    """Only UPDATABLE_KEYS may change; anything else must keep its value (LXD)."""
    for key in sorted(set(old) | set(new)):
        if key in UPDATABLE_KEYS[driver] or old.get(key) == new.get(key):
            continue
        if key not in DRIVER_KEYS[driver]:
            validate_pool(driver, {key: new[key]})  # the unknown-key message
        allowed = ", ".join(sorted(UPDATABLE_KEYS[driver])) or "only the description"
        raise BadRequest(f"Storage pool config key {key!r} cannot be changed (can: "
                         f"{allowed})")
    if new.get("btrfs.mount_options"):
        check_mount_options(str(new["btrfs.mount_options"]))


def default_loop_size(free_bytes: int) -> int:
    """LXD: 20% of the free space, at least 5 GiB and at most 30 GiB; whole GiB."""
    size = min(max(free_bytes // 5, 5 * GiB), 30 * GiB)
    return size // GiB * GiB


def format_size(size: int) -> str:
    """Bytes as the size= value recorded in a pool's config ('5GiB')."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def new_volume_name(label: str) -> str:
    """A volume's name on disk, given once: the label made safe as a path component (any
    character but letters, digits, '-', '_' and '.' becomes '_'), then a random suffix so a
    new volume never collides with an old one being deleted."""
    safe = _LABEL_UNSAFE.sub("_", label)[:100].lstrip(".-_") or "volume"
    return f"{safe}-{secrets.token_hex(4)}"


def check_volume_name(volume: str) -> str:
    """A volume name is one path component: a corrupt row must not reach outside the pool."""
    if not _VOLUME_NAME.fullmatch(volume):
        raise BadRequest(f"Invalid volume name {volume!r}")
    return volume


def used_by_root_pool(devices: Mapping[str, Mapping[str, str]]) -> str | None:
    """The pool a set of devices puts the root disk on (None without a root disk)."""
    for dev in devices.values():
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return dev.get("pool") or "default"
    return None


_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def is_fingerprint(name: str) -> bool:
    return bool(_FINGERPRINT.fullmatch(name))


def source_overlap(root: PurePath, state_dir: PurePath, allowed: PurePath,
                   others: Mapping[str, PurePath]) -> str | None:
    """Why a new pool may not live at `root` (absolute, symlinks resolved), or None: it must
    not hold or sit inside machined's state directory (but for `allowed`, the place machined
    picks itself), nor hold or sit inside another pool."""
    if root != allowed and (_within(root, state_dir) or _within(state_dir, root)):
        return (f"Storage pool source {root} overlaps machined's state directory "
                f"{state_dir}; use a directory outside it")
    for name, other in sorted(others.items()):
        if _within(root, other) or _within(other, root):
            return f"Storage pool source {root} overlaps storage pool {name!r} at {other}"
    return None


def _within(path: PurePath, parent: PurePath) -> bool:
    return path == parent or parent in path.parents
