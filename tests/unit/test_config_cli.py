"""`mc config` argument handling, YAML round trips and `mc info` limits (pure)."""

from __future__ import annotations

import click
import pytest

from cli.commands.config import (
    check_unset,
    instance_yaml,
    parse_instance_yaml,
    parse_server_yaml,
    parse_set_args,
    split_target,
)
from cli.commands.info import format_info
from cli.errors import CliError


@pytest.mark.parametrize("args,target,rest", [
    (["c01", "limits.memory", "512MiB"], "c01", ["limits.memory", "512MiB"]),
    (["c01", "limits.memory=512MiB", "user.a=b"], "c01", ["limits.memory=512MiB", "user.a=b"]),
    (["local:c01", "user.a=b"], "c01", ["user.a=b"]),
    (["images.auto_update_interval", "24"], None, ["images.auto_update_interval", "24"]),
    (["core.https_address=:8443"], None, ["core.https_address=:8443"]),
    (["local:", "core.https_address", ":8443"], None, ["core.https_address", ":8443"]),
    (["c01"], "c01", []),
    ([], None, []),
])
def test_split_target(args, target, rest):
    assert split_target(args) == (target, rest)


def test_split_target_refuses_unknown_remotes_and_takes_snapshots():
    with pytest.raises(CliError, match='The remote "far" doesn\'t exist'):
        split_target(["far:c01", "k=v"])
    assert split_target(["c01/snap0", "k=v"]) == ("c01/snap0", ["k=v"])
    assert split_target(["c01/v1.2", "k"]) == ("c01/v1.2", ["k"])


@pytest.mark.parametrize("rest,values", [
    (["limits.memory", "512MiB"], {"limits.memory": "512MiB"}),
    (["environment.OPTS", "a=b c=d"], {"environment.OPTS": "a=b c=d"}),
    (["limits.cpu=1", "limits.processes=200"], {"limits.cpu": "1", "limits.processes": "200"}),
    (["environment.X=a=b"], {"environment.X": "a=b"}),
    (["user.empty="], {"user.empty": ""}),
    (["limits.processes", "-1"], {"limits.processes": "-1"}),
])
def test_parse_set_args(rest, values):
    assert parse_set_args(rest) == values


@pytest.mark.parametrize("rest", [[], ["limits.cpu"], ["a=1", "b"], ["a", "b", "c"]])
def test_parse_set_args_refuses(rest):
    with pytest.raises(click.UsageError):
        parse_set_args(rest)


INST = {
    "name": "c01", "architecture": "x86_64", "description": "", "ephemeral": False,
    "stateful": False, "profiles": ["default", "small"],
    "config": {"limits.cpu": "2", "volatile.base_image": "abc"},
    "devices": {},
    "expanded_config": {"limits.cpu": "2", "limits.memory": "64MiB",
                        "volatile.base_image": "abc"},
    "expanded_devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
}


def test_show_yaml_as_lxc_and_round_trip():
    text = instance_yaml(INST)
    assert text.splitlines()[:4] == ["architecture: x86_64", "config:",
                                     "  limits.cpu: '2'", "  volatile.base_image: abc"]
    assert "devices: {}" in text and "limits.memory" not in text
    assert "limits.memory: 64MiB" in instance_yaml(INST, expanded=True)
    assert parse_instance_yaml(text) == {
        "config": {"limits.cpu": "2", "volatile.base_image": "abc"}, "devices": {},
        "profiles": ["default", "small"], "description": "", "ephemeral": False}


def test_edit_yaml_scalars_become_strings_and_absent_fields_stay():
    body = parse_instance_yaml("# comment\nconfig:\n  limits.cpu: 2\n  security.nesting: true\n"
                               "  user.note: null\n")
    assert body == {"config": {"limits.cpu": "2", "security.nesting": "true", "user.note": ""}}
    assert parse_server_yaml("config:\n  images.auto_update_interval: 24\n") == {
        "config": {"images.auto_update_interval": "24"}}
    # An empty document changes nothing (it used to clear every server key); an explicit
    # empty config still clears them.
    assert parse_server_yaml("") == {}
    assert parse_server_yaml("config:\n") == {"config": {}}


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "The YAML document must be a mapping"),
    ("config: [1]\n", "config must be a mapping"),
    ("devices:\n  eth0: nic\n", "Device 'eth0' must be a mapping"),
    ("profiles: default\n", "profiles must be a list"),
    ("config: {a: [\n", "Invalid YAML"),
])
def test_bad_yaml(text, message):
    with pytest.raises(CliError, match=message):
        parse_instance_yaml(text)


def test_yaml_errors_are_one_line_with_the_position():
    with pytest.raises(CliError) as err:
        parse_instance_yaml("config:\n  limits.cpu: 2\n devices: [\n")
    assert "\n" not in err.value.message
    assert err.value.message.startswith("Invalid YAML at line 3, column ")


def test_show_yaml_sorts_config_and_devices_as_lxc():
    inst = {**INST, "expanded_config": {"user.b": "1", "limits.memory": "1GiB", "image.os": "x"},
            "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "default"},
                                 "data": {"type": "disk", "source": "/s", "path": "/d"}}}
    text = instance_yaml(inst, expanded=True)
    lines = [line.strip() for line in text.splitlines()]
    config = lines[lines.index("config:") + 1:lines.index("devices:")]
    assert config == ["image.os: x", "limits.memory: 1GiB", "user.b: '1'"]
    devices = lines[lines.index("devices:") + 1:lines.index("ephemeral: false")]
    assert devices == ["data:", "path: /d", "source: /s", "type: disk",
                       "root:", "path: /", "pool: default", "type: disk"]


def test_info_shows_usage_and_limits():
    state = {"status": "Running", "pid": 42, "processes": 3, "cpu": {"usage": 2_500_000_000},
             "memory": {"usage": 3 * 2**20, "usage_peak": 5 * 2**20, "total": 64 * 2**20}}
    text = format_info(INST, state)
    assert "  Processes: 3\n" in text
    assert "    CPU usage (in seconds): 2\n" in text
    assert "    Memory (current): 3.00MiB\n    Memory (peak): 5.00MiB\n" \
           "    Memory (limit): 64.00MiB\n" in text
    assert text.endswith("Limits:\n  limits.cpu: 2\n  limits.memory: 64MiB\n")
    stopped = format_info(INST, {"status": "Stopped"})
    assert "Resources:" not in stopped and "Limits:\n  limits.cpu: 2\n" in stopped


def test_unset_says_when_a_profile_sets_the_key():
    check_unset(INST, "c01", ["limits.cpu"])
    with pytest.raises(CliError) as err:
        check_unset(INST, "c01", ["limits.cpu", "limits.memory"])
    assert err.value.message == ("Can't unset key 'limits.memory', it's set by a profile of "
                                 "c01: change the profile (mc profile unset), or override it "
                                 "here with mc config set")
    with pytest.raises(CliError, match="Can't unset key 'user.x', it's not currently set"):
        check_unset(INST, "c01", ["user.x"])
