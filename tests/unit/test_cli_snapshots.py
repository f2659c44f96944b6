"""mc snapshot, restore, copy, move, storage and `config show|edit <inst>/<snap>` on the client
side: the requests they make, what they print, and the errors they give before asking the
server. A recording fake stands in for the API client."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from cli.commands import config as config_cmd
from cli.commands.copy import copy_request, override_devices, parse_device_override, root_device
from cli.commands.snapshot import (
    SNAPSHOT_NAMES,
    expiry_from_span,
    parse_date,
    parse_expiry,
    restore_target,
    snapshot_from_operation,
    snapshot_request,
)
from cli.commands.storage import (
    create_request,
    format_pool_info,
    parse_pool_yaml,
    pool_row,
    pool_yaml,
    used_by_kinds,
)
from cli.context import Env
from cli.errors import CliError
from cli.main import cli
from cli.progress import OperationProgress

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
OP = {"id": "op1", "status_code": 103, "resources": {}}


class FakeClient:
    """Answers GETs from `answers` (path -> value); records every request."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, str, Any]] = []

    def get(self, path: str) -> Any:
        self.calls.append(("GET", path, None))
        if path not in self.answers:
            from cli.errors import ApiError

            raise ApiError(f"not found: {path}", 404)
        return self.answers[path]

    def _write(self, method: str, path: str, data: Any, wait: bool) -> Any:
        self.calls.append((method, path, data))
        if path.startswith(("/1.0/instances/list/", "/1.0/instances/c9/")):
            from cli.errors import ApiError

            raise ApiError(f"not found: {path}", 404)
        return dict(self.answers.get(f"{method} {path}", OP)) if not wait else None

    def post(self, path: str, data: Any = None, *, wait: bool = True) -> Any:
        return self._write("POST", path, data, wait)

    def put(self, path: str, data: Any, *, wait: bool = True) -> Any:
        return self._write("PUT", path, data, wait)

    def patch(self, path: str, data: Any, *, wait: bool = True) -> Any:
        return self._write("PATCH", path, data, wait)

    def delete(self, path: str, *, wait: bool = True) -> Any:
        return self._write("DELETE", path, None, wait)

    def wait_operation(self, url: str, timeout: float | None = None,
                       on_progress: Any = None) -> dict[str, Any]:
        self.calls.append(("WAIT", url, None))
        return dict(self.answers.get("WAIT", {"status_code": 200, "resources": {}}))

    def writes(self) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] not in ("GET", "WAIT")]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    return install_fake(monkeypatch)


def install_fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    """A FakeClient answers for every remote (test_cli_networks.py uses it too)."""
    client = FakeClient()

    def split(self: Env, arg: str) -> tuple[str, str]:
        remote, sep, name = arg.partition(":")
        if sep and "/" in remote:  # a snapshot name with a ':'
            return "local", arg
        return (remote, name) if sep else ("local", arg)

    monkeypatch.setattr(Env, "split", split)
    monkeypatch.setattr(Env, "client", lambda self, remote=None: client)
    return client


def run(*argv: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(argv), prog_name="mc", input=stdin)


# -- expiry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,delta", [
    ("1d", timedelta(days=1)),
    ("1d 3H", timedelta(days=1, hours=3)),
    ("2w", timedelta(weeks=2)),
    ("30M 10S", timedelta(minutes=30, seconds=10)),
    ("  1H  ", timedelta(hours=1)),
])
def test_spans_count_from_now(spec: str, delta: timedelta) -> None:
    assert expiry_from_span(spec, NOW) == NOW + delta


def test_months_and_years_roll_over_as_lxc() -> None:
    """Go's AddDate: Jan 31 + 1 month is Mar 3 (2026 is no leap year), not Feb 28."""
    assert expiry_from_span("1m", NOW) == datetime(2026, 3, 3, 12, tzinfo=UTC)
    assert expiry_from_span("1y 1d", NOW) == datetime(2027, 2, 1, 12, tzinfo=UTC)
    assert expiry_from_span("13m", NOW) == datetime(2027, 3, 3, 12, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["", "1", "d", "1x", "1d 2d", "1.5H", "-1d", "1D"])
def test_bad_spans_are_not_spans(spec: str) -> None:
    assert expiry_from_span(spec, NOW) is None


