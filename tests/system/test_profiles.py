"""Profiles with real busybox containers: inheritance and override, changes reaching running
instances, in-use and default protections, rename, add/remove/assign, launch -p, the CLI."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
import yaml

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def api(daemon):
    from cli.client import Client

    client = Client(path=os.fspath(daemon.socket))
    yield client
    client.close()


@pytest.fixture(scope="module")
def cleanup(daemon):
    instances: list[str] = []
    profiles: list[str] = []
    yield instances, profiles
    for name in instances:
        daemon.mc("delete", "--force", name)
    for name in profiles:
        daemon.mc("profile", "delete", name)


def _profile(daemon, cleanup, name, *settings):
    daemon.ok("profile", "create", name, input="")
    cleanup[1].append(name)
    if settings:
        daemon.ok("profile", "set", name, *settings)
    return name


def _launch(daemon, image, cleanup, name, *args):
    daemon.ok("launch", image, name, *args)
    cleanup[0].append(name)
    return name


def _env(daemon, name, var):
    return daemon.ok("exec", name, "--", "sh", "-c", f"echo ${var}").strip()


def test_inheritance_and_instance_override(daemon, busybox_image, cleanup, api):
    _profile(daemon, cleanup, "p-app", "environment.APP_ENV=staging", "user.tag=profile",
             "user.team=infra")
    name = _launch(daemon, busybox_image, cleanup, "p-inherit", "-p", "default", "-p", "p-app",
                   "-c", "user.tag=instance")
    inst = api.get("/1.0/instances/p-inherit")
    assert inst["profiles"] == ["default", "p-app"]
    assert {k: v for k, v in inst["config"].items() if k.startswith("user.")} == \
        {"user.tag": "instance"}
    expanded = inst["expanded_config"]
    assert expanded["environment.APP_ENV"] == "staging"
    assert expanded["user.tag"] == "instance"  # the instance's own key wins
    assert expanded["user.team"] == "infra"
    assert inst["expanded_devices"]["root"] == {"type": "disk", "path": "/", "pool": "default"}
    assert _env(daemon, name, "APP_ENV") == "staging"


def test_profile_change_reaches_a_running_instance(daemon, busybox_image, cleanup, api):
    _profile(daemon, cleanup, "p-live", "environment.GREETING=hello")
    name = _launch(daemon, busybox_image, cleanup, "p-live1", "-p", "default", "-p", "p-live")
    assert _env(daemon, name, "GREETING") == "hello"
    daemon.ok("profile", "set", "p-live", "environment.GREETING", "bonjour")
    assert _env(daemon, name, "GREETING") == "bonjour"
    assert api.get(f"/1.0/instances/{name}")["expanded_config"]["environment.GREETING"] == \
        "bonjour"
    daemon.ok("profile", "unset", "p-live", "environment.GREETING")
    assert _env(daemon, name, "GREETING") == ""


def test_profile_in_use_cannot_be_deleted(daemon, busybox_image, cleanup):
    _profile(daemon, cleanup, "p-used")
    _launch(daemon, busybox_image, cleanup, "p-user1", "-p", "default", "-p", "p-used")
    res = daemon.mc("profile", "delete", "p-used")
    assert res.code == 1
    assert res.err.strip() == ("Error: Profile 'p-used' is in use by instance(s) p-user1: remove "
                               "it from them first (mc profile remove <instance> p-used)")
    daemon.ok("profile", "remove", "p-user1", "p-used")
    daemon.ok("profile", "delete", "p-used")
    cleanup[1].remove("p-used")
    assert "p-used" not in daemon.ok("profile", "list", "--format", "csv")


def test_default_profile_cannot_be_deleted_or_renamed(daemon):
    res = daemon.mc("profile", "delete", "default")
    assert res.code == 1 and res.err.strip() == \
        "Error: The 'default' profile cannot be deleted"
    res = daemon.mc("profile", "rename", "default", "other")
    assert res.code == 1 and res.err.strip() == \
        "Error: The 'default' profile cannot be renamed"


def test_rename_is_followed_by_instances(daemon, busybox_image, cleanup, api):
    _profile(daemon, cleanup, "p-old", "environment.WHO=renamed")
    name = _launch(daemon, busybox_image, cleanup, "p-ren1", "-p", "default", "-p", "p-old")
    assert daemon.ok("profile", "rename", "p-old", "p-new").strip() == \
        "Profile p-old renamed to p-new"
    cleanup[1].append("p-new")
    assert api.get(f"/1.0/instances/{name}")["profiles"] == ["default", "p-new"]
    assert api.get("/1.0/profiles/p-new")["used_by"] == [f"/1.0/instances/{name}"]
    assert daemon.mc("profile", "show", "p-old").code == 1
    assert _env(daemon, name, "WHO") == "renamed"
    res = daemon.mc("profile", "rename", "p-new", "default")
    assert res.code == 1 and "Profile 'default' already exists" in res.err


def test_add_remove_assign(daemon, busybox_image, cleanup, api):
    _profile(daemon, cleanup, "p-a", "user.a=1")
    _profile(daemon, cleanup, "p-b", "user.b=1")
    name = _launch(daemon, busybox_image, cleanup, "p-assign")

    def profiles():
        return api.get(f"/1.0/instances/{name}")["profiles"]

    assert profiles() == ["default"]
    assert daemon.ok("profile", "add", name, "p-a").strip() == f"Profile p-a added to {name}"
    assert profiles() == ["default", "p-a"]
    res = daemon.mc("profile", "add", name, "p-a")
    assert res.code == 1 and "Profile p-a is already applied to p-assign" in res.err
    res = daemon.mc("profile", "add", name, "p-nope")
    assert res.code == 1 and "Profile 'p-nope' not found" in res.err
    assert profiles() == ["default", "p-a"]
    daemon.ok("profile", "remove", name, "p-a")
    assert profiles() == ["default"]
    res = daemon.mc("profile", "remove", name, "p-a")
    assert res.code == 1 and "Profile p-a isn't currently applied to p-assign" in res.err
    assert daemon.ok("profile", "assign", name, "p-b,default").strip() == \
        f"Profiles p-b,default applied to {name}"
    assert profiles() == ["p-b", "default"]
    assert daemon.ok("profile", "assign", name, "").strip() == \
        f"All profiles removed from {name}"
    assert profiles() == []
    # The instance keeps running without the default profile's root disk entry.
    assert daemon.ok("exec", name, "--", "true") == ""


def test_launch_with_profiles_and_without(daemon, busybox_image, cleanup, api):
    _profile(daemon, cleanup, "p-limits-small", "limits.processes=100")
    _launch(daemon, busybox_image, cleanup, "p-lp", "-p", "default", "-p", "p-limits-small")
    inst = api.get("/1.0/instances/p-lp")
    assert inst["profiles"] == ["default", "p-limits-small"]
    assert inst["expanded_config"]["limits.processes"] == "100"
    _launch(daemon, busybox_image, cleanup, "p-nop", "--no-profiles")
    assert api.get("/1.0/instances/p-nop")["profiles"] == []
    res = daemon.mc("launch", busybox_image, "p-bad", "-p", "p-missing-profile")
    assert res.code == 1 and "Profile 'p-missing-profile' not found" in res.err
    assert daemon.mc("info", "p-bad").code == 1


def test_list_show_copy_edit_get(daemon, cleanup):
    _profile(daemon, cleanup, "p-cli", "user.colour=blue", "limits.cpu=1")
    daemon.ok("profile", "set", "p-cli", "-p", "description=CLI test")
    assert daemon.ok("profile", "get", "p-cli", "user.colour").strip() == "blue"
    assert daemon.ok("profile", "get", "p-cli", "-p", "description").strip() == "CLI test"
    shown = yaml.safe_load(daemon.ok("profile", "show", "p-cli"))
    assert shown == {"name": "p-cli", "description": "CLI test",
                     "config": {"user.colour": "blue", "limits.cpu": "1"}, "devices": {},
                     "used_by": []}
    table = daemon.ok("profile", "list")
    assert any("p-cli" in line and "CLI test" in line for line in table.splitlines())
    assert "USED BY" in table
    rows = {r[0]: r for r in csv.reader(io.StringIO(daemon.ok("profile", "list", "-f",
                                                               "csv")))}
    assert rows["p-cli"] == ["p-cli", "CLI test", "0"]
    as_json = {p["name"]: p for p in json.loads(daemon.ok("profile", "list", "-f", "json"))}
    assert as_json["default"]["devices"]["root"]["path"] == "/"
    daemon.ok("profile", "copy", "p-cli", "p-cli2")
    cleanup[1].append("p-cli2")
    assert yaml.safe_load(daemon.ok("profile", "show", "p-cli2"))["config"] == shown["config"]
    # edit: YAML on stdin (not a terminal); numbers and booleans become strings.
    daemon.ok("profile", "edit", "p-cli2", input=(
        "description: edited\nconfig:\n  limits.cpu: 2\n  security.nesting: true\n"
        "devices:\n  tmp:\n    type: disk\n    source: /tmp\n    path: /mnt/tmp\n"))
    edited = yaml.safe_load(daemon.ok("profile", "show", "p-cli2"))
    assert edited["config"] == {"limits.cpu": "2", "security.nesting": "true"}
    assert edited["devices"] == {"tmp": {"type": "disk", "source": "/tmp", "path": "/mnt/tmp"}}
    assert edited["description"] == "edited"
    daemon.ok("profile", "unset", "p-cli2", "limits.cpu")
    assert daemon.ok("profile", "get", "p-cli2", "limits.cpu").strip() == ""
    # create from YAML on stdin
    daemon.ok("profile", "create", "p-cli3", input="config:\n  user.x: y\n")
    cleanup[1].append("p-cli3")
    assert yaml.safe_load(daemon.ok("profile", "show", "p-cli3"))["config"] == {"user.x": "y"}


def test_profile_devices(daemon, busybox_image, cleanup, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "note").write_text("shared\n")
    _profile(daemon, cleanup, "p-dev")
    assert daemon.ok("profile", "device", "add", "p-dev", "data", "disk", f"source={src}",
                     "path=/mnt/shared", "readonly=true").strip() == "Device data added to p-dev"
    assert daemon.ok("profile", "device", "list", "p-dev").split() == ["data"]
    assert daemon.ok("profile", "device", "get", "p-dev", "data", "readonly").strip() == "true"
    name = _launch(daemon, busybox_image, cleanup, "p-devuser", "-p", "default", "-p", "p-dev")
    assert daemon.ok("exec", name, "--", "cat", "/mnt/shared/note") == "shared\n"
    # A change that would give the instance two devices on one path is refused for the
    # profile, and nothing is stored.
    daemon.ok("config", "device", "add", name, "own", "disk", f"source={src}", "path=/mnt/own")
    before = daemon.ok("profile", "show", "p-dev")
    res = daemon.mc("profile", "device", "set", "p-dev", "data", "path=/mnt/own")
    assert res.code == 1
    assert res.err.strip() == ("Error: Profile 'p-dev' not changed: for instance 'p-devuser': "
                               "Devices 'data' and 'own' both use path '/mnt/own' inside the "
                               "instance")
    assert daemon.ok("profile", "show", "p-dev") == before
    daemon.ok("profile", "device", "remove", "p-dev", "data")
    assert daemon.ok("profile", "device", "show", "p-dev").strip() == "{}"


@pytest.mark.parametrize("args,message", [
    (("set", "p-val", "limits.memory=lots"),
     "Invalid value 'lots' for instance key 'limits.memory'"),
    (("set", "p-val", "volatile.uuid=x"),
     "Key 'volatile.uuid' is read-only: volatile.* keys are set by machined"),
    (("set", "p-val", "no.such.key=1"), "Unknown instance configuration key 'no.such.key'"),
    (("device", "add", "p-val", "d", "disk", "path=/", "pool=fast"),
     "Device 'd': storage pool 'fast' not found"),
    (("device", "add", "p-val", "d", "unix-char", "path=/dev/x", "mode=999"),
     "Invalid value '999' for key 'mode' of device 'd': expected an octal file mode such as "
     "0660"),
])
def test_profile_validation(daemon, cleanup, args, message):
    if "p-val" not in cleanup[1]:
        _profile(daemon, cleanup, "p-val")
    before = daemon.ok("profile", "show", "p-val")
    res = daemon.mc("profile", *args)
    assert res.code == 1 and message in res.err, res.err
    assert res.err.startswith("Error: ") and res.err.count("\n") == 1
    assert daemon.ok("profile", "show", "p-val") == before


def test_api_profiles(daemon, api):
    from cli.errors import ApiError

    urls = api.get("/1.0/profiles")
    assert "/1.0/profiles/default" in urls
    api.post("/1.0/profiles", {"name": "p-api", "description": "d",
                               "config": {"user.k": "v"}, "devices": {}})
    try:
        api.patch("/1.0/profiles/p-api", {"config": {"user.k2": "v2"}})
        got = api.get("/1.0/profiles/p-api")
        assert got["config"] == {"user.k": "v", "user.k2": "v2"} and got["description"] == "d"
        api.put("/1.0/profiles/p-api", {"config": {"user.only": "1"}})
        got = api.get("/1.0/profiles/p-api")
        assert got["config"] == {"user.only": "1"} and got["description"] == ""
        with pytest.raises(ApiError) as e:
            api.post("/1.0/profiles", {"name": "p-api"})
        assert e.value.status == 409
        with pytest.raises(ApiError) as e:
            api.post("/1.0/profiles", {"name": "bad/name"})
        assert e.value.status == 400 and "Invalid profile name" in e.value.message
        with pytest.raises(ApiError) as e:
            api.put("/1.0/profiles/p-api", {"devices": {"d": {"type": "disk", "path": "/x",
                                                                "source": "/y",
                                                                "readonly": True}}})
        assert "values must be strings" in e.value.message
    finally:
        api.delete("/1.0/profiles/p-api")
    with pytest.raises(ApiError) as e:
        api.get("/1.0/profiles/p-api")
    assert e.value.status == 404


def test_edit_on_a_terminal_uses_the_editor(daemon, cleanup, tmp_path):
    import pty
    import subprocess

    _profile(daemon, cleanup, "p-editor", "user.colour=blue")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/blue/green/' \"$1\"\n")
    editor.chmod(0o755)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([daemon.mc_path, "profile", "edit", "p-editor"], stdin=slave,
                              capture_output=True, text=True, timeout=60,
                              env={**daemon.env, "EDITOR": str(editor), "VISUAL": ""})
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    assert daemon.ok("profile", "get", "p-editor", "user.colour").strip() == "green"


def test_change_a_running_instance_cannot_take_is_undone(daemon, busybox_image, cleanup):
    _profile(daemon, cleanup, "p-mem", "user.keep=1")
    name = _launch(daemon, busybox_image, cleanup, "p-memc", "-p", "default", "-p", "p-mem")
    before = daemon.ok("profile", "show", "p-mem")
    # Below what the container already uses: the kernel refuses (EBUSY).
    res = daemon.mc("profile", "set", "p-mem", "limits.memory=64KiB")
    assert res.code == 1
    assert res.err.startswith("Error: Profile 'p-mem' not changed: instance 'p-memc' could not "
                              "take the change: ")
    assert daemon.ok("profile", "show", "p-mem") == before
    assert daemon.ok("exec", name, "--", "true") == ""


# -- found by trying the commands as an LXD user ------------------------------------

def test_edit_keeps_what_the_document_leaves_out(daemon, cleanup):
    """`mc profile edit p < /dev/null` used to wipe the profile's config and devices."""
    _profile(daemon, cleanup, "u-pedit", "user.keep=1")
    daemon.ok("profile", "device", "add", "u-pedit", "tmp", "disk", "source=/tmp",
              "path=/mnt/tmp")
    before = daemon.ok("profile", "show", "u-pedit")
    daemon.ok("profile", "edit", "u-pedit", input="")
    assert daemon.ok("profile", "show", "u-pedit") == before
    daemon.ok("profile", "edit", "u-pedit", input="description: only this\n")
    shown = yaml.safe_load(daemon.ok("profile", "show", "u-pedit"))
    assert shown["description"] == "only this" and shown["config"] == {"user.keep": "1"}
    assert list(shown["devices"]) == ["tmp"]
    res = daemon.mc("profile", "edit", "u-pedit", input="config: [\n")
    assert (res.code, res.err) == (1, "Error: Invalid YAML at line 2, column 1: expected the "
                                      "node content, but found '<stream end>'\n")
    daemon.ok("profile", "edit", "u-pedit", input="devices: {}\n")  # explicit: cleared
    assert yaml.safe_load(daemon.ok("profile", "show", "u-pedit"))["devices"] == {}


