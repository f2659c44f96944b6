"""Pure helpers behind the commands: request bodies, list columns and filters, image rows."""

from __future__ import annotations

from typing import Any

import pytest

from cli.commands.create import create_request, instance_from_operation
from cli.commands.image import image_matches, image_row, shortest_alias
from cli.commands.image_build import default_alias
from cli.commands.info import format_info
from cli.commands.list import addresses, build_rows, matches, parse_columns, split_args
from cli.commands.operation import flatten
from cli.commands.rename import rename_request
from cli.errors import CliError

C1: dict[str, Any] = {
    "name": "c1",
    "status": "Running",
    "type": "container",
    "ephemeral": False,
    "architecture": "x86_64",
    "config": {"user.tag": "blue", "security.privileged": "true"},
    "snapshots": [{"name": "snap0"}, {"name": "snap1"}],
    "state": {
        "status": "Running",
        "pid": 42,
        "processes": 7,
        "cpu": {"usage": 3_500_000_000},
        "memory": {"usage": 47431680},
        "network": {
            "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
            "eth0": {
                "addresses": [
                    {"family": "inet", "address": "10.0.0.5", "netmask": "24", "scope": "global"},
                    {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"},
                    {"family": "inet6", "address": "fd00::5", "netmask": "64", "scope": "global"},
                ]
            },
        },
    },
}
WEB: dict[str, Any] = {
    "name": "web",
    "status": "Stopped",
    "ephemeral": True,
    "config": {},
    "snapshots": None,
    "state": None,
}


def test_default_columns() -> None:
    cols = parse_columns("ns46tS")
    assert [c[0] for c in cols] == ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]
    assert build_rows([C1, WEB], cols) == [
        ["c1", "RUNNING", "10.0.0.5 (eth0)", "fd00::5 (eth0)", "CONTAINER", "2"],
        ["web", "STOPPED", "", "", "CONTAINER (EPHEMERAL)", "0"],
    ]


def test_custom_columns() -> None:
    cols = parse_columns("n,user.tag:TAG,config:security.privileged::2")
    assert [c[0] for c in cols] == ["NAME", "TAG", "SECURITY.PRIVILEGED"]
    assert build_rows([C1], cols) == [["c1", "blue", "tr"]]
    assert build_rows([C1], parse_columns("pNu")) == [["42", "7", "3s"]]
    with pytest.raises(CliError):
        parse_columns("nZ")


def test_addresses_skip_loopback_and_link_scope() -> None:
    assert addresses(C1, "inet") == "10.0.0.5 (eth0)"
    assert addresses(C1, "inet6") == "fd00::5 (eth0)"
    assert addresses(WEB, "inet") == ""


@pytest.mark.parametrize(
    ("filters", "c1", "web"),
    [
        ([], True, True),
        (["c"], True, False),
        (["we"], False, True),
        (["w.b"], False, True),  # regex on the whole name
        (["status=running"], True, False),
        (["status=stopped,frozen"], False, True),
        (["u.tag=blue"], True, False),
        (["user.tag=bl.*"], True, False),
        (["s.privileged=true", "c"], True, False),
        (["s.privileged=true", "w"], False, False),
    ],
)
def test_list_filters(filters: list[str], c1: bool, web: bool) -> None:
    assert matches(C1, filters) is c1
    assert matches(WEB, filters) is web


def test_list_remote_argument() -> None:
    assert split_args(("local:",)) == ("local", [])
    assert split_args(("local:c", "status=running")) == ("local", ["c", "status=running"])
    assert split_args(("user.x=a:b",)) == (None, ["user.x=a:b"])
    assert split_args(("c",)) == (None, ["c"])
    with pytest.raises(CliError, match="The remote"):
        split_args(("nope:",))
    assert split_args(("lab:web",), ("local", "lab")) == ("lab", ["web"])