def test_dates_in_lxc_and_rfc3339_forms() -> None:
    assert parse_date("2030/01/31 15:04 UTC") == datetime(2030, 1, 31, 15, 4, tzinfo=UTC)
    assert parse_date("2030/01/31 15:04 GMT") == datetime(2030, 1, 31, 15, 4, tzinfo=UTC)
    assert parse_date("2030-01-31T15:04:00Z") == datetime(2030, 1, 31, 15, 4, tzinfo=UTC)
    assert parse_date("2030-01-31T15:04:00+02:00") == datetime(2030, 1, 31, 13, 4, tzinfo=UTC)
    local = parse_date("2030/01/31 15:04")
    assert local is not None and local.tzinfo is not None  # local time, made aware
    assert parse_date("next tuesday") is None


def test_parse_expiry_gives_rfc3339_utc_and_refuses_the_past_and_nonsense() -> None:
    assert parse_expiry("1d 3H", NOW) == "2026-02-01T15:00:00Z"
    assert parse_expiry("2030/01/31 15:04 UTC", NOW) == "2030-01-31T15:04:00Z"
    with pytest.raises(CliError, match=r'The expiry "2020-01-01T00:00:00Z" is in the past'):
        parse_expiry("2020-01-01T00:00:00Z", NOW)
    with pytest.raises(CliError, match=r'Invalid expiry "1 day": expected a span like 1d 3H '
                       r"\(S, M, H, d, w, m, y\) or a date like 2030/01/31 15:04 UTC"):
        parse_expiry("1 day", NOW)


# -- snapshot / restore requests ---------------------------------------------------------------
def test_snapshot_request_bodies() -> None:
    assert snapshot_request("s1") == {"name": "s1", "stateful": False}
    assert snapshot_request(None) == {"name": "", "stateful": False}  # server: snapshots.pattern
    assert snapshot_request("s1", no_expiry=True)["expires_at"] == ""
    assert snapshot_request("s1", expiry="1w", now=NOW)["expires_at"] == "2026-02-07T12:00:00Z"
    assert snapshot_request("s1", reuse=True, stateful=True) == {
        "name": "s1", "stateful": True, "reuse": True}


@pytest.mark.parametrize("name", ["a/b", ".", "..", "a?b", "a#b", "a%b", " a", "a\tb",
                                  "x" * 256])
def test_snapshot_names_are_checked_first(name: str) -> None:
    # The same rule and words as the server's (rename goes there directly).
    with pytest.raises(CliError, match=re.escape(f'Invalid snapshot name "{name}": use 1 to '
                                                 "255 characters, not '.' or '..'")):
        snapshot_request(name)


def test_cli_and_server_name_the_same_rule() -> None:
    from machined.errors import BadRequest
    from machined.instances.copying import check_snapshot_name

    with pytest.raises(BadRequest) as e:
        check_snapshot_name("a/b")
    assert e.value.message.endswith(f"use {SNAPSHOT_NAMES}")


@pytest.mark.parametrize("name", ["a b", "before-upgrade", "snap-2026-01-01", "é", "x" * 255])
def test_snapshot_names_the_server_takes_pass(name: str) -> None:
    assert snapshot_request(name)["name"] == name


def test_no_expiry_and_expiry_exclude_each_other() -> None:
    with pytest.raises(CliError, match="Can't use both --no-expiry and --expiry"):
        snapshot_request("s", no_expiry=True, expiry="1d")


def test_restore_target() -> None:
    assert restore_target("c1", "snap0") == "snap0"
    assert restore_target("c1", "c1/snap0") == "snap0"
    with pytest.raises(CliError, match='"c2/snap0" is a snapshot of c2, not of c1'):
        restore_target("c1", "c2/snap0")


def test_snapshot_name_from_the_operation() -> None:
    op = {"resources": {"instances": ["/1.0/instances/c1"],
                        "instances_snapshots": ["/1.0/instances/c1/snapshots/snap3"]}}
    assert snapshot_from_operation(op) == "snap3"
    assert snapshot_from_operation({"resources": {}}) == ""


def test_mc_snapshot_posts_and_names_the_generated_snapshot(fake: FakeClient) -> None:
    fake.answers["WAIT"] = {"status_code": 200, "resources": {
        "instances_snapshots": ["/1.0/instances/c1/snapshots/snap0"]}}
    result = run("snapshot", "c1", "--no-expiry")
    assert result.exit_code == 0, result.output
    assert fake.writes() == [("POST", "/1.0/instances/c1/snapshots",
                              {"name": "", "stateful": False, "expires_at": ""})]
    assert result.output == "Instance snapshot name is: snap0\n"
    result = run("snapshot", "c1", "before", "--reuse")
    assert result.exit_code == 0 and result.output == ""  # named: nothing to say
    assert fake.writes()[-1][2] == {"name": "before", "stateful": False, "reuse": True}


