"""mc publish's client side: argument reading, the request body, --force's stop/start dance,
--reuse, --expire. A recording fake stands in for the API client."""

from __future__ import annotations

from typing import Any

import pytest

from cli.commands import publish as pub
from cli.context import Env
from cli.errors import ApiError, CliError


class FakeEnv(Env):
    def split(self, arg: str) -> tuple[str, str]:
        remote, sep, name = arg.partition(":")
        return (remote, name) if sep else ("local", arg)


class FakeClient:
    def __init__(self, ephemeral: bool = False, fail_start: bool = False) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.ephemeral = ephemeral
        self.fail_start = fail_start

    def get(self, path: str) -> Any:
        self.calls.append(("GET", path, None))
        return {"name": "c01", "ephemeral": self.ephemeral}

    def patch(self, path: str, body: Any) -> None:
        self.calls.append(("PATCH", path, body))

    def put(self, path: str, body: Any) -> None:
        self.calls.append(("PUT", path, body))
        if self.fail_start and body.get("action") == "start":
            raise ApiError("Instance 'c01' is already running", 400)

    def delete(self, path: str) -> None:
        self.calls.append(("DELETE", path, None))
        if path.endswith("gone"):
            raise ApiError("not found", 404)


def test_parse_args_as_lxc() -> None:
    env = FakeEnv()
    assert pub.parse_args(env, ("c01",)) == ("local", "c01", "local", {})
    assert pub.parse_args(env, ("c01", "a=1", "b=x=y")) == (
        "local", "c01", "local", {"a": "1", "b": "x=y"})
    assert pub.parse_args(env, ("lab:c01", "lab:", "a=1")) == ("lab", "c01", "lab", {"a": "1"})
    with pytest.raises(CliError, match='There is no image name \\("img"\\): did you want '
                       "--alias img"):
        pub.parse_args(env, ("c01", "img"))
    with pytest.raises(CliError, match="Bad key=value pair"):
        pub.parse_args(env, ("c01", "local:", "k"))
    with pytest.raises(CliError, match="Missing instance name"):
        pub.parse_args(env, ("lab:",))


def test_request_body() -> None:
    body = pub.publish_request("c01", public=True, aliases=["a"], properties={"k": "v"},
                               compression=None)
    assert body == {"source": {"type": "instance", "name": "c01"}, "public": True,
                    "aliases": [{"name": "a", "description": ""}], "properties": {"k": "v"}}
    snap = pub.publish_request("c01/s0", public=False, aliases=[], properties={},
                               compression="xz")
    assert snap["source"] == {"type": "snapshot", "name": "c01/s0"}
    assert snap["compression_algorithm"] == "xz"


def test_compression_and_expiry_checks() -> None:
    pub.check_compression(None)
    pub.check_compression("zstd")
    with pytest.raises(CliError, match='Invalid compression algorithm "7z": accepted are'):
        pub.check_compression("7z")
    assert pub._parse_expire("2030-01-31T00:00:00Z") == "2030-01-31T00:00:00Z"
    assert pub._parse_expire("2030-01-31T02:00:00+02:00") == "2030-01-31T00:00:00Z"
    with pytest.raises(CliError, match="expected RFC 3339"):
        pub._parse_expire("next week")


def test_force_keeps_an_ephemeral_instance_and_starts_it_again() -> None:
    client = FakeClient(ephemeral=True)
    stopper = pub._Stopped(FakeEnv(quiet=True), client, "c01")
    stopper.stop(frozen=False)
    stopper.start_again(failed=False)
    assert [(m, b) for m, _, b in client.calls if m != "GET"] == [
        ("PATCH", {"ephemeral": False}),
        ("PUT", {"action": "stop", "timeout": pub.STOP_TIMEOUT, "force": False,
                 "stateful": False}),
        ("PATCH", {"ephemeral": True}),
        ("PUT", {"action": "start", "timeout": -1, "force": False, "stateful": False}),
    ]


def test_failed_restart_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    stopper = pub._Stopped(FakeEnv(quiet=True), FakeClient(fail_start=True), "c01")
    stopper.stop(frozen=True)
    with pytest.raises(CliError, match="published, but starting c01 again failed"):
        stopper.start_again(failed=False)
    stopper.start_again(failed=True)  # the publish error is the one raised: this is a note
    assert "starting c01 again failed" in capsys.readouterr().err
    idle = pub._Stopped(FakeEnv(quiet=True), FakeClient(), "c01")
    idle.start_again(failed=True)  # never stopped: nothing to start
    assert idle.client.calls == []


def test_reuse_moves_aliases_then_deletes_the_old_images() -> None:
    client = FakeClient()
    pub._reuse(client, {"a": {"target": "old1", "description": "d"},
                        "b": {"target": "gone"}, "c": {"target": "new"}}, "new")
    assert client.calls == [
        ("PUT", "/1.0/images/aliases/a", {"target": "new", "description": "d"}),
        ("PUT", "/1.0/images/aliases/b", {"target": "new", "description": ""}),
        ("PUT", "/1.0/images/aliases/c", {"target": "new", "description": ""}),
        ("DELETE", "/1.0/images/gone", None),
        ("DELETE", "/1.0/images/old1", None),
    ]