def test_create_request() -> None:
    assert create_request("debian/12", "c01", config=("limits.cpu=2",), start=True) == {
        "name": "c01",
        "source": {"type": "image", "alias": "debian/12"},
        "config": {"limits.cpu": "2"},
        "ephemeral": False,
        "start": True,
        "type": "container",
    }
    body = create_request(
        "3dc7a4", None, profiles=("a", "b"), ephemeral=True, storage="fast", description="d"
    )
    assert "name" not in body
    assert body["source"] == {"type": "image", "alias": "3dc7a4"}
    assert body["profiles"] == ["a", "b"]
    assert body["ephemeral"] is True
    assert body["devices"] == {"root": {"type": "disk", "path": "/", "pool": "fast"}}
    assert body["description"] == "d"
    assert create_request("x", "c", no_profiles=True)["profiles"] == []


def test_instance_name_from_operation() -> None:
    assert instance_from_operation({"resources": {"instances": ["/1.0/instances/c7"]}}) == "c7"
    assert instance_from_operation({}) == ""


def test_rename_request() -> None:
    assert rename_request("c1", "c2") == ("/1.0/instances/c1", {"name": "c2"})
    assert rename_request("local:c1", "local:c2") == ("/1.0/instances/c1", {"name": "c2"})
    assert rename_request("c1/a", "c1/b") == ("/1.0/instances/c1/snapshots/a", {"name": "b"})
    assert rename_request("c1/a", "b") == ("/1.0/instances/c1/snapshots/a", {"name": "b"})
    with pytest.raises(CliError):
        rename_request("c1/a", "c2/b")
    with pytest.raises(CliError):
        rename_request("c1", "c2/b")


IMAGE: dict[str, Any] = {
    "fingerprint": "3dc7a4ee5d245c2baecb043336202b1eaa2438a0f5eb25e4ba2a41d0d6ff2e7b",
    "size": 50_000_000,
    "public": False,
    "architecture": "x86_64",
    "type": "container",
    "properties": {"description": "Debian 12", "os": "debian"},
    "aliases": [{"name": "debian/12/amd64"}, {"name": "debian/12"}],
    "uploaded_at": "2024-05-06T15:04:05Z",
}


def test_image_row() -> None:
    assert image_row(IMAGE) == [
        "debian/12 (1 more)",
        "3dc7a4ee5d24",
        "no",
        "Debian 12",
        "x86_64",
        "CONTAINER",
        "47.68MiB",
        "May 6, 2024 at 3:04pm (UTC)",
    ]
    assert shortest_alias({"aliases": []}) == ""


def test_image_filters() -> None:
    assert image_matches(IMAGE, ["3dc7"])
    assert image_matches(IMAGE, ["deb"])
    assert image_matches(IMAGE, ["os=debian"])
    assert not image_matches(IMAGE, ["os=alpine"])
    assert not image_matches(IMAGE, ["busybox"])


def test_default_alias() -> None:
    assert default_alias({"image": {"distribution": "debian", "release": "12"}}) == "debian/12"
    assert default_alias({"image": {"distribution": "busybox"}}) is None


def test_operation_flatten() -> None:
    assert flatten({"running": [{"id": "a"}], "success": [{"id": "b"}]}) == [
        {"id": "a"},
        {"id": "b"},
    ]
    assert flatten(None) == []


def test_format_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    inst = dict(
        C1, created_at="2024-01-02T10:11:12Z", last_used_at="0001-01-01T00:00:00Z", snapshots=[]
    )
    text = format_info(inst, C1["state"])
    assert text.startswith(
        "Name: c1\nStatus: RUNNING\nType: container\nArchitecture: x86_64\nPID: 42\n"
        "Created: 2024/01/02 10:11 UTC\n\nResources:\n  Processes: 7\n"
        "  CPU usage:\n    CPU usage (in seconds): 3\n"
        "  Memory usage:\n    Memory (current): 45.23MiB\n"
    )
    assert "Last Used" not in text
    assert "        inet:  10.0.0.5/24 (global)\n" in text
    stopped = format_info(dict(WEB, type="container"), {"status": "Stopped", "pid": -1})
    assert "Type: container (ephemeral)" in stopped
    assert "Resources" not in stopped and "PID" not in stopped