def test_mc_snapshot_refuses_a_snapshot_as_instance_and_bad_flags(fake: FakeClient) -> None:
    result = run("snapshot", "c1/s0")
    assert result.exit_code == 1
    assert 'Error: "c1/s0" names a snapshot: give the instance' in result.output
    result = run("snapshot", "c1", "s", "--expiry", "tomorrow")
    assert result.exit_code == 1 and 'Invalid expiry "tomorrow"' in result.output
    assert fake.writes() == []


def test_mc_restore_puts_the_snapshot_name(fake: FakeClient) -> None:
    result = run("restore", "c1", "before")
    assert result.exit_code == 0, result.output
    assert fake.writes() == [("PUT", "/1.0/instances/c1", {"restore": "before"})]
    run("restore", "c1", "c1/before", "--stateful")
    assert fake.writes()[-1] == ("PUT", "/1.0/instances/c1",
                                 {"restore": "before", "stateful": True})


# -- copy / move ------------------------------------------------------------------------------
SOURCE = {
    "name": "c1",
    "devices": {"data": {"type": "disk", "source": "/srv", "path": "/mnt"}},
    "expanded_devices": {
        "data": {"type": "disk", "source": "/srv", "path": "/mnt"},
        "rootfs": {"type": "disk", "path": "/", "pool": "default"},
        "eth0": {"type": "nic", "nictype": "bridged", "parent": "mcbr0"},
    },
}


def test_root_device_and_device_overrides() -> None:
    assert root_device(SOURCE["expanded_devices"]) == "rootfs"
    assert root_device(SOURCE["devices"]) is None
    assert parse_device_override("root,size=1GiB") == ("root", "size", "1GiB")
    assert override_devices(SOURCE) == {}
    # A profile's device is copied into the instance, then changed (lxc).
    assert override_devices(SOURCE, ("eth0,hwaddr=00:16:3e:00:00:01",), pool="fast") == {
        "eth0": {"type": "nic", "nictype": "bridged", "parent": "mcbr0",
                 "hwaddr": "00:16:3e:00:00:01"},
        "rootfs": {"type": "disk", "path": "/", "pool": "fast"},
    }
    # No root device anywhere: one is added on the pool.
    assert override_devices({"devices": {}}, pool="fast") == {
        "root": {"type": "disk", "path": "/", "pool": "fast"}}


@pytest.mark.parametrize("item,message", [
    ("root", 'Bad device override "root": expected <device>,<key>=<value>'),
    (",size=1", 'Bad device override ",size=1"'),
    ("root,size", 'Bad key=value pair: "size"'),
    ("nope,k=v", 'Cannot override config for device "nope": the source has no such device'),
])
def test_bad_device_overrides(item: str, message: str) -> None:
    with pytest.raises(CliError, match=message):
        override_devices(SOURCE, (item,))


def test_copy_request_sends_only_overrides() -> None:
    assert copy_request("c1/snap0", "c2") == {
        "name": "c2", "type": "container", "ephemeral": False, "config": {},
        "source": {"type": "copy", "source": "c1/snap0", "instance_only": False}}
    body = copy_request("c1", None, instance_only=True, config=("limits.cpu=1",),
                        profiles=("default", "small"), ephemeral=True,
                        devices={"root": {"type": "disk", "path": "/", "pool": "fast"}})
    assert "name" not in body  # the server picks one
    assert body["source"]["instance_only"] is True and body["ephemeral"] is True
    assert body["config"] == {"limits.cpu": "1"} and body["profiles"] == ["default", "small"]
    assert body["devices"]["root"]["pool"] == "fast"
    assert copy_request("c1", "c2", no_profiles=True)["profiles"] == []
    with pytest.raises(CliError, match="--no-profiles can't be used together with --profile"):
        copy_request("c1", "c2", no_profiles=True, profiles=("p",))


