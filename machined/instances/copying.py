"""Pure rules for snapshots, restore, copy and move: snapshot names, request bodies, the
config a copy or a restore gets, and the LXD snapshot object. No I/O (instances/snapshots.py
does the work)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from machined.errors import BadRequest

if TYPE_CHECKING:
    from machined.db.snapshots import SnapshotRecord

# LXD writes Go's zero time where a snapshot never expires / was never used.
ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_SNAPSHOT_NAME = 255
# '/' separates instance and snapshot; the others change a URL's meaning when a client does
# not escape them (LXD refuses / ? & + in snapshot names; # and % break the same way).
_URL_UNSAFE = "/?&+#%"
# What a copy keeps of the source's volatile keys (LXD InstanceIncludeWhenCopying): the
# image it came from. Everything else (uuid, MAC addresses, idmaps, last state) is per
# instance and made again.
KEEP_VOLATILE_ON_COPY = frozenset({"volatile.base_image"})
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def check_snapshot_name(name: object) -> str:
    """A snapshot name as LXD takes it (anything but '/', not '.' or '..'), minus what breaks
    URLs, tables and file names: control characters, ? & + # %, surrounding spaces."""
    accepted = (f"1 to {MAX_SNAPSHOT_NAME} characters, not '.' or '..', without "
                "surrounding spaces, control characters or any of " + " ".join(_URL_UNSAFE))
    if not isinstance(name, str) or not name:
        raise BadRequest(f"Invalid snapshot name {name!r}: use {accepted}")
    bad = next((c for c in name if c in _URL_UNSAFE or ord(c) < 32 or ord(c) == 127), None)
    if (bad is not None or name in (".", "..") or name.strip() != name
            or len(name) > MAX_SNAPSHOT_NAME):
        raise BadRequest(f"Invalid snapshot name {name!r}: use {accepted}")
    return name


def volume_label(instance: str, snapshot: str | None = None) -> str:
    """The readable part of a volume's name (storage.model.new_volume_name adds a random
    suffix): the instance name, then the snapshot name with anything unusual replaced."""
    if snapshot is None:
        return instance
    return f"{instance}-{_LABEL_UNSAFE.sub('_', snapshot)[:64]}"


def split_source(source: object) -> tuple[str, str | None]:
    """"c01" -> ("c01", None); "c01/snap" -> ("c01", "snap")."""
    if not isinstance(source, str) or not source or source.startswith("/"):
        raise BadRequest(f"Invalid copy source {source!r}: give an instance name or "
                         "instance/snapshot")
    instance, sep, snap = source.partition("/")
    return instance, (snap if sep else None)