def test_api_empty_values_unset_profile_keys(daemon, api):
    """An empty value means "unset" (as for instances and the server): it was stored."""
    api.post("/1.0/profiles", {"name": "u-papi", "config": {"user.a": "1", "user.b": ""}})
    try:
        assert api.get("/1.0/profiles/u-papi")["config"] == {"user.a": "1"}
        api.patch("/1.0/profiles/u-papi", {"config": {"user.a": "", "user.c": "3"}})
        assert api.get("/1.0/profiles/u-papi")["config"] == {"user.c": "3"}
        api.put("/1.0/profiles/u-papi", {"config": {"user.d": "", "user.e": "5"}})
        assert api.get("/1.0/profiles/u-papi")["config"] == {"user.e": "5"}
    finally:
        api.delete("/1.0/profiles/u-papi")


def test_device_errors_name_the_device_and_the_way_out(daemon, busybox_image, cleanup,
                                                       tmp_path):
    _profile(daemon, cleanup, "u-pmask")
    daemon.ok("profile", "device", "add", "u-pmask", "share", "disk", f"source={tmp_path}",
              "path=/mnt/share")
    (tmp_path / "marker").write_text("host\n")
    tmp_path.chmod(0o755)  # readable by the unprivileged container's root
    name = _launch(daemon, busybox_image, cleanup, "u-pmaskc", "-p", "default", "-p",
                   "u-pmask")
    assert daemon.ok("exec", name, "--", "cat", "/mnt/share/marker") == "host\n"
    res = daemon.mc("config", "device", "remove", name, "share")
    assert (res.code, res.err) == (1, "Error: Device 'share' comes from a profile and cannot "
                                      "be removed for one instance: mask it with a device of "
                                      "type none (mc config device add u-pmaskc share none) "
                                      "or change the profile\n")
    res = daemon.mc("config", "device", "set", name, "share", "readonly=true")
    assert res.code == 1 and "override it (mc config device override u-pmaskc share)" in res.err
    res = daemon.mc("config", "device", "get", name, "nope", "path")
    assert (res.code, res.err) == (1, "Error: Device 'nope' doesn't exist on u-pmaskc\n")
    res = daemon.mc("profile", "device", "add", "u-pmask", "share", "none")
    assert (res.code, res.err) == (1, "Error: Device 'share' already exists on u-pmask\n")
    # The way out the message gives works: the profile's device is masked for this instance.
    daemon.ok("config", "device", "add", name, "share", "none")
    expanded = yaml.safe_load(daemon.ok("config", "show", name, "--expanded"))["devices"]
    assert expanded["share"] == {"type": "none"}
    daemon.ok("restart", name)  # (the empty mount point stays in the rootfs)
    assert daemon.mc("exec", name, "--", "test", "-e", "/mnt/share/marker").code == 1


def test_show_and_list_as_lxc(daemon, cleanup):
    """Keys sorted as lxc prints them; `-f bogus` and a stray argument are usage errors."""
    _profile(daemon, cleanup, "u-psort", "user.z=1", "limits.cpu=1", "environment.A=x")
    shown = daemon.ok("profile", "show", "u-psort")
    assert shown.index("environment.A") < shown.index("limits.cpu") < shown.index("user.z")
    res = daemon.mc("profile", "list", "-f", "bogus")
    assert res.code == 2 and "\"bogus\" is not one of table, compact, csv, json, yaml" in res.err
    res = daemon.mc("profile", "list", "u-psort")
    assert res.code == 2 and 'Unexpected argument "u-psort"' in res.err
    res = daemon.mc("profile", "create", "local:")
    assert (res.code, res.err) == (1, 'Error: Missing profile name in "local:"\n')