def test_mc_copy_to_a_pool_reads_the_source_root_device(fake: FakeClient) -> None:
    fake.answers["/1.0/instances/c1/snapshots/s0"] = SOURCE
    result = run("copy", "c1/s0", "c2", "-s", "fast", "-c", "user.a=b")
    assert result.exit_code == 0, result.output
    assert fake.calls[0] == ("GET", "/1.0/instances/c1/snapshots/s0", None)
    (method, path, body), = fake.writes()
    assert (method, path) == ("POST", "/1.0/instances")
    assert body["source"] == {"type": "copy", "source": "c1/s0", "instance_only": False}
    assert body["devices"] == {"rootfs": {"type": "disk", "path": "/", "pool": "fast"}}
    assert body["config"] == {"user.a": "b"} and body["name"] == "c2"


def test_mc_cp_without_target_prints_the_servers_name(fake: FakeClient) -> None:
    fake.answers["POST /1.0/instances"] = {**OP, "resources": {
        "instances": ["/1.0/instances/c1-copy"]}}
    result = run("cp", "c1")
    assert result.exit_code == 0, result.output
    assert result.output == "Instance name is: c1-copy\n"
    assert "name" not in fake.writes()[0][2]


@pytest.mark.parametrize("argv,message", [
    (["copy", "c1", "lab:c2"], "Error: Copying between remotes is not supported yet"),
    (["copy", "c1", "c2/snap"], 'The copy must be an instance, not a snapshot: "c2/snap"'),
    (["copy", "c1", "c2", "-d", "root"], 'Bad device override "root"'),
    (["move", "c1", "lab:c1"], "Error: Moving between remotes is not supported yet"),
    (["move", "c1/s0", "c1/s1", "-s", "fast"], "A snapshot can't be moved to another pool"),
    (["move", "c1/a", "c2/b"], "A snapshot can't be moved to another instance"),
])
def test_copy_and_move_errors_before_any_change(fake: FakeClient, argv: list[str],
                                                message: str) -> None:
    result = run(*argv)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert fake.writes() == []


def test_mc_move_renames_or_moves_to_a_pool(fake: FakeClient) -> None:
    assert run("move", "c1", "c2").exit_code == 0
    assert run("mv", "c1/a", "c1/b").exit_code == 0
    assert run("move", "c1", "--storage", "fast").exit_code == 0
    assert run("move", "c1", "c3", "-s", "fast").exit_code == 0
    assert fake.writes() == [
        ("POST", "/1.0/instances/c1", {"name": "c2"}),
        ("POST", "/1.0/instances/c1/snapshots/a", {"name": "b"}),
        ("POST", "/1.0/instances/c1", {"name": "c1", "pool": "fast"}),
        ("POST", "/1.0/instances/c1", {"name": "c3", "pool": "fast"}),
    ]
    result = run("move", "c1")
    assert result.exit_code == 2
    assert "Give a new name or a storage pool (--storage POOL)" in result.output


def test_rename_still_works(fake: FakeClient) -> None:
    assert run("rename", "c1/a", "b").exit_code == 0
    assert fake.writes() == [("POST", "/1.0/instances/c1/snapshots/a", {"name": "b"})]


def test_launch_storage_adds_a_root_device_on_the_pool(fake: FakeClient) -> None:
    assert run("-q", "init", "busybox", "c9", "-s", "fast").exit_code == 0
    (_, path, body), = fake.writes()
    assert path == "/1.0/instances"
    assert body["devices"] == {"root": {"type": "disk", "path": "/", "pool": "fast"}}


def test_publish_from_a_snapshot_uses_a_snapshot_source(fake: FakeClient) -> None:
    fake.answers["/1.0/images/aliases/golden"] = None
    fake.answers["WAIT"] = {"status_code": 200, "metadata": {"fingerprint": "ab" * 32}}
    fake.get = _missing_alias(fake.get)  # type: ignore[method-assign]
    result = run("publish", "c1/s0", "--alias", "golden")
    assert result.exit_code == 0, result.output
    (_, path, body), = fake.writes()
    assert path == "/1.0/images"
    assert body["source"] == {"type": "snapshot", "name": "c1/s0"}
    assert not [c for c in fake.calls if c[1].endswith("/state")]  # no stop needed


def _missing_alias(get: Any) -> Any:
    def wrapped(path: str) -> Any:
        if path.startswith("/1.0/images/aliases/"):
            from cli.errors import ApiError

            raise ApiError("not found", 404)
        return get(path)
    return wrapped