def parse_expiry(value: object) -> str:
    """expires_at of a request: an RFC 3339 time -> ISO UTC with 'Z'; "" (or LXD's zero
    time) = never."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"Invalid expires_at {value!r}: an RFC 3339 time such as "
                         "2030-01-31T12:00:00Z, or \"\" for never")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadRequest(f"Invalid expires_at {value!r}: an RFC 3339 time with a time zone "
                         "such as 2030-01-31T12:00:00Z, or \"\" for never")
    if when.year == 1:
        return ""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def api_time(value: str) -> str:
    return value or ZERO_TIME


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false, not {value!r}")
    return value


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string, not {value!r}")
    return value


def refuse_stateful(stateful: bool) -> None:
    if stateful:
        raise BadRequest("Stateful snapshots need CRIU, which machined does not support: "
                         "leave out --stateful")


@dataclass(frozen=True)
class SnapshotRequest:
    """A checked POST /1.0/instances/<n>/snapshots body."""
    name: str | None  # None: snapshots.pattern picks it
    expires_at: str | None  # None: from snapshots.expiry; "" never
    reuse: bool = False
    description: str = ""


def snapshot_request(body: Mapping[str, Any]) -> SnapshotRequest:
    refuse_stateful(_bool(body, "stateful"))
    name = body.get("name")
    if name == "":
        name = None
    if name is not None:
        check_snapshot_name(name)
    expires: str | None = None
    if "expires_at" in body and body["expires_at"] is not None:
        expires = parse_expiry(body["expires_at"])
    return SnapshotRequest(name=name, expires_at=expires, reuse=_bool(body, "reuse"),
                           description=_str(body, "description"))


# What a snapshot PUT/PATCH can change, and what it may only send back unchanged (as
# `mc config edit c01/snap` does with the whole object).
SNAPSHOT_WRITABLE = ("expires_at", "description")
_SNAPSHOT_FIXED = ("config", "devices", "profiles", "architecture", "ephemeral", "stateful")


def snapshot_update(current: SnapshotRecord, body: Mapping[str, Any],
                    patch: bool) -> tuple[str, str]:
    """(expires_at, description) after a PUT (absent = never / empty, as LXD) or PATCH
    (absent = unchanged). Anything else must equal what the snapshot has."""
    for key in _SNAPSHOT_FIXED:
        if key in body and body[key] != getattr(current, key):
            raise BadRequest(f"A snapshot's {key} cannot be changed (it is what the instance "
                             "had when the snapshot was taken): only expires_at and "
                             "description can")
    expires = (parse_expiry(body["expires_at"]) if "expires_at" in body
               else ("" if not patch else current.expires_at))
    description = (_str(body, "description") if "description" in body
                   else ("" if not patch else current.description))
    return expires, description


@dataclass(frozen=True)
class CopyRequest:
    """A checked POST /1.0/instances body with source type "copy"."""
    name: str
    source: str
    snapshot: str | None
    instance_only: bool
    overrides: dict[str, Any] = field(default_factory=dict)
    start: bool = False


_OVERRIDE_KEYS = ("config", "devices", "profiles", "description", "ephemeral")


def copy_request(body: Mapping[str, Any]) -> CopyRequest:
    source = body.get("source") or {}
    if not isinstance(source, Mapping):
        raise BadRequest("source must be an object")
    if _bool(source, "refresh"):
        raise BadRequest("Refreshing an existing copy (--refresh) is not supported: delete "
                         "the target and copy again")
    if source.get("mode") not in (None, "", "pull") or source.get("server"):
        raise BadRequest("Copies between servers are not supported yet: copy on one server")
    refuse_stateful(_bool(source, "live") or _bool(body, "stateful"))
    instance, snap = split_source(source.get("source"))
    if snap is not None:
        check_snapshot_name(snap)
    overrides: dict[str, Any] = {}
    for key in _OVERRIDE_KEYS:
        if body.get(key) is not None:
            overrides[key] = body[key]
    for key, kind in (("config", dict), ("devices", dict), ("profiles", list)):
        if key in overrides and not isinstance(overrides[key], kind):
            raise BadRequest(f"{key} must be {'an object' if kind is dict else 'a list'}")
    if "ephemeral" in overrides:
        _bool(overrides, "ephemeral")
    if "description" in overrides:
        _str(overrides, "description")
    return CopyRequest(name=str(body.get("name") or ""), source=instance, snapshot=snap,
                       instance_only=_bool(source, "instance_only"), overrides=overrides,
                       start=_bool(body, "start"))


def config_for_copy(source: Mapping[str, str], overrides: Mapping[str, str],
                    new_uuid: str | None = None) -> dict[str, str]:
    """The new instance's own config: the source's (volatile keys dropped but the base
    image), the request's keys over it ("" unsets), a fresh volatile.uuid, and stopped."""
    config = {k: v for k, v in source.items()
              if not k.startswith("volatile.") or k in KEEP_VOLATILE_ON_COPY}
    config.update({str(k): str(v) for k, v in overrides.items()})
    config = {k: v for k, v in config.items() if v != ""}
    config["volatile.uuid"] = new_uuid or str(uuid.uuid4())
    config["volatile.last_state.power"] = "STOPPED"
    # The image's templates for a copy render at its first start (LXD); a source that never
    # started still owes its `create` templates.
    pending = source.get("volatile.apply_template")
    config["volatile.apply_template"] = "create" if pending == "create" else "copy"
    return config


def devices_for_copy(source: Mapping[str, dict[str, str]],
                     overrides: Mapping[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """LXD: the request's devices replace the source's devices of the same name."""
    devices = {k: dict(v) for k, v in source.items()}
    devices.update({str(k): dict(v) for k, v in overrides.items()})
    return devices


def config_for_restore(current: Mapping[str, str],
                       snapshot: Mapping[str, str]) -> dict[str, str]:
    """The snapshot's config, but what identifies this instance now (volatile.*: uuid, MAC
    addresses, idmaps, last state) stays as it is."""
    config = {k: v for k, v in snapshot.items() if not k.startswith("volatile.")}
    config.update({k: v for k, v in current.items() if k.startswith("volatile.")})
    return config


def root_device(expanded: Mapping[str, Mapping[str, str]]) -> str | None:
    """The name of the root disk device (type disk, path /) in expanded devices."""
    for name, dev in sorted(expanded.items()):
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return name
    return None


def devices_with_root_pool(devices: Mapping[str, dict[str, str]],
                           expanded: Mapping[str, dict[str, str]],
                           pool: str) -> dict[str, dict[str, str]]:
    """An instance's own devices, with its root disk pointing at `pool` (as lxc copy/move
    -s does: the profile's root device is overridden in the instance when it differs)."""
    out = {k: dict(v) for k, v in devices.items()}
    name = root_device(expanded)
    if name is None:
        out["root"] = {"type": "disk", "path": "/", "pool": pool}
    elif expanded[name].get("pool", "default") != pool:
        out[name] = {**expanded[name], "pool": pool}
    return out


def snapshot_object(rec: SnapshotRecord, expanded_config: dict[str, str],
                    expanded_devices: dict[str, dict[str, str]]) -> dict[str, Any]:
    """LXD's api.InstanceSnapshot (plus description)."""
    return {
        "name": rec.name, "created_at": rec.created_at, "expires_at": api_time(rec.expires_at),
        "last_used_at": ZERO_TIME, "stateful": rec.stateful, "description": rec.description,
        "architecture": rec.architecture, "ephemeral": rec.ephemeral, "config": rec.config,
        "devices": rec.devices, "profiles": rec.profiles, "expanded_config": expanded_config,
        "expanded_devices": expanded_devices, "size": -1,
    }


def snapshot_url(instance: str, snapshot: str) -> str:
    from urllib.parse import quote

    return f"/1.0/instances/{instance}/snapshots/{quote(snapshot, safe='')}"
