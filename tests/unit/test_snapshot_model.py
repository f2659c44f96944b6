"""The pure rules of snapshots, restore, copy and move (machined/instances/copying.py)."""

from __future__ import annotations

import pytest

from machined.db.snapshots import SnapshotRecord
from machined.errors import BadRequest
from machined.instances import copying


@pytest.mark.parametrize("name", ["snap0", "before-upgrade", "2024-01-02_15:04", "a b",
                                  "ünïcode", "x" * 255, "v1.2", "..x", "under_score",
                                  "2024-01-02T15:04:05Z"])
def test_snapshot_names_accepted(name):
    assert copying.check_snapshot_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/", "a?b", "a&b", "a+b", "a#b",
                                  "a%20b", "tab\there", "new\nline", "nul\0", "del\x7f",
                                  " lead", "trail ", "x" * 256, None, 3])
def test_snapshot_names_refused_say_what_is_accepted(name):
    with pytest.raises(BadRequest, match=r"Invalid snapshot name .*: use 1 to 255 "
                       r"characters, not '\.' or '\.\.'"):
        copying.check_snapshot_name(name)


def test_volume_label_is_a_safe_file_name():
    assert copying.volume_label("c01") == "c01"
    assert copying.volume_label("c01", "snap0") == "c01-snap0"
    assert copying.volume_label("c01", "a b:c/ü") == "c01-a_b_c__"
    assert len(copying.volume_label("c01", "x" * 255)) == len("c01-") + 64


@pytest.mark.parametrize("source, expected", [
    ("c01", ("c01", None)), ("c01/snap0", ("c01", "snap0")), ("c01/a b", ("c01", "a b")),
])
def test_split_source(source, expected):
    assert copying.split_source(source) == expected


@pytest.mark.parametrize("source", ["", "/snap", None, 5])
def test_split_source_refuses(source):
    with pytest.raises(BadRequest, match="Invalid copy source"):
        copying.split_source(source)


@pytest.mark.parametrize("value, expected", [
    ("", ""), (None, ""), ("0001-01-01T00:00:00Z", ""),
    ("2030-01-31T12:00:00Z", "2030-01-31T12:00:00Z"),
    ("2030-01-31T14:00:00+02:00", "2030-01-31T12:00:00Z"),
    ("2030-01-31T12:00:00.123456789Z", "2030-01-31T12:00:00.123456Z"),
])
def test_expiry_parses_rfc3339(value, expected):
    assert copying.parse_expiry(value) == expected


@pytest.mark.parametrize("value", ["tomorrow", "2030-01-31T12:00:00", "2030-13-01T00:00:00Z",
                                   12, "1d"])
def test_expiry_refused_names_the_format(value):
    with pytest.raises(BadRequest, match="Invalid expires_at .*RFC 3339"):
        copying.parse_expiry(value)


def test_snapshot_request_defaults_and_values():
    req = copying.snapshot_request({})
    assert (req.name, req.expires_at, req.reuse, req.description) == (None, None, False, "")
    req = copying.snapshot_request({"name": "", "expires_at": None})
    assert (req.name, req.expires_at) == (None, None)
    req = copying.snapshot_request({"name": "s1", "expires_at": "", "reuse": True,
                                    "description": "d", "stateful": False})
    assert (req.name, req.expires_at, req.reuse, req.description) == ("s1", "", True, "d")


@pytest.mark.parametrize("body, message", [
    ({"stateful": True}, "Stateful snapshots need CRIU"),
    ({"name": "a/b"}, "Invalid snapshot name"),
    ({"expires_at": "soon"}, "Invalid expires_at"),
    ({"reuse": "yes"}, "reuse must be true or false"),
    ({"description": 5}, "description must be a string"),
])
def test_snapshot_request_refusals(body, message):
    with pytest.raises(BadRequest, match=message):
        copying.snapshot_request(body)


def _snap(**kw) -> SnapshotRecord:
    base = dict(instance="c01", name="s1", volume="c01-s1-0000", created_at="2024-01-01T00:00:00Z",
                architecture="x86_64", expires_at="2030-01-01T00:00:00Z", description="old",
                config={"limits.cpu": "1"}, devices={}, profiles=["default"])
    base.update(kw)
    return SnapshotRecord(**base)


def test_snapshot_put_replaces_patch_merges():
    snap = _snap()
    assert copying.snapshot_update(snap, {"expires_at": "2031-01-01T00:00:00Z"}, False) == \
        ("2031-01-01T00:00:00Z", "")
    assert copying.snapshot_update(snap, {}, False) == ("", "")
    assert copying.snapshot_update(snap, {"description": "new"}, True) == \
        ("2030-01-01T00:00:00Z", "new")


def test_snapshot_update_takes_back_the_whole_object_unchanged():
    snap = _snap()
    body = copying.snapshot_object(snap, {}, {})
    body["expires_at"] = "2032-01-01T00:00:00Z"
    assert copying.snapshot_update(snap, body, False) == ("2032-01-01T00:00:00Z", "old")


@pytest.mark.parametrize("key, value", [("config", {"limits.cpu": "2"}), ("profiles", []),
                                        ("architecture", "aarch64"), ("stateful", True)])
def test_snapshot_update_refuses_changing_what_was_captured(key, value):
    with pytest.raises(BadRequest, match=f"snapshot's {key} cannot be changed.*only "
                       "expires_at and description"):
        copying.snapshot_update(_snap(), {key: value}, True)