# -- delete / info ----------------------------------------------------------------------------
def test_delete_a_snapshot_deletes_only_it(fake: FakeClient) -> None:
    result = run("delete", "c1/s0", "-f")
    assert result.exit_code == 0, result.output
    assert fake.writes() == [("DELETE", "/1.0/instances/c1/snapshots/s0", None)]


def test_info_lists_snapshots_from_the_snapshots_endpoint(fake: FakeClient) -> None:
    fake.answers.update({
        "/1.0/instances/c1": {"name": "c1", "status": "Stopped", "architecture": "x86_64"},
        "/1.0/instances/c1/state": {"status": "Stopped"},
        "/1.0/instances/c1/snapshots?recursion=1": [
            {"name": "before", "created_at": "2026-01-02T10:11:12Z",
             "expires_at": "0001-01-01T00:00:00Z", "stateful": False},
            {"name": "nightly", "created_at": "2026-01-03T10:11:12Z",
             "expires_at": "2026-02-03T10:11:12Z", "stateful": False},
        ],
    })
    result = run("info", "c1")
    assert result.exit_code == 0, result.output
    table = result.output.split("Snapshots:\n", 1)[1].splitlines()
    assert "NAME" in table[1] and "TAKEN AT" in table[1] and "EXPIRES AT" in table[1]
    before = next(line for line in table if "before" in line)
    cells = [c.strip() for c in before.strip("|").split("|")]
    assert cells[0] == "before" and cells[2] == "" and cells[3] == "NO"  # never expires
    assert any("nightly" in line and "2026/02/03" in line for line in table)


# -- config show / edit of a snapshot ---------------------------------------------------------
SNAP = {
    "name": "before", "architecture": "x86_64", "created_at": "2026-01-02T10:11:12Z",
    "expires_at": "0001-01-01T00:00:00Z", "stateful": False, "ephemeral": False,
    "description": "", "profiles": ["default"],
    "config": {"user.x": "1", "volatile.uuid": "u"}, "devices": {},
    "expanded_config": {"user.x": "1", "limits.cpu": "1"},
    "expanded_devices": {"root": {"type": "disk", "path": "/", "pool": "default"}},
}


def test_config_show_of_a_snapshot(fake: FakeClient) -> None:
    fake.answers["/1.0/instances/c1/snapshots/before"] = SNAP
    result = run("config", "show", "c1/before")
    assert result.exit_code == 0, result.output
    assert "name: before\n" in result.output
    assert "  user.x: '1'\n" in result.output
    assert "expires_at: '0001-01-01T00:00:00Z'\n" in result.output
    expanded = run("config", "show", "c1/before", "-e").output
    assert "limits.cpu" in expanded and "pool: default" in expanded
    assert run("config", "get", "c1/before", "user.x").output == "1\n"
    assert run("config", "get", "c1/before", "expires_at").output == "\n"


def test_config_edit_of_a_snapshot_changes_expiry_and_description(fake: FakeClient) -> None:
    fake.answers["/1.0/instances/c1/snapshots/before"] = SNAP
    shown = run("config", "show", "c1/before").output
    # Unchanged document (as from a non-terminal stdin): nothing is sent.
    assert run("config", "edit", "c1/before", stdin=shown).exit_code == 0
    assert fake.writes() == []
    edited = shown.replace("'0001-01-01T00:00:00Z'", "2099-01-01T00:00:00Z").replace(
        "description: ''", "description: keep me").replace("user.x: '1'", "user.x: '2'")
    result = run("config", "edit", "c1/before", stdin=edited)
    assert result.exit_code == 0, result.output
    assert fake.writes() == [("PUT", "/1.0/instances/c1/snapshots/before",
                              {"expires_at": "2099-01-01T00:00:00Z",
                               "description": "keep me"})]


def test_snapshot_yaml_edits_are_checked() -> None:
    current = {"expires_at": "2099-01-01T00:00:00Z", "description": "d"}
    assert config_cmd.parse_snapshot_yaml("expires_at: ''", current) == {
        "expires_at": "", "description": "d"}
    assert config_cmd.parse_snapshot_yaml("expires_at: 0001-01-01T00:00:00Z", current) == {
        "expires_at": "", "description": "d"}
    with pytest.raises(CliError, match=r"The new expires_at \(2001-01-01T00:00:00Z\) is in "
                       "the past"):
        config_cmd.parse_snapshot_yaml("expires_at: 2001-01-01T00:00:00Z", current)
    with pytest.raises(CliError, match='Invalid expires_at "soon"'):
        config_cmd.parse_snapshot_yaml("expires_at: soon", current)


