"""Profiles in the database and the pure CLI helpers behind `mc profile` / `mc ... device`."""

from __future__ import annotations

import pytest

from cli.commands.device import add_device, parse_settings, writable
from cli.commands.profile import parse_profile_yaml, profile_yaml
from cli.errors import CliError
from machined.db import instances as db_instances
from machined.db import open_database
from machined.db import profiles as db_profiles
from machined.errors import BadRequest, Conflict, NotFound
from machined.instances.profiles import check_name


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "machined.db")
    db_profiles.create(database, db_profiles.ProfileRecord("default"))
    yield database
    database.close()


def _instance(db, name, profiles):
    db_instances.create(db, db_instances.InstanceRecord(
        name=name, architecture="x86_64", created_at="t", profiles=profiles))


def test_update_replaces_config_and_devices(db):
    db_profiles.create(db, db_profiles.ProfileRecord("p", "d", {"user.a": "1"},
                                                     {"x": {"type": "none"}}))
    db_profiles.update(db, db_profiles.ProfileRecord("p", "new", {"user.b": "2"}, {}))
    got = db_profiles.get(db, "p")
    assert (got.description, got.config, got.devices) == ("new", {"user.b": "2"}, {})
    with pytest.raises(NotFound):
        db_profiles.update(db, db_profiles.ProfileRecord("nope"))


def test_rename_keeps_instances_attached(db):
    db_profiles.create(db, db_profiles.ProfileRecord("p"))
    _instance(db, "c1", ["default", "p"])
    db_profiles.rename(db, "p", "q")
    assert db_instances.get(db, "c1").profiles == ["default", "q"]
    assert db_profiles.used_by(db, "q") == ["c1"]
    with pytest.raises(Conflict):
        db_profiles.rename(db, "q", "default")
    with pytest.raises(NotFound):
        db_profiles.rename(db, "p", "r")


def test_delete_refuses_a_profile_in_use(db):
    db_profiles.create(db, db_profiles.ProfileRecord("p"))
    _instance(db, "c2", ["p"])
    _instance(db, "c1", ["p", "default"])
    with pytest.raises(Conflict, match="in use by instance\\(s\\) c1, c2"):
        db_profiles.delete(db, "p")
    db_instances.delete(db, "c1")
    db_instances.delete(db, "c2")
    db_profiles.delete(db, "p")
    assert not db_profiles.exists(db, "p")
    with pytest.raises(NotFound):
        db_profiles.delete(db, "p")


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x y", "a" * 64, None, 3])
def test_profile_names(name):
    with pytest.raises(BadRequest, match="Invalid profile name"):
        check_name(name)


def test_profile_yaml_roundtrip_stringifies_scalars():
    text = profile_yaml({"name": "p", "description": "d", "config": {"limits.cpu": "2"},
                         "devices": {"root": {"type": "disk", "path": "/"}},
                         "used_by": ["/1.0/instances/c1"]})
    assert parse_profile_yaml(text) == {"description": "d", "config": {"limits.cpu": "2"},
                                        "devices": {"root": {"type": "disk", "path": "/"}}}
    parsed = parse_profile_yaml("config:\n  limits.cpu: 2\n  security.nesting: true\n")
    assert parsed["config"] == {"limits.cpu": "2", "security.nesting": "true"}
    # Fields a document leaves out stay as they are: an empty one changes nothing (it used to
    # wipe the profile, e.g. `mc profile edit p < /dev/null`).
    assert parse_profile_yaml("") == {}
    assert parse_profile_yaml("description: x\n") == {"description": "x"}
    assert parse_profile_yaml("config:\n") == {"config": {}}


def test_profile_show_sorts_keys():
    text = profile_yaml({"name": "p", "config": {"user.b": "1", "limits.cpu": "2"},
                         "devices": {"root": {"type": "disk", "path": "/"},
                                     "a": {"type": "none"}}})
    assert text.index("limits.cpu") < text.index("user.b")
    assert text.index("  a:") < text.index("  root:")
    assert text.index("    path: /") < text.index("    type: disk")


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "must be a mapping"),
    ("config: [1]\n", "config must be a mapping"),
    ("devices: 3\n", "devices must be a mapping"),
    ("devices:\n  d: disk\n", "Device 'd' must be a mapping"),
    ("config: {a: [\n", "Invalid YAML at line 2, column 1: expected the node content"),
])
def test_profile_yaml_errors(text, message):
    with pytest.raises(CliError, match=message):
        parse_profile_yaml(text)


def test_device_cli_helpers():
    assert parse_settings(("readonly", "true")) == {"readonly": "true"}
    assert parse_settings(("a=1", "b=2")) == {"a": "1", "b": "2"}
    with pytest.raises(CliError):
        parse_settings(())
    with pytest.raises(CliError):
        parse_settings(("a=1", "b"))
    devices = add_device({}, "data", "disk", ("source=/s", "path=/p"))
    assert devices == {"data": {"type": "disk", "source": "/s", "path": "/p"}}
    with pytest.raises(CliError, match="Device 'data' already exists on c1"):
        add_device(devices, "data", "disk", (), "c1")
    inst = {"config": {"user.a": "1"}, "devices": {}, "profiles": ["default"],
            "description": "", "ephemeral": False, "status": "Running"}
    assert writable("instance", inst, devices) == {
        "config": {"user.a": "1"}, "description": "", "devices": devices,
        "profiles": ["default"], "ephemeral": False}
    assert writable("profile", {"config": {}}, {}) == {"config": {}, "description": "",
                                                       "devices": {}}