def test_snapshot_object_has_lxd_fields():
    obj = copying.snapshot_object(_snap(expires_at=""), {"k": "v"}, {"root": {"type": "disk"}})
    assert obj["expires_at"] == copying.ZERO_TIME == "0001-01-01T00:00:00Z"
    assert obj["last_used_at"] == copying.ZERO_TIME
    assert obj["size"] == -1 and obj["stateful"] is False
    assert obj["expanded_config"] == {"k": "v"}
    assert set(obj) >= {"name", "created_at", "expires_at", "stateful", "description",
                        "architecture", "ephemeral", "config", "devices", "profiles",
                        "expanded_config", "expanded_devices", "last_used_at", "size"}


def test_config_for_copy_regenerates_what_is_unique():
    source = {"volatile.uuid": "old", "volatile.base_image": "abc",
              "volatile.eth0.hwaddr": "00:16:3e:00:00:01", "volatile.idmap.next": "[]",
              "volatile.last_state.power": "RUNNING", "volatile.last_state.idmap": "[]",
              "limits.cpu": "1", "user.keep": "x", "user.drop": "y"}
    config = copying.config_for_copy(source, {"user.drop": "", "user.new": "n"}, "new-uuid")
    assert config == {"volatile.base_image": "abc", "volatile.uuid": "new-uuid",
                      "volatile.last_state.power": "STOPPED", "limits.cpu": "1",
                      "volatile.apply_template": "copy", "user.keep": "x", "user.new": "n"}
    fresh = copying.config_for_copy(source, {})
    assert fresh["volatile.uuid"] not in ("old", "new-uuid") and len(fresh["volatile.uuid"]) == 36
    # A source that never started still owes its create templates (rendered at first start).
    never_started = copying.config_for_copy({**source, "volatile.apply_template": "create"}, {})
    assert never_started["volatile.apply_template"] == "create"


def test_devices_for_copy_request_wins_by_name():
    assert copying.devices_for_copy({"a": {"type": "none"}, "b": {"type": "disk"}},
                                    {"b": {"type": "none"}}) == \
        {"a": {"type": "none"}, "b": {"type": "none"}}


def test_config_for_restore_keeps_the_instance_identity():
    current = {"volatile.uuid": "u-now", "volatile.eth0.hwaddr": "now", "user.a": "now",
               "limits.cpu": "2"}
    snapshot = {"volatile.uuid": "u-then", "volatile.eth0.hwaddr": "then", "user.a": "then",
                "volatile.base_image": "then-image"}
    assert copying.config_for_restore(current, snapshot) == {
        "user.a": "then", "volatile.uuid": "u-now", "volatile.eth0.hwaddr": "now"}


def test_devices_with_root_pool():
    profile_root = {"root": {"type": "disk", "path": "/", "pool": "default"}}
    # From a profile's root device: overridden in the instance's own devices.
    assert copying.devices_with_root_pool({}, profile_root, "fast") == \
        {"root": {"type": "disk", "path": "/", "pool": "fast"}}
    # Already there: unchanged.
    assert copying.devices_with_root_pool({"x": {"type": "none"}}, profile_root,
                                          "default") == {"x": {"type": "none"}}
    # No root device at all: one is added.
    assert copying.devices_with_root_pool({}, {}, "fast") == \
        {"root": {"type": "disk", "path": "/", "pool": "fast"}}
    # A root device under another name keeps its name and other keys.
    own = {"rootfs": {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}}
    assert copying.devices_with_root_pool(own, own, "fast") == \
        {"rootfs": {"type": "disk", "path": "/", "pool": "fast", "size": "1GiB"}}


def test_copy_request_parsing():
    req = copying.copy_request({"name": "c02", "source": {"type": "copy", "source": "c01/s1",
                                                          "instance_only": True},
                                "config": {"user.a": "b"}, "profiles": [], "start": True})
    assert (req.name, req.source, req.snapshot, req.instance_only, req.start) == \
        ("c02", "c01", "s1", True, True)
    assert req.overrides == {"config": {"user.a": "b"}, "profiles": []}


@pytest.mark.parametrize("body, message", [
    ({"source": {"type": "copy", "source": "c01", "refresh": True}}, "--refresh"),
    ({"source": {"type": "copy", "source": "c01", "live": True}}, "CRIU"),
    ({"source": {"type": "copy", "source": "c01", "mode": "push"}}, "between servers"),
    ({"source": {"type": "copy", "source": ""}}, "Invalid copy source"),
    ({"source": {"type": "copy", "source": "c01/a?b"}}, "Invalid snapshot name"),
    ({"source": {"type": "copy", "source": "c01"}, "config": ["x"]}, "config must be an"),
    ({"source": {"type": "copy", "source": "c01"}, "profiles": "default"},
     "profiles must be a list"),
    ({"source": {"type": "copy", "source": "c01"}, "ephemeral": "yes"},
     "ephemeral must be true or false"),
])
def test_copy_request_refusals(body, message):
    with pytest.raises(BadRequest, match=message):
        copying.copy_request(body)


def test_snapshot_url_escapes_the_name():
    assert copying.snapshot_url("c01", "a b:c") == "/1.0/instances/c01/snapshots/a%20b%3Ac"