def test_config_set_on_a_snapshot_says_what_can_change(fake: FakeClient) -> None:
    result = run("config", "set", "c1/before", "user.x=2")
    assert result.exit_code == 1
    assert ("Error: A snapshot's configuration can't be changed (c1/before); only its "
            "expires_at and description can: mc config edit c1/before") in result.output
    assert run("config", "unset", "c1/before", "user.x").exit_code == 1
    assert fake.writes() == []


# -- storage ------------------------------------------------------------------------------------
POOL = {
    "name": "fast", "driver": "btrfs", "description": "SSD", "status": "Created",
    "config": {"source": "/var/lib/machined/disks/fast.img", "size": "20GiB"},
    "used_by": ["/1.0/instances/c1", "/1.0/instances/c2", "/1.0/profiles/default",
                "/1.0/images/" + "ab" * 32, "/1.0/instances/c1/snapshots/s0?project=x"],
    "locations": ["none"],
}


def test_storage_rows_and_yaml() -> None:
    assert pool_row(POOL) == ["fast", "btrfs", "/var/lib/machined/disks/fast.img", "SSD", "5",
                              "CREATED"]
    shown = pool_yaml(POOL)
    assert shown.startswith("name: fast\ndescription: SSD\ndriver: btrfs\nconfig:\n")
    assert "  size: 20GiB\n" in shown and "- /1.0/profiles/default\n" in shown


def test_used_by_grouped_and_info() -> None:
    assert used_by_kinds(POOL["used_by"]) == {
        "instances": ["c1", "c2"], "snapshots": ["c1/s0"], "images": ["ab" * 32],
        "profiles": ["default"]}
    text = format_pool_info(POOL, {"space": {"used": 3 << 30, "total": 20 << 30}},
                            snapshots=["c1/s0", "c2/s1"])
    assert "  space used: 3.00GiB\n  total space: 20.00GiB\n" in text
    assert "  usage:\n    instances: 2\n    snapshots: 2\n    images: 1\n    profiles: 1\n" in text
    assert "used by:\n  instances:\n  - c1\n  - c2\n  snapshots:\n  - c1/s0\n  - c2/s1\n" in text
    raw = format_pool_info(POOL, {"space": {"used": 1024, "total": 2048}}, raw_bytes=True)
    assert "space used: 1024\n" in raw and "total space: 2048\n" in raw


def test_storage_create_request_and_edit_document() -> None:
    assert create_request("fast", "btrfs", ("size=20GiB",), None) == {
        "name": "fast", "driver": "btrfs", "config": {"size": "20GiB"}}
    assert create_request("s", "dir", (), "slow")["description"] == "slow"
    with pytest.raises(CliError, match='Unknown storage driver "zfs": accepted are dir, btrfs'):
        create_request("p", "zfs", (), None)
    with pytest.raises(CliError, match='Bad key=value pair: "size"'):
        create_request("p", "dir", ("size",), None)
    assert parse_pool_yaml("name: x\ndescription: d\nconfig:\n  btrfs.mount_options: noatime\n"
                           "used_by: []\n") == {
        "description": "d", "config": {"btrfs.mount_options": "noatime"}}


def test_mc_storage_commands(fake: FakeClient) -> None:
    fake.answers.update({"/1.0/storage-pools?recursion=1": [POOL, {**POOL, "name": "default",
                                                                  "driver": "dir"}],
                         "/1.0/storage-pools/fast": POOL,
                         "/1.0/storage-pools/fast/resources": {"space": {"used": 1, "total": 2}},
                         "/1.0/instances/c1/snapshots": ["/1.0/instances/c1/snapshots/s0"],
                         "/1.0/instances/c2/snapshots": []})
    listed = run("storage", "list", "-f", "csv").output.splitlines()
    assert listed[0].startswith("default,dir,") and listed[1].startswith("fast,btrfs,")
    assert '"name":"fast"' in run("storage", "ls", "-f", "json").output
    assert run("storage", "get", "fast", "size").output == "20GiB\n"
    assert run("storage", "get", "fast", "-p", "description").output == "SSD\n"
    assert "snapshots: 1" in run("storage", "info", "fast").output
    assert run("-q", "storage", "create", "p1", "dir", "source=/srv/p1", "--description",
               "x").exit_code == 0
    assert run("storage", "set", "fast", "btrfs.mount_options=noatime").exit_code == 0
    assert run("storage", "unset", "fast", "size").exit_code == 0
    assert run("storage", "set", "fast", "-p", "description=fast disks").exit_code == 0
    assert run("-q", "storage", "rm", "p1").exit_code == 0
    writes = fake.writes()
    assert writes[0] == ("POST", "/1.0/storage-pools", {
        "name": "p1", "driver": "dir", "config": {"source": "/srv/p1"}, "description": "x"})
    assert writes[1][2]["config"] == {**POOL["config"], "btrfs.mount_options": "noatime"}
    assert writes[2][2]["config"] == {"source": POOL["config"]["source"]}
    assert writes[3][2] == {"config": POOL["config"], "description": "fast disks"}
    assert writes[4] == ("DELETE", "/1.0/storage-pools/p1", None)


def test_mc_storage_errors(fake: FakeClient) -> None:
    result = run("storage", "create", "p", "zfs")
    assert result.exit_code == 1 and "accepted are dir, btrfs" in result.output
    fake.answers["/1.0/storage-pools/fast"] = POOL
    result = run("storage", "unset", "fast", "nope")
    assert result.exit_code == 1
    assert 'The key "nope" is not set on the storage pool' in result.output
    result = run("storage", "list", "-f", "xml")
    assert result.exit_code == 2
    assert [c for c in fake.calls if c[0] != "GET"] == []


def test_storage_help_lists_commands_and_aliases() -> None:
    result = run("storage", "--help")
    assert result.exit_code == 0
    for name in ("create", "delete", "edit", "get", "info", "list", "set", "show", "unset"):
        assert f"\n  {name} " in result.output
    assert "  ls  = list" in result.output and "  rm  = delete" in result.output
    commands = result.output.split("Commands:\n", 1)[1].split("Aliases:", 1)[0]
    assert not [line for line in commands.splitlines() if line.endswith("...")]


def test_main_help_lists_the_new_commands_and_aliases() -> None:
    out = run("--help").output
    for name in ("copy", "move", "restore", "snapshot", "storage"):
        assert f"\n  {name} " in out
    assert "  cp" in out.split("Aliases:", 1)[1]
    assert run("cp", "--help").output.startswith("Usage: mc copy ")
    assert run("mv", "--help").output.startswith("Usage: mc move ")


# -- progress -----------------------------------------------------------------------------------
def test_progress_shows_any_progress_key_when_asked() -> None:
    progress = OperationProgress("Copying", key=None, enabled=False)
    assert progress.text({"metadata": {"copy_progress": "45% (120MB/s)"}}) == (
        "Copying: 45% (120MB/s)")
    assert progress.text({"metadata": {"other": "x"}}) == ""
    assert progress.text({"metadata": None}) == ""
    # The server's line names its stage ("Copying c1 to c2: 3 s"): no label then.
    assert OperationProgress("", key=None, enabled=False).text(
        {"metadata": {"copy_progress": "Copying c1 to c2: 3 s"}}) == "Copying c1 to c2: 3 s"
    fixed = OperationProgress("Retrieving image", enabled=False)
    assert fixed.text({"metadata": {"copy_progress": "1%"}}) == ""


def test_incus_style_snapshot_verbs_get_the_mc_syntax(fake: FakeClient) -> None:
    """`mc snapshot list c1` (incus habits) reads `list` as an instance; when there is none,
    the error says how mc spells it."""
    result = run("snapshot", "list", "c1")
    assert result.exit_code == 1
    assert ("Error: not found: /1.0/instances/list/snapshots (mc uses lxc's syntax: mc info "
            "<instance>)") in result.output
    result = run("snapshot", "c9", "s")  # a plain missing instance: no hint
    assert result.output == "Error: not found: /1.0/instances/c9/snapshots\n"


def test_list_storage_pool_column() -> None:
    from cli.commands.list import build_rows, parse_columns

    inst = {"name": "c1", "expanded_devices": {
        "root": {"type": "disk", "path": "/", "pool": "fast"},
        "data": {"type": "disk", "path": "/mnt", "source": "/srv"}}}
    cols = parse_columns("nb")
    assert [c[0] for c in cols] == ["NAME", "STORAGE POOL"]
    assert build_rows([inst, {"name": "c2"}], cols) == [["c1", "fast"], ["c2", ""]]
